//! The service's download jobs in its SQLite database: [`SqliteJobStore`], a [`JobStore`] on its own
//! connection to the configuration store's file (table `jobs`, schema version 2), one row per job holding
//! the job's JSON and, when its credentials have a password, that password sealed with a [`JobKey`].
//!
//! SECURITY: the threat is a password at rest, in the database or a backup of it, read by someone who
//! should not have it. The job's JSON never holds the password (`Credentials` skips it); the password is
//! sealed with ChaCha20-Poly1305 (`ring::aead`) under a 32-byte key kept in its own file, mode 0600, beside
//! the database, with a fresh random nonce per write and the job's id as associated data (a sealed
//! password cannot be moved to another job's row). A key file that others may read, or that is a symbolic
//! link, is refused rather than used. Keeping the key in a separate file lets an operator back up the
//! database without it.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use rusqlite::{params, Connection};
use zeroize::Zeroizing;

use super::StoreError;
use crate::auth::Password;
use crate::jobs::{Job, JobError, JobId, JobStore};
use crate::lock::Recover;

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
    fn seal(&self, id: JobId, secret: &str) -> Option<Vec<u8>> {
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

    fn open(&self, id: JobId, sealed: &[u8]) -> Option<Password> {
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

/// Jobs in the service's database; see the module's documentation.
#[derive(Debug)]
pub struct SqliteJobStore {
    db: Mutex<Connection>,
    path: PathBuf,
    key: JobKey,
}

impl SqliteJobStore {
    /// Opens the database at `path` (the configuration store's file; created and migrated if needed) and
    /// seals passwords with `key`.
    pub fn open(path: impl AsRef<Path>, key: JobKey) -> Result<SqliteJobStore, StoreError> {
        let path = path.as_ref();
        let db = super::sqlite::connect(path)?;
        Ok(SqliteJobStore {
            db: Mutex::new(db),
            path: path.to_owned(),
            key,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().recover()
    }

    fn failed(&self, e: rusqlite::Error) -> JobError {
        JobError::Store {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        }
    }

    fn corrupt(&self, id: &str, reason: impl Into<String>) -> JobError {
        JobError::Corrupt {
            path: self.path.join(format!("jobs/{id}")),
            reason: reason.into(),
        }
    }
}

impl JobStore for SqliteJobStore {
    fn load_all(&self) -> Result<Vec<Job>, JobError> {
        let db = self.lock();
        let mut stmt = db
            .prepare("SELECT id, job, secret FROM jobs")
            .map_err(|e| self.failed(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                ))
            })
            .map_err(|e| self.failed(e))?;
        let mut jobs = Vec::new();
        for row in rows {
            let (id, text, secret) = row.map_err(|e| self.failed(e))?;
            let mut job: Job =
                serde_json::from_str(&text).map_err(|e| self.corrupt(&id, e.to_string()))?;
            if job.id.to_string() != id {
                return Err(self.corrupt(&id, format!("it holds job {}", job.id)));
            }
            if let (Some(sealed), Some(credentials)) = (secret, job.client.credentials.as_mut()) {
                // A password that does not open (another key, a damaged row) is dropped, not fatal: the
                // job then fails with `credentials_missing` until its credentials are set again.
                match self.key.open(job.id, &sealed) {
                    Some(password) => credentials.set_password(password),
                    None => {
                        tracing::warn!(job = %job.id, "a stored job password cannot be opened with this key; set the job's credentials again")
                    }
                }
            }
            jobs.push(job);
        }
        jobs.sort_by_key(|j| j.created);
        Ok(jobs)
    }

    fn save(&self, job: &Job) -> Result<(), JobError> {
        let text = serde_json::to_string(job).map_err(|e| JobError::Store {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        let password = job.client.credentials.as_ref().and_then(|c| c.password());
        let secret = match password {
            Some(p) => Some(
                self.key
                    .seal(job.id, p.expose())
                    .ok_or_else(|| JobError::Store {
                        path: self.path.clone(),
                        source: std::io::Error::other("cannot seal the job's password"),
                    })?,
            ),
            None => None,
        };
        self.lock()
            .execute(
                "INSERT INTO jobs (id, job, secret) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET job = excluded.job, secret = excluded.secret",
                params![job.id.to_string(), text, secret],
            )
            .map_err(|e| self.failed(e))?;
        Ok(())
    }

    fn delete(&self, id: JobId) -> Result<(), JobError> {
        self.lock()
            .execute("DELETE FROM jobs WHERE id = ?1", [id.to_string()])
            .map_err(|e| self.failed(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::client::Credentials;
    use crate::jobs::{JobFile, JobState};

    #[test]
    fn jobs_and_sealed_passwords_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("config.db");
        let key_path = dir.path().join("jobs.key");
        let mut job = Job::new("a", JobState::Suspended);
        job.files.push(JobFile::new("https://h/a", "/tmp/a"));
        job.client.credentials = Some(Credentials::basic("alice", Password::from("pa55-word-x")));
        let other = Job::new("b", JobState::Queued);
        {
            let store =
                SqliteJobStore::open(&db, JobKey::load_or_create(&key_path).unwrap()).unwrap();
            store.save(&job).unwrap();
            store.save(&other).unwrap();
            store.delete(other.id).unwrap();
        }
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The password is nowhere in the database in the clear.
        let raw = std::fs::read(&db).unwrap();
        let wal = std::fs::read(dir.path().join("config.db-wal")).unwrap_or_default();
        for bytes in [&raw, &wal] {
            assert!(!bytes.windows(11).any(|w| w == b"pa55-word-x"));
        }
        let store = SqliteJobStore::open(&db, JobKey::load_or_create(&key_path).unwrap()).unwrap();
        let loaded = store.load_all().unwrap();
        assert_eq!(loaded, vec![job.clone()]);
        let creds = loaded[0].client.credentials.as_ref().unwrap();
        assert_eq!(creds.password().unwrap().expose(), "pa55-word-x");
        // Another key cannot open it: the job loads without its password.
        let other_key = dir.path().join("other.key");
        let store = SqliteJobStore::open(&db, JobKey::load_or_create(&other_key).unwrap()).unwrap();
        let loaded = store.load_all().unwrap();
        assert!(!loaded[0]
            .client
            .credentials
            .as_ref()
            .unwrap()
            .has_password());
        // A sealed password moved to another job's row does not open there.
        let key = JobKey::load_or_create(&key_path).unwrap();
        let sealed = key.seal(job.id, "x").unwrap();
        assert!(key.open(job.id, &sealed).is_some());
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
