//! Our NTLM acceptor: NTLMv2 only, with the proof always checked and the MIC checked whenever the client
//! signals one (MS-NLMP §3.2.5.1.2 and §3.3.2).
//!
//! SECURITY: the threats are a wrong password accepted (the `sspi` crate's acceptor accepts one from
//! clients that send no MIC), downgrade to NTLMv1 or anonymous, and replay. Defence: NTLMv1 responses (24
//! bytes) and anonymous AUTHENTICATE messages are refused; the NTProofStr is recomputed from the user's NT
//! hash and compared in constant time on every attempt, MIC or not; a MIC the client announces
//! (MsvAvFlags bit 0x2) must be present and correct; each challenge is random, bound to one connection,
//! used once and expires, so a captured AUTHENTICATE fails on any other connection.

// Public only for the fuzz targets (fuzz/): not part of the API.
#[doc(hidden)]
pub mod messages;

use std::time::{Duration, Instant, SystemTime};

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;

use super::principals::{Principals, User};
use messages::{av, Authenticate, MessageError, Negotiate};

type HmacMd5 = Hmac<Md5>;

/// How long a challenge may wait for its AUTHENTICATE.
const CHALLENGE_LIFETIME: Duration = Duration::from_secs(120);

/// Why an NTLM exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NtlmError {
    /// The token is malformed.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// AUTHENTICATE without a CHALLENGE on this connection (or after it expired).
    #[error("no NTLM challenge is pending on this connection")]
    NoChallenge,
    /// An anonymous AUTHENTICATE.
    #[error("anonymous NTLM is refused")]
    Anonymous,
    /// An NTLMv1 response.
    #[error("NTLMv1 is refused")]
    Version1,
    /// No such user, or the user has no NT hash.
    #[error("unknown user")]
    UnknownUser,
    /// The NTProofStr does not match: a wrong password.
    #[error("wrong password")]
    BadProof,
    /// The client announced a MIC that is missing or wrong.
    #[error("the message integrity code does not match")]
    BadMic,
}

/// One connection's NTLM exchange: at most one challenge pending at a time.
#[derive(Debug, Default)]
pub struct Acceptor {
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    negotiate: Vec<u8>,
    challenge: Vec<u8>,
    server_challenge: [u8; 8],
    issued: Instant,
}

impl Acceptor {
    /// Answers a NEGOTIATE with a CHALLENGE, which this context remembers.
    pub fn challenge(
        &mut self,
        negotiate: &[u8],
        target: &str,
        computer: &str,
    ) -> Result<Vec<u8>, NtlmError> {
        let client = Negotiate::parse(negotiate)?;
        let mut server_challenge = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut server_challenge)
            .map_err(|_| NtlmError::NoChallenge)?;
        let flags = messages::NEGOTIATE_UNICODE
            | messages::REQUEST_TARGET
            | messages::NEGOTIATE_NTLM
            | messages::NEGOTIATE_ALWAYS_SIGN
            | messages::TARGET_TYPE_SERVER
            | messages::NEGOTIATE_EXTENDED_SESSIONSECURITY
            | messages::NEGOTIATE_TARGET_INFO
            | messages::NEGOTIATE_VERSION
            | (client.flags
                & (messages::NEGOTIATE_SIGN
                    | messages::NEGOTIATE_128
                    | messages::NEGOTIATE_56
                    | messages::NEGOTIATE_KEY_EXCH));
        let challenge =
            messages::challenge(flags, server_challenge, target, computer, filetime_now());
        self.pending = Some(Pending {
            negotiate: negotiate.to_vec(),
            challenge: challenge.clone(),
            server_challenge,
            issued: Instant::now(),
        });
        Ok(challenge)
    }

    /// Verifies an AUTHENTICATE against the pending challenge; the challenge is spent either way.
    pub fn authenticate<'p>(
        &mut self,
        token: &[u8],
        principals: &'p Principals,
    ) -> Result<Authenticated<'p>, NtlmError> {
        let pending = self
            .pending
            .take()
            .filter(|p| p.issued.elapsed() < CHALLENGE_LIFETIME)
            .ok_or(NtlmError::NoChallenge)?;
        let msg = Authenticate::parse(token)?;
        if msg.flags & messages::NEGOTIATE_ANONYMOUS != 0
            || msg.user.is_empty()
            || msg.nt_response.is_empty()
        {
            return Err(NtlmError::Anonymous);
        }
        if msg.nt_response.len() == 24 {
            return Err(NtlmError::Version1);
        }
        // NTProofStr (16) and a blob of at least the fixed 28 bytes plus MsvAvEOL.
        if msg.nt_response.len() < 16 + 28 + 4
            || msg.nt_response[16] != 1
            || msg.nt_response[17] != 1
        {
            return Err(MessageError::AvPairs.into());
        }
        let (name, user) = principals.user(&msg.user).ok_or(NtlmError::UnknownUser)?;
        let nt_hash = user.nt_hash.as_ref().ok_or(NtlmError::UnknownUser)?;
        // NTOWFv2 (§3.3.2): HMAC_MD5(NT hash, UNICODE(Uppercase(User) || Domain)).
        let identity = messages::utf16le(&format!("{}{}", msg.user.to_uppercase(), msg.domain));
        let response_key = hmac(&nt_hash.0, &[&identity]);
        let (proof, blob) = msg.nt_response.split_at(16);
        let mut mac = HmacMd5::new_from_slice(&response_key).map_err(|_| NtlmError::BadProof)?;
        mac.update(&pending.server_challenge);
        mac.update(blob);
        mac.verify_slice(proof).map_err(|_| NtlmError::BadProof)?;

        let pairs = messages::av_pairs(&blob[28..])?;
        let mic_announced = pairs
            .iter()
            .find(|(id, _)| *id == av::FLAGS)
            .and_then(|(_, v)| v.get(..4))
            .is_some_and(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]) & 0x2 != 0);
        let session_base_key = hmac(&response_key, &[proof]);
        let exported = exported_session_key(&msg, session_base_key);
        if mic_announced {
            let (at, mic) = msg.mic.ok_or(NtlmError::BadMic)?;
            let mut zeroed = token.to_vec();
            zeroed[at..at + 16].fill(0);
            let mut mac = HmacMd5::new_from_slice(&exported).map_err(|_| NtlmError::BadMic)?;
            mac.update(&pending.negotiate);
            mac.update(&pending.challenge);
            mac.update(&zeroed);
            mac.verify_slice(&mic).map_err(|_| NtlmError::BadMic)?;
        }
        Ok(Authenticated {
            name,
            user,
            session: Session {
                key: exported,
                flags: msg.flags,
            },
        })
    }
}

