//! Why a transfer stops, as BITS classifies it: a [`Failure`] is TRANSIENT_ERROR (retrying later may
//! help: connection refused or lost, timeouts, 5xx, 408, 429, a 503 with its Retry-After) or ERROR (it
//! cannot: other 4xx, a protocol violation, local disk errors), each with an [`ErrorContext`] and the
//! `JobFailure` that GetError will show. Also [`Report`], the callback through which a transfer tells its
//! runner about every change to the file's record.
//!
//! Every step of a transfer (the fetch, the temporary file, the digest check) reports through these types;
//! this file imports none of them.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName};
use http::StatusCode;

use crate::client::ClientError;
use crate::jobs::job::{ErrorContext, JobFailure, JobFile};

/// The longest Retry-After honoured; a server cannot park a job for longer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Why a transfer stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// Whether retrying later may help (TRANSIENT_ERROR) or not (ERROR).
    pub(crate) transient: bool,
    /// A delay the server asked for (Retry-After).
    pub(crate) retry_after: Option<Duration>,
    /// What GetError will say.
    pub(crate) error: JobFailure,
}

impl Failure {
    pub(crate) fn new(
        transient: bool,
        context: ErrorContext,
        code: &str,
        message: impl Into<String>,
    ) -> Self {
        Failure {
            transient,
            retry_after: None,
            error: JobFailure {
                context,
                code: code.to_owned(),
                message: message.into(),
                file: None,
                http_status: None,
            },
        }
    }

    pub(crate) fn local(e: &io::Error, what: &str, path: &Path) -> Self {
        Failure::new(
            false,
            ErrorContext::LocalFile,
            "local_io",
            format!("cannot {what} {}: {e}", path.display()),
        )
    }

    pub(crate) fn lost(message: impl Into<String>) -> Self {
        Failure::new(true, ErrorContext::Transport, "connection_lost", message)
    }

    /// A client failure: transient network trouble, or a fatal TLS, proxy or credentials problem.
    pub(crate) fn client(e: &ClientError) -> Self {
        Failure::new(
            e.is_transient(),
            ErrorContext::Transport,
            e.code(),
            e.describe(),
        )
    }
}

/// Called after every change to the file's record (validators, size, bytes on disk, completion).
pub(crate) type Report<'a> = &'a mut (dyn FnMut(&JobFile) + Send);

/// A failure for an HTTP status that is not an answer we can use (BITS's job model).
pub(crate) fn classify(status: StatusCode, headers: &HeaderMap) -> Failure {
    let code = format!("http_{}", status.as_u16());
    let reason = status.canonical_reason().unwrap_or("unknown status");
    let message = format!("the server answered {} {reason}", status.as_u16());
    let transient = status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS;
    let context = match status {
        s if s.is_client_error() && !transient => ErrorContext::RemoteFile,
        _ => ErrorContext::ServerResponse,
    };
    let mut failure = Failure::new(transient, context, &code, message);
    failure.error.http_status = Some(status.as_u16());
    if transient {
        failure.retry_after = header_str(headers, header::RETRY_AFTER)
            .and_then(|v| retry_after(v, SystemTime::now()));
    }
    failure
}

/// A Retry-After value (delay-seconds or an HTTP-date, RFC 9110 §10.2.3) as a delay from `now`, at most a
/// day.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let delay = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => httpdate::parse_http_date(value)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

/// A header's value, if it is text.
pub(super) fn header_str(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers.get(name)?.to_str().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    #[test]
    fn statuses_are_classified_per_the_spec() {
        let none = HeaderMap::new();
        for (status, transient, context) in [
            (404, false, ErrorContext::RemoteFile),
            (403, false, ErrorContext::RemoteFile),
            (401, false, ErrorContext::RemoteFile),
            (410, false, ErrorContext::RemoteFile),
            (400, false, ErrorContext::RemoteFile),
            (408, true, ErrorContext::ServerResponse),
            (429, true, ErrorContext::ServerResponse),
            (500, true, ErrorContext::ServerResponse),
            (502, true, ErrorContext::ServerResponse),
            (503, true, ErrorContext::ServerResponse),
            (204, false, ErrorContext::ServerResponse),
        ] {
            let f = classify(StatusCode::from_u16(status).unwrap(), &none);
            assert_eq!(
                (f.transient, f.error.context),
                (transient, context),
                "{status}"
            );
            assert_eq!(f.error.code, format!("http_{status}"));
            assert_eq!(f.error.http_status, Some(status));
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
        let busy = classify(StatusCode::SERVICE_UNAVAILABLE, &headers);
        assert_eq!(busy.retry_after, Some(Duration::from_secs(120)));
        // A 404 never carries a retry delay.
        assert_eq!(classify(StatusCode::NOT_FOUND, &headers).retry_after, None);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date_and_is_bounded() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:27 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("99999999999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }
}
