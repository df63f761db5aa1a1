//! BITS-style background download jobs (BITS's job model): a [`JobManager`] runs [`Job`]s — each a list of remote
//! URLs to local files — by priority, a bounded number at once, resuming with validated ranged GETs,
//! retrying transient failures, and keeping every job in a [`JobStore`] so that jobs survive restarts.
//!
//! | module | owns |
//! |---|---|
//! | `state` | [`JobState`], [`Priority`], [`Action`] with the interface's numbers; the transition function (sans-IO) |
//! | `job` | [`Job`], [`JobFile`], [`JobId`], [`JobFailure`] (GetError): serde data |
//! | `job_error` | [`JobError`], the domain's one error enum |
//! | `job_store` | [`JobStore`], [`DirStore`] (one JSON file per job, atomic writes), [`MemoryStore`] |
//! | `transfer` | one file: HTTP/1.1 with ranged, validated GETs; the temporary file; the digest check; pace; failures |
//! | `new_job` | [`NewJob`] and the checks on a job's settings and files |
//! | `events` | [`JobEvent`] and the broadcast channel's size |
//! | `manager` | [`JobManager`] and its builder: the public calls |
//! | `registry` | the jobs behind the one lock, and what the manager's parts share |
//! | `scheduler` | which QUEUED job runs next (priority, turns, `max_transfers`), retry delays, no-progress timeouts |
//! | `runner` | one running job's files in order, its progress and its end |
//! | `writer` | the store's writes, in the order queued under the lock |
//! | `watch` | [`JobWatch`]: one job's events, its current state after a lag |
//!
//! Imports go one way: `manager` uses the parts below it and none uses `manager`; `scheduler` starts
//! `runner`s; `scheduler`, `runner` and `watch` work on `registry`, which queues to `writer`; `transfer`
//! knows only `job` and `job_error` (and `job_store`'s directory sync).
//!
//! Files become visible under their final names only on Complete; until then they are `.NAME.bcs-part`
//! beside the destination. TLS, proxies and credentials come from [`crate::client`], per job.

mod events;
mod job;
mod job_error;
mod job_store;
mod manager;
mod new_job;
mod registry;
mod runner;
mod scheduler;
mod state;
#[cfg(test)]
mod tests;
mod transfer;
mod watch;
mod writer;

pub use events::JobEvent;
pub use job::{
    ErrorContext, Job, JobFailure, JobFile, JobId, JobIdError, Validators,
    DEFAULT_MINIMUM_RETRY_DELAY, DEFAULT_NO_PROGRESS_TIMEOUT, LONGEST_JOB_TIMING,
    MINIMUM_RETRY_DELAY_FLOOR,
};
pub use job_error::JobError;
pub use job_store::{make_private_dir, DirStore, JobStore, MemoryStore, PrivateDirError};
pub use manager::{JobManager, JobManagerBuilder};
pub use new_job::NewJob;
pub use state::{Action, Event, JobState, Priority, TransitionError, UnknownValue};
pub use transfer::{part_path, LowSpeedLimit};
pub use watch::JobWatch;
