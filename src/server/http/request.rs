//! The request path: target → URL group → URL → file response, then per request its metrics and one
//! access-log line.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};

use super::access;
use super::index;
use super::peer::ConnInfo;
use super::response::Reject;
use super::site::Site;
use super::stream;
use crate::access_log::{clip_bytes, clip_string, Entry};
use crate::auth::Refusal;
use crate::files::{self, OnFinish, ResponseBody};
use crate::metrics::{GroupSeries, SchemeLabel};
use crate::url::{DownloadUnderWay, LiveDownload, RequestPath, SegmentError, UrlEntry, UrlGroup};

/// The hyper service: infallible, since an `Err` would abort the connection. It takes any request body
/// (hyper's on a connection, an in-memory one in tests), and needs no socket: `conn` says where the request
/// came from.
pub(crate) async fn handle<B>(
    req: Request<B>,
    site: Arc<Site>,
    conn: Arc<ConnInfo>,
) -> Result<Response<ResponseBody>, Infallible>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut log = RequestLog::start(&req, &conn, &site);
    let mut counted = None;
    let mut user = None;
    let mut routed = None;
    let version = req.version();
    let response = match route(&req, &site, &conn) {
        Ok((group, target)) => {
            if let Some(log) = log.as_mut() {
                log.group = Some(group.prefix().to_string());
            }
            if let Target::Url(entry) = &target {
                counted = Some(entry.clone());
            }
            let answered = match target {
                Target::Url(entry) => match access::check(&req, &group, &entry, &site, &conn).await
                {
                    Ok(granted) => {
                        let response = transfer(&req, &group, &entry, &site, &conn)
                            .await
                            .unwrap_or_else(|reject| {
                                if matches!(reject, Reject::Busy) {
                                    group.series().busy.inc();
                                }
                                reject.into_response_on(version)
                            });
                        Ok((response, granted))
                    }
                    Err(reject) => Err(reject),
                },
                Target::Index => index::respond(&req, &group, &site, &conn).await,
                Target::Missing => Err(Reject::NotFound),
            };
            let response = match answered {
                Ok((mut response, granted)) => {
                    let identity = &granted.identity;
                    user = identity
                        .is_authenticated()
                        .then(|| identity.name().to_owned());
                    if let Some(log) = log.as_mut() {
                        log.identity = identity
                            .is_authenticated()
                            .then(|| identity.name().to_owned());
                    }
                    if let Some(value) = granted.reply.and_then(|r| HeaderValue::try_from(r).ok()) {
                        response
                            .headers_mut()
                            .append(header::WWW_AUTHENTICATE, value);
                    }
                    response
                }
                Err(reject) => {
                    count_refusal(&req, &reject, &site);
                    reject.into_response_on(version)
                }
            };
            routed = Some(group);
            response
        }
        Err(reject) => {
            tracing::debug!(peer = %conn.peer, error = %reject, "request refused");
            reject.into_response_on(version)
        }
    };
    let get = req.method() == Method::GET;
    let response = drained(req.into_body(), response).await;
    let status = response.status();
    let series = match routed {
        Some(group) => Series::Group(group),
        None => Series::Ungrouped(site.clone()),
    };
    if log.is_none() && counted.is_none() {
        // Nothing to wait for: counted now, with the body's length (error pages, the index).
        let length = http_body::Body::size_hint(response.body()).exact();
        series.get().answered(status.as_u16(), length.unwrap_or(0));
        return Ok(response);
    }
    if let Some(log) = log.as_mut() {
        log.status = status.as_u16();
    }
    let download = get && (status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT);
    let under_way = counted.as_ref().filter(|_| download).map(|entry| {
        series.get().download_started();
        let total = http_body::Body::size_hint(response.body())
            .exact()
            .unwrap_or_default();
        DownloadUnderWay::start(
            entry.counters.clone(),
            LiveDownload::new(conn.peer, user, total),
        )
    });
    let finished = Finished {
        log,
        under_way,
        counted: counted.map(|entry| (entry, download)),
        series,
        status: status.as_u16(),
    };
    let (parts, body) = response.into_parts();
    Ok(Response::from_parts(
        parts,
        body.on_finish(Box::new(finished)),
    ))
}

