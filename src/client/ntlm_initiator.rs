//! Our NTLM initiator (MS-NLMP §3.1.5): NEGOTIATE → CHALLENGE → AUTHENTICATE with an NTLMv2 response, the
//! server's MsvAvTimestamp, MsvAvFlags announcing a MIC, and the MIC over the three messages. Sans-IO: the
//! connection carries the tokens (`Authorization: NTLM ...` / `WWW-Authenticate: NTLM ...`).
//!
//! SECURITY: the threats are a downgrade (a server asking for NTLMv1 or LM, which leak a crackable hash of
//! the password) and a tampered exchange. We only ever send NTLMv2 (the LM response is Z(24) as §3.1.5.1.2
//! asks when the server sends a timestamp), refuse a CHALLENGE whose target information is malformed or
//! missing, and always send a MIC so that a relay cannot strip flags from the NEGOTIATE or CHALLENGE.

use crate::auth::ntlm::messages::{self, av, Challenge, MessageError};
use crate::auth::ntlm::{filetime_now, hmac};
use crate::auth::{NtHash, Password};

/// What we ask for: Unicode, NTLM with extended session security, target info, version, 128-bit keys and
/// key exchange. Never NTLMv1-only or anonymous.
const FLAGS: u32 = messages::NEGOTIATE_UNICODE
    | messages::REQUEST_TARGET
    | messages::NEGOTIATE_NTLM
    | messages::NEGOTIATE_ALWAYS_SIGN
    | messages::NEGOTIATE_EXTENDED_SESSIONSECURITY
    | messages::NEGOTIATE_TARGET_INFO
    | messages::NEGOTIATE_VERSION
    | messages::NEGOTIATE_128
    | messages::NEGOTIATE_KEY_EXCH;
/// MsvAvFlags bit: the AUTHENTICATE carries a MIC.
const AV_FLAG_MIC: u32 = 0x2;
/// The fixed AUTHENTICATE header with Version and MIC.
const AUTHENTICATE_HEADER: usize = 88;
const MIC_AT: usize = 72;
/// Version: 10.0 build 20348, NTLM revision 15.
const VERSION: [u8; 8] = [10, 0, 0x7c, 0x4f, 0, 0, 0, 15];

/// One NTLM exchange from the client's side; holds the NT hash (zeroized on drop) and the NEGOTIATE it sent.
#[derive(Debug)]
pub struct Initiator {
    user: String,
    domain: String,
    nt_hash: NtHash,
    negotiate: Vec<u8>,
}

/// Randomness and time for one AUTHENTICATE; fixed in tests, from the system otherwise.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Nonces {
    pub(crate) client_challenge: [u8; 8],
    pub(crate) exported_session_key: [u8; 16],
    /// FILETIME used when the server sent no MsvAvTimestamp.
    pub(crate) now: u64,
}

impl Nonces {
    fn system() -> Result<Nonces, MessageError> {
        use ring::rand::SecureRandom;
        let rng = ring::rand::SystemRandom::new();
        let mut n = Nonces {
            client_challenge: [0; 8],
            exported_session_key: [0; 16],
            now: filetime_now(),
        };
        rng.fill(&mut n.client_challenge)
            .and_then(|()| rng.fill(&mut n.exported_session_key))
            .map_err(|_| MessageError::Truncated)?;
        Ok(n)
    }
}

impl Initiator {
    /// An exchange for `user` (`DOMAIN\user`, `user@domain` or a bare name) with `password`.
    pub fn new(user: &str, password: &Password) -> Initiator {
        let (domain, user) = split_user(user);
        Initiator {
            user: user.to_owned(),
            domain: domain.to_owned(),
            nt_hash: NtHash::of(password),
            negotiate: negotiate_message(),
        }
    }

    /// The NEGOTIATE_MESSAGE to send first.
    pub fn negotiate(&self) -> &[u8] {
        &self.negotiate
    }

    /// The AUTHENTICATE_MESSAGE answering the server's CHALLENGE.
    pub fn authenticate(&self, challenge: &[u8]) -> Result<Vec<u8>, MessageError> {
        self.authenticate_with(challenge, Nonces::system()?)
    }

