//! `/v1/jobs`: download jobs run by the service (the original's BitsClientJob through WMI), and a
//! server-sent event stream of a job's progress and state changes. The files: `sandbox` (the download
//! root and where a caller's files may go), `wire` (what the API shows and takes), `handlers` (one per
//! operation, and who may see which job), `sse` (the event stream).
//!
//! Not defended here, by design (BITS lets any user own download jobs): a caller who may create jobs can
//! make the service fetch any URL it can reach and fill the download root's file system. A service that
//! must not do that for remote callers who are not administrators gives them no account.

pub(super) mod handlers;
mod sandbox;
mod sse;
mod wire;

pub use sandbox::ServiceJobs;
pub use wire::{
    ChangeJob, CreateJob, CredentialsView, FileView, JobErrorView, JobStreamEvent, JobView,
    NameOrNumber, NewFile, ProxyView, SetCredentials, SetState,
};
