//! The `Range` request header (RFC 9110 §14.1.2 and §14.2), sans-IO and total.
//!
//! SECURITY: the threat is a request that makes the server do far more work than the file is worth (many
//! tiny or overlapping ranges, numbers that overflow). Numbers saturate instead of overflowing; a request
//! with more than [`MAX_RANGES`] ranges, or whose ranges add up to more than the file (64 copies of the whole
//! file would send it 64 times), is answered as if it had no `Range` (a full 200), as RFC 9110 §14.2 allows.
//! Ranges are never merged: BITS refuses a server that answers with other ranges than it asked for.

use std::fmt;

/// The most ranges one request may ask for before the `Range` header is ignored.
pub const MAX_RANGES: usize = 64;

/// One satisfiable range, resolved against the file length: `start..=end`, both inside the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive).
    pub end: u64,
}

impl ByteRange {
    /// How many bytes the range covers.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Always false: a resolved range covers at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// What a `Range` header asks of a file of a given length.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RangeRequest {
    /// Not a byte range we understand, malformed, or too many ranges: serve the whole file (200).
    Ignore,
    /// Well formed, but no range overlaps the file: 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
    /// The satisfiable ranges in request order, neither merged nor reordered.
    Ranges(Vec<ByteRange>),
}

enum Spec {
    /// `first-last` or `first-`.
    From(u64, Option<u64>),
    /// `-n`: the last n bytes.
    Suffix(u64),
}

/// Parses a `Range` header value against a file of `len` bytes.
pub fn parse(value: &[u8], len: u64) -> RangeRequest {
    let Ok(text) = std::str::from_utf8(value) else {
        return RangeRequest::Ignore;
    };
    let Some(eq) = text.find('=') else {
        return RangeRequest::Ignore;
    };
    if !text[..eq].trim().eq_ignore_ascii_case("bytes") {
        return RangeRequest::Ignore;
    }
    let mut specs = Vec::new();
    for item in text[eq + 1..].split(',') {
        let item = item.trim_matches([' ', '\t']);
        if item.is_empty() {
            continue; // RFC 9110 §5.6.1: empty list elements are ignored.
        }
        if specs.len() == MAX_RANGES {
            return RangeRequest::Ignore;
        }
        match parse_spec(item) {
            Some(spec) => specs.push(spec),
            None => return RangeRequest::Ignore,
        }
    }
    if specs.is_empty() {
        return RangeRequest::Ignore;
    }
    let ranges: Vec<ByteRange> = specs.iter().filter_map(|s| resolve(s, len)).collect();
    if ranges.is_empty() {
        return RangeRequest::Unsatisfiable;
    }
    // Each range lies inside the file, so with at most MAX_RANGES of them the sum cannot overflow.
    let asked: u64 = ranges.iter().map(|r| r.len()).fold(0, u64::saturating_add);
    if ranges.len() > 1 && asked > len {
        return RangeRequest::Ignore;
    }
    RangeRequest::Ranges(ranges)
}

fn parse_spec(item: &str) -> Option<Spec> {
    let (first, last) = item.split_once('-')?;
    if first.is_empty() {
        return Some(Spec::Suffix(number(last)?));
    }
    let first = number(first)?;
    if last.is_empty() {
        return Some(Spec::From(first, None));
    }
    let last = number(last)?;
    // RFC 9110 §14.1.1: a last-pos below first-pos makes the whole range-set invalid.
    (last >= first).then_some(Spec::From(first, Some(last)))
}

