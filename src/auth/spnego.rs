//! SPNEGO tokens (RFC 4178) as far as this server needs them: which mechanism a `Negotiate` token carries,
//! the NTLM token inside it, and the NegTokenResp we answer with. Sans-IO and total.
//!
//! SECURITY: the threat is a hostile DER token (lengths past the end, deep nesting, huge counts). Every
//! length is checked against the bytes that remain before slicing; long-form lengths are limited to 4
//! bytes; at most 16 mechanism OIDs are read. Nothing here can panic or read out of bounds.

/// DER of the SPNEGO OID 1.3.6.1.5.5.2.
pub const SPNEGO: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x02];
/// DER of the NTLMSSP OID 1.3.6.1.4.1.311.2.2.10.
pub const NTLMSSP: &[u8] = &[0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02, 0x0a];
/// DER of the Kerberos 5 OID 1.2.840.113554.1.2.2.
pub const KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02];
/// DER of Microsoft's Kerberos OID 1.2.840.48018.1.2.2.
pub const MS_KRB5: &[u8] = &[0x2a, 0x86, 0x48, 0x82, 0xf7, 0x12, 0x01, 0x02, 0x02];

/// negState values (RFC 4178 §4.2.2).
pub mod state {
    /// accept-completed.
    pub const ACCEPT_COMPLETED: u8 = 0;
    /// accept-incomplete.
    pub const ACCEPT_INCOMPLETE: u8 = 1;
    /// reject.
    pub const REJECT: u8 = 2;
}

/// What a `Negotiate` token is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Token<'a> {
    /// A bare NTLM message (what requests_ntlm and some browsers send under Negotiate).
    RawNtlm(&'a [u8]),
    /// A NegTokenInit: the mechanisms offered, most preferred first, and the optimistic token.
    Init {
        /// DER OIDs (contents only).
        mechs: Vec<&'a [u8]>,
        /// The MechTypeList element as sent (what a mechListMIC signs).
        mech_list: &'a [u8],
        /// The first mechanism's token, if sent.
        mech_token: Option<&'a [u8]>,
    },
    /// A NegTokenResp from the client: the next token of the chosen mechanism.
    Resp {
        /// The response token, if any.
        response_token: Option<&'a [u8]>,
        /// The mechListMIC, if any.
        mech_list_mic: Option<&'a [u8]>,
    },
    /// A raw Kerberos AP-REQ (GSS-API token with the Kerberos OID) or anything else for GSS-API.
    Other,
}

/// A malformed token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed SPNEGO token")]
pub struct SpnegoError;

/// One DER element: (tag, contents, rest).
fn element(b: &[u8]) -> Result<(u8, &[u8], &[u8]), SpnegoError> {
    let (&tag, rest) = b.split_first().ok_or(SpnegoError)?;
    let (&first, mut rest) = rest.split_first().ok_or(SpnegoError)?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(SpnegoError);
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, &b| l << 8 | usize::from(b));
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return Err(SpnegoError);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// The context-tagged fields `[n]` of a SEQUENCE, in order.
fn fields(seq: &[u8]) -> Result<Vec<(u8, &[u8])>, SpnegoError> {
    let (tag, mut body, _) = element(seq)?;
    if tag != 0x30 {
        return Err(SpnegoError);
    }
    let mut out = Vec::new();
    while !body.is_empty() {
        let (tag, value, rest) = element(body)?;
        if tag & 0xe0 != 0xa0 || out.len() >= 8 {
            return Err(SpnegoError);
        }
        out.push((tag & 0x1f, value));
        body = rest;
    }
    Ok(out)
}

fn octets(wrapped: &[u8]) -> Result<&[u8], SpnegoError> {
    match element(wrapped)? {
        (0x04, value, _) => Ok(value),
        _ => Err(SpnegoError),
    }
}

/// Classifies and takes apart a `Negotiate` token.
pub fn parse(token: &[u8]) -> Result<Token<'_>, SpnegoError> {
    if token.starts_with(b"NTLMSSP\0") {
        return Ok(Token::RawNtlm(token));
    }
    match token.first() {
        Some(0x60) => {
            let (_, body, _) = element(token)?;
            let (tag, oid, rest) = element(body)?;
            if tag != 0x06 {
                return Err(SpnegoError);
            }
            if oid != SPNEGO {
                return Ok(Token::Other);
            }
            let (tag, init, _) = element(rest)?;
            if tag != 0xa0 {
                return Err(SpnegoError);
            }
            parse_init(init)
        }
        Some(0xa1) => {
            let (_, resp, _) = element(token)?;
            let mut response_token = None;
            let mut mech_list_mic = None;
            for (n, value) in fields(resp)? {
                match n {
                    2 => response_token = Some(octets(value)?),
                    3 => mech_list_mic = Some(octets(value)?),
                    _ => {}
                }
            }
            Ok(Token::Resp {
                response_token,
                mech_list_mic,
            })
        }
        Some(_) => Ok(Token::Other),
        None => Err(SpnegoError),
    }
}

