//! What subscribers hear about jobs: [`JobEvent`]s, sent on one broadcast channel that keeps the last
//! [`CAPACITY`] events for its slowest receiver. Every `JobManager::subscribe` receiver and every per-job
//! `JobWatch` reads that channel.
//!
//! A send never waits: a receiver more than `CAPACITY` events behind loses the oldest ones
//! (`RecvError::Lagged`), so a slow subscriber never slows a transfer.

use super::job::JobId;
use super::state::JobState;

/// How many events the channel keeps for its slowest receiver.
pub(super) const CAPACITY: usize = 1024;
// `JobManager::subscribe` and the README give the number.
const _: () = assert!(CAPACITY == 1024);

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

impl JobEvent {
    /// The job the event is about.
    pub fn id(&self) -> JobId {
        match self {
            JobEvent::State { id, .. } | JobEvent::Progress { id, .. } => *id,
        }
    }
}
