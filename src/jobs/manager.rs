//! The [`JobManager`] API: building a manager ([`JobManagerBuilder`]), the owner's calls on jobs (BITS's
//! CreateJob, AddFile, SetJobState, properties, GetError), reading them, subscribing to their events, and
//! shutting down. The work behind the calls is in `registry` (the jobs and the lock), `scheduler`,
//! `runner` and `writer`.
//!
//! Invariants: every call that changes a job makes the change under the jobs lock through `state`'s
//! transition function and queues its write before letting the lock go (the write order, see `writer`);
//! it returns after the change is durable and after the job's runner (if any) has stopped, so no byte is
//! written after Suspend or Cancel returns. Final jobs (ACKNOWLEDGED, CANCELLED) are removed from the
//! store, and kept in memory for this process's life so that callers can still read them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::events::{self, JobEvent};
use super::job::{Job, JobFailure, JobId};
use super::job_error::JobError;
use super::job_store::{JobStore, MemoryStore};
use super::new_job::{check_timing, checked_file, NewJob};
use super::registry::{Jobs, Registry, RunnerTask};
use super::scheduler;
use super::state::{Action, Event, JobState, Priority, TransitionError};
use super::transfer::{self, Fetch, Http, LowSpeedLimit};
use super::watch::JobWatch;
use super::writer::{durable, Writer};
use crate::client::{ClientSettings, PeerGuard};
use crate::lock::Recover;

/// Settings of a [`JobManager`].
pub struct JobManagerBuilder {
    store: Arc<dyn JobStore>,
    http: Http,
    /// In place of `http` (the manager's tests).
    fetch: Option<Arc<dyn Fetch>>,
    max_transfers: usize,
    save_interval: Duration,
}

impl JobManagerBuilder {
    /// Where jobs are kept. Default is a [`MemoryStore`] (nothing survives the process).
    pub fn store(mut self, store: impl JobStore) -> Self {
        self.store = Arc::new(store);
        self
    }

    /// How many jobs transfer at once (at least 1). Default is 2.
    pub fn max_transfers(mut self, n: usize) -> Self {
        self.max_transfers = n.max(1);
        self
    }

    /// How often a running job's progress is written to the store. Default is 1 s.
    pub fn save_interval(mut self, interval: Duration) -> Self {
        self.save_interval = interval;
        self
    }

    /// The most bytes per second each running job receives (a job transfers one file at a time, so this
    /// is each job's bandwidth; jobs running together may use that much each). Default is unlimited.
    pub fn job_bandwidth(mut self, rate: crate::ByteRate) -> Self {
        self.http.rate = rate.get();
        self
    }

    /// When a transfer whose body arrives too slowly (or not at all after its headers) stops with
    /// TRANSIENT_ERROR `stalled`, to be retried. Default is fewer than 1 KiB in a minute; a job bandwidth
    /// lowers it to half what that bandwidth lets through. The window is from 1 ms to a day
    /// ([`LowSpeedLimit::LONGEST_WINDOW`]); outside that, [`start`](Self::start) fails with
    /// [`JobError::InvalidSetting`].
    pub fn low_speed_limit(mut self, limit: LowSpeedLimit) -> Self {
        self.http.low_speed = LowSpeedLimit {
            min_bytes: limit.min_bytes.max(1),
            window: limit.window,
        };
        self
    }

    /// Opens, renames and removes every job's files without following a symbolic link in any component
    /// of their paths (for callers whose paths are canonical and were checked to be free of links, as
    /// `bcs serve`'s download root). Default is off: only the temporary's own name is never followed.
    pub fn no_symlinks(mut self, on: bool) -> Self {
        self.http.no_symlinks = on;
        self
    }

    /// Checks every connection of a restricted job (see [`NewJob::restricted`]) — the first request's
    /// and each redirect's, to the server or its proxy — with `guard`, after DNS resolution and before
    /// connecting; a refusal is an ERROR `refused_by_policy` whose message says no more. Default is none:
    /// restricted jobs connect as any other.
    pub fn peer_guard(mut self, guard: PeerGuard) -> Self {
        self.http.guard = Some(guard);
        self
    }

    #[cfg(test)]
    pub(crate) fn fetch(mut self, fetch: impl Fetch) -> Self {
        self.fetch = Some(Arc::new(fetch));
        self
    }

