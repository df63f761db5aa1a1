//! Secrets as types: passwords, password hashes and NT hashes. Zeroized on drop, redacted in `Debug`.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use super::AuthError;

/// A password in memory, only for as long as it is needed.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Password(Zeroizing::new(s.to_owned()))
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Password(Zeroizing::new(s))
    }
}

impl Password {
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Why a stored hash is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// Not a valid argon2id PHC string.
    #[error("not a valid argon2id hash")]
    Argon2,
    /// A bcrypt hash of the wrong length.
    #[error("not a valid bcrypt hash (60 characters)")]
    Bcrypt,
    /// Neither kind: perhaps a plain password.
    #[error("a password must be an argon2id or bcrypt hash, never plain text")]
    NotAHash,
    /// An NT hash that is not 32 hex digits.
    #[error("an nt_hash is 32 hex digits")]
    NtHash,
}

/// A password hash from the principals file: argon2id (what we write) or bcrypt (`$2y$`, `$2b$`, `$2a$`,
/// as htpasswd -B writes).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl PasswordHash {
    /// Accepts an argon2id PHC string or a bcrypt hash.
    pub fn parse(text: &str) -> Result<Self, HashError> {
        if text.starts_with("$argon2id$") {
            argon2::password_hash::phc::PasswordHash::new(text).map_err(|_| HashError::Argon2)?;
        } else if ["$2y$", "$2b$", "$2a$"].iter().any(|p| text.starts_with(p)) {
            if text.len() != 60 {
                return Err(HashError::Bcrypt);
            }
        } else {
            return Err(HashError::NotAHash);
        }
        Ok(PasswordHash(text.to_owned()))
    }

    /// Hashes a password with argon2id and a random salt.
    pub fn argon2id(password: &Password) -> Result<Self, AuthError> {
        use argon2::password_hash::PasswordHasher;
        let hash = argon2::Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map_err(|e| AuthError::Hash(e.to_string()))?;
        Ok(PasswordHash(hash.to_string()))
    }

    /// Whether the password matches (constant-time inside both libraries). Slow on purpose: call it on the
    /// blocking pool.
    pub fn verify(&self, password: &Password) -> bool {
        if self.0.starts_with("$argon2id$") {
            verify_argon2(&self.0, password.expose().as_bytes())
        } else {
            bcrypt::verify(password.expose(), &self.0).unwrap_or(false)
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// Checks `password` against `hash`, or, when there is no hash (an unknown user, or one without a
    /// password), against a stand-in of the same cost, and says no. SECURITY: answering an unknown name at
    /// once (under a millisecond against tens for a wrong password) tells a guesser which names exist.
    pub(crate) fn verify_or_stand_in(hash: Option<&PasswordHash>, password: &Password) -> bool {
        match hash {
            Some(hash) => hash.verify(password),
            None => {
                if let Some(stand_in) = stand_in() {
                    let _ = stand_in.verify(password);
                }
                false
            }
        }
    }
}

/// The most memory one argon2 check may use (a hash asking for more is refused, never computed).
const MAX_ARGON2_KIB: u32 = 256 * 1024;

/// Verifies an argon2 PHC string in this thread's reusable memory.
///
/// SECURITY: the threat is memory amplification. argon2 fills `m` KiB (19 MiB with our parameters) per
/// check; allocated and freed per check, glibc kept tens of MiB per check and RSS grew by hundreds of MiB
/// under a burst of wrong passwords. Each thread instead keeps one buffer of the largest size it has
/// needed, so the password-check threads hold at most that, whatever the load.
fn verify_argon2(phc: &str, password: &[u8]) -> bool {
    use argon2::password_hash::phc::PasswordHash as Phc;
    thread_local! {
        static MEMORY: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let Ok(parsed) = Phc::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    let algorithm = argon2::Algorithm::try_from(parsed.algorithm.as_str());
    let version = parsed
        .version
        .map_or(Ok(argon2::Version::default()), argon2::Version::try_from);
    let (Ok(algorithm), Ok(version)) = (algorithm, version) else {
        return false;
    };
    if params.m_cost() > MAX_ARGON2_KIB {
        return false;
    }
    let blocks = params.block_count();
    let hasher = argon2::Argon2::new(algorithm, version, params);
    let mut out = Zeroizing::new(vec![0u8; expected.len()]);
    let computed = MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() < blocks {
            memory.resize(blocks, argon2::Block::new());
        }
        hasher.hash_password_into_with_memory(password, salt, &mut out, &mut memory[..blocks])
    });
    // `Output`'s equality is constant-time.
    computed.is_ok()
        && argon2::password_hash::phc::Output::new(&out).is_ok_and(|out| out == *expected)
}