    pub(crate) fn authenticate_with(
        &self,
        challenge: &[u8],
        nonces: Nonces,
    ) -> Result<Vec<u8>, MessageError> {
        let parsed = Challenge::parse(challenge)?;
        let pairs = messages::av_pairs(parsed.target_info)?;
        let timestamp = pairs
            .iter()
            .find(|(id, v)| *id == av::TIMESTAMP && v.len() == 8)
            .map(|(_, v)| u64::from_le_bytes(v[..8].try_into().unwrap_or_default()));
        let info = target_info_with_mic_flag(&pairs);
        let response_key = ntowf_v2(&self.nt_hash, &self.user, &self.domain);
        let (nt_response, session_base_key) = ntlmv2_response(
            &response_key,
            parsed.server_challenge,
            nonces.client_challenge,
            timestamp.unwrap_or(nonces.now),
            &info,
        );
        let flags = FLAGS & (parsed.flags | messages::NEGOTIATE_VERSION);
        // §3.2.5.1.2 / §3.4.5.1: with KEY_EXCH the exported key is random, sent RC4-sealed under the
        // KeyExchangeKey (the SessionBaseKey for NTLMv2); otherwise it is the SessionBaseKey itself.
        let (exported, encrypted) = if flags & messages::NEGOTIATE_KEY_EXCH != 0 {
            use rc4::{KeyInit as _, StreamCipher};
            let mut sealed = nonces.exported_session_key;
            let mut cipher =
                rc4::Rc4::new_from_slice(&session_base_key).map_err(|_| MessageError::Field)?;
            cipher.apply_keystream(&mut sealed);
            (nonces.exported_session_key, sealed.to_vec())
        } else {
            (session_base_key, Vec::new())
        };
        let mut message = authenticate_message(
            flags,
            &[0u8; 24],
            &nt_response,
            &self.domain,
            &self.user,
            &encrypted,
        )?;
        let mic = hmac(&exported, &[&self.negotiate, challenge, &message]);
        message[MIC_AT..MIC_AT + 16].copy_from_slice(&mic);
        Ok(message)
    }
}

/// `DOMAIN\user` and `user@domain` as (domain, user); a bare name has an empty domain.
fn split_user(text: &str) -> (&str, &str) {
    if let Some((domain, user)) = text.split_once('\\') {
        return (domain, user);
    }
    match text.rsplit_once('@') {
        Some((user, domain)) => (domain, user),
        None => ("", text),
    }
}

fn negotiate_message() -> Vec<u8> {
    let mut m = Vec::with_capacity(40);
    m.extend_from_slice(messages::SIGNATURE);
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&FLAGS.to_le_bytes());
    // Empty DomainName and Workstation fields, pointing at the end of the header.
    for _ in 0..2 {
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&40u32.to_le_bytes());
    }
    m.extend_from_slice(&VERSION);
    m
}

/// The server's AV pairs with MsvAvFlags' MIC bit set (added if absent), ending in MsvAvEOL.
fn target_info_with_mic_flag(pairs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |id: u16, value: &[u8]| {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(value);
    };
    let mut flagged = false;
    for (id, value) in pairs {
        if *id == av::FLAGS && value.len() == 4 {
            let flags = u32::from_le_bytes([value[0], value[1], value[2], value[3]]) | AV_FLAG_MIC;
            put(av::FLAGS, &flags.to_le_bytes());
            flagged = true;
        } else {
            put(*id, value);
        }
    }
    if !flagged {
        put(av::FLAGS, &AV_FLAG_MIC.to_le_bytes());
    }
    put(av::EOL, &[]);
    out
}

/// NTOWFv2 (§3.3.2): HMAC_MD5(NT hash, UNICODE(Uppercase(User) || Domain)).
fn ntowf_v2(nt_hash: &NtHash, user: &str, domain: &str) -> [u8; 16] {
    let identity = messages::utf16le(&format!("{}{domain}", user.to_uppercase()));
    hmac(&nt_hash.0, &[&identity])
}

/// The NtChallengeResponse (NTProofStr || temp) and the SessionBaseKey (§3.3.2).
fn ntlmv2_response(
    response_key: &[u8; 16],
    server_challenge: [u8; 8],
    client_challenge: [u8; 8],
    time: u64,
    target_info: &[u8],
) -> (Vec<u8>, [u8; 16]) {
    let mut temp = vec![1, 1, 0, 0, 0, 0, 0, 0];
    temp.extend_from_slice(&time.to_le_bytes());
    temp.extend_from_slice(&client_challenge);
    temp.extend_from_slice(&[0; 4]);
    temp.extend_from_slice(target_info);
    temp.extend_from_slice(&[0; 4]);
    let proof = hmac(response_key, &[&server_challenge, &temp]);
    let session_base_key = hmac(response_key, &[&proof]);
    let mut response = proof.to_vec();
    response.extend_from_slice(&temp);
    (response, session_base_key)
}