/// A non-empty run of ASCII digits; values past u64 saturate (they are beyond any file anyway).
fn number(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

fn resolve(spec: &Spec, len: u64) -> Option<ByteRange> {
    match *spec {
        Spec::From(first, _) if first >= len => None,
        Spec::From(first, last) => Some(ByteRange {
            start: first,
            end: last.map_or(len - 1, |l| l.min(len - 1)),
        }),
        Spec::Suffix(0) => None,
        Spec::Suffix(_) if len == 0 => None,
        Spec::Suffix(n) => Some(ByteRange {
            start: len.saturating_sub(n),
            end: len - 1,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    fn ranges(v: &str, len: u64) -> Vec<ByteRange> {
        match parse(v.as_bytes(), len) {
            RangeRequest::Ranges(r) => r,
            other => panic!("{v}: {other:?}"),
        }
    }

    #[test]
    fn single_ranges() {
        assert_eq!(ranges("bytes=0-99", 1000), vec![r(0, 99)]);
        assert_eq!(ranges("bytes=500-", 1000), vec![r(500, 999)]);
        assert_eq!(ranges("bytes=-100", 1000), vec![r(900, 999)]);
        assert_eq!(ranges("bytes=-5000", 1000), vec![r(0, 999)]);
        assert_eq!(ranges("bytes=990-5000", 1000), vec![r(990, 999)]);
        assert_eq!(ranges("bytes=999-999", 1000), vec![r(999, 999)]);
        assert_eq!(ranges("Bytes = 0-0", 1), vec![r(0, 0)]);
    }

    #[test]
    fn multiple_ranges_keep_order_and_overlaps() {
        assert_eq!(
            ranges("bytes=10-19, 0-4,\t-3 ,, 15-25", 100),
            vec![r(10, 19), r(0, 4), r(97, 99), r(15, 25)]
        );
        // Overlaps that add up to no more than the file are served as asked.
        assert_eq!(ranges("bytes=0-39,30-69", 80), vec![r(0, 39), r(30, 69)]);
        // Unsatisfiable members are dropped when others remain.
        assert_eq!(ranges("bytes=5000-6000,0-1", 100), vec![r(0, 1)]);
    }

    #[test]
    fn unsatisfiable() {
        for v in [
            "bytes=1000-",
            "bytes=1000-2000",
            "bytes=-0",
            "bytes=2000-,3000-3001",
        ] {
            assert_eq!(
                parse(v.as_bytes(), 1000),
                RangeRequest::Unsatisfiable,
                "{v}"
            );
        }
        assert_eq!(parse(b"bytes=0-", 0), RangeRequest::Unsatisfiable);
        assert_eq!(parse(b"bytes=-1", 0), RangeRequest::Unsatisfiable);
    }

    #[test]
    fn malformed_is_ignored() {
        for v in [
            "",
            "bytes",
            "bytes=",
            "bytes=,",
            "items=0-1",
            "bytes=a-b",
            "bytes=5-1",
            "bytes=1",
            "bytes=--1",
            "bytes=0-1-2",
            "bytes=+1-2",
            "bytes=0x1-2",
            "bytes=1 -2",
            "bytes=\u{e9}",
        ] {
            assert_eq!(parse(v.as_bytes(), 1000), RangeRequest::Ignore, "{v:?}");
        }
        assert_eq!(parse(&[0xff, b'=', b'1'], 10), RangeRequest::Ignore);
    }

    #[test]
    fn huge_numbers_saturate() {
        assert_eq!(
            parse(b"bytes=99999999999999999999999-", 1000),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(ranges("bytes=0-99999999999999999999999", 10), vec![r(0, 9)]);
        assert_eq!(ranges("bytes=-99999999999999999999999", 10), vec![r(0, 9)]);
        assert_eq!(ranges("bytes=0-", u64::MAX), vec![r(0, u64::MAX - 1)]);
    }

    #[test]
    fn ranges_adding_up_to_more_than_the_file_are_ignored() {
        // SECURITY: 64 copies of a 1 MiB file would be a 64 MiB answer (RFC 9110 §14.2 lets us send 200).
        let whole = vec!["0-1048575"; MAX_RANGES].join(",");
        let v = format!("bytes={whole}");
        assert_eq!(parse(v.as_bytes(), 1 << 20), RangeRequest::Ignore);
        assert_eq!(parse(b"bytes=0-50,50-100", 100), RangeRequest::Ignore);
        assert_eq!(parse(b"bytes=-60,0-59", 100), RangeRequest::Ignore);
        // One range never exceeds the file: it is clipped, not ignored.
        assert_eq!(ranges("bytes=0-1048575", 10), vec![r(0, 9)]);
    }

    #[test]
    fn too_many_ranges_are_ignored() {
        let many: Vec<String> = (0..=MAX_RANGES).map(|i| format!("{i}-{i}")).collect();
        let v = format!("bytes={}", many.join(","));
        assert_eq!(parse(v.as_bytes(), 1000), RangeRequest::Ignore);
        let v = format!("bytes={}", many[..MAX_RANGES].join(","));
        assert_eq!(ranges(&v, 1000).len(), MAX_RANGES);
    }
}
