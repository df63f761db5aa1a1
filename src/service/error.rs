//! `MgmtError`: what a management call can fail with, and the one place it becomes an HTTP response:
//! `{"code", "message"}` with the library's stable codes, the status following from the error's
//! [`ErrorKind`](crate::ErrorKind). The store's errors are classified here too, beside the one variant
//! that carries them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::error::classify;
use crate::service::store::StoreError;
use crate::ErrorKind as K;

/// Why a management call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MgmtError {
    /// What the call names does not exist.
    #[error("{message}")]
    NotFound {
        /// The stable code (`url_not_found`, `user_not_found`, ...).
        code: &'static str,
        /// For people.
        message: String,
    },
    /// The call itself is malformed (a body that is not the expected JSON, a bad path parameter).
    #[error("{message}")]
    Invalid {
        /// The stable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// The call conflicts with the state of what it names (a job deleted before it is final).
    #[error("{message}")]
    Conflict {
        /// The stable code.
        code: &'static str,
        /// For people.
        message: String,
    },
    /// The library refused the change (a bad prefix, SDDL, file, certificate, a port in use, ...).
    #[error(transparent)]
    Library(#[from] crate::Error),
    /// The store could not record the change; the server was left as it was.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller may not use this part of the API (not an administrator).
    #[error("this identity may not manage the service")]
    Forbidden,
    /// A call failed inside the service (a bug): nothing is known to have changed.
    #[error("{0}")]
    Internal(String),
}

/// Every library error is a management error through `crate::Error`.
macro_rules! library_errors {
    ($($e:ty),*) => {$(
        impl From<$e> for MgmtError {
            fn from(e: $e) -> Self {
                MgmtError::Library(e.into())
            }
        }
    )*};
}

library_errors!(
    crate::ServerError,
    crate::UrlError,
    crate::TlsError,
    crate::AuthError,
    crate::PrefixError,
    crate::LimitError,
    crate::auth::UnknownScheme,
    crate::auth::PrincipalsError,
    crate::jobs::JobError
);

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code: codes are never renamed, only added.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

classify! {
    MgmtError {
        MgmtError::NotFound { code, .. } => (K::NotFound, *code),
        MgmtError::Invalid { code, .. } => (K::Invalid, *code),
        MgmtError::Conflict { code, .. } => (K::Conflict, *code),
        MgmtError::Library(e) => (e.kind(), e.code()),
        MgmtError::Store(e) => (e.kind(), e.code()),
        MgmtError::Forbidden => (K::Forbidden, "forbidden"),
        MgmtError::Internal(_) => (K::Internal, "internal"),
    }
    // One code for every store failure: the call changed nothing, and the cause is in the message.
    StoreError {
        StoreError::Open { .. }
        | StoreError::TooNew { .. }
        | StoreError::Database(_)
        | StoreError::Key { .. }
        | StoreError::Corrupt { .. }
        | StoreError::NotShared => (K::Io, "store_failed"),
        StoreError::Conflict { .. } => (K::Conflict, "fleet_conflict"),
        StoreError::Unavailable { .. } => (K::Coordinator, crate::FLEET_UNAVAILABLE),
        StoreError::TooLarge { .. } => (K::Invalid, "fleet_change_too_large"),
    }
}

impl MgmtError {
    /// The HTTP status: the error's kind's (404 for what does not exist, 409 for what conflicts with what
    /// exists, 500 when the store failed, 400 for everything else the caller sent, ...).
    pub fn status(&self) -> StatusCode {
        self.kind().http_status()
    }

    /// The error and its causes on one line.
    pub fn message(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let more = cause.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            source = cause.source();
        }
        text
    }
}

impl IntoResponse for MgmtError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            code: self.code().to_owned(),
            message: self.message(),
        };
        (status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, JobError, ServerError};

    fn message() -> String {
        "x".into()
    }

    /// Every variant, and every store failure: kind, code, and the status of the response.
    #[test]
    fn every_variant_answers_its_kind_code_and_status() {
        let store = |e: StoreError| MgmtError::Store(e);
        for (e, kind, code, status) in [
            (
                MgmtError::NotFound {
                    code: "url_not_found",
                    message: message(),
                },
                ErrorKind::NotFound,
                "url_not_found",
                404,
            ),
            (
                MgmtError::Invalid {
                    code: "invalid_request",
                    message: message(),
                },
                ErrorKind::Invalid,
                "invalid_request",
                400,
            ),
            (
                MgmtError::Conflict {
                    code: "job_not_final",
                    message: message(),
                },
                ErrorKind::Conflict,
                "job_not_final",
                409,
            ),
            (
                ServerError::GroupExists("g".into()).into(),
                ErrorKind::Conflict,
                "group_exists",
                409,
            ),
            (
                JobError::Stopped.into(),
                ErrorKind::Internal,
                "job_manager_stopped",
                500,
            ),
            (
                store(StoreError::Open {
                    path: "/x".into(),
                    source: rusqlite::Error::InvalidQuery,
                }),
                ErrorKind::Io,
                "store_failed",
                500,
            ),
            (
                store(StoreError::TooNew { found: 9, known: 1 }),
                ErrorKind::Io,
                "store_failed",
                500,
            ),
            (
                store(StoreError::Database(rusqlite::Error::InvalidQuery)),
                ErrorKind::Io,
                "store_failed",
                500,
            ),
            (
                store(StoreError::Key {
                    path: "/x".into(),
                    reason: message(),
                }),
                ErrorKind::Io,
                "store_failed",
                500,
            ),
            (
                store(StoreError::Corrupt {
                    what: "job",
                    reason: message(),
                }),
                ErrorKind::Io,
                "store_failed",
                500,
            ),
            (
                store(StoreError::Conflict { revision: 7 }),
                ErrorKind::Conflict,
                "fleet_conflict",
                409,
            ),
            (
                store(StoreError::Unavailable { reason: message() }),
                ErrorKind::Coordinator,
                "fleet_unavailable",
                503,
            ),
            (
                store(StoreError::TooLarge { reason: message() }),
                ErrorKind::Invalid,
                "fleet_change_too_large",
                400,
            ),
            (MgmtError::Forbidden, ErrorKind::Forbidden, "forbidden", 403),
            (
                MgmtError::Internal(message()),
                ErrorKind::Internal,
                "internal",
                500,
            ),
        ] {
            assert_eq!((e.kind(), e.code()), (kind, code), "{e:?}");
            if let MgmtError::Store(inner) = &e {
                assert_eq!((inner.kind(), inner.code()), (kind, code), "{inner:?}");
            }
            assert_eq!(e.status().as_u16(), status, "{e:?}");
            assert_eq!(e.into_response().status().as_u16(), status);
        }
    }
}
