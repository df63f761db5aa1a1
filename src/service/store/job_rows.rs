//! The service's download jobs in its SQLite database: [`SqliteJobStore`], a [`JobStore`] on its own
//! connection to the configuration store's file. A job is two kinds of rows: table `jobs` holds what a
//! job is (its names, files, settings: the job's JSON without its progress) and, when its credentials
//! have a password, that password sealed with a [`JobKey`]; table `job_progress` holds how far it is, one
//! row for the job (state, times, errors) and one per file (bytes, validators).
//!
//! A save writes only the rows whose content changed since this store last wrote them: a progress save
//! (every second of a transfer) rewrites a few hundred bytes, never the job's names and settings, which
//! SQLite would rewrite whole (a row is one record, overflow pages included). Rows written before the
//! progress had rows of its own (schema version 2) hold the whole job and load as they are.
//!
//! SECURITY: the job's JSON never holds the password (`Credentials` skips it); see [`JobKey`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection};
use serde_json::{Map, Value};

use super::{JobKey, StoreError};
use crate::jobs::{Job, JobError, JobId, JobStore};
use crate::lock::Recover;

/// What a save may change of a job without changing what the job is: the keys of its progress row.
const JOB_PROGRESS: &[&str] = &[
    "state",
    "modified",
    "completed",
    "transient_error_count",
    "error",
];
/// The keys of a file's progress row.
const FILE_PROGRESS: &[&str] = &[
    "bytes_total",
    "bytes_transferred",
    "completed",
    "validators",
];

/// Jobs in the service's database; see the module's documentation.
#[derive(Debug)]
pub struct SqliteJobStore {
    db: Mutex<Connection>,
    path: PathBuf,
    key: JobKey,
    /// What this store last wrote of each job, as digests of its rows: unchanged rows are not written.
    written: Mutex<HashMap<JobId, Written>>,
}

/// The digests of one job's rows as last written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Written {
    /// The `jobs` row (the job's JSON, and its password: a new password is a new row).
    job: Option<[u8; 32]>,
    /// The `job_progress` rows, by part: 0 the job's, then one per file.
    parts: Vec<[u8; 32]>,
}

/// A job as its rows hold it.
struct Rows {
    job: String,
    /// Part 0 is the job's progress, part `i + 1` file `i`'s.
    parts: Vec<String>,
}

impl Rows {
    /// Splits a job's JSON into what it is and how far it is.
    fn of(job: &Job) -> Result<Rows, serde_json::Error> {
        let Value::Object(mut whole) = serde_json::to_value(job)? else {
            return Err(serde::ser::Error::custom("a job is not a JSON object"));
        };
        let mut parts = vec![take(&mut whole, JOB_PROGRESS)];
        if let Some(Value::Array(files)) = whole.get_mut("files") {
            for file in files {
                if let Value::Object(file) = file {
                    parts.push(take(file, FILE_PROGRESS));
                }
            }
        }
        Ok(Rows {
            job: Value::Object(whole).to_string(),
            parts: parts
                .into_iter()
                .map(|p| Value::Object(p).to_string())
                .collect(),
        })
    }

    /// The job's JSON with each progress row laid over its part.
    fn joined(job: &str, parts: &[(usize, String)]) -> Result<Value, serde_json::Error> {
        let mut whole: Value = serde_json::from_str(job)?;
        for (part, text) in parts {
            let Value::Object(progress) = serde_json::from_str(text)? else {
                return Err(serde::de::Error::custom(
                    "a progress row is not a JSON object",
                ));
            };
            let target = match part {
                0 => Some(&mut whole),
                i => whole.get_mut("files").and_then(|f| f.get_mut(i - 1)),
            };
            if let Some(Value::Object(target)) = target {
                target.extend(progress);
            }
        }
        Ok(whole)
    }
}