/// An AUTHENTICATE_MESSAGE with a zeroed MIC (filled in by the caller once computed over it).
///
/// SECURITY: every field's length is a 16-bit number (MS-NLMP §2.2.1.3); a longer field (a huge user
/// name, or a server's oversized target information in the NT response) is an error, never a length
/// cut to 16 bits that would send a message whose fields overlap or point into each other.
fn authenticate_message(
    flags: u32,
    lm: &[u8],
    nt: &[u8],
    domain: &str,
    user: &str,
    session_key: &[u8],
) -> Result<Vec<u8>, MessageError> {
    let (domain, user) = (messages::utf16le(domain), messages::utf16le(user));
    let payload: [&[u8]; 6] = [lm, nt, &domain, &user, &[], session_key];
    let mut m =
        Vec::with_capacity(AUTHENTICATE_HEADER + payload.iter().map(|p| p.len()).sum::<usize>());
    m.extend_from_slice(messages::SIGNATURE);
    m.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = AUTHENTICATE_HEADER as u32;
    for part in payload {
        let len = u16::try_from(part.len()).map_err(|_| MessageError::TooLong)?;
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&len.to_le_bytes());
        m.extend_from_slice(&offset.to_le_bytes());
        offset += u32::from(len);
    }
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&VERSION);
    m.extend_from_slice(&[0; 16]);
    for part in payload {
        m.extend_from_slice(part);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ntlm::{Acceptor, NtlmError};
    use crate::auth::Principals;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn pair(id: u16, value: &[u8]) -> Vec<u8> {
        let mut p = id.to_le_bytes().to_vec();
        p.extend_from_slice(&(value.len() as u16).to_le_bytes());
        p.extend_from_slice(value);
        p
    }

    /// MS-NLMP §4.2.4: User/Domain/"Password", server challenge 0123456789abcdef, client challenge aa..,
    /// time 0, NbDomainName "Domain" and NbComputerName "Server".
    #[test]
    fn ms_nlmp_4_2_4_vectors() {
        let nt = NtHash::of(&Password::from("Password"));
        let key = ntowf_v2(&nt, "User", "Domain");
        assert_eq!(hex(&key), "0c868a403bfd7a93a3001ef22ef02e3f");
        let mut info = pair(av::NB_DOMAIN_NAME, &messages::utf16le("Domain"));
        info.extend(pair(av::NB_COMPUTER_NAME, &messages::utf16le("Server")));
        info.extend(pair(av::EOL, &[]));
        let server = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        let (response, session_base_key) = ntlmv2_response(&key, server, [0xaa; 8], 0, &info);
        assert_eq!(hex(&response[..16]), "68cd0ab851e51c96aabc927bebef6a1c");
        assert_eq!(hex(&session_base_key), "8de40ccadbc14a82f15cb0ad0de95ca3");
        assert_eq!(&response[16..18], &[1, 1]);
        assert_eq!(response.len(), 16 + 28 + info.len() + 4);
    }

    fn principals() -> Principals {
        let mut p = Principals::default();
        p.set_user("alice", &Password::from("alice-RIGHT"), &[])
            .unwrap();
        p
    }

    fn exchange(user: &str, password: &str) -> Result<String, NtlmError> {
        let initiator = Initiator::new(user, &Password::from(password));
        let mut acceptor = Acceptor::default();
        let challenge = acceptor
            .challenge(initiator.negotiate(), "CORP", "FILES")
            .unwrap();
        let auth = initiator.authenticate(&challenge).unwrap();
        let principals = principals();
        acceptor
            .authenticate(&auth, &principals)
            .map(|a| a.name.to_owned())
    }

    #[test]
    fn our_acceptor_accepts_our_authenticate_with_its_mic() {
        assert_eq!(exchange("alice", "alice-RIGHT").as_deref(), Ok("alice"));
        assert_eq!(
            exchange("CORP\\alice", "alice-RIGHT").as_deref(),
            Ok("alice")
        );
        assert_eq!(exchange("alice", "WRONG"), Err(NtlmError::BadProof));
        assert_eq!(
            exchange("nobody", "alice-RIGHT"),
            Err(NtlmError::UnknownUser)
        );
    }

    #[test]
    fn the_authenticate_announces_and_carries_a_mic() {
        let initiator = Initiator::new("alice", &Password::from("alice-RIGHT"));
        let mut acceptor = Acceptor::default();
        let challenge = acceptor
            .challenge(initiator.negotiate(), "CORP", "FILES")
            .unwrap();
        let mut auth = initiator.authenticate(&challenge).unwrap();
        let parsed = messages::Authenticate::parse(&auth).unwrap();
        assert_eq!(parsed.lm_response, &[0u8; 24]);
        let pairs = messages::av_pairs(&parsed.nt_response[16 + 28..]).unwrap();
        let flags = pairs.iter().find(|(id, _)| *id == av::FLAGS).unwrap().1;
        assert_eq!(flags, &AV_FLAG_MIC.to_le_bytes());
        assert!(pairs.iter().any(|(id, _)| *id == av::TIMESTAMP));
        // SECURITY: a flipped MIC bit (what a relay stripping signing would cause) is refused.
        auth[MIC_AT] ^= 1;
        let principals = principals();
        assert!(matches!(
            acceptor.authenticate(&auth, &principals),
            Err(NtlmError::BadMic)
        ));
    }

    #[test]
    fn hostile_challenges_are_errors_not_panics() {
        let initiator = Initiator::new("alice", &Password::from("x"));
        let mut acceptor = Acceptor::default();
        let good = acceptor
            .challenge(initiator.negotiate(), "CORP", "FILES")
            .unwrap();
        for end in 0..good.len() {
            assert!(initiator.authenticate(&good[..end]).is_err(), "{end}");
        }
        let mut bad = good.clone();
        bad[40..42].copy_from_slice(&4u16.to_le_bytes()); // target info cut short: no EOL
        assert!(initiator.authenticate(&bad).is_err());
        assert!(initiator.authenticate(initiator.negotiate()).is_err());
    }

    /// A CHALLENGE with `info` as its target information.
    fn challenge_with_info(info: &[u8]) -> Vec<u8> {
        let mut m = messages::SIGNATURE.to_vec();
        m.extend_from_slice(&2u32.to_le_bytes());
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&56u32.to_le_bytes());
        m.extend_from_slice(&FLAGS.to_le_bytes());
        m.extend_from_slice(&[7; 8]);
        m.extend_from_slice(&[0; 8]);
        let len = u16::try_from(info.len()).unwrap().to_le_bytes();
        m.extend_from_slice(&len);
        m.extend_from_slice(&len);
        m.extend_from_slice(&56u32.to_le_bytes());
        m.extend_from_slice(&VERSION);
        m.extend_from_slice(info);
        m
    }

    /// SECURITY: names or target information longer than NTLM's 16-bit lengths are errors, not lengths
    /// cut to 16 bits (before: `as u16`, a message whose fields pointed into each other).
    #[test]
    fn fields_longer_than_16_bit_lengths_are_errors() {
        let mut acceptor = Acceptor::default();
        let probe = Initiator::new("alice", &Password::from("x"));
        let challenge = acceptor
            .challenge(probe.negotiate(), "CORP", "FILES")
            .unwrap();
        let long = "a".repeat(32_768); // 65536 bytes in UTF-16
        for user in [
            long.clone(),
            format!("CORP\\{long}"),
            format!("{long}\\alice"),
            format!("alice@{long}"),
        ] {
            let initiator = Initiator::new(&user, &Password::from("x"));
            assert!(
                matches!(
                    initiator.authenticate(&challenge),
                    Err(MessageError::TooLong)
                ),
                "{}",
                user.len()
            );
        }
        // The longest name that fits is still sent whole.
        let fits = Initiator::new(&"a".repeat(32_767), &Password::from("x"));
        let auth = fits.authenticate(&challenge).unwrap();
        assert_eq!(
            messages::Authenticate::parse(&auth).unwrap().user.len(),
            32_767
        );
        // A server's target information that makes the NT response too long for its field.
        let mut info = pair(av::NB_DOMAIN_NAME, &vec![b'a'; 65_500]);
        info.extend(pair(av::EOL, &[]));
        let big = challenge_with_info(&info);
        assert!(Challenge::parse(&big).is_ok());
        assert!(matches!(
            probe.authenticate(&big),
            Err(MessageError::TooLong)
        ));
    }

    #[test]
    fn user_names_split_into_domain_and_user() {
        assert_eq!(split_user("CORP\\alice"), ("CORP", "alice"));
        assert_eq!(split_user("alice@corp.example"), ("corp.example", "alice"));
        assert_eq!(split_user("alice"), ("", "alice"));
    }
}
