//! bits_compact: a small, secure HTTP file server for ad-hoc hosting, after Windows' BITS Compact Server.
//!
//! A [`Server`] holds URL groups ([`UrlGroup`], each named by a [`UrlPrefix`] such as `http://+:8080/Demo/`);
//! each group publishes files one by one as [`Url`]s (a suffix mapped to a local file). Requests are routed
//! with HTTP.sys rules and can only ever reach a registered file. Responses give BITS and every resuming
//! download client what they need: exact lengths, stable validators, single and multiple ranges,
//! conditional requests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bits_compact::Error> {
//! let server = bits_compact::Server::builder().build()?;
//! let group = server.create_url_group("http://+:8080/Demo/")?;
//! group.add_url("setup.exe", "/srv/setup.exe", None)?;
//! server.serve(async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Three products stand on shared foundations. Every module is listed here; those in `code` are private.
//!
//! | part | module | owns |
//! |---|---|---|
//! | foundations | [`auth`] | who a request comes from: Basic, NTLM, Negotiate, certificates, one `authenticate` call; [`Identity`] and its token of SIDs; [`Principals`]; guessing limits |
//! | | [`authz`] | SDDL security descriptors, SIDs, access masks, the Windows access check |
//! | | [`tls`] | server certificates per port and per SNI name, hot replacement, client certificates; the one crypto provider |
//! | | [`config`] | the whole configuration as serde data ([`ServerConfig`]), and the [`Change`]s a server tells |
//! | | `change` | the ordered record of changes a server hands its listeners (re-exported by [`config`]) |
//! | | `error` | [`Error`] and [`ErrorKind`]: every error's kind, from which its HTTP status, exit code and stable `code` derive |
//! | | `lock` | locks that outlive a panic: the one place a poisoned lock's data is taken anyway |
//! | | [`metrics`] | Prometheus metrics with bounded labels: a [`Metrics`] registry per server, group series resolved once, the text format, a `/metrics` listener |
//! | file server | `server` | [`Server`], [`ServerBuilder`], `apply` of a configuration, port binding, TLS bindings: the composition root |
//! | | `server::http` | the serve loop: accept, connection deadlines, the request path, errors → responses in one place; it knows the server only through a `Site` |
//! | | `router` | host category, then whole-segment prefix → group |
//! | | [`url`] | [`UrlPrefix`] (HTTP.sys grammar), suffixes and request paths, [`UrlGroup`], [`Url`] |
//! | | [`access_log`] | access logs in the combined format and JSON lines, written off the request path, reopened for logrotate |
//! | | [`files`] | validators, preconditions, ranges, multipart, the streamed body, zero-copy |
//! | | [`limits`] | per-group [`ConnectionLimit`] and bandwidth ([`ByteRate`]), per-source transfers, the read budget |
//! | service | `service` | `bcs serve`'s management API (one file per resource), its listeners (Unix socket, admin TLS), `service::Managed` (every change stored), `service::store` (the `Store` trait and SQLite); feature `service` |
//! | transfer client | [`jobs`] | BITS-style download jobs: [`JobManager`], [`Job`], [`JobState`], resumable validated transfers, a [`JobStore`] |
//! | | [`client`] | the jobs' side of HTTP: TLS trust (CA file, pins, client certificates), proxies, Basic, NTLM and Negotiate initiators |
//!
//! `src/bin/bcs/` is the thin command line over these: `bcs host` (the file server), `bcs serve` and the
//! management commands (the service), `bcs download` (the transfer client).

#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod access_log;
pub mod auth;
pub mod authz;
mod change;
pub mod client;
pub mod config;
mod error;
pub mod files;
pub mod jobs;
pub mod limits;
mod lock;
pub mod metrics;
mod router;
mod server;
#[cfg(feature = "service")]
#[cfg_attr(docsrs, doc(cfg(feature = "service")))]
pub mod service;
pub mod tls;
pub mod url;

// The names most programs need; the rest are in their modules.
pub use access_log::{AccessLog, AccessLogFormat, AccessLogTarget};
pub use auth::{AuthError, AuthScheme, Identity, Password, Principals};
pub use config::{Change, ServerConfig};
pub use error::{Error, ErrorKind, FLEET_UNAVAILABLE};
pub use jobs::{
    Action, DirStore, Job, JobError, JobEvent, JobId, JobManager, JobState, JobStore, JobWatch,
    NewJob,
};
pub use limits::{ByteRate, ConnectionLimit, LimitError};
pub use metrics::Metrics;
pub use server::{IntoPrefix, Server, ServerBuilder, ServerError};
pub use tls::{
    CertificateInfo, CertificateSource, ClientCertMode, ClientCertificates, ClientIdentity,
    ServerCertificate, TlsError,
};
pub use url::{
    GroupProperty, Host, PrefixError, Url, UrlError, UrlGroup, UrlPrefix, UrlScheme, UrlStats,
};

/// The README's examples are compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
