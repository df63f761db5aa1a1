//! Management: what `bcs serve` runs beside the file server, in place of the original's WMI provider.
//!
//! A management call is: a listener ([`serve_local`], a Unix socket; [`serve_remote`], TLS) → who is
//! calling (the peer's uid, or the URL groups' authentication) → the admin rule → one operation on a
//! [`Managed`] server (the library's own calls) → the store records it with who made it → JSON out
//! ([`router`], whose OpenAPI document is at `/v1/openapi.json`). Errors are `{code, message}` with the
//! stable codes of [`crate::Error::code`], made into responses in one place ([`MgmtError`]).

mod api;
mod certs;
mod config;
mod error;
mod groups;
mod jobs;
mod listen;
mod managed;
mod settings;
mod users;

pub use api::{router, Caller, Principal};
pub use certs::{Binding, Certificate, ClientCertificates, SetCertificate, Source};
pub use config::Applied;
pub use config::ConfigDocument;
pub use error::{ErrorBody, MgmtError};
pub use groups::{Group, GroupSettings, NewGroup, Url};
pub use jobs::{
    ChangeJob, CreateJob, CredentialsView, FileView, JobErrorView, JobStreamEvent, JobView,
    NameOrNumber, NewFile, ProxyView, ServiceJobs, SetCredentials, SetState,
};
pub use listen::{bind_local, default_state_dir, serve_local, serve_remote, AdminAccess};
pub use managed::{GroupChange, Managed};
pub use settings::{AuthSettings, Enable, Properties, PropertyValue};
pub use users::{PrincipalGroup, PutUser, User};

/// The store's file in a state directory.
pub fn database_path(state: &std::path::Path) -> std::path::PathBuf {
    state.join("config.db")
}

/// The key that seals job credentials, in a state directory.
pub fn job_key_path(state: &std::path::Path) -> std::path::PathBuf {
    state.join("jobs.key")
}

/// The default download root in a state directory.
pub fn default_download_root(state: &std::path::Path) -> std::path::PathBuf {
    state.join("downloads")
}

/// The management socket in a state directory.
pub fn socket_path(state: &std::path::Path) -> std::path::PathBuf {
    state.join("bcs.sock")
}