    /// Loads the stored jobs (a job that was CONNECTING or TRANSFERRING comes back QUEUED and resumes
    /// from the bytes on disk) and starts the scheduler on the current tokio runtime.
    pub async fn start(self) -> Result<JobManager, JobError> {
        self.http.low_speed.check()?;
        let store = self.store.clone();
        let loaded = tokio::task::spawn_blocking(move || store.load_all())
            .await
            .map_err(|_| JobError::Stopped)??;
        let (writer, writing) = Writer::start(self.store);
        let no_symlinks = self.http.no_symlinks;
        let registry = Arc::new(Registry {
            jobs: Mutex::new(Jobs::default()),
            fetch: self.fetch.unwrap_or_else(|| Arc::new(self.http)),
            events: broadcast::channel(events::CAPACITY).0,
            wake: Notify::new(),
            writer,
            max_transfers: self.max_transfers,
            save_interval: self.save_interval,
            stop: CancellationToken::new(),
            no_symlinks,
        });
        let reloaded = registry.reload(loaded);
        for job in reloaded {
            registry.writer.save(job).await?;
        }
        let scheduler = tokio::spawn(scheduler::schedule(registry.clone()));
        Ok(JobManager {
            registry,
            tasks: Arc::new(Mutex::new(Some((scheduler, writing)))),
        })
    }
}

/// Runs download jobs; cheap to clone (all clones are the same manager).
///
/// A job's life, BITS's way: create it, add files, resume it, wait until it is TRANSFERRED, then complete
/// it, which renames every file into place at once.
///
/// ```no_run
/// use bits_compact::jobs::{Action, DirStore, JobManager, JobState, NewJob};
///
/// # async fn demo() -> Result<(), bits_compact::JobError> {
/// let jobs = JobManager::builder()
///     .store(DirStore::open("/var/tmp/my-jobs")?) // jobs survive restarts
///     .max_transfers(4)
///     .start()
///     .await?;
/// let job = jobs.create_job(NewJob::new("release").suspended(true)).await?;
/// jobs.add_file(job.id, "http://server:8080/deploy/setup.exe", "/tmp/setup.exe")
///     .await?;
/// jobs.set_state(job.id, Action::Resume).await?;
/// // TRANSIENT_ERROR is retried on its own; ERROR waits for the owner.
/// let done = jobs
///     .wait_for(job.id, |j| matches!(j.state, JobState::Transferred | JobState::Error))
///     .await?;
/// if done.state == JobState::Transferred {
///     jobs.set_state(job.id, Action::Complete).await?; // /tmp/setup.exe appears, whole
/// } else {
///     eprintln!("{:?}", done.error);
///     jobs.set_state(job.id, Action::Cancel).await?;
/// }
/// jobs.shutdown().await;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct JobManager {
    registry: Arc<Registry>,
    tasks: Arc<Mutex<Option<Tasks>>>,
}

impl std::fmt::Debug for JobManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobManager")
            .field("max_transfers", &self.registry.max_transfers)
            .finish_non_exhaustive()
    }
}

/// The scheduler and the store's writer.
type Tasks = (JoinHandle<()>, JoinHandle<()>);

impl JobManager {
    /// A builder with the documented defaults.
    pub fn builder() -> JobManagerBuilder {
        JobManagerBuilder {
            store: Arc::new(MemoryStore::new()),
            http: Http::default(),
            fetch: None,
            max_transfers: 2,
            save_interval: Duration::from_secs(1),
        }
    }

