//! [`JobKey`]: the key that seals the passwords of the service's download jobs at rest.
//!
//! SECURITY: the threat is a password at rest, in the database or a backup of it, read by someone who
//! should not have it. A job's password is sealed with ChaCha20-Poly1305 (`ring::aead`) under a 32-byte
//! key kept in its own file, mode 0600, beside the database, with a fresh random nonce per write and the
//! job's id as associated data (a sealed password cannot be moved to another job's row). A key file that
//! others may read, or that is a symbolic link, is refused rather than used. Keeping the key in a
//! separate file lets an operator back up the database without it.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use super::StoreError;
use crate::auth::Password;
use crate::jobs::JobId;

const KEY_LEN: usize = 32;

/// The key that seals the jobs' passwords; see the module's SECURITY note.
pub struct JobKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for JobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobKey(..)")
    }
}

impl JobKey {
    /// The key in `path`, created (32 random bytes, mode 0600) when there is none.
    ///
    /// SECURITY: an existing key must be a regular file (not a link: opened with `O_NOFOLLOW`) owned by
    /// this user, readable by no one else, and exactly 32 bytes; anything else is refused, never repaired.
    pub fn load_or_create(path: &Path) -> Result<JobKey, StoreError> {
        let refuse = |reason: String| StoreError::Key {
            path: path.to_owned(),
            reason,
        };
        let nofollow = rustix::fs::OFlags::NOFOLLOW.bits() as i32;
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        match OpenOptions::new()
            .read(true)
            .custom_flags(nofollow)
            .open(path)
        {
            Ok(mut file) => {
                let meta = file.metadata().map_err(|e| refuse(e.to_string()))?;
                let me = rustix::process::geteuid().as_raw();
                if !meta.is_file() {
                    return Err(refuse("not a regular file".into()));
                }
                if meta.uid() != me {
                    return Err(refuse(format!("owned by uid {}, not uid {me}", meta.uid())));
                }
                if meta.mode() & 0o077 != 0 {
                    return Err(refuse(format!(
                        "readable or writable by others (mode {:o}); chmod 600 it",
                        meta.mode() & 0o777
                    )));
                }
                if meta.len() != KEY_LEN as u64 {
                    return Err(refuse(format!("{} bytes, not {KEY_LEN}", meta.len())));
                }
                file.read_exact(&mut bytes[..])
                    .map_err(|e| refuse(e.to_string()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                SystemRandom::new()
                    .fill(&mut bytes[..])
                    .map_err(|_| refuse("the system random generator failed".into()))?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nofollow)
                    .open(path)
                    .map_err(|e| refuse(e.to_string()))?;
                file.write_all(&bytes[..])
                    .and_then(|()| file.sync_all())
                    .map_err(|e| refuse(e.to_string()))?;
            }
            Err(e) => return Err(refuse(e.to_string())),
        }
        Ok(JobKey::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; KEY_LEN]) -> JobKey {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte key");
        JobKey {
            key: LessSafeKey::new(unbound),
        }
    }

    /// nonce ‖ ciphertext ‖ tag, bound to `id`.
    pub(super) fn seal(&self, id: JobId, secret: &str) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut data = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(id.to_string().as_bytes()),
                &mut data,
            )
            .ok()?;
        let mut out = nonce.to_vec();
        out.append(&mut data);
        Some(out)
    }

    pub(super) fn open(&self, id: JobId, sealed: &[u8]) -> Option<Password> {
        let (nonce, rest) = sealed.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = Zeroizing::new(rest.to_vec());
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(id.to_string().as_bytes()), &mut data)
            .ok()?;
        Some(Password::from(std::str::from_utf8(plain).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_sealed_password_opens_only_for_its_job() {
        let dir = tempfile::tempdir().unwrap();
        let key = JobKey::load_or_create(&dir.path().join("jobs.key")).unwrap();
        let id = JobId::random();
        let sealed = key.seal(id, "x").unwrap();
        assert_eq!(key.open(id, &sealed).unwrap().expose(), "x");
        assert!(key.open(JobId::random(), &sealed).is_none());
    }

    #[test]
    fn a_key_others_can_read_or_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.key");
        JobKey::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = JobKey::load_or_create(&path).unwrap_err();
        assert!(err.to_string().contains("by others"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.key");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert!(JobKey::load_or_create(&link).is_err());
        std::fs::write(dir.path().join("short.key"), b"123").unwrap();
        std::fs::set_permissions(
            dir.path().join("short.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let err = JobKey::load_or_create(&dir.path().join("short.key")).unwrap_err();
        assert!(err.to_string().contains("not 32"), "{err}");
    }
}