/// Removes `keys` from `object`, returning them.
fn take(object: &mut Map<String, Value>, keys: &[&str]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|k| object.remove(*k).map(|v| ((*k).to_owned(), v)))
        .collect()
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(&(part.len() as u64).to_be_bytes());
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
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
            written: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().recover()
    }

    fn failed(&self, e: impl std::error::Error + Send + Sync + 'static) -> JobError {
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

    /// Every job's progress rows, by job id, in part order.
    fn progress_rows(
        &self,
        db: &Connection,
    ) -> Result<HashMap<String, Vec<(usize, String)>>, JobError> {
        let mut stmt = db
            .prepare("SELECT id, part, progress FROM job_progress ORDER BY id, part")
            .map_err(|e| self.failed(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.failed(e))?;
        let mut parts: HashMap<String, Vec<(usize, String)>> = HashMap::new();
        for row in rows {
            let (id, part, text) = row.map_err(|e| self.failed(e))?;
            let part = usize::try_from(part).map_err(|_| self.corrupt(&id, "a negative part"))?;
            parts.entry(id).or_default().push((part, text));
        }
        Ok(parts)
    }

    /// The rows of `job` that differ from what was last written, written in one transaction.
    fn write(&self, db: &mut Connection, job: &Job, last: &Written) -> Result<Written, JobError> {
        let rows = Rows::of(job).map_err(|e| self.failed(e))?;
        let password = job.client.credentials.as_ref().and_then(|c| c.password());
        let exposed = password.map(|p| p.expose().as_bytes());
        let now = Written {
            job: Some(digest(&[rows.job.as_bytes(), exposed.unwrap_or_default()])),
            parts: rows.parts.iter().map(|p| digest(&[p.as_bytes()])).collect(),
        };
        let id = job.id.to_string();
        let tx = db.transaction().map_err(|e| self.failed(e))?;
        if now.job != last.job {
            let secret = match password {
                Some(p) => Some(self.key.seal(job.id, p.expose()).ok_or_else(|| {
                    self.failed(std::io::Error::other("cannot seal the job's password"))
                })?),
                None => None,
            };
            tx.execute(
                "INSERT INTO jobs (id, job, secret) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET job = excluded.job, secret = excluded.secret",
                params![id, rows.job, secret],
            )
            .map_err(|e| self.failed(e))?;
        }
        for (part, text) in rows.parts.iter().enumerate() {
            if last.parts.get(part) != now.parts.get(part) {
                tx.execute(
                    "INSERT INTO job_progress (id, part, progress) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id, part) DO UPDATE SET progress = excluded.progress",
                    params![id, part as i64, text],
                )
                .map_err(|e| self.failed(e))?;
            }
        }
        if last.job.is_none() || last.parts.len() > now.parts.len() {
            tx.execute(
                "DELETE FROM job_progress WHERE id = ?1 AND part >= ?2",
                params![id, now.parts.len() as i64],
            )
            .map_err(|e| self.failed(e))?;
        }
        tx.commit().map_err(|e| self.failed(e))?;
        Ok(now)
    }
}

impl JobStore for SqliteJobStore {
    fn load_all(&self) -> Result<Vec<Job>, JobError> {
        let db = self.lock();
        // What was written before this load is not known to be there any more: the next save writes all.
        self.written.lock().recover().clear();
        let mut progress = self.progress_rows(&db)?;
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
            let parts = progress.remove(&id).unwrap_or_default();
            let mut job: Job = Rows::joined(&text, &parts)
                .and_then(serde_json::from_value)
                .map_err(|e| self.corrupt(&id, e.to_string()))?;
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
        let mut db = self.lock();
        let last = self
            .written
            .lock()
            .recover()
            .get(&job.id)
            .cloned()
            .unwrap_or_default();
        let now = self.write(&mut db, job, &last)?;
        self.written.lock().recover().insert(job.id, now);
        Ok(())
    }

    fn delete(&self, id: JobId) -> Result<(), JobError> {
        let db = self.lock();
        self.written.lock().recover().remove(&id);
        // Its progress rows go with it (ON DELETE CASCADE).
        db.execute("DELETE FROM jobs WHERE id = ?1", [id.to_string()])
            .map_err(|e| self.failed(e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::auth::Password;
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

    /// The bytes a save adds to the write-ahead log: the frames it wrote, each a page and a header.
    fn logged_by(store: &SqliteJobStore, save: impl FnOnce()) -> u64 {
        let db = store.lock();
        db.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        drop(db);
        save();
        let db = store.lock();
        let frames: i64 = db
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))
            .unwrap();
        let page: i64 = db.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        u64::try_from(frames * (page + 24)).unwrap()
    }

    /// A progress save rewrites the progress, not the job (issue 22, item 5: a job with a 7.5 MB name
    /// wrote 56 MB to fetch 100 KB). With a 1 MB name, a save of new progress logs a few pages.
    #[test]
    fn a_progress_save_does_not_rewrite_what_did_not_change() {
        let dir = tempfile::tempdir().unwrap();
        let key = JobKey::load_or_create(&dir.path().join("jobs.key")).unwrap();
        let store = SqliteJobStore::open(dir.path().join("config.db"), key).unwrap();
        let mut job = Job::new("n".repeat(1 << 20), JobState::Transferring);
        job.description = "d".repeat(1000);
        for i in 0..3 {
            job.files
                .push(JobFile::new(format!("https://h/{i}"), format!("/tmp/{i}")));
        }
        let first = logged_by(&store, || store.save(&job).unwrap());
        assert!(first > 1 << 20, "the first save wrote the job: {first}");
        job.files[1].bytes_transferred = 65_536;
        job.files[1].bytes_total = Some(100_000);
        job.modified = std::time::SystemTime::now();
        let progress = logged_by(&store, || store.save(&job).unwrap());
        assert!(
            progress < 32 << 10,
            "a progress save logged {progress} bytes"
        );
        assert_eq!(store.load_all().unwrap(), vec![job.clone()]);
        // A change of what is not progress is written, and reads back.
        job.priority = crate::jobs::Priority::High;
        store.save(&job).unwrap();
        let key = JobKey::load_or_create(&dir.path().join("jobs.key")).unwrap();
        let reopened = SqliteJobStore::open(dir.path().join("config.db"), key).unwrap();
        assert_eq!(reopened.load_all().unwrap(), vec![job]);
    }

    /// Rows written before the progress had rows of its own (schema version 2) hold the whole job: they
    /// load as they are, and the next save splits them.
    #[test]
    fn a_whole_job_row_loads_and_is_split_by_the_next_save() {
        let dir = tempfile::tempdir().unwrap();
        let key = JobKey::load_or_create(&dir.path().join("jobs.key")).unwrap();
        let store = SqliteJobStore::open(dir.path().join("config.db"), key).unwrap();
        let mut job = Job::new("old", JobState::Transferring);
        job.files.push(JobFile::new("https://h/a", "/tmp/a"));
        job.files[0].bytes_transferred = 10;
        store
            .lock()
            .execute(
                "INSERT INTO jobs (id, job) VALUES (?1, ?2)",
                params![job.id.to_string(), serde_json::to_string(&job).unwrap()],
            )
            .unwrap();
        assert_eq!(store.load_all().unwrap(), vec![job.clone()]);
        job.files[0].bytes_transferred = 20;
        store.save(&job).unwrap();
        assert_eq!(store.load_all().unwrap(), vec![job.clone()]);
        let parts: i64 = store
            .lock()
            .query_row("SELECT COUNT(*) FROM job_progress", [], |r| r.get(0))
            .unwrap();
        assert_eq!(parts, 2);
        store.delete(job.id).unwrap();
        assert!(store.load_all().unwrap().is_empty());
        let parts: i64 = store
            .lock()
            .query_row("SELECT COUNT(*) FROM job_progress", [], |r| r.get(0))
            .unwrap();
        assert_eq!(parts, 0, "a deleted job's progress goes with it");
    }
}
