//! The [`JobManager`]: owns the jobs of one process, runs them and keeps them in a [`JobStore`].
//!
//! One scheduler task starts QUEUED jobs while fewer than `max_transfers` run: FOREGROUND first, then HIGH,
//! NORMAL, LOW; within a priority in the order jobs became QUEUED (a retried job goes to the back, so jobs
//! of one priority take turns). It also turns TRANSIENT_ERROR jobs back into QUEUED after their retry delay
//! (MinimumRetryDelay, or a longer Retry-After) and into ERROR once they made no progress for their
//! NoProgressTimeout. Each running job has a runner task that fetches its files in order.
//!
//! Invariants: the jobs live in one map behind a mutex that is never held across an `.await`; every state
//! change goes through `state`'s transition function, is written to the store (in order, by one writer
//! task) and is broadcast as a [`JobEvent`]; an owner's action returns after its change is durable and
//! after the job's runner (if any) has stopped, so no byte is written after Suspend or Cancel returns.
//! Final jobs (ACKNOWLEDGED, CANCELLED) are removed from the store, and kept in memory for this process's
//! life so that callers can still read them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::job::{Job, JobFailure, JobFile, JobId, MINIMUM_RETRY_DELAY_FLOOR};
use super::job_error::JobError;
use super::job_store::{JobStore, MemoryStore};
use super::state::{Action, Event, JobState, Priority};
use super::transfer::{self, Failure, Fetch, Http, LowSpeedLimit};
use crate::client::ClientSettings;

/// What subscribers hear about jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobEvent {
    /// A job changed state (a new job reports its first state with `previous` equal to it).
    State {
        /// The job.
        id: JobId,
        /// Before.
        previous: JobState,
        /// Now.
        state: JobState,
    },
    /// Bytes arrived (or a file restarted from zero).
    Progress {
        /// The job.
        id: JobId,
        /// BytesTransferred.
        bytes_transferred: u64,
        /// BytesTotal, once known.
        bytes_total: Option<u64>,
        /// FilesTransferred.
        files_transferred: usize,
    },
}

/// What a new job looks like; build with [`NewJob::new`] and the setters.
#[derive(Debug, Clone)]
pub struct NewJob {
    display_name: String,
    description: String,
    owner: String,
    priority: Priority,
    files: Vec<(String, PathBuf)>,
    suspended: bool,
    minimum_retry_delay: Option<Duration>,
    no_progress_timeout: Option<Duration>,
    client: ClientSettings,
}

impl NewJob {
    /// A job named `display_name`, started at once (WMI's default), NORMAL priority, no files.
    pub fn new(display_name: impl Into<String>) -> NewJob {
        NewJob {
            display_name: display_name.into(),
            description: String::new(),
            owner: String::new(),
            priority: Priority::Normal,
            files: Vec::new(),
            suspended: false,
            minimum_retry_delay: None,
            no_progress_timeout: None,
            client: ClientSettings::default(),
        }
    }

    /// Description. Default is empty.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Owner. Default is empty.
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Priority. Default is NORMAL.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Adds a file: a remote `http://` or `https://` URL and an absolute local path.
    pub fn file(mut self, remote_url: impl Into<String>, local_file: impl Into<PathBuf>) -> Self {
        self.files.push((remote_url.into(), local_file.into()));
        self
    }

    /// Whether the job stays SUSPENDED until resumed (COM's way). Default is false: QUEUED at once.
    pub fn suspended(mut self, suspended: bool) -> Self {
        self.suspended = suspended;
        self
    }

    /// MinimumRetryDelay, at least 5 s. Default is 600 s.
    pub fn minimum_retry_delay(mut self, delay: Duration) -> Self {
        self.minimum_retry_delay = Some(delay);
        self
    }

    /// NoProgressTimeout. Default is 14 days.
    pub fn no_progress_timeout(mut self, timeout: Duration) -> Self {
        self.no_progress_timeout = Some(timeout);
        self
    }

    /// TLS trust, proxy usage and credentials. Default is the system's roots, the environment's proxies
    /// and no credentials.
    pub fn client(mut self, settings: ClientSettings) -> Self {
        self.client = settings;
        self
    }
}

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
    /// lowers it to half what that bandwidth lets through.
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

    #[cfg(test)]
    pub(crate) fn fetch(mut self, fetch: impl Fetch) -> Self {
        self.fetch = Some(Arc::new(fetch));
        self
    }

    /// Loads the stored jobs (a job that was CONNECTING or TRANSFERRING comes back QUEUED and resumes
    /// from the bytes on disk) and starts the scheduler on the current tokio runtime.
    pub async fn start(self) -> Result<JobManager, JobError> {
        let store = self.store.clone();
        let loaded = tokio::task::spawn_blocking(move || store.load_all())
            .await
            .map_err(|_| JobError::Stopped)??;
        let (writes, queue) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            jobs: Mutex::new(Jobs::default()),
            fetch: self.fetch.unwrap_or_else(|| Arc::new(self.http)),
            events: broadcast::channel(1024).0,
            wake: Notify::new(),
            writes,
            max_transfers: self.max_transfers,
            save_interval: self.save_interval,
            stop: CancellationToken::new(),
            no_symlinks: self.http.no_symlinks,
        });
        let writer = tokio::spawn(write_in_order(self.store, queue));
        let reloaded = inner.reload(loaded);
        for job in reloaded {
            inner.save(job).await?;
        }
        let scheduler = tokio::spawn(schedule(inner.clone()));
        Ok(JobManager {
            inner,
            tasks: Arc::new(Mutex::new(Some((scheduler, writer)))),
        })
    }
}