    /// State changes and progress of every job, from now on, on one broadcast channel that keeps the last
    /// 1024 events for its slowest receiver. A receiver further behind never slows the transfers: it
    /// loses the oldest events instead — its next `recv` returns `RecvError::Lagged(n)`, and the one after
    /// goes on with the oldest event kept, so read the jobs you follow again then (a state change may be
    /// among those lost). To follow one job, [`watch`](Self::watch) and [`wait_for`](Self::wait_for) do
    /// that for you.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.registry.events.subscribe()
    }

    /// One job's events from now on. Unlike a [`subscribe`](Self::subscribe) receiver, a [`JobWatch`] that
    /// falls behind yields the job's current state instead of a gap, and it ends after the job's final
    /// state. [`JobError::NotFound`] when there is no such job.
    pub fn watch(&self, id: JobId) -> Result<JobWatch, JobError> {
        JobWatch::new(self.registry.clone(), id)
    }

    /// Waits until `done` holds for the job — checked now and after each of its events — and returns the
    /// job as it was then. Fails with [`JobError::NotFound`] when there is no such job (or it is
    /// forgotten), [`JobError::Stopped`] when the manager shuts down first, and [`JobError::Transition`]
    /// ([`TransitionError::Final`]) when the job reaches a final state for which `done` does not hold.
    pub async fn wait_for(
        &self,
        id: JobId,
        mut done: impl FnMut(&Job) -> bool,
    ) -> Result<Job, JobError> {
        let mut watch = self.watch(id)?;
        loop {
            let job = self.job(id)?;
            if done(&job) {
                return Ok(job);
            }
            if watch.next().await.is_some() {
                continue;
            }
            if self.registry.stop.is_cancelled() {
                return Err(JobError::Stopped);
            }
            let job = self.job(id)?;
            return match done(&job) {
                true => Ok(job),
                false => Err(JobError::Transition {
                    id,
                    source: TransitionError::Final(job.state),
                }),
            };
        }
    }

    /// CreateJob: a new job, QUEUED (or SUSPENDED if asked, or if it has no files yet).
    pub async fn create_job(&self, new: NewJob) -> Result<Job, JobError> {
        let job = new.into_job()?;
        let claimed = |jobs: &Jobs| {
            job.files
                .iter()
                .find(|f| jobs.claimed_elsewhere(None, &f.local_file))
                .map(|f| JobError::InvalidFile {
                    remote_url: f.remote_url.clone(),
                    local_file: f.local_file.clone(),
                    reason: "another unfinished job writes this local file".into(),
                })
        };
        if let Some(e) = claimed(&self.registry.lock()) {
            return Err(e);
        }
        self.registry.writer.save(job.clone()).await?;
        let state = job.state;
        let lost = {
            // Checked again where it counts: another create may have claimed a file while this one saved.
            let mut jobs = self.registry.lock();
            let lost = claimed(&jobs);
            if lost.is_none() {
                jobs.insert(job.clone());
            }
            lost
        };
        if let Some(e) = lost {
            let _ = self.registry.writer.delete(job.id).await;
            return Err(e);
        }
        self.registry.emit_state(job.id, state, state);
        self.registry.wake.notify_one();
        Ok(job)
    }

    /// AddFile: one more file at the end of the job. A TRANSFERRED job has work again and is QUEUED.
    pub async fn add_file(
        &self,
        id: JobId,
        remote_url: impl Into<String>,
        local_file: impl Into<PathBuf>,
    ) -> Result<Job, JobError> {
        let (job, previous, written) = {
            let mut jobs = self.registry.lock();
            let entry = jobs.get_mut(id)?;
            let next = entry
                .job
                .state
                .on(Event::FilesAdded)
                .map_err(|source| JobError::Transition { id, source })?;
            let file = checked_file(&entry.job, remote_url.into(), local_file.into())?;
            if jobs.claimed_elsewhere(Some(id), &file.local_file) {
                return Err(JobError::InvalidFile {
                    remote_url: file.remote_url,
                    local_file: file.local_file,
                    reason: "another unfinished job writes this local file".into(),
                });
            }
            let entry = jobs.get_mut(id)?;
            entry.job.files.push(file);
            let previous = entry.job.state;
            entry.job.state = next;
            entry.job.modified = SystemTime::now();
            let job = entry.job.clone();
            if next == JobState::Queued && previous != next {
                jobs.requeue(id);
            }
            let written = self.registry.writer.queue_save(job.clone());
            (job, previous, written)
        };
        durable(written).await?;
        self.registry.emit_state(id, previous, job.state);
        self.registry.wake.notify_one();
        Ok(job)
    }

    /// SetRemoteName (`IBackgroundCopyFile2`): file `index` of the job comes from `remote_url` from now
    /// on: another server with the same file. The bytes held are kept; the next transfer resumes them
    /// only if the new server's validators are those seen first (else the file starts over, as when a
    /// file changes). Only while the job does not run: SUSPENDED, ERROR or TRANSIENT_ERROR.
    pub async fn set_remote_name(
        &self,
        id: JobId,
        index: usize,
        remote_url: impl Into<String>,
    ) -> Result<Job, JobError> {
        let remote_url = remote_url.into();
        transfer::parse_url(&remote_url).map_err(|f| JobError::InvalidFile {
            remote_url: remote_url.clone(),
            local_file: PathBuf::new(),
            reason: f.error.message,
        })?;
        // Checked under the same lock as the change: a runner cannot start in between.
        let mut refused = None;
        self.edit(id, |job| {
            let idle = matches!(
                job.state,
                JobState::Suspended | JobState::Error | JobState::TransientError
            );
            match job.files.get_mut(index) {
                Some(file) if idle && !file.completed => file.remote_url = remote_url,
                Some(_) if !idle => refused = Some(format!("a file's remote name changes only while the job is SUSPENDED, ERROR or TRANSIENT_ERROR, not {:?}", job.state)),
                _ => refused = Some(format!("the job has no unfinished file {index}")),
            }
        })
        .await?;
        match refused {
            Some(reason) => Err(JobError::InvalidSetting(reason)),
            None => self.job(id),
        }
    }

    /// SetJobState: Cancel, Complete, Resume or Suspend (WMI numbers in [`Action`]).
    pub async fn set_state(&self, id: JobId, action: Action) -> Result<Job, JobError> {
        // The change is made under one lock, so that no other action, runner or scheduler tick sees a
        // half-made one; only waiting for a stopped runner happens outside it.
        let (previous, job, runner, written) = {
            let mut jobs = self.registry.lock();
            let entry = jobs.get_mut(id)?;
            let previous = entry.job.state;
            let next = previous
                .apply(action, entry.job.files.len())
                .map_err(|source| JobError::Transition { id, source })?;
            if action == Action::Complete {
                // Rare and short (a rename and a directory sync per file); under the lock so that no
                // AddFile slips in between the renames and ACKNOWLEDGED.
                finish_files(&entry.job, self.registry.no_symlinks)?;
            }
            let runner = match next.is_active() || action == Action::Resume {
                true => None,
                false => entry.runner.take(),
            };
            if let Some(r) = &runner {
                r.cancel.cancel();
            }
            entry.job.state = next;
            entry.job.modified = SystemTime::now();
            let requeue = action == Action::Resume && previous != next;
            if requeue {
                entry.job.error = None;
                entry.retry_at = None;
                entry.stalled_since = None;
            }
            let job = entry.job.clone();
            if requeue {
                jobs.requeue(id);
            }
            // A final state is deleted below, once the runner has stopped and the temporaries are gone;
            // nothing writes this job after that (the runner is cancelled, and a final state takes no
            // action or edit).
            let written = (!next.is_final()).then(|| self.registry.writer.queue_save(job.clone()));
            (previous, job, runner, written)
        };
        // Once the runner has stopped, nothing writes the temporaries any more.
        if let Some(runner) = runner {
            let _ = runner.task.await;
        }
        if action == Action::Cancel {
            for file in &job.files {
                if let Err(e) = transfer::discard(file, self.registry.no_symlinks) {
                    tracing::warn!(job = %id, file = ?file.local_file, error = %e, "cannot remove a temporary");
                }
            }
        }
        match written {
            None => self.registry.writer.delete(id).await?,
            Some(written) => durable(written).await?,
        }
        self.registry.emit_state(id, previous, job.state);
        self.registry.wake.notify_one();
        Ok(job)
    }

    /// Changes a job's priority; a queued job keeps its place within the new priority.
    pub async fn set_priority(&self, id: JobId, priority: Priority) -> Result<Job, JobError> {
        self.set_schedule(id, Some(priority), None, None).await
    }

    /// SetCredentials / RemoveCredentials, proxy settings and TLS trust: used from the job's next
    /// transfer on (a running one keeps its connection). The password stays in memory only.
    pub async fn set_client_settings(
        &self,
        id: JobId,
        settings: ClientSettings,
    ) -> Result<Job, JobError> {
        settings
            .check()
            .map_err(|e| JobError::InvalidSetting(e.to_string()))?;
        self.edit(id, |job| job.client = settings).await
    }

    /// Sets MinimumRetryDelay and NoProgressTimeout, each when given, within the ranges [`NewJob`]'s
    /// setters document ([`JobError::InvalidSetting`] outside them).
    pub async fn set_retry_timing(
        &self,
        id: JobId,
        minimum_retry_delay: Option<Duration>,
        no_progress_timeout: Option<Duration>,
    ) -> Result<Job, JobError> {
        self.set_schedule(id, None, minimum_retry_delay, no_progress_timeout)
            .await
    }

    /// Sets the priority, MinimumRetryDelay and NoProgressTimeout, each when given, in one change: on an
    /// error none of them is set.
    pub async fn set_schedule(
        &self,
        id: JobId,
        priority: Option<Priority>,
        minimum_retry_delay: Option<Duration>,
        no_progress_timeout: Option<Duration>,
    ) -> Result<Job, JobError> {
        check_timing(minimum_retry_delay, no_progress_timeout)?;
        let job = self
            .edit(id, |job| {
                if let Some(p) = priority {
                    job.priority = p;
                }
                if let Some(d) = minimum_retry_delay {
                    job.minimum_retry_delay = d;
                }
                if let Some(t) = no_progress_timeout {
                    job.no_progress_timeout = t;
                }
            })
            .await?;
        if priority.is_some() {
            self.registry.wake.notify_one();
        }
        Ok(job)
    }

    /// Forgets a job in a final state (ACKNOWLEDGED, CANCELLED), which is otherwise kept in memory for the
    /// process's life. Returns the job as it was, or `None` (and keeps it) when it is not final.
    pub fn forget(&self, id: JobId) -> Result<Option<Job>, JobError> {
        let mut jobs = self.registry.lock();
        let entry = jobs.get_mut(id)?;
        if !entry.job.state.is_final() {
            return Ok(None);
        }
        Ok(jobs.map.remove(&id).map(|e| e.job))
    }

    /// Changes a setting of a job that is not final, and stores it.
    async fn edit(&self, id: JobId, change: impl FnOnce(&mut Job)) -> Result<Job, JobError> {
        let (job, written) = {
            let mut jobs = self.registry.lock();
            let entry = jobs.get_mut(id)?;
            if entry.job.state.is_final() {
                let source = TransitionError::Final(entry.job.state);
                return Err(JobError::Transition { id, source });
            }
            change(&mut entry.job);
            entry.job.modified = SystemTime::now();
            (
                entry.job.clone(),
                self.registry.writer.queue_save(entry.job.clone()),
            )
        };
        durable(written).await?;
        Ok(job)
    }

    /// A job as it is now.
    pub fn job(&self, id: JobId) -> Result<Job, JobError> {
        self.registry.job(id)
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<Job> {
        let mut all: Vec<Job> = self
            .registry
            .lock()
            .map
            .values()
            .map(|e| e.job.clone())
            .collect();
        all.sort_by_key(|j| j.created);
        all
    }

    /// GetError: the job's last failure, if any.
    pub fn error(&self, id: JobId) -> Result<Option<JobFailure>, JobError> {
        self.job(id).map(|j| j.error)
    }

    /// Stops every transfer and the scheduler, and writes each job as it is (a job that was running comes
    /// back QUEUED at the next start). Operations after this fail with [`JobError::Stopped`].
    pub async fn shutdown(&self) {
        self.registry.stop.cancel();
        let runners: Vec<(JobId, RunnerTask)> = {
            let mut jobs = self.registry.lock();
            jobs.map
                .iter_mut()
                .filter_map(|(id, e)| Some((*id, e.runner.take()?)))
                .collect()
        };
        for (id, runner) in runners {
            runner.cancel.cancel();
            let _ = runner.task.await;
            let written = {
                let mut jobs = self.registry.lock();
                // A job an action made final meanwhile is (being) deleted: never written back.
                jobs.get_mut(id)
                    .ok()
                    .filter(|e| !e.job.state.is_final())
                    .map(|e| self.registry.writer.queue_save(e.job.clone()))
            };
            if let Some(written) = written {
                let _ = durable(written).await;
            }
        }
        // Writes queued in the background (a job's last state, say) are durable before this returns: the
        // caller may stop the runtime next, and with it the writer.
        self.registry.writer.barrier().await;
        let tasks = self.tasks.lock().recover().take();
        if let Some((scheduler, writer)) = tasks {
            let _ = scheduler.await;
            // The writer ends once every manager clone is gone; what was queued before is written.
            drop(writer);
        }
    }
}

/// Puts every file of a TRANSFERRED job under its final name.
fn finish_files(job: &Job, no_symlinks: bool) -> Result<(), JobError> {
    for file in &job.files {
        transfer::complete(file, no_symlinks)
            .map_err(|(path, source)| JobError::Local { path, source })?;
    }
    Ok(())
}
