//! BITS-style background download jobs (BITS's job model): a [`JobManager`] runs [`Job`]s — each a list of remote
//! URLs to local files — by priority, a bounded number at once, resuming with validated ranged GETs,
//! retrying transient failures, and keeping every job in a [`JobStore`] so that jobs survive restarts.
//!
//! | module | owns |
//! |---|---|
//! | `state` | [`JobState`], [`Priority`], [`Action`] with the interface's numbers; the transition function (sans-IO) |
//! | `job` | [`Job`], [`JobFile`], [`JobId`], [`JobFailure`] (GetError): serde data |
//! | `store` | [`JobStore`], [`DirStore`] (one JSON file per job, atomic writes), [`MemoryStore`] |
//! | `transfer` | one file over HTTP/1.1: size and validators, ranged GETs with If-Range, restarts, classification |
//! | `pace` | a job's own bandwidth limit, held in the transfer loop |
//! | `digest` | the check of a transferred file against the server's `Repr-Digest` (RFC 9530) |
//! | `manager` | [`JobManager`]: scheduling, retries, timeouts, events, persistence |
//!
//! Files become visible under their final names only on Complete; until then they are `.NAME.bcs-part`
//! beside the destination. TLS, proxies and credentials come from [`crate::client`], per job.

mod job;
mod job_store;
mod manager;
mod pace;
mod state;
mod transfer;
mod verify;

use std::path::PathBuf;

pub use job::{
    ErrorContext, Job, JobFailure, JobFile, JobId, JobIdError, Validators,
    DEFAULT_MINIMUM_RETRY_DELAY, DEFAULT_NO_PROGRESS_TIMEOUT, MINIMUM_RETRY_DELAY_FLOOR,
};
pub use job_store::{make_private_dir, DirStore, JobStore, MemoryStore, PrivateDirError};
pub use manager::{JobEvent, JobManager, JobManagerBuilder, NewJob};
pub use state::{Action, Event, JobState, Priority, TransitionError, UnknownValue};
pub use transfer::{part_path, LowSpeedLimit};

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
