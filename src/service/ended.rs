//! [`EndedJobs`]: the service's final jobs (ACKNOWLEDGED, CANCELLED), listed with their end time until
//! they are deleted or their retention period (`bcs serve --job-retention`, default 7 days) has passed
//! since they ended, the same before and after a restart. The job manager keeps a final job in memory for
//! its process's life only (it leaves the job store when it ends); the service records it here, in memory
//! and in its store ([`SqliteEndedJobs`]), once it ends.
//!
//! A final job is kept as it ended, without its password (it never runs again), and is shown as kept:
//! what a caller reads of it is the same before and after a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::jobs::{Job, JobId};
use crate::lock::Recover;
use crate::service::store::{cutoff, SqliteEndedJobs, StoreError};

/// How long a final job stays listed by default: 7 days.
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Final jobs, kept for their retention period; see the module's documentation.
#[derive(Debug)]
pub(crate) struct EndedJobs {
    jobs: Mutex<BTreeMap<JobId, Job>>,
    store: Option<Arc<SqliteEndedJobs>>,
    retention: Duration,
}

impl Default for EndedJobs {
    fn default() -> EndedJobs {
        EndedJobs {
            jobs: Mutex::default(),
            store: None,
            retention: DEFAULT_JOB_RETENTION,
        }
    }
}

impl EndedJobs {
    /// The final jobs `store` keeps that ended within `retention` (it forgets the others).
    pub(crate) fn load(
        store: Option<SqliteEndedJobs>,
        retention: Duration,
    ) -> Result<EndedJobs, StoreError> {
        let kept = match &store {
            Some(store) => store.load(cutoff(SystemTime::now(), retention))?,
            None => Vec::new(),
        };
        Ok(EndedJobs {
            jobs: Mutex::new(kept.into_iter().map(|j| (j.id, j)).collect()),
            store: store.map(Arc::new),
            retention,
        })
    }

    /// Whether a job that ended at `ended` is still listed at `now`.
    pub(crate) fn is_retained(&self, ended: SystemTime, now: SystemTime) -> bool {
        ended > cutoff(now, self.retention)
    }

    /// A final job kept, while it is retained.
    pub(crate) fn get(&self, id: JobId) -> Option<Job> {
        let now = SystemTime::now();
        self.jobs
            .lock()
            .recover()
            .get(&id)
            .filter(|j| self.is_retained(j.modified, now))
            .cloned()
    }

    /// Every final job kept and still retained.
    pub(crate) fn all(&self) -> Vec<Job> {
        let now = SystemTime::now();
        let jobs = self.jobs.lock().recover();
        jobs.values()
            .filter(|j| self.is_retained(j.modified, now))
            .cloned()
            .collect()
    }

    /// Whether a record of `id` is kept (retained or not).
    pub(crate) fn has(&self, id: JobId) -> bool {
        self.jobs.lock().recover().contains_key(&id)
    }

    /// Keeps a job that just ended (without its password); returns it as kept. Blocks on the store.
    pub(crate) fn record(&self, job: &Job) -> Result<Job, StoreError> {
        let kept = without_secrets(job)?;
        if let Some(store) = &self.store {
            store.record(&kept)?;
        }
        self.jobs.lock().recover().insert(kept.id, kept.clone());
        Ok(kept)
    }

    /// Forgets a final job; whether it was kept. Blocks on the store.
    pub(crate) fn remove(&self, id: JobId) -> Result<bool, StoreError> {
        let stored = match &self.store {
            Some(store) => store.remove(id)?,
            None => false,
        };
        let held = self.jobs.lock().recover().remove(&id).is_some();
        Ok(stored || held)
    }

    /// Forgets the jobs whose retention has passed; returns their ids. Blocks on the store.
    pub(crate) fn prune(&self) -> Result<Vec<JobId>, StoreError> {
        let now = SystemTime::now();
        if let Some(store) = &self.store {
            store.remove_ended_before(cutoff(now, self.retention))?;
        }
        Ok(self.expired(now))
    }

    /// Forgets the jobs whose retention has passed, at once here and soon in the store (on the blocking
    /// pool, without waiting); returns their ids.
    pub(crate) fn prune_later(&self) -> Vec<JobId> {
        let now = SystemTime::now();
        let expired = self.expired(now);
        if let (false, Some(store)) = (expired.is_empty(), &self.store) {
            let (store, cut) = (store.clone(), cutoff(now, self.retention));
            let work = move || {
                if let Err(e) = store.remove_ended_before(cut) {
                    tracing::warn!(target: "bits_compact::service", error = %e, "cannot forget final jobs past their retention");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(work)),
                Err(_) => work(),
            }
        }
        expired
    }

    /// Removes from memory the jobs whose retention has passed at `now`; returns their ids.
    fn expired(&self, now: SystemTime) -> Vec<JobId> {
        let mut jobs = self.jobs.lock().recover();
        let expired: Vec<JobId> = jobs
            .values()
            .filter(|j| !self.is_retained(j.modified, now))
            .map(|j| j.id)
            .collect();
        for id in &expired {
            jobs.remove(id);
        }
        expired
    }
}

/// The job as its JSON holds it: without the password of its credentials.
fn without_secrets(job: &Job) -> Result<Job, StoreError> {
    serde_json::to_value(job)
        .and_then(serde_json::from_value)
        .map_err(|e| StoreError::Corrupt {
            what: "final job",
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Password;
    use crate::client::Credentials;
    use crate::jobs::JobState;

    #[test]
    fn final_jobs_are_kept_without_their_password_for_their_retention() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("config.db");
        let retention = Duration::from_secs(600);
        let mut done = Job::new("done", JobState::Acknowledged);
        done.client.credentials = Some(Credentials::basic("alice", Password::from("pw-x")));
        let mut stale = Job::new("stale", JobState::Cancelled);
        stale.modified = SystemTime::now() - Duration::from_secs(3600);
        {
            let ended =
                EndedJobs::load(Some(SqliteEndedJobs::open(&db).unwrap()), retention).unwrap();
            let kept = ended.record(&done).unwrap();
            assert!(!kept.client.credentials.as_ref().unwrap().has_password());
            ended.record(&stale).unwrap();
            assert_eq!(
                ended.all(),
                vec![kept.clone()],
                "the stale one is not listed"
            );
            assert!(ended.get(stale.id).is_none() && ended.has(stale.id));
            assert_eq!(ended.prune().unwrap(), vec![stale.id]);
            assert!(!ended.has(stale.id));
        }
        let ended = EndedJobs::load(Some(SqliteEndedJobs::open(&db).unwrap()), retention).unwrap();
        let kept = ended.get(done.id).unwrap();
        assert_eq!(kept.display_name, "done");
        assert!(ended.remove(done.id).unwrap());
        assert!(!ended.remove(done.id).unwrap());
        let ended = EndedJobs::load(Some(SqliteEndedJobs::open(&db).unwrap()), retention).unwrap();
        assert!(ended.all().is_empty());
    }
}
