//! NTLM messages (MS-NLMP §2.2): NEGOTIATE and AUTHENTICATE parsed, CHALLENGE built. Sans-IO and total.
//!
//! SECURITY: the threat is a hostile token: truncated, with lengths and offsets pointing outside it,
//! overlapping, or huge. Every field is read through `field()`, which checks offset and length against the
//! message before slicing; nothing here can panic or read out of bounds.

/// `NTLMSSP\0`.
pub const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";

/// NTLMSSP_NEGOTIATE_UNICODE.
pub const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
/// NTLMSSP_REQUEST_TARGET.
pub const REQUEST_TARGET: u32 = 0x0000_0004;
/// NTLMSSP_NEGOTIATE_SIGN.
pub const NEGOTIATE_SIGN: u32 = 0x0000_0010;
/// NTLMSSP_NEGOTIATE_NTLM.
pub const NEGOTIATE_NTLM: u32 = 0x0000_0200;
/// NTLMSSP_NEGOTIATE_ANONYMOUS.
pub const NEGOTIATE_ANONYMOUS: u32 = 0x0000_0800;
/// NTLMSSP_NEGOTIATE_ALWAYS_SIGN.
pub const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
/// NTLMSSP_TARGET_TYPE_SERVER.
pub const TARGET_TYPE_SERVER: u32 = 0x0002_0000;
/// NTLMSSP_NEGOTIATE_EXTENDED_SESSIONSECURITY.
pub const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
/// NTLMSSP_NEGOTIATE_TARGET_INFO.
pub const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
/// NTLMSSP_NEGOTIATE_VERSION.
pub const NEGOTIATE_VERSION: u32 = 0x0200_0000;
/// NTLMSSP_NEGOTIATE_128.
pub const NEGOTIATE_128: u32 = 0x2000_0000;
/// NTLMSSP_NEGOTIATE_KEY_EXCH.
pub const NEGOTIATE_KEY_EXCH: u32 = 0x4000_0000;
/// NTLMSSP_NEGOTIATE_56.
pub const NEGOTIATE_56: u32 = 0x8000_0000;

/// AV pair ids (MS-NLMP §2.2.2.1).
pub mod av {
    /// MsvAvEOL.
    pub const EOL: u16 = 0;
    /// MsvAvNbComputerName.
    pub const NB_COMPUTER_NAME: u16 = 1;
    /// MsvAvNbDomainName.
    pub const NB_DOMAIN_NAME: u16 = 2;
    /// MsvAvDnsComputerName.
    pub const DNS_COMPUTER_NAME: u16 = 3;
    /// MsvAvDnsDomainName.
    pub const DNS_DOMAIN_NAME: u16 = 4;
    /// MsvAvFlags.
    pub const FLAGS: u16 = 6;
    /// MsvAvTimestamp.
    pub const TIMESTAMP: u16 = 7;
}

/// Why a token is not a usable NTLM message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// Shorter than its fixed header.
    #[error("the NTLM message is truncated")]
    Truncated,
    /// No NTLMSSP signature.
    #[error("not an NTLM message")]
    Signature,
    /// Another message type than expected.
    #[error("unexpected NTLM message type {0}")]
    Type(u32),
    /// A field points outside the message.
    #[error("an NTLM field points outside the message")]
    Field,
    /// A name is not valid UTF-16.
    #[error("an NTLM name is not valid UTF-16")]
    Utf16,
    /// The AV pairs are malformed.
    #[error("the NTLMv2 target information is malformed")]
    AvPairs,
    /// A field to send is longer than NTLM's 16-bit length fields can say (a user or domain name of more
    /// than 32767 UTF-16 units, or a response with too much target information).
    #[error("an NTLM field is longer than 65535 bytes")]
    TooLong,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, MessageError> {
    let bytes = b.get(at..at + 2).ok_or(MessageError::Truncated)?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, MessageError> {
    let bytes = b.get(at..at + 4).ok_or(MessageError::Truncated)?;
    Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// A variable field: (len u16, maxlen u16, offset u32) at `at`, resolved against the message.
fn field(b: &[u8], at: usize) -> Result<&[u8], MessageError> {
    let len = usize::from(u16_at(b, at)?);
    let offset = usize::try_from(u32_at(b, at + 4)?).map_err(|_| MessageError::Field)?;
    if len == 0 {
        return Ok(&[]);
    }
    let end = offset.checked_add(len).ok_or(MessageError::Field)?;
    b.get(offset..end).ok_or(MessageError::Field)
}

fn header(b: &[u8], expected: u32) -> Result<(), MessageError> {
    if b.len() < 12 {
        return Err(MessageError::Truncated);
    }
    if &b[..8] != SIGNATURE {
        return Err(MessageError::Signature);
    }
    match u32_at(b, 8)? {
        t if t == expected => Ok(()),
        t => Err(MessageError::Type(t)),
    }
}

/// The message type of a token, if it is an NTLM message at all.
pub fn message_type(b: &[u8]) -> Result<u32, MessageError> {
    if b.len() < 12 {
        return Err(MessageError::Truncated);
    }
    if &b[..8] != SIGNATURE {
        return Err(MessageError::Signature);
    }
    u32_at(b, 8)
}

/// A NEGOTIATE_MESSAGE: only its flags matter to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiate {
    /// NegotiateFlags.
    pub flags: u32,
}

impl Negotiate {
    /// Parses a NEGOTIATE_MESSAGE.
    pub fn parse(b: &[u8]) -> Result<Self, MessageError> {
        header(b, 1)?;
        Ok(Negotiate {
            flags: u32_at(b, 12)?,
        })
    }
}

/// A CHALLENGE_MESSAGE, as a client reads it (MS-NLMP §2.2.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<'a> {
    /// NegotiateFlags the server granted.
    pub flags: u32,
    /// ServerChallenge.
    pub server_challenge: [u8; 8],
    /// TargetInfo: the AV pairs, raw (checked to parse).
    pub target_info: &'a [u8],
}

