//! Serving a registered file: validators, preconditions, ranges and the streamed body (RFC 9110).
//!
//! What BITS needs and this module guarantees: HEAD carries Content-Length, Last-Modified and
//! `Accept-Ranges: bytes`; a single range is a 206 with an exact Content-Range; several ranges are a
//! `multipart/byteranges` 206 with the parts in request order; an unsatisfiable range is a 416; nothing is
//! ever compressed.

mod body;
mod conditional;
mod digest;
pub(crate) mod nofollow;
// Public only for the fuzz targets (fuzz/): not part of the API.
#[doc(hidden)]
pub mod range;
mod readahead;
mod source;
mod zerocopy;

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

pub(crate) use body::OnFinish;
pub use body::ResponseBody;
use body::Segment;
use conditional::{Precondition, Validators};
use range::{ByteRange, RangeRequest};
pub(crate) use source::{Content, FileCache, FileSource, Unpublishable, Version};
pub(crate) use zerocopy::ZeroCopy;

/// Why a file could not be served; `serve::response` turns each into a status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    /// The file vanished or is no longer a regular file.
    #[error("the file is gone")]
    Gone(#[source] std::io::Error),
    /// The file changed while being opened; the client may retry at once.
    #[error("the file is changing")]
    Changing(#[source] std::io::Error),
    /// A content-addressed file this server does not hold yet (a fleet's node still fetching it): never
    /// partial or unverified bytes; the client retries later.
    #[error("the file's content is not held here yet")]
    Pending,
    /// Any other local I/O failure.
    #[error("cannot read the file")]
    Io(#[source] std::io::Error),
    /// No requested range overlaps the file.
    #[error("range not satisfiable")]
    Unsatisfiable {
        /// The file length, for `Content-Range: bytes */len`.
        len: u64,
    },
    /// If-Match or If-Unmodified-Since failed.
    #[error("precondition failed")]
    PreconditionFailed,
}

impl From<std::io::Error> for FileError {
    fn from(e: std::io::Error) -> Self {
        match e.kind() {
            std::io::ErrorKind::NotFound => FileError::Gone(e),
            std::io::ErrorKind::Interrupted => FileError::Changing(e),
            _ => FileError::Io(e),
        }
    }
}

/// Answers a GET or HEAD for `source`.
pub(crate) async fn respond(
    method: &Method,
    headers: &HeaderMap,
    source: &Arc<FileSource>,
) -> Result<Response<ResponseBody>, FileError> {
    let source = &source.serving();
    let not_held = |e: std::io::Error| match FileError::from(e) {
        FileError::Gone(_) if source.is_content() => FileError::Pending,
        other => other,
    };
    let seen = source.stat().map_err(not_held)?;
    let (version, mut response) = if *method == Method::HEAD {
        let response = head(source, &seen, plan(headers, &seen)?);
        (seen, response)
    } else {
        let (version, content) = source.content(seen).await.map_err(not_held)?;
        let plan = plan(headers, &version)?;
        let response = get(source, &version, content, plan);
        (version, response)
    };
    // RFC 9530 §2: Repr-Digest describes the whole representation, so a 206 carries the same one.
    let status = response.status();
    if status == StatusCode::OK || status == StatusCode::PARTIAL_CONTENT {
        if let Some(value) = source.repr_digest(&version) {
            response.headers_mut().insert(REPR_DIGEST, value);
        }
    }
    Ok(response)
}

/// `Repr-Digest` (RFC 9530 §2).
const REPR_DIGEST: header::HeaderName = header::HeaderName::from_static("repr-digest");

/// What to send, decided from the request headers and the version only.
enum Plan {
    NotModified,
    Full,
    Ranges(Vec<ByteRange>),
}

fn plan(headers: &HeaderMap, v: &Version) -> Result<Plan, FileError> {
    let validators = Validators {
        etag: v.etag.to_str().unwrap_or(""),
        modified_secs: v.modified_secs,
    };
    match conditional::evaluate(headers, validators) {
        Precondition::Failed => return Err(FileError::PreconditionFailed),
        Precondition::NotModified => return Ok(Plan::NotModified),
        Precondition::Proceed => {}
    }
    let Some(value) = headers.get(header::RANGE) else {
        return Ok(Plan::Full);
    };
    if !conditional::if_range_allows(headers, validators) {
        return Ok(Plan::Full);
    }
    match range::parse(value.as_bytes(), v.len) {
        RangeRequest::Ignore => Ok(Plan::Full),
        RangeRequest::Unsatisfiable => Err(FileError::Unsatisfiable { len: v.len }),
        RangeRequest::Ranges(ranges) => Ok(Plan::Ranges(ranges)),
    }
}

fn head(source: &FileSource, v: &Version, plan: Plan) -> Response<ResponseBody> {
    let (status, len, content_type, content_range) = match &plan {
        Plan::NotModified => return not_modified(v),
        Plan::Full => (StatusCode::OK, v.len, source.content_type().clone(), None),
        Plan::Ranges(ranges) if ranges.len() == 1 => (
            StatusCode::PARTIAL_CONTENT,
            ranges[0].len(),
            source.content_type().clone(),
            Some(content_range(ranges[0], v.len)),
        ),
        Plan::Ranges(ranges) => {
            let multipart = Multipart::new(source.content_type(), ranges, v.len);
            (
                StatusCode::PARTIAL_CONTENT,
                multipart.len,
                multipart.content_type,
                None,
            )
        }
    };
    let mut response = with_validators(Response::new(ResponseBody::empty()), v);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(cr) = content_range {
        h.insert(header::CONTENT_RANGE, cr);
    }
    response
}

fn get(source: &FileSource, v: &Version, content: Content, plan: Plan) -> Response<ResponseBody> {
    let (status, body, content_type) = match plan {
        Plan::NotModified => return not_modified(v),
        Plan::Full => (
            StatusCode::OK,
            body_of(
                &content,
                VecDeque::from([range_segment(&content, 0, v.len)]),
            ),
            source.content_type().clone(),
        ),
        Plan::Ranges(ranges) if ranges.len() == 1 => {
            let r = ranges[0];
            let body = body_of(
                &content,
                VecDeque::from([range_segment(&content, r.start, r.end + 1)]),
            );
            let mut response = with_validators(Response::new(body), v);
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let h = response.headers_mut();
            h.insert(header::CONTENT_TYPE, source.content_type().clone());
            h.insert(header::CONTENT_RANGE, content_range(r, v.len));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(r.len()));
            return response;
        }
        Plan::Ranges(ranges) => {
            let multipart = Multipart::new(source.content_type(), &ranges, v.len);
            let segments = multipart.segments(&content, &ranges);
            (
                StatusCode::PARTIAL_CONTENT,
                body_of(&content, segments),
                multipart.content_type,
            )
        }
    };
    let len = body_len(&body);
    let mut response = with_validators(Response::new(body), v);
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    response
}

fn body_len(body: &ResponseBody) -> u64 {
    http_body::Body::size_hint(body).exact().unwrap_or(0)
}

fn body_of(content: &Content, segments: VecDeque<Segment>) -> ResponseBody {
    let file = match content {
        Content::Disk(file) => Some(file.clone()),
        Content::Memory(_) => None,
    };
    ResponseBody::from_segments(segments, file)
}

/// `start..end` (end exclusive) of the content, as a segment.
fn range_segment(content: &Content, start: u64, end: u64) -> Segment {
    match content {
        Content::Memory(bytes) => {
            let (s, e) = (start as usize, end as usize);
            Segment::Bytes(bytes.slice(s.min(bytes.len())..e.min(bytes.len())))
        }
        Content::Disk(_) => Segment::File { start, end },
    }
}

fn with_validators(mut response: Response<ResponseBody>, v: &Version) -> Response<ResponseBody> {
    let h = response.headers_mut();
    // Room for every header a file response gets (these three, type, length, range, digest, cache
    // control, authentication): grown one insert at a time, the map reallocated twice per response.
    h.reserve(10);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::ETAG, v.etag.clone());
    h.insert(header::LAST_MODIFIED, v.last_modified.clone());
    response
}

