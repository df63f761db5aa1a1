//! `/v1/jobs`: download jobs run by the service (the original's BitsClientJob through WMI), and a
//! server-sent event stream of a job's progress and state changes. The files: `wire` (what the API shows
//! and takes), `handlers` (one per operation, and who may see which job), `sse` (the event stream). Where
//! a job's files may go is the service's download root, a sandbox (`service::sandbox`).
//!
//! A caller who is not an administrator may not make a job reach loopback, link-local or this machine's
//! own addresses unless an administrator allowed them (`service::job_policy`). Not defended here, by
//! design (BITS lets any user own download jobs): such a caller can make the service fetch any public URL
//! and fill the download root's file system up to the per-caller job cap. A service that must not do that
//! for remote callers who are not administrators gives them no account.

pub(super) mod handlers;
mod sse;
mod wire;

pub use wire::{
    ChangeJob, CreateJob, CredentialsView, FileView, JobErrorView, JobFileProgress,
    JobProgressEvent, JobStateEvent, JobStreamEvent, JobView, NameOrNumber, NewFile, ProxyView,
    SetCredentials, SetState,
};