/// Runs download jobs; cheap to clone (all clones are the same manager).
#[derive(Clone)]
pub struct JobManager {
    inner: Arc<Inner>,
    tasks: Arc<Mutex<Option<Tasks>>>,
}

impl std::fmt::Debug for JobManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobManager")
            .field("max_transfers", &self.inner.max_transfers)
            .finish_non_exhaustive()
    }
}

/// The scheduler and the store's writer.
type Tasks = (JoinHandle<()>, JoinHandle<()>);

struct Inner {
    jobs: Mutex<Jobs>,
    fetch: Arc<dyn Fetch>,
    events: broadcast::Sender<JobEvent>,
    /// Wakes the scheduler: a job was queued or a transfer slot freed.
    wake: Notify,
    writes: mpsc::UnboundedSender<Write>,
    max_transfers: usize,
    save_interval: Duration,
    stop: CancellationToken,
    /// See [`JobManagerBuilder::no_symlinks`].
    no_symlinks: bool,
}

#[derive(Default)]
struct Jobs {
    map: HashMap<JobId, Entry>,
    /// Counts entries into QUEUED: the order within a priority.
    seq: u64,
}

struct Entry {
    job: Job,
    queued: u64,
    retry_at: Option<Instant>,
    /// Since when a job in trouble has made no progress (the NoProgressTimeout clock).
    stalled_since: Option<Instant>,
    runner: Option<Runner>,
    saved_at: Instant,
}

struct Runner {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// One request to the store's writer; an acknowledgement is sent when it is durable.
enum Write {
    Save(Box<Job>, Option<oneshot::Sender<Result<(), JobError>>>),
    Delete(JobId, Option<oneshot::Sender<Result<(), JobError>>>),
    /// Acknowledged once every write queued before it is done.
    Barrier(oneshot::Sender<()>),
}

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

    /// State changes and progress of every job, from now on. A slow subscriber loses the oldest events
    /// (`RecvError::Lagged`), never slows the transfers.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    /// CreateJob: a new job, QUEUED (or SUSPENDED if asked, or if it has no files yet).
    pub async fn create_job(&self, new: NewJob) -> Result<Job, JobError> {
        let delay = new
            .minimum_retry_delay
            .unwrap_or(super::DEFAULT_MINIMUM_RETRY_DELAY);
        if delay < MINIMUM_RETRY_DELAY_FLOOR {
            return Err(JobError::InvalidSetting(format!(
                "MinimumRetryDelay {delay:?} is under {MINIMUM_RETRY_DELAY_FLOOR:?}"
            )));
        }
        new.client
            .check()
            .map_err(|e| JobError::InvalidSetting(e.to_string()))?;
        let start = !new.suspended && !new.files.is_empty();
        let mut job = Job::new(new.display_name, JobState::Suspended);
        job.description = new.description;
        job.owner = new.owner;
        job.priority = new.priority;
        job.minimum_retry_delay = delay;
        job.client = new.client;
        if let Some(t) = new.no_progress_timeout {
            job.no_progress_timeout = t;
        }
        for (url, local) in new.files {
            let file = checked_file(&job, url, local)?;
            job.files.push(file);
        }
        if start {
            job.state = JobState::Queued;
        }
        let claimed = |jobs: &Jobs| {
            job.files
                .iter()
                .find(|f| claimed_elsewhere(jobs, None, &f.local_file))
                .map(|f| JobError::InvalidFile {
                    remote_url: f.remote_url.clone(),
                    local_file: f.local_file.clone(),
                    reason: "another unfinished job writes this local file".into(),
                })
        };
        if let Some(e) = claimed(&self.inner.lock()) {
            return Err(e);
        }
        self.inner.save(job.clone()).await?;
        let state = job.state;
        let lost = {
            // Checked again where it counts: another create may have claimed a file while this one saved.
            let mut jobs = self.inner.lock();
            let lost = claimed(&jobs);
            if lost.is_none() {
                jobs.insert(job.clone());
            }
            lost
        };
        if let Some(e) = lost {
            let _ = self.inner.delete(job.id).await;
            return Err(e);
        }
        self.inner.emit_state(job.id, state, state);
        self.inner.wake.notify_one();
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
            let mut jobs = self.inner.lock();
            let entry = jobs.get_mut(id)?;
            let next = entry
                .job
                .state
                .on(Event::FilesAdded)
                .map_err(|source| JobError::Transition { id, source })?;
            let file = checked_file(&entry.job, remote_url.into(), local_file.into())?;
            if claimed_elsewhere(&jobs, Some(id), &file.local_file) {
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
            let written = self.inner.queue_save(job.clone());
            (job, previous, written)
        };
        durable(written).await?;
        self.inner.emit_state(id, previous, job.state);
        self.inner.wake.notify_one();
        Ok(job)
    }