fn not_modified(v: &Version) -> Response<ResponseBody> {
    let mut response = with_validators(Response::new(ResponseBody::empty()), v);
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response
}

fn content_range(r: ByteRange, len: u64) -> HeaderValue {
    HeaderValue::try_from(format!("bytes {}-{}/{}", r.start, r.end, len))
        .unwrap_or(HeaderValue::from_static("bytes */0"))
}

/// The frame of a `multipart/byteranges` body (RFC 9110 §14.6): part headers kept minimal.
struct Multipart {
    content_type: HeaderValue,
    heads: Vec<Bytes>,
    tail: Bytes,
    len: u64,
}

impl Multipart {
    fn new(part_type: &HeaderValue, ranges: &[ByteRange], total: u64) -> Self {
        let boundary = boundary();
        let part_type = part_type.to_str().unwrap_or("application/octet-stream");
        let heads: Vec<Bytes> = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let lead = if i == 0 { "" } else { "\r\n" };
                Bytes::from(format!(
                    "{lead}--{boundary}\r\nContent-Type: {part_type}\r\nContent-Range: bytes {}-{}/{total}\r\n\r\n",
                    r.start, r.end
                ))
            })
            .collect();
        let tail = Bytes::from(format!("\r\n--{boundary}--\r\n"));
        let len = heads.iter().map(|h| h.len() as u64).sum::<u64>()
            + ranges.iter().map(ByteRange::len).sum::<u64>()
            + tail.len() as u64;
        let content_type =
            HeaderValue::try_from(format!("multipart/byteranges; boundary={boundary}"))
                .unwrap_or(HeaderValue::from_static("multipart/byteranges"));
        Multipart {
            content_type,
            heads,
            tail,
            len,
        }
    }

    fn segments(&self, content: &Content, ranges: &[ByteRange]) -> VecDeque<Segment> {
        let mut segments = VecDeque::with_capacity(ranges.len() * 2 + 1);
        for (head, r) in self.heads.iter().zip(ranges) {
            segments.push_back(Segment::Bytes(head.clone()));
            segments.push_back(range_segment(content, r.start, r.end + 1));
        }
        segments.push_back(Segment::Bytes(self.tail.clone()));
        segments
    }
}

/// A boundary unlikely to occur in any file: 64 bits from the process's random hasher keys, made unique
/// per response by a counter.
fn boundary() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("bcs-{:016x}", hasher.finish())
}
