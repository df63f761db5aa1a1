//! Conditional requests (RFC 9110 §13): the preconditions evaluated in the order of §13.2.2, and If-Range.
//!
//! The validators are the file's strong ETag and its Last-Modified time (whole seconds, as sent).

use http::header::{self, HeaderMap, HeaderValue};
use std::time::SystemTime;

/// What the preconditions decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// Go on and serve the file.
    Proceed,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// The validators of the representation being served.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validators<'a> {
    /// The strong ETag as sent, quotes included.
    pub(crate) etag: &'a str,
    /// Last-Modified in whole seconds since the epoch.
    pub(crate) modified_secs: u64,
}

/// Evaluates If-Match, If-Unmodified-Since, If-None-Match and If-Modified-Since for a GET or HEAD.
pub(crate) fn evaluate(headers: &HeaderMap, v: Validators<'_>) -> Precondition {
    if let Some(value) = headers.get(header::IF_MATCH) {
        if !etag_list_matches(value, v.etag, Compare::Strong) {
            return Precondition::Failed;
        }
    } else if let Some(since) = date(headers.get(header::IF_UNMODIFIED_SINCE)) {
        if v.modified_secs > since {
            return Precondition::Failed;
        }
    }
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        if etag_list_matches(value, v.etag, Compare::Weak) {
            return Precondition::NotModified;
        }
    } else if let Some(since) = date(headers.get(header::IF_MODIFIED_SINCE)) {
        if v.modified_secs <= since {
            return Precondition::NotModified;
        }
    }
    Precondition::Proceed
}

/// Whether a `Range` may be honoured given `If-Range` (RFC 9110 §13.1.5): absent, a strongly matching ETag,
/// or a date equal to Last-Modified. Anything else (a weak or stale tag, another date, garbage) means the
/// whole file is sent.
pub(crate) fn if_range_allows(headers: &HeaderMap, v: Validators<'_>) -> bool {
    let Some(value) = headers.get(header::IF_RANGE) else {
        return true;
    };
    let Ok(text) = value.to_str() else {
        return false;
    };
    let text = text.trim();
    if text.starts_with('"') || text.starts_with("W/") {
        return text == v.etag;
    }
    date(Some(value)) == Some(v.modified_secs)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Compare {
    Strong,
    Weak,
}

/// `*` or a comma-separated list of entity tags. A malformed list matches nothing.
fn etag_list_matches(value: &HeaderValue, etag: &str, compare: Compare) -> bool {
    let Ok(text) = value.to_str() else {
        return false;
    };
    if text.trim() == "*" {
        return true;
    }
    let current = etag.trim_start_matches("W/");
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with("W/");
        let tag_start = if weak { 2 } else { 0 };
        let Some(body) = rest[tag_start..].strip_prefix('"') else {
            return false;
        };
        let Some(close) = body.find('"') else {
            return false;
        };
        let tag = &rest[tag_start..tag_start + close + 2];
        let matches = tag == current && (compare == Compare::Weak || !weak);
        if matches {
            return true;
        }
        rest = &body[close + 1..];
    }
}

fn date(value: Option<&HeaderValue>) -> Option<u64> {
    let text = value?.to_str().ok()?;
    let time = httpdate::parse_http_date(text.trim()).ok()?;
    time.duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"abc-1\"";
    const MODIFIED: u64 = 1_700_000_000;

    fn v() -> Validators<'static> {
        Validators {
            etag: ETAG,
            modified_secs: MODIFIED,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, val) in pairs {
            h.append(*k, HeaderValue::from_str(val).unwrap());
        }
        h
    }

    fn http_date(secs: u64) -> String {
        httpdate::fmt_http_date(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }

    fn eval(pairs: &[(&'static str, &str)]) -> Precondition {
        evaluate(&headers(pairs), v())
    }

    #[test]
    fn if_match() {
        assert_eq!(eval(&[("if-match", ETAG)]), Precondition::Proceed);
        assert_eq!(eval(&[("if-match", "*")]), Precondition::Proceed);
        assert_eq!(
            eval(&[("if-match", "\"x\", \"abc-1\"")]),
            Precondition::Proceed
        );
        assert_eq!(eval(&[("if-match", "\"x\"")]), Precondition::Failed);
        // Strong comparison: a weak tag never matches.
        assert_eq!(eval(&[("if-match", "W/\"abc-1\"")]), Precondition::Failed);
        assert_eq!(eval(&[("if-match", "abc-1")]), Precondition::Failed);
    }

    #[test]
    fn if_unmodified_since() {
        let later = http_date(MODIFIED + 10);
        let earlier = http_date(MODIFIED - 10);
        assert_eq!(
            eval(&[("if-unmodified-since", &later)]),
            Precondition::Proceed
        );
        assert_eq!(
            eval(&[("if-unmodified-since", &earlier)]),
            Precondition::Failed
        );
        // Ignored when If-Match is present (§13.2.2 step 2), and when not a date.
        assert_eq!(
            eval(&[("if-match", ETAG), ("if-unmodified-since", &earlier)]),
            Precondition::Proceed
        );
        assert_eq!(
            eval(&[("if-unmodified-since", "yesterday")]),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_none_match() {
        assert_eq!(eval(&[("if-none-match", ETAG)]), Precondition::NotModified);
        assert_eq!(
            eval(&[("if-none-match", "W/\"abc-1\"")]),
            Precondition::NotModified
        );
        assert_eq!(eval(&[("if-none-match", "*")]), Precondition::NotModified);
        assert_eq!(eval(&[("if-none-match", "\"old\"")]), Precondition::Proceed);
        assert_eq!(
            eval(&[("if-none-match", "\"unterminated")]),
            Precondition::Proceed
        );
    }

    #[test]
    fn if_modified_since() {
        let same = http_date(MODIFIED);
        let earlier = http_date(MODIFIED - 1);
        assert_eq!(
            eval(&[("if-modified-since", &same)]),
            Precondition::NotModified
        );
        assert_eq!(
            eval(&[("if-modified-since", &earlier)]),
            Precondition::Proceed
        );
        // If-None-Match takes precedence (§13.2.2 step 4).
        assert_eq!(
            eval(&[("if-none-match", "\"old\""), ("if-modified-since", &same)]),
            Precondition::Proceed
        );
    }

    #[test]
    fn failed_precondition_beats_not_modified() {
        assert_eq!(
            eval(&[("if-match", "\"x\""), ("if-none-match", ETAG)]),
            Precondition::Failed
        );
    }

    #[test]
    fn if_range() {
        let allows = |val: &str| if_range_allows(&headers(&[("if-range", val)]), v());
        assert!(if_range_allows(&HeaderMap::new(), v()));
        assert!(allows(ETAG));
        assert!(allows(&http_date(MODIFIED)));
        assert!(!allows("\"stale\""));
        assert!(!allows("W/\"abc-1\""));
        assert!(!allows(&http_date(MODIFIED + 1)));
        assert!(!allows("garbage"));
    }
}
