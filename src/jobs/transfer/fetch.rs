//! One file's transfer over HTTP/1.1, http or https, through the job's [`crate::client`] settings (TLS
//! trust, proxy, credentials): the HEAD and GETs of a file share one kept-alive connection. A transfer:
//!
//! 1. asks for the size and validators (`HEAD`; `GET` with `Range: bytes=0-0` where HEAD is refused);
//! 2. if they differ from those seen first, the file restarts from zero (BITS's job model) — bytes on disk are only
//!    ever kept for the same remote file;
//! 3. before resuming at N without a `Repr-Digest` announced, asks for the [`OVERLAP`] bytes before N again
//!    and compares them with those held: other bytes under the same validators restart the file from zero;
//! 4. asks for the rest with `Range: bytes=N-` and `If-Range` (the strong ETag, else Last-Modified):
//!    206 appends; 200 (no range support, or a changed file) brings the file from zero — the same version's
//!    first N bytes are compared with those held rather than written again, another version replaces them;
//!    a body in any encoding but identity is an ERROR;
//! 5. streams the body to disk frame by frame (`body`; memory stays bounded by hyper's frame size), syncs
//!    it, and asks for the validators once more: a file rewritten in place during the transfer restarts;
//! 6. if that last answer, or the GET that brought the last bytes, carries a `Repr-Digest`, checks the
//!    temporary against it (`verify`; both when both do): a resumed file that does not match starts over
//!    from zero, a whole one is an ERROR.
//!
//! The reading of answers (validators, Content-Range, If-Range, an answer to a ranged GET) is `answer`'s,
//! sans-IO; a body's bytes into the temporary `body`'s; the temporary `part_file`'s, the digest check
//! `verify`'s, the classification of failures `failure`'s. Redirects and URLs are pure functions here,
//! with unit tests.

use std::fs::File;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Response, StatusCode, Uri};
use hyper::body::Incoming;

use super::answer::{if_range, parse_content_range, read_answer, read_range, validators, Answer};
use super::failure::{self, classify, header_str, Failure, Report};
use super::pace::Pace;
use super::receive::{receive, Limits, LowSpeedLimit, Received, Sink, Span};
use super::{part_file, verify};
use crate::client::{Client, ClientSettings, PeerGuard};
use crate::jobs::job::{ErrorContext, JobFile, Validators};

/// Redirects followed for one request.
const MAX_REDIRECTS: usize = 10;
/// Restarts of one file in one transfer (the remote file keeps changing) before it is a transient error.
const MAX_RESTARTS: usize = 3;
/// How many of the bytes held before a resume point are asked for again and compared (see
/// [`overlap_matches`]).
pub(crate) const OVERLAP: u64 = 16 * 1024;

/// A boxed transfer future.
pub(crate) type Fetching<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// What fetches one file: HTTP here; the manager's tests put a scripted one in its place.
pub(crate) trait Fetch: Send + Sync + 'static {
    /// Brings the file's temporary up to date with the remote file, updating `file` as it goes; a
    /// `restricted` job's connections are each checked by the peer guard, if there is one.
    fn fetch<'a>(
        &'a self,
        settings: &'a ClientSettings,
        restricted: bool,
        file: &'a mut JobFile,
        report: Report<'a>,
    ) -> Fetching<'a>;
}

/// The HTTP/1.1 client.
#[derive(Debug, Default, Clone)]
pub(crate) struct Http {
    /// The most bytes per second one transfer receives; `None`: unlimited.
    pub(crate) rate: Option<u64>,
    /// When a body is too slow.
    pub(crate) low_speed: LowSpeedLimit,
    /// Follow no symbolic link in any component of a temporary's path (see [`open_part`]).
    pub(crate) no_symlinks: bool,
    /// What every connection of a restricted job is checked against; `None`: nothing.
    pub(crate) guard: Option<PeerGuard>,
}

impl Fetch for Http {
    fn fetch<'a>(
        &'a self,
        settings: &'a ClientSettings,
        restricted: bool,
        file: &'a mut JobFile,
        report: Report<'a>,
    ) -> Fetching<'a> {
        Box::pin(async move {
            let guard = self.guard.clone().filter(|_| restricted);
            let mut client = Client::new(settings)
                .map_err(|e| Failure::client(&e))?
                .guarded(guard);
            let limits = Limits {
                pace: Pace::new(self.rate),
                low_speed: LowSpeedLimit {
                    min_bytes: self.low_speed.floor(self.rate),
                    window: self.low_speed.window,
                },
            };
            fetch_file(&mut client, file, report, limits, self.no_symlinks).await
        })
    }
}

