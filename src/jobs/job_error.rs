//! [`JobError`]: why an operation of the job manager, its store or a job's files failed (the jobs
//! domain's one error enum; a transfer's own failures are data, `JobFailure`, kept with the job).

use std::path::PathBuf;

use super::job::JobId;
use super::state::TransitionError;

/// Why a job operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// No job has this id.
    #[error("no job {0}")]
    NotFound(JobId),
    /// The job's state does not allow the change (BITS' BG_E_INVALID_STATE).
    #[error("job {id} cannot do that now")]
    Transition {
        /// The job.
        id: JobId,
        /// Which rule refused it.
        #[source]
        source: TransitionError,
    },
    /// A file that cannot be added (a URL that is not absolute http, a relative or repeated local path).
    #[error("cannot add {remote_url:?} → {local_file:?}: {reason}")]
    InvalidFile {
        /// The remote URL given.
        remote_url: String,
        /// The local path given.
        local_file: PathBuf,
        /// Why.
        reason: String,
    },
    /// A property value outside its range (a MinimumRetryDelay under 5 s).
    #[error("invalid job setting: {0}")]
    InvalidSetting(String),
    /// A local file could not be put in place or removed.
    #[error("cannot finish the local file {path:?}")]
    Local {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The job store could not be read or written.
    #[error("the job store failed at {path:?}")]
    Store {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A stored job could not be read back.
    #[error("the stored job {path:?} is unreadable: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The job store's directory is not this user's alone (another owner, or writable by others).
    #[error("the job store {path:?} {reason}")]
    NotPrivate {
        /// The directory.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// The manager was shut down.
    #[error("the job manager has stopped")]
    Stopped,
}
