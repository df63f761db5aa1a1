//! [`ServiceJobs`]: the download jobs `bcs serve` runs (`/v1/jobs`): its job manager, its download root
//! (where a caller's files may go: `sandbox`, which plans paths in it), what the jobs of callers who are
//! not administrators may reach ([`JobPolicy`]), and its final jobs, kept for their retention period
//! (`ended`). Jobs are read here, the manager's merged with the final ones kept ([`ServiceJobs::job`],
//! [`ServiceJobs::jobs`]).
//!
//! Two locks order what must not interleave: `making`, while a request makes directories until its job
//! is accepted or refused, and `ending`, from the change that makes a job final until it is recorded,
//! and while a job is deleted (so that a deleted job is never recorded after).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::jobs::{Job, JobError, JobId, JobManager};
use crate::service::ended::EndedJobs;
use crate::service::error::MgmtError;
use crate::service::job_policy::{JobAllow, JobPolicy};
use crate::service::store::{SqliteEndedJobs, StoreError};

/// The jobs of a service: its job manager, where their files may go (the download root, see
/// `service::sandbox`), what they may reach, and its final jobs.
#[derive(Debug)]
pub struct ServiceJobs {
    manager: JobManager,
    root: PathBuf,
    /// Held while a request makes directories, until its job is accepted or refused.
    making: tokio::sync::Mutex<()>,
    /// What the jobs of callers who are not administrators may reach.
    policy: JobPolicy,
    /// Final jobs, for their retention period.
    ended: EndedJobs,
    /// Held while a job is made final and recorded, or deleted: a deleted job is never recorded after.
    ending: tokio::sync::Mutex<()>,
}

impl ServiceJobs {
    /// Jobs run by `manager`, whose files must be inside `root` (created mode 0700 if missing; made
    /// canonical here). `state` is the service's state directory.
    ///
    /// SECURITY: a root that holds the state directory would let a job's Complete rename a download over
    /// `config.db` or `jobs.key` (a caller making itself administrator); a root others may write to would
    /// let local users plant links or temporaries in it. Both are refused, and so is a root inside a
    /// fleet's content directories, whose files are served by their hash without being hashed again.
    pub fn new(manager: JobManager, root: &Path, state: &Path) -> std::io::Result<ServiceJobs> {
        crate::jobs::make_private_dir(root).map_err(std::io::Error::other)?;
        let root = root.canonicalize()?;
        let state = state.canonicalize()?;
        if state.starts_with(&root) {
            return Err(std::io::Error::other(format!(
                "it holds the state directory {}; give a directory of its own",
                state.display()
            )));
        }
        for own in ["content", "content-incoming", "content-jobs"] {
            if root.starts_with(state.join(own)) {
                return Err(std::io::Error::other(format!(
                    "it is inside {}, where a fleet's node keeps its verified copies; give a directory of its own",
                    state.join(own).display()
                )));
            }
        }
        Ok(ServiceJobs {
            manager,
            root,
            making: tokio::sync::Mutex::new(()),
            policy: JobPolicy::default(),
            ended: EndedJobs::default(),
            ending: tokio::sync::Mutex::new(()),
        })
    }

    /// Lets the jobs of callers who are not administrators reach these hosts and networks too (see
    /// [`JobPolicy`]). Default is none: public addresses only.
    pub fn job_allow(mut self, allowed: Vec<JobAllow>) -> ServiceJobs {
        self.policy = JobPolicy::new(allowed);
        self
    }

    /// What the jobs of callers who are not administrators may reach.
    pub fn policy(&self) -> &JobPolicy {
        &self.policy
    }

    /// Keeps final jobs in `store`, listed until deleted or until `retention` has passed since they
    /// ended, across restarts; loads those it holds. Default is memory only (until the process ends),
    /// for [`DEFAULT_JOB_RETENTION`](crate::service::DEFAULT_JOB_RETENTION).
    pub fn keep_ended(
        mut self,
        store: SqliteEndedJobs,
        retention: Duration,
    ) -> Result<ServiceJobs, StoreError> {
        self.ended = EndedJobs::load(Some(store), retention)?;
        Ok(self)
    }