/// The metric series a request counts in: its group's, or those of requests no group serves.
enum Series {
    Group(UrlGroup),
    Ungrouped(Arc<Site>),
}

impl Series {
    fn get(&self) -> &GroupSeries {
        match self {
            Series::Group(group) => group.series(),
            Series::Ungrouped(site) => site.metrics.ungrouped(),
        }
    }
}

/// Counts a refusal of offered credentials, by the scheme offered (a bounded label), and the limiter's
/// 429s. A challenge that continues a handshake (an NTLM or Negotiate token in it) is no failure, nor is
/// the challenge of a request that offered nothing.
fn count_refusal<B>(req: &Request<B>, reject: &Reject, site: &Site) {
    let metrics = &site.metrics;
    let offered = req.headers().get(header::AUTHORIZATION);
    let failed = match reject {
        Reject::Refused(Refusal::Limited(_)) => {
            metrics.auth_limited.inc();
            return;
        }
        Reject::Refused(Refusal::Challenge(next)) => !next
            .iter()
            .any(|c| c.starts_with("NTLM ") || c.starts_with("Negotiate ")),
        Reject::Refused(Refusal::Busy) => false,
        Reject::Refused(_) => true,
        // Denied is authorization: who the caller is was not in question.
        _ => false,
    };
    if let (true, Some(value)) = (failed, offered) {
        metrics.auth_failed(SchemeLabel::of_header(value.as_bytes()));
    }
}

/// What runs when a response body is done: the metrics, the access-log line and the URL's counters.
struct Finished {
    log: Option<RequestLog>,
    /// The URL, and whether this response is a download of it.
    counted: Option<(Arc<UrlEntry>, bool)>,
    /// A download counts as under way until its body ends.
    under_way: Option<DownloadUnderWay>,
    series: Series,
    status: u16,
}

impl OnFinish for Finished {
    fn progress(&mut self, n: u64) {
        if let Some(under_way) = &self.under_way {
            under_way.record(n);
        }
    }

    fn finish(&mut self, sent: u64, complete: bool) {
        if let Some((entry, download)) = &self.counted {
            entry.counters.count(sent, *download && complete);
        }
        let series = self.series.get();
        series.answered(self.status, sent);
        if self.under_way.take().is_some() {
            series.download_ended(complete);
        }
        if let Some(log) = self.log.as_mut() {
            log.finish(sent, complete);
        }
    }
}

/// The most request body read (and discarded) before answering, so that the connection stays usable:
/// NTLM's 401 must keep the connection alive even when a client sent a body with its first leg.
const MAX_DRAIN: usize = 4 << 20;

/// Reads and discards the request body (this server takes none) before the response goes out; a body
/// larger than [`MAX_DRAIN`], or slower than the drain deadline, closes the connection after the response.
async fn drained<B>(body: B, mut response: Response<ResponseBody>) -> Response<ResponseBody>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if body.is_end_stream() {
        return response;
    }
    let limited = http_body_util::Limited::new(body, MAX_DRAIN);
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        http_body_util::BodyExt::collect(limited),
    )
    .await;
    if !matches!(read, Ok(Ok(_))) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Answers a routed request. A GET is a transfer: it needs one of the group's transfer permits and one of
