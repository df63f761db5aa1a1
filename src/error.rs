//! The crate-level error: one variant per domain, each domain's error kept whole as the source.

use crate::limits::LimitError;
use crate::server::ServerError;
use crate::url::{PrefixError, UrlError};

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A URL prefix did not parse.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// A URL could not be published.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A limit value was refused.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A certificate, key or CA file could not be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Authentication could not be set up.
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// A server operation failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}