    /// A job: one the manager runs, or a final one still retained ([`JobError::NotFound`] otherwise).
    pub fn job(&self, id: JobId) -> Result<Job, JobError> {
        self.expire();
        if let Some(job) = self.ended.get(id) {
            return Ok(job);
        }
        let job = self.manager.job(id)?;
        match self.is_listed(&job) {
            true => Ok(job),
            false => Err(JobError::NotFound(id)),
        }
    }

    /// Every job, final ones while retained, oldest first.
    pub fn jobs(&self) -> Vec<Job> {
        self.expire();
        let mut all = self.ended.all();
        all.extend(
            self.manager
                .jobs()
                .into_iter()
                .filter(|j| !self.ended.has(j.id) && self.is_listed(j)),
        );
        all.sort_by_key(|j| j.created);
        all
    }

    /// Whether a job the manager holds is listed: a final one the service did not record (the store
    /// failed) only while retained.
    fn is_listed(&self, job: &Job) -> bool {
        !job.state.is_final()
            || self
                .ended
                .is_retained(job.modified, std::time::SystemTime::now())
    }

    /// Waits until no other job is being made final or deleted, and lets none be until the guard is
    /// dropped: held from the change that makes a job final until it is recorded ([`record_ended`]),
    /// and while a job is deleted ([`forget`]).
    ///
    /// [`record_ended`]: Self::record_ended
    /// [`forget`]: Self::forget
    pub async fn ending(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.ending.lock().await
    }

    /// Keeps a job that just became final, and forgets those whose retention has passed; returns the job
    /// as it is listed from now on (without its password). When the store fails, the job is listed as
    /// the manager holds it until the process ends. Blocks on the store.
    pub fn record_ended(&self, job: Job) -> Job {
        let kept = match self.ended.record(&job) {
            Ok(kept) => kept,
            Err(e) => {
                tracing::error!(target: "bits_compact::service", job = %job.id, error = %e, "cannot keep a final job; it is listed until the service stops");
                return job;
            }
        };
        self.prune();
        kept
    }

    /// Forgets a final job (DELETE); `None` when the job is not final. Blocks on the store.
    pub fn forget(&self, id: JobId) -> Result<Option<Job>, MgmtError> {
        let kept = self.ended.get(id);
        if kept.is_some() {
            self.ended.remove(id)?;
        }
        let held = self.manager.forget(id);
        self.prune();
        match (kept, held) {
            (Some(job), _) | (None, Ok(Some(job))) => Ok(Some(job)),
            (None, Ok(None)) => Ok(None),
            (None, Err(e)) => Err(e.into()),
        }
    }

    /// Forgets the final jobs whose retention has passed, here and in the manager, without waiting for the
    /// store: what is read next never shows them, even after a restart.
    fn expire(&self) {
        for id in self.ended.prune_later() {
            let _ = self.manager.forget(id);
        }
    }

    /// Forgets the final jobs whose retention has passed, here, in the manager and in the store.
    fn prune(&self) {
        match self.ended.prune() {
            Ok(expired) => {
                for id in expired {
                    let _ = self.manager.forget(id);
                }
            }
            Err(e) => {
                tracing::warn!(target: "bits_compact::service", error = %e, "cannot forget final jobs past their retention")
            }
        }
    }

    /// The manager.
    pub fn manager(&self) -> &JobManager {
        &self.manager
    }

    /// Waits until no other request makes directories, and lets none start until the guard is dropped:
    /// held from [`DirsMade::make`](crate::service::DirsMade::make) until the job is accepted or refused.
    pub async fn making(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.making.lock().await
    }

    /// The download root (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SECURITY (see `ServiceJobs::new`): a root holding the state directory, or one others may write
    /// to, is refused; the default, `downloads/` inside the state directory, is fine.
    #[tokio::test]
    async fn a_root_holding_the_state_or_open_to_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let top = tempfile::tempdir().unwrap();
        let state = top.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let manager = || async { JobManager::builder().start().await.unwrap() };
        for root in [top.path().to_owned(), state.clone()] {
            let refused = ServiceJobs::new(manager().await, &root, &state);
            assert!(refused.is_err(), "{root:?} holds the state");
        }
        let open = top.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ServiceJobs::new(manager().await, &open, &state).is_err());
        let jobs = ServiceJobs::new(manager().await, &state.join("downloads"), &state).unwrap();
        assert!(jobs.root().ends_with("state/downloads"));
    }
}
