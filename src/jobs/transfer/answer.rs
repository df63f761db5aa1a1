//! What an answer means, sans-IO: the size and validators it tells ([`validators`], [`if_range`]),
//! its Content-Range, and what an answer to a ranged GET means for the bytes held ([`Answer`]); an encoded
//! body is refused here, before any byte is read.

use http::header::{self, HeaderMap};
use http::StatusCode;

use super::failure::{self, classify, header_str, Failure};
use crate::jobs::job::{ErrorContext, Validators};

/// What an answer to a GET for the bytes from `have` on means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// 206 for exactly the bytes asked for: append.
    Append,
    /// 200: the whole file (no range support, or If-Range failed because it changed).
    Whole(Validators),
    /// The answer fits nothing we asked for (a 416, a 206 for other bytes): restart from zero.
    Again,
}

pub(super) fn read_answer(
    have: u64,
    seen: &Validators,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Answer, Failure> {
    read_range((have, seen.size), seen, status, headers)
}

/// What an answer to a GET for the bytes `from..end` means. A body in any encoding but identity is
/// refused (we ask for identity, RFC 9110 §12.5.3): its bytes are not the file's.
pub(super) fn read_range(
    (from, end): (u64, u64),
    seen: &Validators,
    status: StatusCode,
    headers: &HeaderMap,
) -> Result<Answer, Failure> {
    if status.is_success() {
        if let Some(f) = failure::encoded(headers) {
            return Err(f);
        }
    }
    match status {
        StatusCode::PARTIAL_CONTENT => {
            let fits = header_str(headers, header::CONTENT_RANGE)
                .and_then(parse_content_range)
                .is_some_and(|(first, last, total)| {
                    first == from && Some(last) == end.checked_sub(1) && total == seen.size
                });
            Ok(if fits { Answer::Append } else { Answer::Again })
        }
        StatusCode::OK => Ok(Answer::Whole(validators(headers, None)?)),
        StatusCode::RANGE_NOT_SATISFIABLE => Ok(Answer::Again),
        other => Err(classify(other, headers)),
    }
}

/// The validators of an answer; the size is `size` or the Content-Length.
pub(super) fn validators(headers: &HeaderMap, size: Option<u64>) -> Result<Validators, Failure> {
    let size = size
        .or_else(|| header_str(headers, header::CONTENT_LENGTH)?.parse().ok())
        .ok_or_else(|| {
            Failure::new(
                false,
                ErrorContext::ServerResponse,
                "missing_size",
                "the server did not tell the file's size (no Content-Length)",
            )
        })?;
    Ok(Validators {
        size,
        etag: header_str(headers, header::ETAG).map(str::to_owned),
        last_modified: header_str(headers, header::LAST_MODIFIED).map(str::to_owned),
    })
}

/// The If-Range value for a resumed GET: the ETag if strong (RFC 9110 §13.1.5 allows no weak one), else
/// Last-Modified; `None` when neither can validate (then a range is not asked for blindly: the caller
/// still sends it, and a changed file is caught by the size and the final check).
pub(crate) fn if_range(v: &Validators) -> Option<&str> {
    match &v.etag {
        Some(tag) if !tag.starts_with("W/") => Some(tag),
        _ => v.last_modified.as_deref(),
    }
}

/// `bytes FIRST-LAST/TOTAL` → (first, last, total); `None` for anything else (`*/total` included).
pub(crate) fn parse_content_range(value: &str) -> Option<(u64, u64, u64)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let digits = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (first, last, total) = (digits(first)?, digits(last)?, digits(total)?);
    (first <= last && last < total).then_some((first, last, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};

    fn v(size: u64, etag: Option<&str>, lm: Option<&str>) -> Validators {
        Validators {
            size,
            etag: etag.map(str::to_owned),
            last_modified: lm.map(str::to_owned),
        }
    }

    #[test]
    fn if_range_prefers_a_strong_etag() {
        let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(if_range(&v(1, Some("\"a\""), Some(lm))), Some("\"a\""));
        assert_eq!(if_range(&v(1, Some("W/\"a\""), Some(lm))), Some(lm));
        assert_eq!(if_range(&v(1, None, Some(lm))), Some(lm));
        assert_eq!(if_range(&v(1, Some("W/\"a\""), None)), None);
        assert_eq!(if_range(&v(1, None, None)), None);
    }

    #[test]
    fn content_range_parses_only_the_exact_form() {
        assert_eq!(parse_content_range("bytes 0-0/10"), Some((0, 0, 10)));
        assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, 9, 10)));
        for bad in [
            "bytes */10",
            "bytes 5-4/10",
            "bytes 5-10/10",
            "bytes -1-3/10",
            "bytes +1-3/10",
            "bytes 1-3/",
            "bytes 1-3/*",
            "items 1-3/10",
            "bytes 1-99999999999999999999/100000000000000000000",
            "",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn answers_to_a_ranged_get() {
        let seen = v(10, Some("\"a\""), None);
        let with = |pairs: &[(HeaderName, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, val) in pairs {
                h.insert(k.clone(), HeaderValue::from_static(val));
            }
            h
        };
        let partial = |range| with(&[(header::CONTENT_RANGE, range)]);
        let read = |status, headers: &HeaderMap| read_answer(4, &seen, status, headers);
        let p = StatusCode::PARTIAL_CONTENT;
        assert_eq!(read(p, &partial("bytes 4-9/10")), Ok(Answer::Append));
        // Other bytes, another total, or no Content-Range: restart rather than mix.
        assert_eq!(read(p, &partial("bytes 0-9/10")), Ok(Answer::Again));
        assert_eq!(read(p, &partial("bytes 4-8/10")), Ok(Answer::Again));
        assert_eq!(read(p, &partial("bytes 4-10/11")), Ok(Answer::Again));
        assert_eq!(read(p, &HeaderMap::new()), Ok(Answer::Again));
        let whole = with(&[(header::CONTENT_LENGTH, "12"), (header::ETAG, "\"b\"")]);
        assert_eq!(
            read(StatusCode::OK, &whole),
            Ok(Answer::Whole(v(12, Some("\"b\""), None)))
        );
        assert_eq!(
            read(StatusCode::OK, &HeaderMap::new())
                .unwrap_err()
                .error
                .code,
            "missing_size"
        );
        assert_eq!(
            read(StatusCode::RANGE_NOT_SATISFIABLE, &HeaderMap::new()),
            Ok(Answer::Again)
        );
        assert_eq!(
            read(StatusCode::NOT_FOUND, &HeaderMap::new())
                .unwrap_err()
                .error
                .context,
            ErrorContext::RemoteFile
        );
    }
}
