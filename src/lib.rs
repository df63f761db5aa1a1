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
//! | module | owns |
//! |---|---|
//! | `server` | [`Server`] and its builder: groups, listeners, the routing snapshot (the composition root); it hands `serve` a `Site` |
//! | [`config`] | the whole configuration as serde data: [`Server::config`] out, [`Server::apply`] in |
//! | `serve` | accept loop, connection deadlines, the request path, errors → responses (one place); imports no `server` |
//! | [`url`] | [`UrlPrefix`] (HTTP.sys grammar), suffixes and request paths, [`UrlGroup`], [`Url`] |
//! | `router` | host category, then whole-segment prefix → group |
//! | [`tls`] | certificates per port and per SNI name, hot replacement, client certificates |
//! | [`auth`] | who a request comes from: one `authenticate` call over Basic, NTLM, Negotiate, certificates; `Identity` and its token of SIDs |
//! | [`authz`] | SDDL security descriptors, SIDs, the Windows access check |
//! | [`files`] | validators, preconditions, ranges, multipart, the streamed body |
//! | [`limits`] | per-group ConnectionLimit (transfer permits) and BandwidthLimit (shared token bucket) |
//! | [`jobs`] | the BITS-style download client: [`JobManager`], [`Job`], [`JobState`], resumable validated transfers, a [`JobStore`] |
//! | [`client`] | the job client's side of HTTP: TLS trust (CA file, pins, client certificates), proxies, Basic and NTLM credentials |

pub mod auth;
pub mod authz;
mod change;
pub mod client;
pub mod config;
mod error;
pub mod files;
pub mod jobs;
pub mod limits;
mod router;
mod server;
#[cfg(feature = "service")]
pub mod service;
pub mod tls;
pub mod url;

// The names most programs need; the rest are in their modules.
pub use auth::{AuthError, AuthScheme, Identity, Password, Principals};
pub use config::{Change, ServerConfig};
pub use error::{Error, ErrorKind};
pub use jobs::{Job, JobError, JobId, JobManager, JobState, JobStore};
pub use limits::{ByteRate, ConnectionLimit, LimitError};
pub use server::{IntoPrefix, Server, ServerBuilder, ServerError};
pub use tls::{
    CertificateSource, ClientCertMode, ClientCertificates, ClientIdentity, ServerCertificate,
    TlsError,
};
pub use url::{GroupProperty, Host, PrefixError, Scheme, Url, UrlError, UrlGroup, UrlPrefix};

/// The README's examples are compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
