//! The one place where a refusal becomes an HTTP response. Internal detail is logged here, never sent.

use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Version};

use crate::auth::Refusal;
use crate::files::{FileError, ResponseBody};
use crate::url::SegmentError;

/// Why a request is not answered with a file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Reject {
    /// The request target or Host header is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// A path segment broke a rule.
    #[error("bad request path")]
    BadPath(#[source] SegmentError),
    /// No URL group on the port serves the host the request names (HTTP.sys answers 400).
    #[error("no URL group matches")]
    NoGroup,
    /// A well-formed path that no URL serves: no group has its first segment, or it has an empty
    /// segment (`/`, `/Group/sub/`), which no URL has. A browser is shown the page given, which names
    /// the groups with an index.
    #[error("no URL serves this path")]
    Unserved(Option<String>),
    /// The group has no URL with this suffix.
    #[error("no such URL")]
    NotFound,
    /// Only GET and HEAD are served.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The client may not have this URL; the reason is sent.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The URL's SDDL does not grant the caller read access (an authenticated caller, or an anonymous one
    /// in a group with no authentication scheme to offer).
    #[error("access denied")]
    Denied,
    /// Authentication refused the caller, or must challenge it: its status and headers are the
    /// refusal's own, as on every listener.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The group is at its ConnectionLimit: come back later (BITS treats 503 as transient).
    #[error("the URL group is at its connection limit")]
    Busy,
    /// Serving the file failed.
    #[error(transparent)]
    File(#[from] FileError),
}

impl Reject {
    /// The response to a request over `version`. On HTTP/2 a 503 goes without its text, so that its
    /// HEADERS end the stream (END_STREAM): a body would wait for a flow-control window, and a client
    /// that grants none would keep every refused stream open.
    pub(crate) fn into_response_on(self, version: Version) -> Response<ResponseBody> {
        let mut response = self.into_response();
        if version == Version::HTTP_2 && response.status() == StatusCode::SERVICE_UNAVAILABLE {
            *response.body_mut() = ResponseBody::empty();
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
        }
        response
    }

    fn into_response(mut self) -> Response<ResponseBody> {
        let status = match &self {
            Reject::BadRequest(_) | Reject::BadPath(_) | Reject::NoGroup => StatusCode::BAD_REQUEST,
            Reject::Refused(refusal) => refusal.status(),
            Reject::NotFound | Reject::Unserved(_) | Reject::File(FileError::Gone(_)) => {
                StatusCode::NOT_FOUND
            }
            Reject::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reject::Forbidden(_) | Reject::Denied => StatusCode::FORBIDDEN,
            Reject::Busy | Reject::File(FileError::Changing(_) | FileError::Pending) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Reject::File(FileError::Unsatisfiable { .. }) => StatusCode::RANGE_NOT_SATISFIABLE,
            Reject::File(FileError::PreconditionFailed) => StatusCode::PRECONDITION_FAILED,
            Reject::File(FileError::Io(e)) => {
                tracing::error!(error = %e, "cannot read a published file");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let reason = status.canonical_reason().unwrap_or("");
        let mut content_type = "text/plain; charset=utf-8";
        let text = match &mut self {
            Reject::Forbidden(why) | Reject::BadRequest(why) => {
                format!("{} {reason}: {why}\n", status.as_u16())
            }
            Reject::Refused(refusal) => match refusal.reason() {
                Some(why) => format!("{} {reason}: {why}\n", status.as_u16()),
                None => format!("{} {reason}\n", status.as_u16()),
            },
            // Say why, as HTTP.sys does not: a client that named the wrong host or group learns to fix it.
            Reject::File(FileError::Pending) => format!(
                "{} {reason}: this node does not hold the file yet; retry later\n",
                status.as_u16()
            ),
            Reject::NoGroup => format!(
                "{} {reason}: no URL group here serves this host name and path\n",
                status.as_u16()
            ),
            Reject::BadPath(e) => format!("{} {reason}: invalid path: {e}\n", status.as_u16()),
            Reject::Unserved(Some(page)) => {
                content_type = "text/html; charset=utf-8";
                std::mem::take(page)
            }
            Reject::Unserved(None) => {
                format!(
                    "{} {reason}: no URL here serves this path\n",
                    status.as_u16()
                )
            }
            _ => format!("{} {reason}\n", status.as_u16()),
        };
        let len = text.len();
        let mut response = Response::new(ResponseBody::bytes(text));
        *response.status_mut() = status;
        let h = response.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        match self {
            Reject::MethodNotAllowed => {
                h.insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            }
            Reject::Busy | Reject::File(FileError::Pending) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Reject::Refused(refusal) => refusal.add_headers(h),
            Reject::File(FileError::Changing(_)) => {
                h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Reject::File(FileError::Unsatisfiable { len }) => {
                let value = HeaderValue::try_from(format!("bytes */{len}"));
                h.insert(
                    header::CONTENT_RANGE,
                    value.unwrap_or(HeaderValue::from_static("bytes */0")),
                );
            }
            _ => {}
        }
        response
    }
}