    /// SetJobState: Cancel, Complete, Resume or Suspend (WMI numbers in [`Action`]).
    pub async fn set_state(&self, id: JobId, action: Action) -> Result<Job, JobError> {
        // The change is made under one lock, so that no other action, runner or scheduler tick sees a
        // half-made one; only waiting for a stopped runner happens outside it.
        let (previous, job, runner, written) = {
            let mut jobs = self.inner.lock();
            let entry = jobs.get_mut(id)?;
            let previous = entry.job.state;
            let next = previous
                .apply(action, entry.job.files.len())
                .map_err(|source| JobError::Transition { id, source })?;
            if action == Action::Complete {
                // Rare and short (a rename and a directory sync per file); under the lock so that no
                // AddFile slips in between the renames and ACKNOWLEDGED.
                finish_files(&entry.job, self.inner.no_symlinks)?;
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
            let written = (!next.is_final()).then(|| self.inner.queue_save(job.clone()));
            (previous, job, runner, written)
        };
        // Once the runner has stopped, nothing writes the temporaries any more.
        if let Some(runner) = runner {
            let _ = runner.task.await;
        }
        if action == Action::Cancel {
            for file in &job.files {
                if let Err(e) = transfer::discard(file, self.inner.no_symlinks) {
                    tracing::warn!(job = %id, file = ?file.local_file, error = %e, "cannot remove a temporary");
                }
            }
        }
        match written {
            None => self.inner.delete(id).await?,
            Some(written) => durable(written).await?,
        }
        self.inner.emit_state(id, previous, job.state);
        self.inner.wake.notify_one();
        Ok(job)
    }

    /// Changes a job's priority; a queued job keeps its place within the new priority.
    pub async fn set_priority(&self, id: JobId, priority: Priority) -> Result<Job, JobError> {
        let job = self.edit(id, |job| job.priority = priority).await?;
        self.inner.wake.notify_one();
        Ok(job)
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

    /// Sets MinimumRetryDelay (at least 5 s) and NoProgressTimeout, each when given.
    pub async fn set_retry_timing(
        &self,
        id: JobId,
        minimum_retry_delay: Option<Duration>,
        no_progress_timeout: Option<Duration>,
    ) -> Result<Job, JobError> {
        if let Some(delay) = minimum_retry_delay.filter(|d| *d < MINIMUM_RETRY_DELAY_FLOOR) {
            return Err(JobError::InvalidSetting(format!(
                "MinimumRetryDelay {delay:?} is under {MINIMUM_RETRY_DELAY_FLOOR:?}"
            )));
        }
        self.edit(id, |job| {
            if let Some(d) = minimum_retry_delay {
                job.minimum_retry_delay = d;
            }
            if let Some(t) = no_progress_timeout {
                job.no_progress_timeout = t;
            }
        })
        .await
    }

    /// Forgets a job in a final state (ACKNOWLEDGED, CANCELLED), which is otherwise kept in memory for the
    /// process's life. Returns the job as it was, or `None` (and keeps it) when it is not final.
    pub fn forget(&self, id: JobId) -> Result<Option<Job>, JobError> {
        let mut jobs = self.inner.lock();
        let entry = jobs.get_mut(id)?;
        if !entry.job.state.is_final() {
            return Ok(None);
        }
        Ok(jobs.map.remove(&id).map(|e| e.job))
    }

    /// Changes a setting of a job that is not final, and stores it.
    async fn edit(&self, id: JobId, change: impl FnOnce(&mut Job)) -> Result<Job, JobError> {
        let (job, written) = {
            let mut jobs = self.inner.lock();
            let entry = jobs.get_mut(id)?;
            if entry.job.state.is_final() {
                let source = super::TransitionError::Final(entry.job.state);
                return Err(JobError::Transition { id, source });
            }
            change(&mut entry.job);
            entry.job.modified = SystemTime::now();
            (entry.job.clone(), self.inner.queue_save(entry.job.clone()))
        };
        durable(written).await?;
        Ok(job)
    }

    /// A job as it is now.
    pub fn job(&self, id: JobId) -> Result<Job, JobError> {
        self.inner.lock().get_mut(id).map(|e| e.job.clone())
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Vec<Job> {
        let mut all: Vec<Job> = self
            .inner
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
        self.inner.stop.cancel();
        let runners: Vec<(JobId, Runner)> = {
            let mut jobs = self.inner.lock();
            jobs.map
                .iter_mut()
                .filter_map(|(id, e)| Some((*id, e.runner.take()?)))
                .collect()
        };
        for (id, runner) in runners {
            runner.cancel.cancel();
            let _ = runner.task.await;
            let written = {
                let mut jobs = self.inner.lock();
                // A job an action made final meanwhile is (being) deleted: never written back.
                jobs.get_mut(id)
                    .ok()
                    .filter(|e| !e.job.state.is_final())
                    .map(|e| self.inner.queue_save(e.job.clone()))
            };
            if let Some(written) = written {
                let _ = durable(written).await;
            }
        }
        // Writes queued in the background (a job's last state, say) are durable before this returns: the
        // caller may stop the runtime next, and with it the writer.
        let (ack, done) = oneshot::channel();
        if self.inner.writes.send(Write::Barrier(ack)).is_ok() {
            let _ = done.await;
        }
        let tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
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

/// Checks a file before it joins a job.
fn checked_file(job: &Job, remote_url: String, local: PathBuf) -> Result<JobFile, JobError> {
    let refuse = |reason: String| JobError::InvalidFile {
        remote_url: remote_url.clone(),
        local_file: local.clone(),
        reason,
    };
    transfer::parse_url(&remote_url).map_err(|f| refuse(f.error.message))?;
    if !local.is_absolute() || transfer::part_path(&local).is_none() {
        return Err(refuse(
            "the local file must be an absolute path to a file".into(),
        ));
    }
    if job.files.iter().any(|f| f.local_file == local) {
        return Err(refuse(
            "the job already has a file with this local path".into(),
        ));
    }
    if job.files.len() >= MAX_FILES_PER_JOB {
        return Err(refuse(format!(
            "a job has at most {MAX_FILES_PER_JOB} files (BITS's MaxFilesPerJob)"
        )));
    }
    // SECURITY: a destination named like a temporary would write (and on Complete rename over) another
    // file's temporary: whoever can create jobs could swap the bytes another job verified.
    if transfer::is_part_name(&local) {
        return Err(refuse("the name is that of a job's temporary file".into()));
    }
    Ok(JobFile::new(remote_url, local))
}

/// The most files one job holds (BITS's MaxFilesPerJob default): a job's JSON, its events and its saves
/// grow with its files.
pub(crate) const MAX_FILES_PER_JOB: usize = 200;

/// SECURITY: two unfinished jobs writing one destination share its temporary: the second would truncate
/// the first's verified bytes and Complete would publish them (an owner overwriting another's download).
/// A file may go to a destination no unfinished job (other than `except`) writes.
fn claimed_elsewhere(jobs: &Jobs, except: Option<JobId>, local: &Path) -> bool {
    jobs.map.values().any(|e| {
        Some(e.job.id) != except
            && !e.job.state.is_final()
            && e.job.files.iter().any(|f| f.local_file == local)
    })
}

impl Jobs {
    fn get_mut(&mut self, id: JobId) -> Result<&mut Entry, JobError> {
        self.map.get_mut(&id).ok_or(JobError::NotFound(id))
    }

    fn insert(&mut self, job: Job) {
        self.seq += 1;
        let entry = Entry {
            job,
            queued: self.seq,
            retry_at: None,
            stalled_since: None,
            runner: None,
            saved_at: Instant::now(),
        };
        self.map.insert(entry.job.id, entry);
    }

    /// Puts the job at the back of its priority's line.
    fn requeue(&mut self, id: JobId) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(e) = self.map.get_mut(&id) {
            e.queued = seq;
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit_state(&self, id: JobId, previous: JobState, state: JobState) {
        let _ = self.events.send(JobEvent::State {
            id,
            previous,
            state,
        });
    }

    /// Writes the job and waits until it is durable.
    async fn save(&self, job: Job) -> Result<(), JobError> {
        durable(self.queue_save(job)).await
    }

    /// Queues the job's write; [`durable`] waits for it. Callers that changed the job under the jobs lock
    /// queue its write before they let the lock go: the writer writes in queue order, so a write queued
    /// later (a runner's, another action's, the Delete of a final state) can never be overtaken by an older
    /// state of the same job, which would bring a deleted job back or keep a stale state on disk.
    fn queue_save(&self, job: Job) -> Option<oneshot::Receiver<Result<(), JobError>>> {
        let (ack, done) = oneshot::channel();
        self.writes
            .send(Write::Save(Box::new(job), Some(ack)))
            .ok()
            .map(|()| done)
    }

    /// Writes the job in the background (in order with every other write).
    fn save_later(&self, job: Job) {
        let _ = self.writes.send(Write::Save(Box::new(job), None));
    }

    async fn delete(&self, id: JobId) -> Result<(), JobError> {
        let (ack, done) = oneshot::channel();
        self.writes
            .send(Write::Delete(id, Some(ack)))
            .map_err(|_| JobError::Stopped)?;
        done.await.map_err(|_| JobError::Stopped)?
    }

    /// Takes the stored jobs in; returns those whose state changed, to be saved.
    fn reload(&self, loaded: Vec<Job>) -> Vec<Job> {
        let mut jobs = self.lock();
        let now = Instant::now();
        let mut changed = Vec::new();
        for mut job in loaded {
            if job.state.is_final() {
                let _ = self.writes.send(Write::Delete(job.id, None));
                continue;
            }
            let state = job.state.on(Event::Reloaded).unwrap_or(job.state);
            if state != job.state {
                job.state = state;
                changed.push(job.clone());
            }
            let id = job.id;
            jobs.insert(job);
            let entry = jobs.map.get_mut(&id).expect("just inserted");
            if entry.job.state == JobState::TransientError {
                // A restart is a good moment to try again; the no-progress clock starts over.
                entry.retry_at = Some(now);
                entry.stalled_since = Some(now);
            }
        }
        changed
    }

    /// One round of the scheduler: due retries and timeouts, then new transfers. Returns when to look again.
    fn tick(self: &Arc<Self>) -> Option<Instant> {
        let now = Instant::now();
        let mut changes = Vec::new();
        let mut next: Option<Instant> = None;
        let mut jobs = self.lock();
        let ids: Vec<JobId> = jobs.map.keys().copied().collect();
        for id in ids {
            let entry = jobs.map.get_mut(&id).expect("listed");
            if entry.job.state != JobState::TransientError {
                continue;
            }
            let stalled = entry.stalled_since.unwrap_or(now);
            let deadline = stalled + entry.job.no_progress_timeout;
            let retry_at = entry.retry_at.unwrap_or(now);
            let event = if deadline <= now {
                Event::NoProgressTimeout
            } else if retry_at <= now {
                Event::RetryDue
            } else {
                next = Some(next.map_or(retry_at.min(deadline), |n| n.min(retry_at).min(deadline)));
                continue;
            };
            let previous = entry.job.state;
            let Ok(state) = previous.on(event) else {
                continue;
            };
            entry.job.state = state;
            entry.job.modified = SystemTime::now();
            entry.retry_at = None;
            changes.push((entry.job.clone(), previous));
            if state == JobState::Queued {
                jobs.requeue(id);
            }
        }
        self.start_transfers(&mut jobs, &mut changes);
        for (job, _) in &changes {
            self.save_later(job.clone());
        }
        drop(jobs);
        for (job, previous) in changes {
            self.emit_state(job.id, previous, job.state);
        }
        next
    }

    /// Starts QUEUED jobs while slots are free: by priority, then by their turn.
    fn start_transfers(self: &Arc<Self>, jobs: &mut Jobs, changes: &mut Vec<(Job, JobState)>) {
        let running = jobs.map.values().filter(|e| e.runner.is_some()).count();
        let mut waiting: Vec<(Priority, u64, JobId)> = jobs
            .map
            .values()
            .filter(|e| e.job.state == JobState::Queued && e.runner.is_none())
            .map(|e| (e.job.priority, e.queued, e.job.id))
            .collect();
        waiting.sort();
        for (_, _, id) in waiting
            .into_iter()
            .take(self.max_transfers.saturating_sub(running))
        {
            let entry = jobs.map.get_mut(&id).expect("listed");
            let Ok(state) = entry.job.state.on(Event::Started) else {
                continue;
            };
            entry.job.state = state;
            entry.job.modified = SystemTime::now();
            let cancel = CancellationToken::new();
            let task = tokio::spawn(run(self.clone(), id, cancel.clone()));
            entry.runner = Some(Runner { cancel, task });
            changes.push((entry.job.clone(), JobState::Queued));
        }
    }

    /// A runner's report about its current file: record it, move CONNECTING to TRANSFERRING, restart the
    /// no-progress clock on new bytes, and write progress every `save_interval`.
    fn progress(&self, id: JobId, index: usize, file: &JobFile, cancel: &CancellationToken) {
        let mut jobs = self.lock();
        let Some(entry) = jobs.map.get_mut(&id) else {
            return;
        };
        if cancel.is_cancelled() || !entry.job.state.is_active() {
            return;
        }
        let Some(slot) = entry.job.files.get_mut(index) else {
            return;
        };
        if file.bytes_transferred > slot.bytes_transferred {
            entry.stalled_since = None;
        }
        *slot = file.clone();
        let previous = entry.job.state;
        let state = previous.on(Event::Receiving).unwrap_or(previous);
        entry.job.state = state;
        let now = Instant::now();
        let due = now.duration_since(entry.saved_at) >= self.save_interval;
        if due || state != previous {
            entry.saved_at = now;
            entry.job.modified = SystemTime::now();
            self.save_later(entry.job.clone());
        }
        let _ = self.events.send(JobEvent::Progress {
            id,
            bytes_transferred: entry.job.bytes_transferred(),
            bytes_total: entry.job.bytes_total(),
            files_transferred: entry.job.files_transferred(),
        });
        if state != previous {
            self.emit_state(id, previous, state);
        }
    }

    /// A runner's end: every file transferred (`None`) or a failure.
    fn finished(&self, id: JobId, failure: Option<(usize, Failure)>, cancel: &CancellationToken) {
        let change = {
            let mut jobs = self.lock();
            let Some(entry) = jobs.map.get_mut(&id) else {
                return;
            };
            if cancel.is_cancelled() {
                return;
            }
            entry.runner = None;
            let previous = entry.job.state;
            let now = SystemTime::now();
            let event = match failure {
                None => {
                    entry.job.completed = Some(now);
                    entry.job.error = None;
                    Event::AllTransferred
                }
                Some((index, f)) => {
                    let mut error = f.error;
                    error.file = Some(index);
                    entry.job.error = Some(error);
                    if f.transient {
                        entry.job.transient_error_count += 1;
                        let delay = entry
                            .job
                            .minimum_retry_delay
                            .max(f.retry_after.unwrap_or_default());
                        let at = Instant::now();
                        entry.retry_at = Some(at + delay);
                        entry.stalled_since.get_or_insert(at);
                        Event::TransientFailure
                    } else {
                        Event::FatalFailure
                    }
                }
            };
            let Ok(state) = previous.on(event) else {
                return;
            };
            entry.job.state = state;
            entry.job.modified = now;
            // Queued under the lock: an action that follows this change (Complete on TRANSFERRED, whose
            // Delete must come last) queues its write after this one.
            self.save_later(entry.job.clone());
            (state, previous)
        };
        self.emit_state(id, change.1, change.0);
        self.wake.notify_one();
    }
}

/// The scheduler: a tick whenever something changed or a timer is due, until shutdown.
async fn schedule(inner: Arc<Inner>) {
    loop {
        let next = inner.tick();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = inner.stop.cancelled() => return,
            _ = inner.wake.notified() => {}
            _ = sleep => {}
        }
    }
}

/// A job's runner: its unfinished files in order, until done, a failure, or cancellation.
async fn run(inner: Arc<Inner>, id: JobId, cancel: CancellationToken) {
    loop {
        let next = {
            let jobs = inner.lock();
            let Some(entry) = jobs.map.get(&id) else {
                return;
            };
            entry
                .job
                .files
                .iter()
                .enumerate()
                .find(|(_, f)| !f.completed)
                .map(|(i, f)| (i, f.clone(), entry.job.client.clone()))
        };
        let Some((index, mut file, settings)) = next else {
            inner.finished(id, None, &cancel);
            return;
        };
        let mut report = |f: &JobFile| inner.progress(id, index, f, &cancel);
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = inner.fetch.fetch(&settings, &mut file, &mut report) => r,
        };
        if let Err(failure) = result {
            inner.finished(id, Some((index, failure)), &cancel);
            return;
        }
        inner.progress(id, index, &file, &cancel);
    }
}

/// Waits until a queued write is durable.
async fn durable(done: Option<oneshot::Receiver<Result<(), JobError>>>) -> Result<(), JobError> {
    done.ok_or(JobError::Stopped)?
        .await
        .map_err(|_| JobError::Stopped)?
}

/// The store's writer: one write at a time, in the order asked, each on a blocking thread.
async fn write_in_order(store: Arc<dyn JobStore>, mut queue: mpsc::UnboundedReceiver<Write>) {
    while let Some(write) = queue.recv().await {
        let store = store.clone();
        let (result, ack) = match write {
            Write::Barrier(ack) => {
                let _ = ack.send(());
                continue;
            }
            Write::Save(job, ack) => {
                let r = tokio::task::spawn_blocking(move || store.save(&job)).await;
                (r, ack)
            }
            Write::Delete(id, ack) => {
                let r = tokio::task::spawn_blocking(move || store.delete(id)).await;
                (r, ack)
            }
        };
        let result = result.unwrap_or(Err(JobError::Stopped));
        match ack {
            Some(ack) => drop(ack.send(result)),
            None => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "cannot save a job");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::jobs::{ErrorContext, TransitionError};

    /// A fetcher that fails transiently `fail` times (optionally with a Retry-After), then succeeds; it
    /// counts its calls.
    struct Scripted {
        calls: Arc<AtomicUsize>,
        fail: usize,
        retry_after: Option<Duration>,
        /// How long a successful fetch takes.
        delay: Duration,
    }

    impl Fetch for Scripted {
        fn fetch<'a>(
            &'a self,
            _settings: &'a ClientSettings,
            file: &'a mut JobFile,
            report: transfer::Report<'a>,
        ) -> transfer::Fetching<'a> {
            Box::pin(async move {
                let n = self.calls.fetch_add(1, Ordering::SeqCst);
                if n < self.fail {
                    let mut f = transfer::classify(
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        &Default::default(),
                    );
                    f.retry_after = self.retry_after;
                    return Err(f);
                }
                tokio::time::sleep(self.delay).await;
                file.bytes_total = Some(10);
                file.bytes_transferred = 10;
                file.completed = true;
                report(file);
                Ok(())
            })
        }
    }

    async fn manager(fail: usize, retry_after: Option<Duration>) -> (JobManager, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let fetch = Scripted {
            calls: calls.clone(),
            fail,
            retry_after,
            delay: Duration::ZERO,
        };
        let m = JobManager::builder().fetch(fetch).start().await.unwrap();
        (m, calls)
    }

    fn one_file(name: &str) -> NewJob {
        NewJob::new(name).file("http://127.0.0.1:9/f", format!("/nonexistent/{name}"))
    }

    /// Waits (on the paused clock) until the job is in `state`; at most `within`.
    async fn wait_for(m: &JobManager, id: JobId, state: JobState, within: Duration) -> Instant {
        let deadline = Instant::now() + within;
        while m.job(id).unwrap().state != state {
            assert!(
                Instant::now() < deadline,
                "{id} is {} after {within:?}, not {state}",
                m.job(id).unwrap().state
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Instant::now()
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_error_is_retried_after_the_minimum_retry_delay() {
        let (m, calls) = manager(2, None).await;
        let start = Instant::now();
        let job = m
            .create_job(one_file("a").minimum_retry_delay(Duration::from_secs(60)))
            .await
            .unwrap();
        wait_for(&m, job.id, JobState::TransientError, Duration::from_secs(1)).await;
        let error = m.error(job.id).unwrap().unwrap();
        assert_eq!(
            (error.context, error.code.as_str()),
            (ErrorContext::ServerResponse, "http_503")
        );
        // Not before 60 s ...
        tokio::time::sleep(Duration::from_secs(59)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // ... and then twice more (the second retry after 60 s again), then done.
        let done = wait_for(&m, job.id, JobState::Transferred, Duration::from_secs(200)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let waited = done - start;
        assert!(
            waited >= Duration::from_secs(120) && waited < Duration::from_secs(122),
            "{waited:?}"
        );
        let job = m.job(job.id).unwrap();
        assert_eq!(job.transient_error_count, 2);
        assert_eq!(job.error, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_longer_retry_after_wins_over_the_minimum_retry_delay() {
        let (m, calls) = manager(1, Some(Duration::from_secs(300))).await;
        let start = Instant::now();
        let job = m
            .create_job(one_file("a").minimum_retry_delay(Duration::from_secs(5)))
            .await
            .unwrap();
        let done = wait_for(&m, job.id, JobState::Transferred, Duration::from_secs(400)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(
            done - start >= Duration::from_secs(300),
            "{:?}",
            done - start
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_progress_for_the_timeout_is_an_error() {
        let (m, calls) = manager(usize::MAX, None).await;
        let start = Instant::now();
        let job = m
            .create_job(
                one_file("a")
                    .minimum_retry_delay(Duration::from_secs(30))
                    .no_progress_timeout(Duration::from_secs(100)),
            )
            .await
            .unwrap();
        let failed = wait_for(&m, job.id, JobState::Error, Duration::from_secs(200)).await;
        let elapsed = failed - start;
        assert!(
            elapsed >= Duration::from_secs(100) && elapsed < Duration::from_secs(101),
            "{elapsed:?}"
        );
        // Tried at 0, 30, 60, 90 s; the error of the last try is kept for GetError.
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert_eq!(m.error(job.id).unwrap().unwrap().code, "http_503");
        // Resume starts over.
        m.set_state(job.id, Action::Resume).await.unwrap();
        wait_for(&m, job.id, JobState::TransientError, Duration::from_secs(1)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn priorities_go_first_and_one_priority_takes_turns() {
        let m = JobManager::builder()
            .max_transfers(1)
            .fetch(Scripted {
                calls: Arc::new(AtomicUsize::new(0)),
                fail: 0,
                retry_after: None,
                delay: Duration::from_secs(10),
            })
            .start()
            .await
            .unwrap();
        let mut events = m.subscribe();
        // The one slot is taken; then jobs queue up in an order unlike their priorities.
        let blocker = m
            .create_job(one_file("blocker").priority(Priority::Low))
            .await
            .unwrap();
        wait_for(&m, blocker.id, JobState::Connecting, Duration::from_secs(1)).await;
        for (name, p) in [
            ("low", Priority::Low),
            ("n1", Priority::Normal),
            ("high", Priority::High),
            ("n2", Priority::Normal),
            ("fg", Priority::Foreground),
        ] {
            m.create_job(one_file(name).priority(p)).await.unwrap();
        }
        let mut order = Vec::new();
        while order.len() < 6 {
            let event = tokio::time::timeout(Duration::from_secs(100), events.recv())
                .await
                .unwrap()
                .unwrap();
            if let JobEvent::State {
                id,
                state: JobState::Connecting,
                ..
            } = event
            {
                order.push(m.job(id).unwrap().display_name);
            }
        }
        assert_eq!(order, ["blocker", "fg", "high", "n1", "n2", "low"]);
        // Never more than one at once.
        assert!(m.jobs().iter().filter(|j| j.state.is_active()).count() <= 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_job_comes_back_queued_after_shutdown_and_suspend_stops_it() {
        let store = Arc::new(MemoryStore::new());
        let calls = Arc::new(AtomicUsize::new(0));
        let slow = |calls: &Arc<AtomicUsize>| Scripted {
            calls: calls.clone(),
            fail: 0,
            retry_after: None,
            delay: Duration::from_secs(3600),
        };
        let m = JobManager::builder()
            .store(store.clone())
            .fetch(slow(&calls))
            .start()
            .await
            .unwrap();
        let job = m.create_job(one_file("a")).await.unwrap();
        wait_for(&m, job.id, JobState::Connecting, Duration::from_secs(1)).await;
        m.shutdown().await;
        assert_eq!(store.load_all().unwrap()[0].state, JobState::Connecting);
        let m = JobManager::builder()
            .store(store.clone())
            .fetch(slow(&calls))
            .start()
            .await
            .unwrap();
        assert!(
            m.job(job.id).unwrap().state.is_active()
                || m.job(job.id).unwrap().state == JobState::Queued
        );
        wait_for(&m, job.id, JobState::Connecting, Duration::from_secs(1)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Suspend stops the runner: nothing completes it later.
        let suspended = m.set_state(job.id, Action::Suspend).await.unwrap();
        assert_eq!(suspended.state, JobState::Suspended);
        tokio::time::sleep(Duration::from_secs(7200)).await;
        assert_eq!(m.job(job.id).unwrap().state, JobState::Suspended);
        assert_eq!(store.load_all().unwrap()[0].state, JobState::Suspended);
    }

    #[tokio::test(start_paused = true)]
    async fn actions_follow_the_table() {
        let (m, _) = manager(0, None).await;
        let empty = m.create_job(NewJob::new("empty")).await.unwrap();
        assert_eq!(empty.state, JobState::Suspended);
        let err = m.set_state(empty.id, Action::Resume).await.unwrap_err();
        assert!(
            matches!(
                err,
                JobError::Transition {
                    source: TransitionError::NoFiles,
                    ..
                }
            ),
            "{err}"
        );
        let err = m.set_state(empty.id, Action::Complete).await.unwrap_err();
        assert!(matches!(
            err,
            JobError::Transition {
                source: TransitionError::NotTransferred(_),
                ..
            }
        ));
        m.set_state(empty.id, Action::Cancel).await.unwrap();
        let err = m.set_state(empty.id, Action::Complete).await.unwrap_err();
        assert!(matches!(
            err,
            JobError::Transition {
                source: TransitionError::Final(JobState::Cancelled),
                ..
            }
        ));
        assert!(m.add_file(empty.id, "http://h/x", "/tmp/x").await.is_err());
        assert!(matches!(m.job(JobId::random()), Err(JobError::NotFound(_))));
        assert!(matches!(
            m.create_job(one_file("a").minimum_retry_delay(Duration::from_secs(4)))
                .await,
            Err(JobError::InvalidSetting(_))
        ));
        for (url, local) in [
            ("ftp://h/x", "/tmp/x"),
            ("http://h/x", "relative"),
            ("http://h/x", "/"),
        ] {
            assert!(
                matches!(
                    m.create_job(NewJob::new("bad").file(url, local)).await,
                    Err(JobError::InvalidFile { .. })
                ),
                "{url} {local}"
            );
        }
        let dup = m.create_job(one_file("d").suspended(true)).await.unwrap();
        assert!(m
            .add_file(dup.id, "http://h/y", "/nonexistent/d")
            .await
            .is_err());
    }

    /// A store shared with the test, to read what the manager left in it.
    struct Shared(Arc<MemoryStore>);

    impl JobStore for Shared {
        fn load_all(&self) -> Result<Vec<Job>, JobError> {
            self.0.load_all()
        }
        fn save(&self, job: &Job) -> Result<(), JobError> {
            self.0.save(job)
        }
        fn delete(&self, id: JobId) -> Result<(), JobError> {
            self.0.delete(id)
        }
    }

    /// A caller that cancels a job the moment it sees TRANSFERRED (as `bcs download` completes it) must
    /// find it gone from the store: the runner's write of TRANSFERRED is queued before the event goes out,
    /// so the Delete comes after it. (Before, the runner queued it after the event, and now and then the
    /// deleted job came back on disk.) Many rounds on worker threads, bounded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_action_on_a_state_just_reached_is_never_overwritten_on_disk() {
        let store = Arc::new(MemoryStore::new());
        let fetch = Scripted {
            calls: Arc::new(AtomicUsize::new(0)),
            fail: 0,
            retry_after: None,
            delay: Duration::ZERO,
        };
        let m = JobManager::builder()
            .store(Shared(store.clone()))
            .fetch(fetch)
            .max_transfers(4)
            .start()
            .await
            .unwrap();
        let mut events = m.subscribe();
        for round in 0..300 {
            let id = m
                .create_job(one_file(&format!("r{round}")))
                .await
                .unwrap()
                .id;
            loop {
                let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                    .await
                    .expect("an event within 10 s")
                    .expect("no lag");
                if matches!(event, JobEvent::State { id: i, state: JobState::Transferred, .. } if i == id)
                {
                    break;
                }
            }
            m.set_state(id, Action::Cancel).await.unwrap();
        }
        m.shutdown().await;
        let left = store.load_all().unwrap();
        assert!(
            left.is_empty(),
            "{} cancelled jobs came back: {:?}",
            left.len(),
            left.first().map(|j| j.state)
        );
    }

    /// SECURITY (see `claimed_elsewhere`): one destination, one unfinished job; no destination named like a
    /// temporary; at most MAX_FILES_PER_JOB files.
    #[tokio::test]
    async fn destinations_are_not_shared_nor_temporaries_and_files_are_bounded() {
        let (m, _) = manager(0, None).await;
        let first = m
            .create_job(one_file("same").suspended(true))
            .await
            .unwrap();
        let again = m.create_job(one_file("same").suspended(true)).await;
        assert!(
            matches!(again, Err(JobError::InvalidFile { ref reason, .. }) if reason.contains("another unfinished job")),
            "{again:?}"
        );
        let other = m
            .create_job(one_file("other").suspended(true))
            .await
            .unwrap();
        let add = m
            .add_file(other.id, "http://127.0.0.1:9/g", "/nonexistent/same")
            .await;
        assert!(matches!(add, Err(JobError::InvalidFile { .. })), "{add:?}");
        let part = m
            .add_file(other.id, "http://127.0.0.1:9/g", "/nonexistent/.x.bcs-part")
            .await;
        assert!(
            matches!(part, Err(JobError::InvalidFile { ref reason, .. }) if reason.contains("temporary")),
            "{part:?}"
        );
        // Once the first job is final, its destination is free again.
        m.set_state(first.id, Action::Cancel).await.unwrap();
        m.add_file(other.id, "http://127.0.0.1:9/g", "/nonexistent/same")
            .await
            .unwrap();
        let mut big = NewJob::new("big").suspended(true);
        for i in 0..=MAX_FILES_PER_JOB {
            big = big.file("http://127.0.0.1:9/f", format!("/nonexistent/big/{i}"));
        }
        assert!(matches!(
            m.create_job(big).await,
            Err(JobError::InvalidFile { .. })
        ));
        m.shutdown().await;
    }
}
