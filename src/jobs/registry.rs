//! The manager's shared core, [`Registry`]: every job of the process in one map behind one mutex (the
//! jobs lock), with what the API, the scheduler and the runners share beside it — the fetcher, the event
//! channel, the store's [`Writer`], the scheduler's wake-up and the stop signal.
//!
//! Invariants: the jobs lock is never held across an `.await`; every state change goes through `state`'s
//! transition function under the lock, has its write queued to the [`Writer`] before the lock is let go
//! (the write order; see `writer`), and is broadcast as a [`JobEvent`] after.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::JobEvent;
use super::job::{Job, JobId};
use super::job_error::JobError;
use super::state::JobState;
use super::transfer::Fetch;
use super::writer::Writer;
use crate::lock::Recover;

/// What the parts of one manager share.
pub(super) struct Registry {
    pub(super) jobs: Mutex<Jobs>,
    pub(super) fetch: Arc<dyn Fetch>,
    pub(super) events: broadcast::Sender<JobEvent>,
    /// Wakes the scheduler: a job was queued or a transfer slot freed.
    pub(super) wake: Notify,
    pub(super) writer: Writer,
    pub(super) max_transfers: usize,
    pub(super) save_interval: Duration,
    pub(super) stop: CancellationToken,
    /// See `JobManagerBuilder::no_symlinks`.
    pub(super) no_symlinks: bool,
}

/// The jobs, behind the jobs lock.
#[derive(Default)]
pub(super) struct Jobs {
    pub(super) map: HashMap<JobId, Entry>,
    /// Counts entries into QUEUED: the order within a priority.
    seq: u64,
}

/// One job and what the scheduler keeps about it.
pub(super) struct Entry {
    pub(super) job: Job,
    pub(super) queued: u64,
    pub(super) retry_at: Option<Instant>,
    /// Since when a job in trouble has made no progress (the NoProgressTimeout clock).
    pub(super) stalled_since: Option<Instant>,
    pub(super) runner: Option<RunnerTask>,
    pub(super) saved_at: Instant,
}

/// A running job's runner task and the token that stops it.
pub(super) struct RunnerTask {
    pub(super) cancel: CancellationToken,
    pub(super) task: JoinHandle<()>,
}

impl Jobs {
    pub(super) fn get_mut(&mut self, id: JobId) -> Result<&mut Entry, JobError> {
        self.map.get_mut(&id).ok_or(JobError::NotFound(id))
    }

    pub(super) fn insert(&mut self, job: Job) {
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
    pub(super) fn requeue(&mut self, id: JobId) {
        self.seq += 1;
        let seq = self.seq;
        if let Some(e) = self.map.get_mut(&id) {
            e.queued = seq;
        }
    }

    /// SECURITY: two unfinished jobs writing one destination share its temporary: the second would
    /// truncate the first's verified bytes and Complete would publish them (an owner overwriting another's
    /// download). A file may go to a destination no unfinished job (other than `except`) writes.
    pub(super) fn claimed_elsewhere(&self, except: Option<JobId>, local: &Path) -> bool {
        self.map.values().any(|e| {
            Some(e.job.id) != except
                && !e.job.state.is_final()
                && e.job.files.iter().any(|f| f.local_file == local)
        })
    }
}

/// `at + wait`, or for a wait beyond the clock's range (a stored job's `u64::MAX` seconds) the latest of
/// about a century later and `at`: never a panic.
pub(super) fn later(at: Instant, wait: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    at.checked_add(wait)
        .or_else(|| at.checked_add(CENTURY))
        .unwrap_or(at)
}

impl Registry {
    pub(super) fn lock(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().recover()
    }

    /// A job as it is now.
    pub(super) fn job(&self, id: JobId) -> Result<Job, JobError> {
        self.lock().get_mut(id).map(|e| e.job.clone())
    }

    pub(super) fn emit_state(&self, id: JobId, previous: JobState, state: JobState) {
        let _ = self.events.send(JobEvent::State {
            id,
            previous,
            state,
        });
    }
}
