//! The crate-level error: one variant per domain, each domain's error kept whole as the source.

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
    /// A server operation failed.
    #[error(transparent)]
    Server(#[from] ServerError),
}