impl<'a> Challenge<'a> {
    /// Parses a CHALLENGE_MESSAGE; its TargetInfo must be well-formed AV pairs (NTLMv2 needs them).
    pub fn parse(b: &'a [u8]) -> Result<Self, MessageError> {
        header(b, 2)?;
        if b.len() < 48 {
            return Err(MessageError::Truncated);
        }
        let mut server_challenge = [0u8; 8];
        server_challenge.copy_from_slice(&b[24..32]);
        let target_info = field(b, 40)?;
        av_pairs(target_info)?;
        Ok(Challenge {
            flags: u32_at(b, 20)?,
            server_challenge,
            target_info,
        })
    }
}

/// An AUTHENTICATE_MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticate<'a> {
    /// LmChallengeResponse.
    pub lm_response: &'a [u8],
    /// NtChallengeResponse (NTProofStr and the NTLMv2 blob for NTLMv2).
    pub nt_response: &'a [u8],
    /// DomainName, decoded.
    pub domain: String,
    /// UserName, decoded.
    pub user: String,
    /// Workstation, decoded.
    pub workstation: String,
    /// EncryptedRandomSessionKey.
    pub encrypted_session_key: &'a [u8],
    /// NegotiateFlags.
    pub flags: u32,
    /// The MIC field and its offset, when the header is long enough to hold one.
    pub mic: Option<(usize, [u8; 16])>,
}

impl<'a> Authenticate<'a> {
    /// The fixed header is 64 bytes; with Version 72; with a MIC 88.
    pub fn parse(b: &'a [u8]) -> Result<Self, MessageError> {
        header(b, 3)?;
        if b.len() < 64 {
            return Err(MessageError::Truncated);
        }
        let flags = u32_at(b, 60)?;
        let text = |at: usize| -> Result<String, MessageError> {
            let raw = field(b, at)?;
            if flags & NEGOTIATE_UNICODE != 0 {
                utf16(raw)
            } else {
                Ok(raw.iter().map(|&c| char::from(c)).collect())
            }
        };
        // The payload starts after the header; the MIC sits at 72 when the lowest field offset leaves room.
        let lowest_offset = [12usize, 20, 28, 36, 44, 52]
            .iter()
            .filter(|&&at| u16_at(b, at).is_ok_and(|len| len > 0))
            .filter_map(|&at| u32_at(b, at + 4).ok())
            .filter_map(|o| usize::try_from(o).ok())
            .min()
            .unwrap_or(b.len());
        let mic = (lowest_offset >= 88 && b.len() >= 88).then(|| {
            let mut m = [0u8; 16];
            m.copy_from_slice(&b[72..88]);
            (72, m)
        });
        Ok(Authenticate {
            lm_response: field(b, 12)?,
            nt_response: field(b, 20)?,
            domain: text(28)?,
            user: text(36)?,
            workstation: text(44)?,
            encrypted_session_key: field(b, 52)?,
            flags,
            mic,
        })
    }
}

fn utf16(raw: &[u8]) -> Result<String, MessageError> {
    if !raw.len().is_multiple_of(2) {
        return Err(MessageError::Utf16);
    }
    let units: Vec<u16> = raw
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    String::from_utf16(&units).map_err(|_| MessageError::Utf16)
}