/// A verified AUTHENTICATE: the user, and the session keys it established.
#[derive(Debug)]
pub struct Authenticated<'p> {
    /// The user's name in the principals file.
    pub name: &'p str,
    /// The user.
    pub user: &'p User,
    /// The NTLM session, for SPNEGO's mechListMIC.
    pub session: Session,
}

/// The keys of an authenticated NTLM session (MS-NLMP §3.4.5).
pub struct Session {
    key: [u8; 16],
    flags: u32,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session(<redacted>)")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Direction {
    /// From the client.
    ClientToServer,
    /// From the server.
    ServerToClient,
}

impl Session {
    fn derived(&self, magic: &str) -> [u8; 16] {
        use md5::Digest;
        let mut h = Md5::new();
        h.update(self.key);
        h.update(magic.as_bytes());
        h.update([0u8]);
        h.finalize().into()
    }

    /// The NTLMSSP_MESSAGE_SIGNATURE of `message` with sequence number `seq`, as the first message signed
    /// in that direction (extended session security, §3.4.4.2): version 1, HMAC-MD5 checksum (RC4-sealed
    /// under key exchange), sequence number.
    pub fn sign(&self, direction: Direction, seq: u32, message: &[u8]) -> [u8; 16] {
        let (sign_magic, seal_magic) = match direction {
            Direction::ClientToServer => (
                "session key to client-to-server signing key magic constant",
                "session key to client-to-server sealing key magic constant",
            ),
            Direction::ServerToClient => (
                "session key to server-to-client signing key magic constant",
                "session key to server-to-client sealing key magic constant",
            ),
        };
        let signing_key = self.derived(sign_magic);
        let full = hmac(&signing_key, &[&seq.to_le_bytes(), message]);
        let mut checksum = [0u8; 8];
        checksum.copy_from_slice(&full[..8]);
        if self.flags & messages::NEGOTIATE_KEY_EXCH != 0 {
            use rc4::{KeyInit, StreamCipher};
            let sealing_key = self.derived(seal_magic);
            if let Ok(mut cipher) = rc4::Rc4::new_from_slice(&sealing_key) {
                cipher.apply_keystream(&mut checksum);
            }
        }
        let mut signature = [0u8; 16];
        signature[..4].copy_from_slice(&1u32.to_le_bytes());
        signature[4..12].copy_from_slice(&checksum);
        signature[12..].copy_from_slice(&seq.to_le_bytes());
        signature
    }

    /// Whether `signature` is the client's signature of `message` (sequence number 0), in constant time.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        let expected = self.sign(Direction::ClientToServer, 0, message);
        signature.len() == 16
            && expected
                .iter()
                .zip(signature)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// KeyExchangeKey is the SessionBaseKey for NTLMv2; with KEY_EXCH the client sent the exported key RC4-
/// encrypted under it (§3.4.5.1 and §3.2.5.1.2).
fn exported_session_key(msg: &Authenticate<'_>, key_exchange_key: [u8; 16]) -> [u8; 16] {
    use rc4::{KeyInit, StreamCipher};
    if msg.flags & messages::NEGOTIATE_KEY_EXCH == 0 || msg.encrypted_session_key.len() != 16 {
        return key_exchange_key;
    }
    let mut key = [0u8; 16];
    key.copy_from_slice(msg.encrypted_session_key);
    match rc4::Rc4::new_from_slice(&key_exchange_key) {
        Ok(mut cipher) => {
            cipher.apply_keystream(&mut key);
            key
        }
        Err(_) => key_exchange_key,
    }
}

/// HMAC-MD5 over the parts (MS-NLMP's HMAC_MD5), for the acceptor and our initiator alike.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut mac = HmacMd5::new_from_slice(key).expect("HMAC takes a key of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Now as a Windows FILETIME: 100 ns intervals since 1601-01-01.
pub(crate) fn filetime_now() -> u64 {
    const EPOCH_DIFF: u64 = 11_644_473_600;
    let since_unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    (since_unix.as_secs() + EPOCH_DIFF) * 10_000_000 + u64::from(since_unix.subsec_nanos() / 100)
}

#[cfg(test)]
mod tests;