/// Brings the temporary up to date; a temporary this leaves empty on a failure is removed (a download
/// that failed before its first byte leaves nothing behind).
async fn fetch_file(
    client: &mut Client,
    file: &mut JobFile,
    report: Report<'_>,
    mut limits: Limits,
    no_symlinks: bool,
) -> Result<(), Failure> {
    let (disk, part) = part_file::open(&file.local_file, no_symlinks)?;
    let result = transfer(client, file, report, (&disk, &part, &mut limits)).await;
    if result.is_err() && disk.metadata().is_ok_and(|m| m.len() == 0) {
        // Still held (locked) by this transfer: no other one is writing it.
        if let Err(e) = part_file::discard(file, no_symlinks) {
            tracing::debug!(file = ?part, error = %e, "cannot remove an empty temporary");
        }
    }
    result
}

async fn transfer(
    client: &mut Client,
    file: &mut JobFile,
    report: Report<'_>,
    (disk, part, limits): (&File, &Path, &mut Limits),
) -> Result<(), Failure> {
    let len = disk
        .metadata()
        .map_err(|e| Failure::local(&e, "read", part))?
        .len();
    // Bytes whose validators were never recorded belong to no known version of the file.
    // Bytes whose validators can tell a changed file (a strong ETag, or Last-Modified) are resumed; with
    // the size alone, a file changed to the same size would be resumed into a mix: start over.
    let resumable = file
        .validators
        .as_ref()
        .is_some_and(|v| if_range(v).is_some());
    let mut have = if resumable { len } else { 0 };
    let url = parse_url(&file.remote_url)?;
    client.trust_origin(&url);
    for _ in 0..MAX_RESTARTS {
        let (remote, url, announced) = probe(client, &url).await?;
        if file.validators.as_ref() != Some(&remote) {
            have = 0;
            file.validators = Some(remote.clone());
        }
        if have > remote.size {
            have = 0;
        }
        file.bytes_total = Some(remote.size);
        file.bytes_transferred = have;
        file.completed = false;
        report(file);
        // A digest announced for this version catches a mix at the end (and the file then starts
        // over, below); without one, the bytes held are checked against the server's first.
        if have > 0 && have < remote.size && announced.is_none() {
            let sink = Sink {
                disk,
                part,
                limits: &mut *limits,
            };
            if !overlap_matches(client, &url, &remote, have, sink, file, report).await? {
                have = 0;
            }
        }
        let resumed = have > 0;
        // The Repr-Digest of the GET that brought the last bytes (some servers send it only there).
        let mut get_digest = None;
        if have < remote.size {
            let sink = Sink {
                disk,
                part,
                limits: &mut *limits,
            };
            match get_rest(client, &url, &remote, have, sink, file, report).await? {
                Got::Again => {
                    have = 0;
                    continue;
                }
                Got::Done(digest) => get_digest = digest,
            }
        }
        match confirm(client, &url, (disk, part), get_digest, file, report).await {
            Ok(true) => return Ok(()),
            // Rewritten in place while we read it: never keep a mix.
            Ok(false) => file.validators = None,
            // The bytes held before the resume were of another version: the temporary was emptied,
            // and the file starts over.
            Err(f) if resumed && f.error.code == verify::MISMATCH => {}
            Err(f) => return Err(f),
        }
        have = 0;
    }
    Err(Failure::new(
        true,
        ErrorContext::RemoteFile,
        "remote_changing",
        "the remote file kept changing during the transfer",
    ))
}

/// Syncs the complete temporary and asks for the validators once more: `Ok(false)` when they changed
/// during the transfer; otherwise checks every digest the server gave for this version (one is checked
/// once) and marks the file completed.
async fn confirm(
    client: &mut Client,
    url: &Uri,
    (disk, part): (&File, &Path),
    get_digest: Option<[u8; 32]>,
    file: &mut JobFile,
    report: Report<'_>,
) -> Result<bool, Failure> {
    // The size of the version received (a 200 may have brought another than HEAD announced).
    let size = file.validators.as_ref().map_or(0, |v| v.size);
    part_file::sync(disk, size, part)?;
    let (after, _, digest) = probe(client, url).await?;
    if file.validators.as_ref() != Some(&after) {
        return Ok(false);
    }
    let digests = [digest, get_digest.filter(|g| Some(*g) != digest)];
    for sum in digests.into_iter().flatten() {
        verify::check(disk, part, sum, file, report).await?;
    }
    file.completed = true;
    report(file);
    Ok(true)
}

/// What [`get_rest`] got.
enum Got {
    /// The answer fits nothing asked for, or the bytes held are not the server's: restart from zero.
    Again,
    /// The file's bytes are all on disk; the answer's Repr-Digest (SHA-256), if it had one.
    Done(Option<[u8; 32]>),
}

