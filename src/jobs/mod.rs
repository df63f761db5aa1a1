//! BITS-style background download jobs (BITS's job model): a [`JobManager`] runs [`Job`]s — each a list of remote
//! URLs to local files — by priority, a bounded number at once, resuming with validated ranged GETs,
//! retrying transient failures, and keeping every job in a [`JobStore`] so that jobs survive restarts.
//!
//! | module | owns |
//! |---|---|
//! | `state` | [`JobState`], [`Priority`], [`Action`] with the interface's numbers; the transition function (sans-IO) |
//! | `job` | [`Job`], [`JobFile`], [`JobId`], [`JobFailure`] (GetError): serde data |
//! | `store` | [`JobStore`], [`DirStore`] (one JSON file per job, atomic writes), [`MemoryStore`] |
//! | `transfer` | one file: HTTP/1.1 with ranged, validated GETs; the temporary file; the digest check; pace; failures |
//! | `manager` | [`JobManager`]: scheduling, retries, timeouts, events, persistence |
//!
//! Files become visible under their final names only on Complete; until then they are `.NAME.bcs-part`
//! beside the destination. TLS, proxies and credentials come from [`crate::client`], per job.

mod job;
mod job_error;
mod job_store;
mod manager;
mod state;
mod transfer;

pub use job::{
    ErrorContext, Job, JobFailure, JobFile, JobId, JobIdError, Validators,
    DEFAULT_MINIMUM_RETRY_DELAY, DEFAULT_NO_PROGRESS_TIMEOUT, MINIMUM_RETRY_DELAY_FLOOR,
};
pub use job_error::JobError;
pub use job_store::{make_private_dir, DirStore, JobStore, MemoryStore, PrivateDirError};
pub use manager::{JobEvent, JobManager, JobManagerBuilder, NewJob};
pub use state::{Action, Event, JobState, Priority, TransitionError, UnknownValue};
pub use transfer::{part_path, LowSpeedLimit};