fn parse_init(init: &[u8]) -> Result<Token<'_>, SpnegoError> {
    let mut mechs = Vec::new();
    let mut mech_token = None;
    let mut mech_list: &[u8] = &[];
    for (n, value) in fields(init)? {
        match n {
            0 => {
                mech_list = value;
                let (tag, mut list, _) = element(value)?;
                if tag != 0x30 {
                    return Err(SpnegoError);
                }
                while !list.is_empty() {
                    let (tag, oid, rest) = element(list)?;
                    if tag != 0x06 || mechs.len() >= 16 {
                        return Err(SpnegoError);
                    }
                    mechs.push(oid);
                    list = rest;
                }
            }
            2 => mech_token = Some(octets(value)?),
            _ => {}
        }
    }
    Ok(Token::Init {
        mechs,
        mech_list,
        mech_token,
    })
}

fn der(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
    out
}

/// A NegTokenResp: the negotiation state, the mechanism chosen (first answer only), its token, and the
/// mechListMIC.
pub fn resp(
    neg_state: u8,
    supported_mech: Option<&[u8]>,
    response_token: Option<&[u8]>,
    mech_list_mic: Option<&[u8]>,
) -> Vec<u8> {
    let mut seq = der(0xa0, &der(0x0a, &[neg_state]));
    if let Some(oid) = supported_mech {
        seq.extend(der(0xa1, &der(0x06, oid)));
    }
    if let Some(token) = response_token {
        seq.extend(der(0xa2, &der(0x04, token)));
    }
    if let Some(mic) = mech_list_mic {
        seq.extend(der(0xa3, &der(0x04, mic)));
    }
    der(0xa1, &der(0x30, &seq))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NegTokenInit offering NTLM with a NEGOTIATE message, as Windows and pyspnego build it.
    fn init_with(mechs: &[&[u8]], token: &[u8]) -> Vec<u8> {
        let list: Vec<u8> = mechs.iter().flat_map(|m| der(0x06, m)).collect();
        let mut seq = der(0xa0, &der(0x30, &list));
        seq.extend(der(0xa2, &der(0x04, token)));
        let init = der(0xa0, &der(0x30, &seq));
        let mut body = der(0x06, SPNEGO);
        body.extend(init);
        der(0x60, &body)
    }

    #[test]
    fn takes_apart_init_and_resp() {
        let ntlm = b"NTLMSSP\0\x01\0\0\0rest".to_vec();
        let init = init_with(&[NTLMSSP, KRB5], &ntlm);
        let list: Vec<u8> = [NTLMSSP, KRB5].iter().flat_map(|m| der(0x06, m)).collect();
        assert_eq!(
            parse(&init),
            Ok(Token::Init {
                mechs: vec![NTLMSSP, KRB5],
                mech_list: &der(0x30, &list),
                mech_token: Some(&ntlm[..])
            })
        );
        let answer = resp(
            state::ACCEPT_INCOMPLETE,
            Some(NTLMSSP),
            Some(b"challenge"),
            Some(b"mic"),
        );
        assert!(
            matches!(parse(&answer), Ok(Token::Resp { mech_list_mic: Some(m), .. }) if m == b"mic")
        );
        // Our answer parses as a NegTokenResp carrying the token.
        assert!(
            matches!(parse(&answer), Ok(Token::Resp { response_token: Some(t), .. }) if t == b"challenge")
        );
        assert_eq!(parse(&ntlm), Ok(Token::RawNtlm(&ntlm[..])));
        let big = vec![7u8; 300];
        let long = init_with(&[NTLMSSP], &big);
        assert!(
            matches!(parse(&long), Ok(Token::Init { mech_token: Some(t), .. }) if t.len() == 300)
        );
        // A Kerberos GSS-API token (not SPNEGO) is for GSS-API.
        let mut krb = der(0x06, KRB5);
        krb.extend_from_slice(&[1, 0, 0x6e, 0]);
        assert_eq!(parse(&der(0x60, &krb)), Ok(Token::Other));
    }

    #[test]
    fn hostile_tokens_are_errors() {
        let good = init_with(&[NTLMSSP], b"NTLMSSP\0\x01\0\0\0");
        for end in 0..good.len() {
            assert!(parse(&good[..end]).is_err() || end == 0 && parse(&good[..end]).is_err());
        }
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x60, 0x85, 1, 2, 3, 4, 5]).is_err()); // 5-byte length
        assert!(parse(&[0x60, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err()); // length past the end
        assert!(parse(&[0xa1, 0x02, 0x31, 0x00]).is_err()); // not a SEQUENCE
        assert!(parse(&[0xa1, 0x04, 0x30, 0x02, 0x05, 0x00]).is_err()); // untagged field
    }
}