/// Asks for the bytes from `have` on and writes them.
async fn get_rest(
    client: &mut Client,
    url: &Uri,
    seen: &Validators,
    have: u64,
    sink: Sink<'_>,
    file: &mut JobFile,
    report: Report<'_>,
) -> Result<Got, Failure> {
    let Sink { disk, part, limits } = sink;
    let mut headers = Vec::new();
    if have > 0 {
        headers.push((header::RANGE, format!("bytes={have}-")));
        if let Some(v) = if_range(seen) {
            headers.push((header::IF_RANGE, v.to_owned()));
        }
    }
    let (response, at) = request(client, Method::GET, url, &headers).await?;
    let answer = read_answer(have, seen, response.status(), response.headers())
        .map_err(|f| explain(client, &at, f, response.headers()))?;
    let (span, validators) = match answer {
        Answer::Again => return Ok(Got::Again),
        Answer::Append => {
            let span = Span {
                from: have,
                held: have,
                end: seen.size,
            };
            (span, seen.clone())
        }
        // The same version (validators that can tell, all equal) sent whole by a server that ignores
        // ranges: its first bytes are compared with those held, so that they are kept, not fetched anew
        // into an emptied file. Another version starts from zero.
        Answer::Whole(v) => {
            let same = v == *seen && if_range(seen).is_some();
            let held = if same { have.min(v.size) } else { 0 };
            let span = Span {
                from: 0,
                held,
                end: v.size,
            };
            (span, v)
        }
    };
    file.validators = Some(validators.clone());
    file.bytes_total = Some(validators.size);
    disk.set_len(span.held)
        .map_err(|e| Failure::local(&e, "write", part))?;
    file.bytes_transferred = span.held;
    report(file);
    // RFC 9530 §2: a 206's Repr-Digest is of the whole representation, as a 200's is.
    let digest = verify::expected(response.headers());
    let body = response.into_body();
    let sink = Sink { disk, part, limits };
    match receive(body, sink, span, file, report).await? {
        Received::Done => Ok(Got::Done(digest)),
        Received::Differs => Ok(Got::Again),
    }
}

/// Whether the last [`OVERLAP`] bytes held are those the server serves now: asked for again (`Range`,
/// `If-Range`) and compared. On `false` the bytes held are of another version (an origin that kept its
/// validators but serves other bytes, two servers behind one name): the file must start over. When the
/// overlap starts at zero (no more than [`OVERLAP`] bytes held), the server's bytes replace those that
/// differ, and the bytes held are then the server's.
///
/// A server that answers with anything but exactly those bytes (a 200: it ignores ranges, or the file
/// changed) is not checked here; the GET for the rest sees the same answer and decides.
async fn overlap_matches(
    client: &mut Client,
    url: &Uri,
    seen: &Validators,
    have: u64,
    sink: Sink<'_>,
    file: &mut JobFile,
    report: Report<'_>,
) -> Result<bool, Failure> {
    let from = have.saturating_sub(OVERLAP);
    let mut headers = vec![(header::RANGE, format!("bytes={from}-{}", have - 1))];
    if let Some(v) = if_range(seen) {
        headers.push((header::IF_RANGE, v.to_owned()));
    }
    let (response, at) = request(client, Method::GET, url, &headers).await?;
    let (status, answer) = (response.status(), response.headers());
    if status != StatusCode::PARTIAL_CONTENT {
        if let Some(f) = failure::encoded(answer) {
            return Err(f);
        }
        // A 200 (its body left unread, the connection dropped) or a 416: the GET for the rest decides.
        return match status.is_success() || status == StatusCode::RANGE_NOT_SATISFIABLE {
            true => Ok(true),
            false => Err(explain(client, &at, classify(status, answer), answer)),
        };
    }
    let range = Span {
        from,
        held: have,
        end: have,
    };
    let read = read_range((from, have), seen, status, answer)
        .map_err(|f| explain(client, &at, f, answer))?;
    if read != Answer::Append {
        return Ok(false);
    }
    let body = response.into_body();
    Ok(receive(body, sink, range, file, report).await? == Received::Done)
}

/// The failure for an answer, a 401 told what the server asks for and what was sent to it.
fn explain(client: &Client, url: &Uri, failure: Failure, headers: &HeaderMap) -> Failure {
    let given = client.credentials_for(url);
    let withheld = given.is_none() && client.has_credentials();
    failure::unauthorized(failure, given, withheld, headers)
}

