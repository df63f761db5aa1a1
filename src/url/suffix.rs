//! URL suffixes and request paths: the one place where path text is decoded and checked.
//!
//! SECURITY: a request can only reach a file that was registered. The threat is path traversal and
//! confusion between what the server checks and what it looks up (`..`, `%2e%2e`, `%2f`, `\`, NUL, double
//! encoding, overlong UTF-8). Defence: a request path is split on `/` *before* decoding, each segment is
//! percent-decoded exactly once, must be valid UTF-8 and must pass the same segment rules as a registered
//! suffix; the result is only ever used as a key into the group's table, never joined onto a filesystem
//! path. A decoded segment that contains `/` (from `%2f`) is refused rather than re-split.

use std::fmt;

/// Why a path segment is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// An empty segment (`//`, or a leading or trailing `/` in a suffix).
    #[error("empty segment")]
    Empty,
    /// `.` or `..`.
    #[error("\".\" and \"..\" are not allowed")]
    Dot,
    /// `\`, `/` inside a decoded segment, NUL or another control character.
    #[error("character not allowed")]
    Character,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding")]
    Percent,
    /// The decoded bytes are not UTF-8 (overlong forms included).
    #[error("not valid UTF-8")]
    Utf8,
}

/// Checks one decoded segment against the rules shared by registered suffixes and request paths.
pub(crate) fn check_segment(segment: &str) -> Result<(), SegmentError> {
    if segment.is_empty() {
        return Err(SegmentError::Empty);
    }
    if segment == "." || segment == ".." {
        return Err(SegmentError::Dot);
    }
    if segment
        .chars()
        .any(|c| c == '\\' || c == '/' || c.is_control())
    {
        return Err(SegmentError::Character);
    }
    Ok(())
}

/// A validated URL suffix such as `tools/setup.exe`: one or more segments joined by `/`.
///
/// Lookups compare suffixes case-insensitively (HTTP.sys semantics), through a lowercased key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UrlSuffix {
    text: String,
}

impl UrlSuffix {
    /// Validates a suffix as written (not percent-encoded).
    pub fn new(text: &str) -> Result<Self, SegmentError> {
        for segment in text.split('/') {
            check_segment(segment)?;
        }
        Ok(UrlSuffix {
            text: text.to_owned(),
        })
    }

    /// The suffix as registered.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The lookup key: the suffix lowercased.
    pub(crate) fn key(&self) -> String {
        self.text.to_lowercase()
    }

    /// The suffix percent-encoded for use in a URL.
    pub fn encoded(&self) -> String {
        self.text
            .split('/')
            .map(percent_encode_segment)
            .collect::<Vec<_>>()
            .join("/")
    }
}

impl fmt::Display for UrlSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Percent-encodes everything in a segment except RFC 3986 unreserved characters and sub-delimiters.
pub(crate) fn percent_encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes one raw request-path segment: `%XX` exactly once, then UTF-8, then the segment rules.
pub(crate) fn decode_segment(raw: &str) -> Result<String, SegmentError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex(*b));
            match (hi, lo) {
                (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                _ => return Err(SegmentError::Percent),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).map_err(|_| SegmentError::Utf8)?;
    check_segment(&text)?;
    Ok(text)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// A request path split into its group segment and the suffix lookup key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RequestPath {
    /// The first segment, decoded and lowercased.
    pub(crate) group_key: String,
    /// The rest, decoded, lowercased and joined with `/`; empty for `/Group/` itself.
    pub(crate) suffix_key: String,
}

