//! Why a transfer stops, as BITS classifies it: a [`Failure`] is TRANSIENT_ERROR (retrying later may
//! help: connection refused or lost, timeouts, 5xx, 408, 429, a 503 with its Retry-After) or ERROR (it
//! cannot: other 4xx, a protocol violation such as an encoded body, local disk errors), each with an
//! [`ErrorContext`] and the `JobFailure` that GetError will show; a 401 says what the server asks for and
//! what was given ([`unauthorized`]). Also [`Report`], the callback through which a transfer tells its
//! runner about every change to the file's record.
//!
//! Every step of a transfer (the fetch, the temporary file, the digest check) reports through these types;
//! this file imports none of them.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime};

use http::header::{self, HeaderMap, HeaderName};
use http::StatusCode;

use crate::client::{ClientError, CredentialScheme, Credentials};
use crate::jobs::job::{ErrorContext, JobFailure, JobFile};

/// The longest Retry-After honoured; a server cannot park a job for longer.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The most authentication schemes kept from one 401, and the longest name.
const MAX_SCHEMES: usize = 8;
const MAX_SCHEME_LEN: usize = 32;

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
                auth_schemes: Vec::new(),
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

/// An answer whose body is in a Content-Encoding other than identity: ERROR, server response,
/// `content_encoding`. We ask for identity (as BITS does); an encoded body is not the file's bytes, and
/// its length is not the file's size, so it is never stored (nor decoded: a digest or a size checked
/// against the decoded bytes would be a second, unverified version of the truth).
pub(crate) fn encoded(headers: &HeaderMap) -> Option<Failure> {
    let codings: Vec<&str> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .map(|v| v.to_str().unwrap_or("?"))
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"))
        .collect();
    if codings.is_empty() {
        return None;
    }
    let shown: String = codings.join(", ").chars().take(64).collect();
    Some(Failure::new(
        false,
        ErrorContext::ServerResponse,
        "content_encoding",
        format!("the server sent the file encoded ({shown:?}) although identity was asked for"),
    ))
}

/// A 401's failure, told what the server offered (its WWW-Authenticate schemes, kept in
/// `auth_schemes`) and what was sent: no credentials ("none given"), credentials the server
/// refused ("rejected"), or credentials of another scheme. `given` is what went to this URL's server;
/// `withheld` says the job has credentials that were not sent there (another origin, after a redirect).
/// Other failures pass unchanged.
///
/// This is the client's own view, shown to the job's owner: it reveals nothing the server did not say.
pub(crate) fn unauthorized(
    mut failure: Failure,
    given: Option<&Credentials>,
    withheld: bool,
    headers: &HeaderMap,
) -> Failure {
    if failure.error.http_status != Some(401) {
        return failure;
    }
    let offered = offered_schemes(headers);
    let asks = match offered.is_empty() {
        true => "credentials".to_owned(),
        false => format!("{} credentials", offered.join(" or ")),
    };
    let message = match given {
        None if withheld => format!(
            "it asks for {asks}; none given to this server (a job's credentials go to its own URL's server only)"
        ),
        None => format!("it asks for {asks}; none given"),
        Some(c) if offered.is_empty() || offered.iter().any(|o| o.eq_ignore_ascii_case(name(c.scheme))) => {
            match c.user.is_empty() {
                true => format!("it rejected the {} credentials given", name(c.scheme)),
                false => format!("it rejected the {} credentials given for {:?}", name(c.scheme), c.user),
            }
        }
        Some(c) => format!("it asks for {asks}, not the {} given", name(c.scheme)),
    };
    failure.error.message = format!("{}: {message}", failure.error.message);
    failure.error.auth_schemes = offered;
    failure
}

/// How a scheme is written in WWW-Authenticate.
fn name(scheme: CredentialScheme) -> &'static str {
    match scheme {
        CredentialScheme::Basic => "Basic",
        CredentialScheme::Ntlm => "NTLM",
        CredentialScheme::Negotiate => "Negotiate",
    }
}