/// its client source's (503 when the group is at its ConnectionLimit or the source at its share), its body
/// is paced by the group's bandwidth budget, reads within the connection's read budget, and on HTTP/2
/// reports its progress to the stream's watchdog.
async fn transfer<B>(
    req: &Request<B>,
    group: &UrlGroup,
    entry: &UrlEntry,
    site: &Site,
    conn: &ConnInfo,
) -> Result<Response<ResponseBody>, Reject> {
    // After authentication, as HTTP.sys does: an unauthenticated caller learns nothing about methods.
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(Reject::MethodNotAllowed);
    }
    let limits = group.limits();
    let permit = if req.method() == Method::GET {
        let ticket = site
            .transfers
            .try_start(conn.peer.ip())
            .ok_or(Reject::Busy)?;
        Some((limits.transfers.try_start().ok_or(Reject::Busy)?, ticket))
    } else {
        None
    };
    let response = files::respond(req.method(), req.headers(), &entry.source).await?;
    let (mut parts, mut body) = response.into_parts();
    // A published file may change on disk: by default caches keep it but ask again (with the ETag).
    parts
        .headers
        .insert(header::CACHE_CONTROL, group.cache_control());
    body = body.with_budget(&conn.budget);
    if let Some(zero_copy) = &conn.zero_copy {
        body = body.with_zero_copy(zero_copy);
    }
    if let Some(progress) = stream::current() {
        body = body.watched_by(progress);
    }
    if let Some((permit, ticket)) = permit {
        body = body.in_transfer(
            permit,
            ticket,
            limits.bandwidth.clone(),
            group.series().paced.clone(),
        );
    }
    Ok(Response::from_parts(parts, body))
}

/// What a request is for, within its group.
enum Target {
    Url(Arc<UrlEntry>),
    /// The group's root, when the group has an index.
    Index,
    /// No URL of the group has this suffix (404, before authentication: as HTTP.sys, which answers
    /// what no URL serves without asking who is calling). Counted as the group's.
    Missing,
}

/// Finds the group and URL (or index) for a request, or why there is none: 400 for a malformed request,
/// 404 for a path no URL serves.
fn route<B>(req: &Request<B>, site: &Site, conn: &ConnInfo) -> Result<(UrlGroup, Target), Reject> {
    let host = request_host(req)?;
    let raw = req.uri().path();
    let path = match RequestPath::parse(raw) {
        Ok(path) => Some(path),
        // `/`, `/Group/sub/`, `/Group//x`: well-formed, but no URL has an empty segment.
        Err(SegmentError::Empty) if raw.starts_with('/') => None,
        Err(e) => return Err(Reject::BadPath(e)),
    };
    let routes = site.routes.load();
    let (port, local_ip) = (conn.local.port(), conn.local.ip());
    let found = path
        .as_ref()
        .and_then(|path| routes.route(port, host.as_deref(), local_ip, &path.group_key));
    let (Some(path), Some(group)) = (path.as_ref(), found) else {
        let reachable = routes.reachable(port, host.as_deref(), local_ip);
        if reachable.is_empty() {
            return Err(Reject::NoGroup);
        }
        return Err(Reject::Unserved(index::groups_page(&reachable)));
    };
    let group = group.clone();
    if path.suffix_key.is_empty() && group.index() {
        return Ok((group, Target::Index));
    }
    Ok(match group.lookup(&path.suffix_key) {
        Some(entry) => (group, Target::Url(entry)),
        None => (group, Target::Missing),
    })
}

/// The host a request names: the authority of an absolute-form target, else the one `Host` header
/// (RFC 9112 §3.2), lowercased, without port or trailing dot. HTTP/1.1 requires it.
fn request_host<B>(req: &Request<B>) -> Result<Option<String>, Reject> {
    if let Some(authority) = req.uri().authority() {
        return Ok(Some(normalise_host(authority.host())));
    }
    let mut values = req.headers().get_all(header::HOST).iter();
    let Some(value) = values.next() else {
        return if req.version() == Version::HTTP_10 {
            Ok(None)
        } else {
            Err(Reject::BadRequest("missing Host header"))
        };
    };
    if values.next().is_some() {
        return Err(Reject::BadRequest("more than one Host header"));
    }
    parse_host_header(value)
        .map(Some)
        .ok_or(Reject::BadRequest("invalid Host header"))
}