impl RequestPath {
    /// Parses the path of an origin-form or absolute-form request target (no query).
    pub(crate) fn parse(path: &str) -> Result<Self, SegmentError> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(SegmentError::Empty);
        };
        let mut segments = rest.split('/');
        let group_key = decode_segment(segments.next().unwrap_or(""))?.to_lowercase();
        let mut suffix_key = String::new();
        let mut tail = segments.peekable();
        // `/Group` and `/Group/` both name the group itself.
        if tail.peek() == Some(&"") {
            tail.next();
            if tail.peek().is_none() {
                return Ok(RequestPath {
                    group_key,
                    suffix_key,
                });
            }
            return Err(SegmentError::Empty);
        }
        for (i, raw) in tail.enumerate() {
            if i > 0 {
                suffix_key.push('/');
            }
            suffix_key.push_str(&decode_segment(raw)?.to_lowercase());
        }
        Ok(RequestPath {
            group_key,
            suffix_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &str) -> Result<(String, String), SegmentError> {
        RequestPath::parse(p).map(|r| (r.group_key, r.suffix_key))
    }

    fn ok(g: &str, s: &str) -> Result<(String, String), SegmentError> {
        Ok((g.to_owned(), s.to_owned()))
    }

    #[test]
    fn suffix_rules() {
        assert!(UrlSuffix::new("a.txt").is_ok());
        assert!(UrlSuffix::new("dir/sub/a b.txt").is_ok());
        assert!(UrlSuffix::new("100%.txt").is_ok());
        assert!(UrlSuffix::new(".hidden").is_ok());
        assert_eq!(UrlSuffix::new(""), Err(SegmentError::Empty));
        assert_eq!(UrlSuffix::new("/a"), Err(SegmentError::Empty));
        assert_eq!(UrlSuffix::new("a/"), Err(SegmentError::Empty));
        assert_eq!(UrlSuffix::new("a//b"), Err(SegmentError::Empty));
        assert_eq!(UrlSuffix::new("../a"), Err(SegmentError::Dot));
        assert_eq!(UrlSuffix::new("a/./b"), Err(SegmentError::Dot));
        assert_eq!(UrlSuffix::new("a\\b"), Err(SegmentError::Character));
        assert_eq!(UrlSuffix::new("a\0b"), Err(SegmentError::Character));
        assert_eq!(UrlSuffix::new("a\nb"), Err(SegmentError::Character));
        assert_eq!(UrlSuffix::new("a\u{85}b"), Err(SegmentError::Character));
    }

    #[test]
    fn suffix_encoding_round_trips_through_request_parsing() {
        let s = UrlSuffix::new("dir/caf\u{e9} 100%.txt").unwrap();
        assert_eq!(s.encoded(), "dir/caf%C3%A9%20100%25.txt");
        let parsed = RequestPath::parse(&format!("/G/{}", s.encoded())).unwrap();
        assert_eq!(parsed.suffix_key, s.key());
    }

    #[test]
    fn request_paths() {
        assert_eq!(path("/Demo/File.TXT"), ok("demo", "file.txt"));
        assert_eq!(path("/Demo/a/b/c"), ok("demo", "a/b/c"));
        assert_eq!(path("/Demo/"), ok("demo", ""));
        assert_eq!(path("/Demo"), ok("demo", ""));
        assert_eq!(path("/D%65mo/f%20x"), ok("demo", "f x"));
        assert_eq!(path("/D/%C3%89t%C3%A9"), ok("d", "\u{e9}t\u{e9}"));
    }

    #[test]
    fn adversarial_request_paths_are_refused() {
        // SECURITY: each of these must never become a key that names something else.
        assert_eq!(path("/D/../etc/passwd"), Err(SegmentError::Dot));
        assert_eq!(path("/D/%2e%2e/x"), Err(SegmentError::Dot));
        assert_eq!(path("/D/%2E%2e"), Err(SegmentError::Dot));
        assert_eq!(path("/D/a%2fb"), Err(SegmentError::Character));
        assert_eq!(path("/D/a%2Fb"), Err(SegmentError::Character));
        assert_eq!(path("/D/a%5cb"), Err(SegmentError::Character));
        assert_eq!(path("/D/a\\b"), Err(SegmentError::Character));
        assert_eq!(path("/D/a%00b"), Err(SegmentError::Character));
        assert_eq!(path("/D/%c0%ae%c0%ae"), Err(SegmentError::Utf8));
        assert_eq!(path("/D/%e0%80%ae"), Err(SegmentError::Utf8));
        assert_eq!(path("/D/%zz"), Err(SegmentError::Percent));
        assert_eq!(path("/D/%2"), Err(SegmentError::Percent));
        assert_eq!(path("/D//x"), Err(SegmentError::Empty));
        assert_eq!(path("/D/x/"), Err(SegmentError::Empty));
        assert_eq!(path("//D/x"), Err(SegmentError::Empty));
        assert_eq!(path("D/x"), Err(SegmentError::Empty));
        assert_eq!(path(""), Err(SegmentError::Empty));
        // Double encoding decodes once: the key is the literal text "%2e%2e", which names nothing.
        assert_eq!(path("/D/%252e%252e"), ok("d", "%2e%2e"));
    }
}
