//! The service's final jobs (ACKNOWLEDGED, CANCELLED) in its SQLite database: [`SqliteEndedJobs`], on its
//! own connection to the configuration store's file (table `ended_jobs`, schema version 4), one row per
//! job holding when it ended (milliseconds since the epoch) and its JSON. The job manager forgets a final job (it leaves the job store);
//! the service keeps it here so that it is listed the same after a restart, until it is deleted or its
//! retention period ends.
//!
//! SECURITY: a final job is never run again: its password is not kept (the job's JSON never holds one).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

use super::StoreError;
use crate::jobs::{Job, JobId};
use crate::lock::Recover;

/// Final jobs in the service's database; see the module's documentation.
#[derive(Debug)]
pub struct SqliteEndedJobs {
    db: Mutex<Connection>,
}

impl SqliteEndedJobs {
    /// Opens the database at `path` (the configuration store's file; created and migrated if needed).
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteEndedJobs, StoreError> {
        let db = super::sqlite::connect(path.as_ref())?;
        Ok(SqliteEndedJobs { db: Mutex::new(db) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().recover()
    }

    /// Every final job kept that ended after `cutoff` (those that ended earlier are removed), in the
    /// order they were created.
    pub fn load(&self, cutoff: SystemTime) -> Result<Vec<Job>, StoreError> {
        self.remove_ended_before(cutoff)?;
        let db = self.lock();
        let mut stmt = db.prepare("SELECT id, job FROM ended_jobs")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut jobs = Vec::new();
        for row in rows {
            let (id, text) = row?;
            let job: Job = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                what: "final job",
                reason: format!("{id}: {e}"),
            })?;
            jobs.push(job);
        }
        jobs.sort_by_key(|j| j.created);
        Ok(jobs)
    }

    /// Keeps a final job, ended when it was last modified; a job kept already stays as it was.
    pub fn record(&self, job: &Job) -> Result<(), StoreError> {
        let text = serde_json::to_string(job).map_err(|e| StoreError::Corrupt {
            what: "final job",
            reason: e.to_string(),
        })?;
        self.lock().execute(
            "INSERT INTO ended_jobs (id, ended, job) VALUES (?1, ?2, ?3)
             ON CONFLICT (id) DO NOTHING",
            params![job.id.to_string(), millis(job.modified), text],
        )?;
        Ok(())
    }

    /// Forgets a final job; whether it was kept.
    pub fn remove(&self, id: JobId) -> Result<bool, StoreError> {
        let removed = self
            .lock()
            .execute("DELETE FROM ended_jobs WHERE id = ?1", [id.to_string()])?;
        Ok(removed > 0)
    }

    /// Forgets the final jobs that ended at `cutoff` or before; how many.
    pub fn remove_ended_before(&self, cutoff: SystemTime) -> Result<usize, StoreError> {
        Ok(self
            .lock()
            .execute("DELETE FROM ended_jobs WHERE ended <= ?1", [millis(cutoff)])?)
    }
}

/// Milliseconds since the Unix epoch (negative before it), saturating.
fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |s| -s),
    }
}

/// `now` less `retention`, or the earliest time when that would underflow.
pub(crate) fn cutoff(now: SystemTime, retention: Duration) -> SystemTime {
    now.checked_sub(retention).unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobState;

    #[test]
    fn final_jobs_survive_reopening_until_removed_or_too_old() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("config.db");
        let now = SystemTime::now();
        let mut old = Job::new("old", JobState::Cancelled);
        old.modified = now - Duration::from_secs(3600);
        let mut kept = Job::new("kept", JobState::Acknowledged);
        kept.modified = now;
        let gone = Job::new("gone", JobState::Cancelled);
        {
            let store = SqliteEndedJobs::open(&db).unwrap();
            for job in [&old, &kept, &gone] {
                store.record(job).unwrap();
            }
            // Recorded again (a retry): the first record stays.
            let mut again = kept.clone();
            again.display_name = "changed".into();
            store.record(&again).unwrap();
            assert!(store.remove(gone.id).unwrap());
            assert!(!store.remove(gone.id).unwrap());
        }
        let store = SqliteEndedJobs::open(&db).unwrap();
        assert_eq!(
            store.load(UNIX_EPOCH).unwrap(),
            vec![old.clone(), kept.clone()]
        );
        let cut = cutoff(now, Duration::from_secs(60));
        assert_eq!(store.load(cut).unwrap(), vec![kept]);
        assert_eq!(
            store.remove_ended_before(cut).unwrap(),
            0,
            "already removed"
        );
        assert_eq!(cutoff(now, Duration::MAX), UNIX_EPOCH);
    }
}
