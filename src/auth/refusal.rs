//! Why a caller is not let in (yet), and the one answer each reason gets on every listener: its status
//! and the headers that tell the client what to do next (WWW-Authenticate, Retry-After). The file server
//! writes the body as text and the management listener as JSON; status and headers are decided here only.

use http::header::{self, HeaderMap, HeaderValue};
use http::StatusCode;

use super::basic::HeaderError;
use super::limiter::Limited;

/// Why a caller is not let in (yet).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// 401 with these WWW-Authenticate values (a challenge, or the next leg of a handshake).
    #[error("authentication required")]
    Challenge(Vec<String>),
    /// A malformed Authorization header.
    #[error(transparent)]
    Malformed(#[from] HeaderError),
    /// A malformed token inside it.
    #[error("bad request: {0}")]
    BadToken(&'static str),
    /// 403 with this reason.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Too many failures from this source or at this account.
    #[error("too many failed authentication attempts")]
    Limited(Limited),
    /// Too many password checks waiting at once.
    #[error("too many password checks at once")]
    Busy,
}

impl From<Limited> for Refusal {
    fn from(l: Limited) -> Self {
        Refusal::Limited(l)
    }
}

impl Refusal {
    /// The status every listener answers with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Refusal::Challenge(_) => StatusCode::UNAUTHORIZED,
            Refusal::Malformed(_) | Refusal::BadToken(_) => StatusCode::BAD_REQUEST,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
            Refusal::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The reason worth sending, where the client can act on it (a malformed token, HTTPS needed).
    pub(crate) fn reason(&self) -> Option<&'static str> {
        match self {
            Refusal::BadToken(why) | Refusal::Forbidden(why) => Some(why),
            _ => None,
        }
    }

    /// Adds the headers that go with the status: one WWW-Authenticate per challenge; Retry-After after
    /// too many failures (whole seconds, rounded up and at least 1, so that a client that waits as told is
    /// let in) and when the password checks are busy (1 s).
    pub(crate) fn add_headers(&self, headers: &mut HeaderMap) {
        match self {
            Refusal::Challenge(challenges) => {
                for challenge in challenges {
                    if let Ok(value) = HeaderValue::try_from(challenge) {
                        headers.append(header::WWW_AUTHENTICATE, value);
                    }
                }
            }
            Refusal::Limited(limited) => {
                let ms = limited.retry_after.as_millis();
                let seconds = u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
            }
            Refusal::Busy => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Refusal::Malformed(_) | Refusal::BadToken(_) | Refusal::Forbidden(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Retry-After is whole seconds rounded up, never 0: a client that waits as told is let in.
    #[test]
    fn retry_after_rounds_up_to_a_whole_second() {
        for (ms, expected) in [(0, "1"), (1, "1"), (1000, "1"), (1001, "2")] {
            let mut headers = HeaderMap::new();
            let limited = Limited {
                retry_after: Duration::from_millis(ms),
            };
            Refusal::Limited(limited).add_headers(&mut headers);
            assert_eq!(headers[header::RETRY_AFTER], expected, "{ms} ms");
        }
        let mut headers = HeaderMap::new();
        Refusal::Challenge(vec!["Basic realm=\"a\"".into(), "NTLM".into()])
            .add_headers(&mut headers);
        assert_eq!(headers.get_all(header::WWW_AUTHENTICATE).iter().count(), 2);
        assert_eq!(Refusal::BadToken("x").status(), StatusCode::BAD_REQUEST);
    }
}