/// `name[:port]` or `[v6][:port]`, with only the characters a host may have.
fn parse_host_header(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let host = if let Some(rest) = text.strip_prefix('[') {
        let end = rest.find(']')?;
        let after = &rest[end + 1..];
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        &text[..end + 2]
    } else {
        let (host, port) = text.split_once(':').unwrap_or((text, ""));
        if text.contains(':') && !valid_port(port) {
            return None;
        }
        host
    };
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b);
    (!host.is_empty() && host.bytes().all(allowed)).then(|| normalise_host(host))
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

fn normalise_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// One access-log line, written when the response body is done: the `bits_compact::access` tracing
/// event, and the entry of the server's access log when it has one.
struct RequestLog {
    start: Instant,
    method: Method,
    target: String,
    peer: SocketAddr,
    identity: Option<String>,
    group: Option<String>,
    status: u16,
    /// Whether the tracing event is enabled.
    traced: bool,
    /// The server's access log and what only it writes, when there is one.
    sink: Option<(Arc<Site>, SinkFields)>,
}

/// What the access log writes beyond the tracing event.
struct SinkFields {
    time: SystemTime,
    version: Version,
    referer: Option<Bytes>,
    user_agent: Option<Bytes>,
}

impl RequestLog {
    fn start<B>(req: &Request<B>, conn: &ConnInfo, site: &Arc<Site>) -> Option<Self> {
        let traced = tracing::enabled!(target: "bits_compact::access", tracing::Level::INFO);
        let sink = site.access_log.as_ref().map(|_| {
            let headers = req.headers();
            let fields = SinkFields {
                time: SystemTime::now(),
                version: req.version(),
                // SECURITY: copies, cut now: a HeaderValue would pin hyper's whole head buffer.
                referer: headers
                    .get(header::REFERER)
                    .map(|v| clip_bytes(v.as_bytes())),
                user_agent: headers
                    .get(header::USER_AGENT)
                    .map(|v| clip_bytes(v.as_bytes())),
            };
            (site.clone(), fields)
        });
        if !traced && sink.is_none() {
            return None;
        }
        Some(RequestLog {
            start: Instant::now(),
            method: req.method().clone(),
            target: clip_string(req.uri().to_string()),
            peer: conn.peer,
            identity: None,
            group: None,
            status: 0,
            traced,
            sink,
        })
    }

    fn finish(&mut self, sent: u64, complete: bool) {
        let duration = self.start.elapsed();
        if self.traced {
            // No parent span: the connection's span would name the peer a second time.
            tracing::info!(
                target: "bits_compact::access",
                parent: None,
                method = %self.method,
                url = %self.target,
                status = self.status,
                bytes = sent,
                complete,
                duration_us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
                peer = %self.peer,
                identity = self.identity.as_deref().unwrap_or("-"),
                group = self.group.as_deref().unwrap_or("-"),
            );
        }
        let Some((site, fields)) = self.sink.take() else {
            return;
        };
        if let Some(sink) = &site.access_log {
            sink.log(Entry {
                time: fields.time,
                client: self.peer.ip(),
                user: self.identity.take().map(clip_string),
                method: self.method.clone(),
                target: std::mem::take(&mut self.target),
                version: fields.version,
                status: self.status,
                bytes: sent,
                complete,
                referer: fields.referer,
                user_agent: fields.user_agent,
                group: self.group.take(),
                duration,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(v: &str) -> Option<String> {
        parse_host_header(&HeaderValue::from_str(v).unwrap())
    }

    #[test]
    fn host_headers() {
        assert_eq!(host("Example.COM"), Some("example.com".into()));
        assert_eq!(host("example.com:8080"), Some("example.com".into()));
        assert_eq!(host("example.com."), Some("example.com".into()));
        assert_eq!(host("127.0.0.1:80"), Some("127.0.0.1".into()));
        assert_eq!(host("[::1]:8080"), Some("[::1]".into()));
        assert_eq!(host("[::1]"), Some("[::1]".into()));
        for bad in [
            "", ":80", "a b", "a/b", "a@b", "host:", "host:x", "host:1:2", "[::1", "[::1]x", "h\\x",
        ] {
            assert_eq!(host(bad), None, "{bad:?}");
        }
    }
}