/// The size and validators of the remote file, the URL it was found at after redirects, and its
/// Repr-Digest (SHA-256) if the server sent one.
async fn probe(
    client: &mut Client,
    url: &Uri,
) -> Result<(Validators, Uri, Option<[u8; 32]>), Failure> {
    let (response, url) = request(client, Method::HEAD, url, &[]).await?;
    let (status, headers) = (response.status(), response.headers());
    let digest = verify::expected(headers);
    if status.is_success() {
        if let Some(f) = failure::encoded(headers) {
            return Err(f);
        }
        return Ok((validators(headers, None)?, url, digest));
    }
    if status != StatusCode::METHOD_NOT_ALLOWED && status != StatusCode::NOT_IMPLEMENTED {
        return Err(explain(client, &url, classify(status, headers), headers));
    }
    let range = [(header::RANGE, "bytes=0-0".to_owned())];
    let (response, url) = request(client, Method::GET, &url, &range).await?;
    let headers = response.headers();
    if let Some(f) = failure::encoded(headers).filter(|_| response.status().is_success()) {
        return Err(f);
    }
    let total = match response.status() {
        StatusCode::PARTIAL_CONTENT => header_str(headers, header::CONTENT_RANGE)
            .and_then(parse_content_range)
            .map(|(_, _, total)| total),
        s if s.is_success() => None,
        s => return Err(explain(client, &url, classify(s, headers), headers)),
    };
    let digest = verify::expected(headers);
    Ok((validators(headers, total)?, url, digest))
}

/// An absolute `http://` or `https://` URL.
pub(crate) fn parse_url(text: &str) -> Result<Uri, Failure> {
    let bad = |why: &str| {
        Failure::new(
            false,
            ErrorContext::RemoteFile,
            "invalid_url",
            format!("{text:?}: {why}"),
        )
    };
    let uri: Uri = text.parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("only http:// and https:// URLs are supported")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    // SECURITY: a user name and password in the URL would travel in the clear (in Host, to a proxy) and
    // be stored with the job; credentials are set apart, as secrets.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(Failure::new(
            false,
            ErrorContext::RemoteFile,
            "invalid_url",
            "a URL with a user name or password in it is refused: give credentials apart"
                .to_owned(),
        ));
    }
    Ok(uri)
}

/// Where a redirect's Location leads from `base` (RFC 9110 §10.2.2: a URI reference).
pub(crate) fn resolve_location(base: &Uri, location: &str) -> Option<String> {
    if location.contains("://") {
        return Some(location.to_owned());
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?.as_str();
    if let Some(rest) = location.strip_prefix("//") {
        return Some(format!("{scheme}://{rest}"));
    }
    if location.starts_with('/') {
        return Some(format!("{scheme}://{authority}{location}"));
    }
    let dir = base.path().rsplit_once('/').map_or("", |(dir, _)| dir);
    Some(format!("{scheme}://{authority}{dir}/{location}"))
}

/// Sends a request, following redirects; returns the answer and the URL that gave it.
async fn request(
    client: &mut Client,
    method: Method,
    url: &Uri,
    extra: &[(HeaderName, String)],
) -> Result<(Response<Incoming>, Uri), Failure> {
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let response = client
            .send(&method, &url, extra)
            .await
            .map_err(|e| Failure::client(&e))?;
        if !response.status().is_redirection() || response.status() == StatusCode::NOT_MODIFIED {
            return Ok((response, url));
        }
        let next = header_str(response.headers(), header::LOCATION)
            .and_then(|l| resolve_location(&url, l))
            .ok_or_else(|| classify(response.status(), response.headers()))?;
        let next = parse_url(&next)?;
        // SECURITY: a redirect from https to http would send the rest (and any credentials) in the clear.
        if url.scheme_str() == Some("https") && next.scheme_str() != Some("https") {
            return Err(Failure::new(
                false,
                ErrorContext::RemoteFile,
                "insecure_redirect",
                format!("refused a redirect from {url} to {next}"),
            ));
        }
        url = next;
    }
    Err(Failure::new(
        false,
        ErrorContext::RemoteFile,
        "too_many_redirects",
        format!("more than {MAX_REDIRECTS} redirects"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_base() {
        let base: Uri = "http://h:81/a/b?x".parse().unwrap();
        let r = |l| resolve_location(&base, l).unwrap();
        assert_eq!(r("http://o/z"), "http://o/z");
        assert_eq!(r("//o:9/z"), "http://o:9/z");
        assert_eq!(r("/z"), "http://h:81/z");
        assert_eq!(r("c"), "http://h:81/a/c");
    }

    #[test]
    fn urls_must_be_absolute_http() {
        assert!(parse_url("http://127.0.0.1:1/a").is_ok());
        assert!(parse_url("https://h/a").is_ok());
        for bad in ["ftp://h/a", "/a", "h/a", "http:///a", "file:///etc/passwd"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        // SECURITY: a password in the URL is refused, and the refusal does not repeat it.
        let refused = parse_url("http://alice:S3cretPW@h/a").unwrap_err();
        assert!(!format!("{refused:?}").contains("S3cretPW"), "{refused:?}");
    }
}
