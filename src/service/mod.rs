//! Management: what `bcs serve` runs beside the file server, in place of the original's WMI provider.
//!
//! A management call is: a listener ([`serve_local`], a Unix socket; [`serve_remote`], TLS) → who is
//! calling (the peer's uid, or the URL groups' authentication) → the admin rule → one operation on a
//! [`Managed`] server (the library's own calls) → the store records it with who made it → JSON out
//! ([`router`], whose OpenAPI document is at `/v1/openapi.json`). Errors are `{code, message}` with the
//! stable codes of [`crate::Error::code`], made into responses in one place ([`MgmtError`]).

mod api;
mod error;
mod listeners;
mod managed;
mod principal;
pub mod store;

pub use api::router;
pub use api::{
    Applied, AuthSettings, Binding, Certificate, ChangeJob, ClientCertificatesView, ConfigDocument,
    CreateJob, CredentialsView, Enable, FileView, GroupSettings, GroupView, JobErrorView,
    JobStreamEvent, JobView, NameOrNumber, NewFile, NewGroup, PrincipalGroup, Properties,
    PropertyValue, ProxyView, PutUser, ServiceJobs, SetCertificate, SetCredentials, SetState,
    Source, UrlView, UserView,
};
pub use error::{ErrorBody, MgmtError};
pub use listeners::{bind_local, default_state_dir, serve_local, serve_remote, AdminAccess};
pub use managed::{GroupChange, Managed};
pub use principal::{CallerName, Principal};

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
