//! [`JobWatch`]: one job's events, for a caller that waits on a job rather than filtering every job's
//! broadcast by id.
//!
//! The broadcast drops the oldest events for a receiver that falls too far behind. A watcher that lagged
//! does not end and does not guess: it yields the job's current state (read under the jobs lock) in place
//! of what it lost, then goes on with the events sent after that read, so a waiter always learns where
//! the job is now — a final state included.

use std::sync::Arc;

use tokio::sync::broadcast::{self, error::RecvError};

use super::events::JobEvent;
use super::job::JobId;
use super::job_error::JobError;
use super::registry::Registry;
use super::state::JobState;

/// One job's events from the moment it was made (`JobManager::watch`).
pub struct JobWatch {
    id: JobId,
    registry: Arc<Registry>,
    events: broadcast::Receiver<JobEvent>,
    /// The state last yielded (or read when the watch began).
    last: JobState,
    /// The job is final, forgotten or its manager gone: nothing more will come.
    ended: bool,
}

impl std::fmt::Debug for JobWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobWatch")
            .field("id", &self.id)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl JobWatch {
    pub(super) fn new(registry: Arc<Registry>, id: JobId) -> Result<JobWatch, JobError> {
        // Subscribed before the job is read, so that no change after the read goes unheard.
        let events = registry.events.subscribe();
        let last = registry.job(id)?.state;
        Ok(JobWatch {
            id,
            registry,
            events,
            last,
            ended: last.is_final(),
        })
    }

    /// The job watched.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// The job's next event: a [`JobEvent::State`] or [`JobEvent::Progress`] of this job, in the order
    /// sent. After a lag, a `JobEvent::State` whose `state` is the job's current one and whose `previous`
    /// is the state this watcher last yielded (equal when the job did not change state meanwhile).
    ///
    /// `None` once the job's final state (ACKNOWLEDGED, CANCELLED) has been yielded, when the job was
    /// forgotten, and after the manager shut down.
    pub async fn next(&mut self) -> Option<JobEvent> {
        while !self.ended {
            let received = tokio::select! {
                biased;
                r = self.events.recv() => r,
                () = self.registry.stop.cancelled() => return None,
            };
            match received {
                Ok(event) if event.id() == self.id => return Some(self.seen(event)),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => return self.catch_up(),
                Err(RecvError::Closed) => self.ended = true,
            }
        }
        None
    }

    /// Notes a state yielded; a final one ends the watch.
    fn seen(&mut self, event: JobEvent) -> JobEvent {
        if let JobEvent::State { state, .. } = event {
            self.last = state;
            self.ended = state.is_final();
        }
        event
    }

    /// The job as it is now, in place of the events the lag lost.
    fn catch_up(&mut self) -> Option<JobEvent> {
        // Only events sent from here on: those still buffered are older than the state read below. A
        // change made between the two is reported twice, never lost.
        self.events = self.events.resubscribe();
        let Ok(job) = self.registry.job(self.id) else {
            self.ended = true;
            return None;
        };
        Some(self.seen(JobEvent::State {
            id: self.id,
            previous: self.last,
            state: job.state,
        }))
    }
}
