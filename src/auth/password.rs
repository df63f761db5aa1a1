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
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("$argon2id$") {
            argon2::password_hash::phc::PasswordHash::new(text)
                .map_err(|e| format!("invalid argon2id hash: {e}"))?;
        } else if ["$2y$", "$2b$", "$2a$"].iter().any(|p| text.starts_with(p)) {
            if text.len() != 60 {
                return Err("invalid bcrypt hash".into());
            }
        } else {
            return Err("password must be an argon2id or bcrypt hash, never plain text".into());
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
            use argon2::password_hash::PasswordVerifier;
            argon2::Argon2::default()
                .verify_password(password.expose().as_bytes(), self.0.as_str())
                .is_ok()
        } else {
            bcrypt::verify(password.expose(), &self.0).unwrap_or(false)
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
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
    pub fn parse(hex: &str) -> Result<Self, String> {
        let bytes = hex.as_bytes();
        if bytes.len() != 32 {
            return Err("nt_hash must be 32 hex digits".into());
        }
        let mut out = [0u8; 16];
        for (i, pair) in bytes.chunks(2).enumerate() {
            let text = std::str::from_utf8(pair).map_err(|_| "nt_hash must be hex")?;
            out[i] = u8::from_str_radix(text, 16).map_err(|_| "nt_hash must be hex")?;
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
    fn secrets_are_redacted() {
        let p = Password::from("hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
        let h = PasswordHash::argon2id(&p).unwrap();
        assert!(!format!("{h:?}").contains("argon2"));
        assert!(h.verify(&p));
        assert!(PasswordHash::parse("hunter2").is_err());
    }
}
