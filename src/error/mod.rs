//! Errors: the crate-level [`Error`] (one variant per domain, each domain's error kept whole as the
//! source) and the [`ErrorKind`] every error answers with `kind()`, beside its stable `code()`.
//!
//! | module | owns |
//! |---|---|
//! | `kind` | [`ErrorKind`]: the HTTP status and the management commands' exit status of each kind |
//! | `codes` | the table: each domain error's kind and code, variant by variant |

mod codes;
mod kind;

pub(crate) use codes::classify;
pub use kind::{ErrorKind, FLEET_UNAVAILABLE};

use crate::auth::{AuthError, HashError, PrincipalsError, UnknownScheme};
use crate::authz::{SddlError, SidError};
use crate::jobs::JobError;
use crate::limits::LimitError;
use crate::server::ServerError;
use crate::tls::{TlsError, UnknownMode};
use crate::url::{PrefixError, SegmentError, UrlError};

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A URL prefix did not parse.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// A URL suffix or path segment broke a rule.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A URL could not be published, or a group changed.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A limit value was refused.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A certificate, key or CA file could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A client-certificate mode that names none.
    #[error(transparent)]
    ClientCertMode(#[from] UnknownMode),
    /// Authentication could not be set up.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An authentication scheme that names none.
    #[error(transparent)]
    Scheme(#[from] UnknownScheme),
    /// A principals file's content was refused.
    #[error(transparent)]
    Principals(#[from] PrincipalsError),
    /// A stored password hash was refused.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// An SDDL string did not parse.
    #[error(transparent)]
    Sddl(#[from] SddlError),
    /// A SID did not parse.
    #[error(transparent)]
    Sid(#[from] SidError),
    /// A server operation failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A download job operation failed.
    #[error(transparent)]
    Job(#[from] JobError),
}

classify! {
    Error {
        Error::Prefix(e) => (e.kind(), e.code()),
        Error::Segment(e) => (e.kind(), e.code()),
        Error::Url(e) => (e.kind(), e.code()),
        Error::Limit(e) => (e.kind(), e.code()),
        Error::Tls(e) => (e.kind(), e.code()),
        Error::ClientCertMode(e) => (e.kind(), e.code()),
        Error::Auth(e) => (e.kind(), e.code()),
        Error::Scheme(e) => (e.kind(), e.code()),
        Error::Principals(e) => (e.kind(), e.code()),
        Error::Hash(e) => (e.kind(), e.code()),
        Error::Sddl(e) => (e.kind(), e.code()),
        Error::Sid(e) => (e.kind(), e.code()),
        Error::Server(e) => (e.kind(), e.code()),
        Error::Job(e) => (e.kind(), e.code()),
    }
}

#[cfg(test)]
mod tests;
