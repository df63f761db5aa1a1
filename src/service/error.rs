//! `MgmtError`: what a management call can fail with, and the one place it becomes an HTTP response:
//! `{"code", "message"}` with the library's stable codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::service::store::StoreError;

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

impl MgmtError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            MgmtError::NotFound { code, .. } | MgmtError::Invalid { code, .. } => code,
            MgmtError::Library(e) => e.code(),
            MgmtError::Store(_) => "store_failed",
            MgmtError::Forbidden => "forbidden",
            MgmtError::Internal(_) => "internal",
        }
    }

    /// The HTTP status: 404 for what does not exist, 409 for what conflicts with what exists, 500 when
    /// the store failed, 400 for everything else the caller sent.
    pub fn status(&self) -> StatusCode {
        let code = match self {
            MgmtError::NotFound { .. } => return StatusCode::NOT_FOUND,
            MgmtError::Invalid {
                code: "job_not_final",
                ..
            } => return StatusCode::CONFLICT,
            MgmtError::Invalid { .. } => return StatusCode::BAD_REQUEST,
            MgmtError::Forbidden => return StatusCode::FORBIDDEN,
            MgmtError::Store(_) | MgmtError::Internal(_) => {
                return StatusCode::INTERNAL_SERVER_ERROR
            }
            MgmtError::Library(e) => e.code(),
        };
        match code {
            code if code.ends_with("_not_found") => StatusCode::NOT_FOUND,
            "group_exists" | "url_exists" | "scheme_conflict" | "address_conflict"
            | "bind_failed" | "not_https" | "group_deleted" | "invalid_job_state" | "job_final"
            | "job_local_file" => StatusCode::CONFLICT,
            "job_store_failed" | "job_store_corrupt" | "job_manager_stopped" => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        }
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
