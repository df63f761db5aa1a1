//! `ServerError`: what a server operation can fail with.

use std::net::SocketAddr;

use crate::tls::TlsError;
use crate::url::{PrefixError, UrlError, UrlScheme};

/// Why a server operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The builder was given settings that cannot work; every problem is listed.
    #[error("invalid server configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// The prefix does not parse.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// A group with this prefix exists already.
    #[error("the URL group {0} exists already")]
    GroupExists(String),
    /// No group has this prefix.
    #[error("no URL group {0}")]
    GroupNotFound(String),
    /// http and https cannot share a port.
    #[error("port {port} already serves {existing} URL groups, so it cannot serve {requested}")]
    SchemeConflict {
        /// The port.
        port: u16,
        /// The scheme already on it.
        existing: UrlScheme,
        /// The scheme asked for.
        requested: UrlScheme,
    },
    /// A certificate, key or CA file could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A certificate binding names a port that serves plain http.
    #[error("port {0} serves http URL groups; certificates bind to https ports")]
    NotHttps(u16),
    /// A listening socket could not be set up.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (often: the port is in use).
        #[source]
        source: std::io::Error,
    },
    /// The access log could not be opened.
    #[error("cannot open the access log {}", .path.display())]
    AccessLog {
        /// The file (`-`: standard output).
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `serve` was called before on this server (its listeners closed when it returned).
    #[error("serve was already called on this server")]
    AlreadyServing,
    /// The port listens on addresses that cannot serve this group: a port opened by an IP-literal group
    /// listens on that address only and takes no group for other addresses (`+`, `*`, a host name, another
    /// IP); an IP-literal group on a port opened otherwise needs its address among the port's.
    #[error("port {port} listens on {} only, so it cannot serve {prefix}", list(.addrs))]
    AddressConflict {
        /// The port.
        port: u16,
        /// The addresses it listens on.
        addrs: Vec<SocketAddr>,
        /// The prefix refused.
        prefix: String,
    },
    /// Publishing a URL failed.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A configuration to apply has other settings than the server was built with.
    #[error("the settings (addresses, timeouts, caches) are fixed when a server is built; apply cannot change them")]
    FixedSettings,
}

fn list(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