/// The schemes of WWW-Authenticate challenges (RFC 9110 §11.6.1: `scheme [token68 | auth-params]`, several
/// to a field, comma-separated): the first word of each comma-separated piece that is not an auth-param
/// (`name=value`). Quoted commas are skipped; only plain tokens are kept (they are shown to people),
/// at most [`MAX_SCHEMES`], each once.
fn offered_schemes(headers: &HeaderMap) -> Vec<String> {
    let mut schemes: Vec<String> = Vec::new();
    for value in headers.get_all(header::WWW_AUTHENTICATE) {
        let Ok(value) = value.to_str() else { continue };
        for piece in split_unquoted(value) {
            let word = piece.split_whitespace().next().unwrap_or_default();
            let token = !word.is_empty()
                && word.len() <= MAX_SCHEME_LEN
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let param = piece
                .split_whitespace()
                .next()
                .is_some_and(|w| w.contains('='));
            if token && !param && !schemes.iter().any(|s| s.eq_ignore_ascii_case(word)) {
                schemes.push(word.to_owned());
            }
            if schemes.len() == MAX_SCHEMES {
                return schemes;
            }
        }
    }
    schemes
}

/// `value` cut at the commas outside quoted strings.
fn split_unquoted(value: &str) -> Vec<&str> {
    let (mut pieces, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                pieces.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    pieces.push(value[start..].trim());
    pieces
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

    fn with(pairs: &[(HeaderName, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn an_encoded_body_is_refused() {
        let e = header::CONTENT_ENCODING;
        assert_eq!(encoded(&HeaderMap::new()), None);
        assert_eq!(encoded(&with(&[(e.clone(), "identity")])), None);
        assert_eq!(encoded(&with(&[(e.clone(), "Identity, ")])), None);
        for coded in ["gzip", "identity, br", "x-anything"] {
            let f = encoded(&with(&[(e.clone(), coded)])).expect(coded);
            assert_eq!(
                (f.error.code.as_str(), f.transient),
                ("content_encoding", false)
            );
            assert_eq!(f.error.context, ErrorContext::ServerResponse);
        }
    }

    #[test]
    fn a_401_names_what_the_server_offered_and_what_was_given() {
        let w = header::WWW_AUTHENTICATE;
        let offers = with(&[
            (w.clone(), "NTLM"),
            (
                w.clone(),
                r#"Negotiate, Basic realm="a, b", charset="UTF-8""#,
            ),
            (w.clone(), "B(ad), ntlm TlRMTVNTUAAC"),
        ]);
        assert_eq!(offered_schemes(&offers), ["NTLM", "Negotiate", "Basic"]);
        let denied = || classify(StatusCode::UNAUTHORIZED, &HeaderMap::new());
        let none = unauthorized(denied(), None, false, &offers);
        assert_eq!(none.error.code, "http_401");
        assert_eq!(none.error.auth_schemes, ["NTLM", "Negotiate", "Basic"]);
        assert!(
            none.error
                .message
                .ends_with("it asks for NTLM or Negotiate or Basic credentials; none given"),
            "{}",
            none.error.message
        );
        let ntlm = Credentials::ntlm("carol", crate::auth::Password::from("pw"));
        let rejected = unauthorized(denied(), Some(&ntlm), false, &offers);
        assert!(
            rejected
                .error
                .message
                .contains("rejected the NTLM credentials given for \"carol\""),
            "{}",
            rejected.error.message
        );
        let basic_only = with(&[(w.clone(), r#"Basic realm="x""#)]);
        let other = unauthorized(denied(), Some(&ntlm), false, &basic_only);
        assert!(
            other
                .error
                .message
                .contains("asks for Basic credentials, not the NTLM given"),
            "{}",
            other.error.message
        );
        let withheld = unauthorized(denied(), None, true, &basic_only);
        assert!(
            withheld.error.message.contains("none given to this server"),
            "{}",
            withheld.error.message
        );
        // Other statuses pass unchanged.
        let missing = classify(StatusCode::NOT_FOUND, &HeaderMap::new());
        assert_eq!(unauthorized(missing.clone(), None, false, &offers), missing);
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