pub(crate) fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// Reads AV pairs up to MsvAvEOL; each is (id, value).
pub fn av_pairs(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, MessageError> {
    let mut pairs = Vec::new();
    loop {
        let id = u16_at(b, 0).map_err(|_| MessageError::AvPairs)?;
        let len = usize::from(u16_at(b, 2).map_err(|_| MessageError::AvPairs)?);
        let value = b.get(4..4 + len).ok_or(MessageError::AvPairs)?;
        if id == av::EOL {
            return Ok(pairs);
        }
        if pairs.len() >= 64 {
            return Err(MessageError::AvPairs);
        }
        pairs.push((id, value));
        b = &b[4 + len..];
    }
}

/// Builds a CHALLENGE_MESSAGE with a target name, target info (names and a timestamp, so that modern
/// clients send a MIC) and the flags we grant.
pub fn challenge(
    flags: u32,
    server_challenge: [u8; 8],
    target: &str,
    computer: &str,
    filetime: u64,
) -> Vec<u8> {
    let target_name = utf16le(target);
    let mut info = Vec::new();
    let mut pair = |id: u16, value: &[u8]| {
        info.extend_from_slice(&id.to_le_bytes());
        info.extend_from_slice(&(value.len() as u16).to_le_bytes());
        info.extend_from_slice(value);
    };
    pair(av::NB_DOMAIN_NAME, &utf16le(target));
    pair(av::NB_COMPUTER_NAME, &utf16le(computer));
    pair(av::DNS_DOMAIN_NAME, &utf16le(&target.to_ascii_lowercase()));
    pair(
        av::DNS_COMPUTER_NAME,
        &utf16le(&computer.to_ascii_lowercase()),
    );
    pair(av::TIMESTAMP, &filetime.to_le_bytes());
    pair(av::EOL, &[]);
    let header_len = 56u32;
    let mut m = Vec::with_capacity(56 + target_name.len() + info.len());
    m.extend_from_slice(SIGNATURE);
    m.extend_from_slice(&2u32.to_le_bytes());
    let name_len = target_name.len() as u16;
    m.extend_from_slice(&name_len.to_le_bytes());
    m.extend_from_slice(&name_len.to_le_bytes());
    m.extend_from_slice(&header_len.to_le_bytes());
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&server_challenge);
    m.extend_from_slice(&[0u8; 8]);
    let info_len = info.len() as u16;
    m.extend_from_slice(&info_len.to_le_bytes());
    m.extend_from_slice(&info_len.to_le_bytes());
    m.extend_from_slice(&(header_len + u32::from(name_len)).to_le_bytes());
    // Version: 10.0 build 20348, NTLM revision 15.
    m.extend_from_slice(&[10, 0, 0x7c, 0x4f, 0, 0, 0, 15]);
    m.extend_from_slice(&target_name);
    m.extend_from_slice(&info);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_round_trips_its_fields() {
        let c = challenge(
            0xa2898205,
            [1, 2, 3, 4, 5, 6, 7, 8],
            "CORP",
            "FILES",
            0x01d0_0000_0000_0000,
        );
        assert_eq!(message_type(&c), Ok(2));
        assert_eq!(field(&c, 12).unwrap(), utf16le("CORP").as_slice());
        assert_eq!(&c[24..32], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let pairs = av_pairs(field(&c, 40).unwrap()).unwrap();
        assert_eq!(pairs.len(), 5);
        assert!(pairs
            .iter()
            .any(|(id, v)| *id == av::TIMESTAMP && v.len() == 8));
        let parsed = Challenge::parse(&c).unwrap();
        assert_eq!(parsed.flags, 0xa2898205);
        assert_eq!(parsed.server_challenge, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(parsed.target_info, field(&c, 40).unwrap());
        for end in 0..c.len() {
            assert!(Challenge::parse(&c[..end]).is_err(), "{end}");
        }
    }

    #[test]
    fn hostile_tokens_are_errors() {
        assert_eq!(Negotiate::parse(b""), Err(MessageError::Truncated));
        assert_eq!(
            Negotiate::parse(b"NTLMSSP\0\x01\0\0"),
            Err(MessageError::Truncated)
        );
        assert_eq!(
            Negotiate::parse(b"NTLMSSQ\0\x01\0\0\0\0\0\0\0"),
            Err(MessageError::Signature)
        );
        assert_eq!(
            Negotiate::parse(b"NTLMSSP\0\x03\0\0\0\0\0\0\0"),
            Err(MessageError::Type(3))
        );
        let mut a = vec![0u8; 64];
        a[..8].copy_from_slice(SIGNATURE);
        a[8] = 3;
        assert!(Authenticate::parse(&a).is_ok());
        // A user field pointing past the end.
        a[36] = 10;
        a[40..44].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(Authenticate::parse(&a), Err(MessageError::Field));
        // An offset that overflows when the length is added.
        a[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Authenticate::parse(&a), Err(MessageError::Field));
        assert_eq!(Authenticate::parse(&a[..63]), Err(MessageError::Truncated));
        assert_eq!(av_pairs(&[7, 0, 200, 0]), Err(MessageError::AvPairs));
        assert_eq!(av_pairs(&[]), Err(MessageError::AvPairs));
        for end in 0..a.len() {
            let _ = Authenticate::parse(&a[..end]);
        }
    }
}
