//! `ErrorKind`: what kind of failure an error is, whatever its domain. The management API's HTTP status
//! and the management commands' exit status derive from it, so that one decision per error fixes both.

use http::StatusCode;

/// The code of a change refused because the fleet's coordinator (etcd) is unreachable or below quorum.
pub const FLEET_UNAVAILABLE: &str = "fleet_unavailable";

/// What kind of failure an error is. Every error of this crate answers `kind()`; its HTTP status and the
/// `bcs` management commands' exit status derive from the kind alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input is malformed, or names a file, key or setting that cannot be used: 400.
    Invalid,
    /// Authentication is needed, or failed: 401.
    Unauthorized,
    /// The caller may not do this: 403.
    Forbidden,
    /// What the call names does not exist: 404.
    NotFound,
    /// The call conflicts with what exists: it exists already, is in use, or is in the wrong state: 409.
    Conflict,
    /// Too busy now; the same call may succeed later: 503.
    Unavailable,
    /// The service's own storage (its database, a job store) could not be read or written: 500.
    Io,
    /// A defect, or a part of the service that has stopped: 500.
    Internal,
    /// The other side (a job's server or proxy, the service for `bcs`) could not be reached, did not
    /// answer in time, or failed the TLS handshake: 502, as a gateway answers.
    Unreachable,
    /// What the service shares its configuration through (a fleet's etcd) cannot be reached or has lost
    /// its quorum: the change was refused and nothing changed; it works again once that returns. 503, and
    /// the exit status of what cannot be reached, 5.
    Coordinator,
}

impl ErrorKind {
    /// The HTTP status an error of this kind is answered with.
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Unavailable | ErrorKind::Coordinator => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Io | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unreachable => StatusCode::BAD_GATEWAY,
        }
    }

    /// The exit status of a `bcs` management command that failed this way: 1 other error, 2 invalid,
    /// 3 not found, 4 refused, 5 unreachable.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Invalid | ErrorKind::Conflict => 2,
            ErrorKind::NotFound => 3,
            ErrorKind::Unauthorized | ErrorKind::Forbidden => 4,
            ErrorKind::Unreachable | ErrorKind::Coordinator => 5,
            ErrorKind::Unavailable | ErrorKind::Io | ErrorKind::Internal => 1,
        }
    }

    /// The kind an error status from the management API stands for: what a client that only sees the
    /// status (`bcs`) knows (a 503 with the code `fleet_unavailable` is [`ErrorKind::Coordinator`]: see
    /// [`ErrorKind::from_answer`]). 413 (a body over the limit) and 422 are the caller's input; statuses the API
    /// does not answer errors with (405, 502, ...) stand for no kind.
    pub fn from_http_status(status: StatusCode) -> Option<ErrorKind> {
        Some(match status.as_u16() {
            400 | 413 | 422 => ErrorKind::Invalid,
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            429 | 503 => ErrorKind::Unavailable,
            500 => ErrorKind::Internal,
            _ => return None,
        })
    }

    /// The kind of an error answer from the management API, from its status and its stable `code`: the
    /// status alone, except for the codes whose kind shares its status with another kind.
    pub fn from_answer(status: StatusCode, code: &str) -> Option<ErrorKind> {
        match (status.as_u16(), code) {
            (503, FLEET_UNAVAILABLE) => Some(ErrorKind::Coordinator),
            _ => ErrorKind::from_http_status(status),
        }
    }
}
