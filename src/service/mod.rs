//! Management: what `bcs serve` runs beside the file server, in place of the original's WMI provider.
//!
//! A management call is: a listener ([`serve_local`], a Unix socket; [`serve_remote`], TLS) → who is
//! calling (the peer's uid, or the URL groups' authentication) → the admin rule → one operation on a
//! [`Managed`] server (the library's own calls) → the store records it with who made it → JSON out
//! ([`router`], whose OpenAPI document is at `/v1/openapi.json`). Errors are `{code, message}` with the
//! stable codes of [`crate::Error::code`], made into responses in one place ([`MgmtError`]).
//!
//! A service may be a node of a fleet (feature `fleet`): its store is then `fleet::EtcdStore`, every
//! change an etcd transaction, and the fleet's changes reach it through [`Managed::follow`]; `GET
//! /v1/fleet` answers through its [`FleetView`].
//!
//! The service keeps its state in one directory ([`default_state_dir`]); the paths of what it holds there
//! are the functions below.

use std::path::{Path, PathBuf};

mod api;
mod content;
mod ended;
mod error;
#[cfg(feature = "fleet")]
#[cfg_attr(docsrs, doc(cfg(feature = "fleet")))]
pub mod fleet;
mod fleet_view;
mod job_metrics;
mod job_policy;
mod listeners;
mod managed;
mod principal;
mod sandbox;
mod service_jobs;
mod settings;
pub mod store;

pub use api::router;
pub use api::{
    is_unprintable, Applied, AuthSettings, Binding, Certificate, ChangeJob, ClientCertificatesView,
    ConfigDocument, ContentView, CreateJob, CredentialsView, Enable, FileView, GroupView,
    JobErrorView, JobFileProgress, JobProgressEvent, JobStateEvent, JobStreamEvent, JobView,
    NameOrNumber, NewFile, NewGroup, PreviousView, PrincipalGroup, Properties, PropertyValue,
    ProxyView, PutUser, SetCertificate, SetCredentials, SetState, Source, UrlView, UserView,
};
pub use api::{JobStatus, StatusReport, MAX_LISTED};
pub use content::{ContentError, ContentStore};
pub use ended::DEFAULT_JOB_RETENTION;
pub use error::{ErrorBody, MgmtError};
pub use fleet_view::{ContentStatus, FetchStatus, FleetStatus, FleetView, NodeStatus};
pub use job_policy::{JobAllow, JobAllowError, JobPolicy};
pub use listeners::{bind_local, serve_local, serve_remote, AdminAccess};
pub use managed::Managed;
pub use principal::{CallerName, Principal};
pub use sandbox::{DirsMade, PlannedPath};
pub use service_jobs::ServiceJobs;
pub use settings::GroupSettings;

/// Where the service keeps its state: `$BCS_STATE` when set, else `/var/lib/bcs` as root, else
/// `$XDG_STATE_HOME/bcs` (by default `~/.local/state/bcs`).
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BCS_STATE").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from("/var/lib/bcs"));
    }
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    xdg.or_else(|| {
        std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".local/state"))
    })
    .map(|base| base.join("bcs"))
}

/// The store's file in a state directory.
pub fn database_path(state: &Path) -> PathBuf {
    state.join("config.db")
}

/// The key that seals job credentials, in a state directory.
pub fn job_key_path(state: &Path) -> PathBuf {
    state.join("jobs.key")
}

/// The default download root in a state directory.
pub fn default_download_root(state: &Path) -> PathBuf {
    state.join("downloads")
}

/// The management socket in a state directory.
pub fn socket_path(state: &Path) -> PathBuf {
    state.join("bcs.sock")
}