/// A PHC string with the argon2id parameters we write, a random salt and a random output: checking any
/// password against it costs what checking a real hash costs, and never succeeds (an argon2 output is not
/// invertible). Made without hashing, so it costs neither time nor memory at start.
fn stand_in() -> Option<&'static PasswordHash> {
    use base64::Engine as _;
    static STAND_IN: std::sync::OnceLock<Option<PasswordHash>> = std::sync::OnceLock::new();
    STAND_IN
        .get_or_init(|| {
            let mut random = [0u8; 48];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random).ok()?;
            let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD_NO_PAD.encode(b);
            let text = format!(
                "$argon2id$v=19$m={},t={},p={}${}${}",
                argon2::Params::DEFAULT_M_COST,
                argon2::Params::DEFAULT_T_COST,
                argon2::Params::DEFAULT_P_COST,
                b64(&random[..16]),
                b64(&random[16..]),
            );
            PasswordHash::parse(&text).ok()
        })
        .as_ref()
}

/// The NT hash of a password: MD4 of its UTF-16LE form. SECURITY: password-equivalent for NTLM.
#[derive(Clone, PartialEq, Eq)]
pub struct NtHash(pub(crate) [u8; 16]);

impl Drop for NtHash {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for NtHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NtHash(<redacted>)")
    }
}

impl NtHash {
    /// The NT hash of a password.
    pub fn of(password: &Password) -> Self {
        use md4::Digest;
        let utf16: Zeroizing<Vec<u8>> = Zeroizing::new(
            password
                .expose()
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
        );
        NtHash(md4::Md4::digest(&*utf16).into())
    }

    /// 32 hex digits.
    pub fn parse(hex: &str) -> Result<Self, HashError> {
        let bytes = hex.as_bytes();
        if bytes.len() != 32 {
            return Err(HashError::NtHash);
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| HashError::NtHash)?;
            out[i] = u8::from_str_radix(text, 16).map_err(|_| HashError::NtHash)?;
        }
        Ok(NtHash(out))
    }

    pub(crate) fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nt_hash_known_answer() {
        // MS-NLMP §4.2.4.1.1: NTOWFv1("Password").
        let h = NtHash::of(&Password::from("Password"));
        assert_eq!(h.to_hex(), "a4f49c406510bdcab6824ee7c30fd852");
        assert_eq!(NtHash::parse(&h.to_hex()).unwrap(), h);
        assert!(NtHash::parse("zz").is_err());
    }

    #[test]
    fn bcrypt_from_htpasswd_verifies() {
        let hash = bcrypt::hash("secret", 4)
            .unwrap()
            .replacen("$2b$", "$2y$", 1);
        let parsed = PasswordHash::parse(&hash).unwrap();
        assert!(parsed.verify(&Password::from("secret")));
        assert!(!parsed.verify(&Password::from("Secret")));
    }

    #[test]
    fn the_stand_in_has_our_parameters() {
        let ours = PasswordHash::argon2id(&Password::from("x")).unwrap();
        let params = |h: &str| h.split('$').nth(3).unwrap().to_owned();
        assert_eq!(params(stand_in().unwrap().as_str()), params(ours.as_str()));
    }

    #[test]
    fn unknown_users_cost_a_real_check_and_never_pass() {
        let p = Password::from("anything");
        let started = std::time::Instant::now();
        assert!(!PasswordHash::verify_or_stand_in(None, &p));
        let first = started.elapsed();
        let started = std::time::Instant::now();
        assert!(!PasswordHash::verify_or_stand_in(None, &p));
        let stand_in = started.elapsed();
        let real = PasswordHash::argon2id(&Password::from("right")).unwrap();
        let started = std::time::Instant::now();
        assert!(!PasswordHash::verify_or_stand_in(Some(&real), &p));
        let wrong = started.elapsed();
        // The stand-in is a real argon2id check: same order of time as a wrong password (debug builds
        // are slow and this machine noisy, so only the order of magnitude is asserted).
        assert!(
            stand_in * 5 > wrong,
            "{stand_in:?} vs {wrong:?} (first {first:?})"
        );
        assert!(PasswordHash::verify_or_stand_in(
            Some(&real),
            &Password::from("right")
        ));
    }

    #[test]
    fn secrets_are_redacted() {
        let p = Password::from("hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
        let h = PasswordHash::argon2id(&p).unwrap();
        assert!(!format!("{h:?}").contains("argon2"));
        assert!(h.verify(&p));
        assert!(PasswordHash::parse("hunter2").is_err());
    }
}
