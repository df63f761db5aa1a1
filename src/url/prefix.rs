//! `UrlPrefix`: the HTTP.sys prefix grammar of a URL group, parsed once (as HTTP.sys does).
//!
//! `scheme://host:port/Segment/` where scheme is `http` or `https` (lowercase), host is `+` (strong
//! wildcard), `*` (weak wildcard), an IPv4 literal, a bracketed IPv6 literal or a host name (case-insensitive),
//! the port is required (1..=65535, decimal, no leading zero) and the path is exactly one segment below the
//! root. A missing trailing slash is normalised. The parser is sans-IO and total: every input yields a
//! `UrlPrefix` or a `PrefixError` naming the offset and the rule broken.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::suffix::{check_segment, SegmentError};

/// The scheme of a URL group; http and https never share a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UrlScheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl UrlScheme {
    /// The scheme as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            UrlScheme::Http => "http",
            UrlScheme::Https => "https",
        }
    }
}

impl fmt::Display for UrlScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The host part of a prefix, which decides the routing category (as HTTP.sys does).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Host {
    /// `+`: matches any host, tried first.
    StrongWildcard,
    /// An explicit host name, lowercase, matched against the request's `Host`.
    Name(String),
    /// An IP literal, matched against the local address the connection arrived on.
    Ip(IpAddr),
    /// `*`: matches any host, tried last.
    WeakWildcard,
}

impl Host {
    /// Whether this host matches any host name (`+` or `*`).
    pub fn is_wildcard(&self) -> bool {
        matches!(self, Host::StrongWildcard | Host::WeakWildcard)
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::StrongWildcard => f.write_str("+"),
            Host::WeakWildcard => f.write_str("*"),
            Host::Name(name) => f.write_str(name),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// A parsed URL group prefix such as `http://+:8080/Demo/`.
///
/// Two prefixes are equal when they name the same group: scheme, host (case-insensitive), port and segment
/// (case-insensitive).
#[derive(Debug, Clone)]
pub struct UrlPrefix {
    scheme: UrlScheme,
    host: Host,
    port: u16,
    segment: String,
    segment_key: String,
}

impl UrlPrefix {
    /// The scheme.
    pub fn scheme(&self) -> UrlScheme {
        self.scheme
    }

    /// The host part.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The one path segment, as written.
    pub fn segment(&self) -> &str {
        &self.segment
    }

    /// The segment lowercased, as routing compares it.
    /// The prefix as a key: equal for prefixes that are equal (the segment compares ignoring case), so
    /// what a store keys groups by.
    pub fn key(&self) -> String {
        format!(
            "{}://{}:{}/{}/",
            self.scheme, self.host, self.port, self.segment_key
        )
    }

    pub(crate) fn segment_key(&self) -> &str {
        &self.segment_key
    }

    /// This prefix as a URL a client can use: the prefix's own host, or `wildcard_host` when the prefix
    /// host is `+` or `*`. For example `http://files.example:8080/Demo/`.
    pub fn base_url(&self, wildcard_host: &str) -> String {
        let host = match &self.host {
            Host::StrongWildcard | Host::WeakWildcard => wildcard_host.to_owned(),
            other => other.to_string(),
        };
        let segment = super::suffix::percent_encode_segment(&self.segment);
        format!("{}://{}:{}/{}/", self.scheme, host, self.port, segment)
    }
}

impl PartialEq for UrlPrefix {
    fn eq(&self, other: &Self) -> bool {
        self.scheme == other.scheme
            && self.host == other.host
            && self.port == other.port
            && self.segment_key == other.segment_key
    }
}

impl Eq for UrlPrefix {}

impl fmt::Display for UrlPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}:{}/{}/",
            self.scheme, self.host, self.port, self.segment
        )
    }
}

/// What was wrong with a URL prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrefixErrorKind {
    /// Not `http://` or `https://`.
    #[error("the scheme must be \"http://\" or \"https://\" (lowercase)")]
    Scheme,
    /// Nothing between `//` and `:`.
    #[error("the host is missing")]
    EmptyHost,
    /// A host name with a character or label that is not allowed.
    #[error("invalid host name")]
    HostName,
    /// Something that looks like an IPv4 address but is not one.
    #[error("invalid IPv4 address")]
    Ipv4,
    /// A bracketed literal that is not an IPv6 address.
    #[error("invalid IPv6 address")]
    Ipv6,
    /// `0.0.0.0` or `[::]`: no connection ever arrives on it, so it would listen everywhere and serve
    /// nothing; `+` means every host.
    #[error("an unspecified address serves no connection; use + for every address")]
    Unspecified,
    /// No `:port` after the host.
    #[error("a port is required")]
    MissingPort,
    /// The port is not 1..=65535 written in decimal without a leading zero.
    #[error("the port must be a number from 1 to 65535 without a leading zero")]
    Port,
    /// No `/Segment` after the port.
    #[error("a path segment is required, as in /Demo/")]
    MissingSegment,
    /// More than one path segment.
    #[error("only one path segment is allowed")]
    ExtraSegment,
    /// The segment has a character that is not allowed.
    #[error("invalid path segment: {0}")]
    Segment(SegmentError),
}

/// An invalid URL prefix: the input, the byte offset of the problem and its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid URL prefix {input:?}: {kind}")]
pub struct PrefixError {
    input: String,
    offset: usize,
    kind: PrefixErrorKind,
}

impl PrefixError {
    fn new(input: &str, offset: usize, kind: PrefixErrorKind) -> Self {
        PrefixError {
            input: input.to_owned(),
            offset,
            kind,
        }
    }

    /// The text that was parsed.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The byte offset in the input where the problem starts.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What was wrong.
    pub fn reason(&self) -> &PrefixErrorKind {
        &self.kind
    }
}

impl FromStr for UrlPrefix {
    type Err = PrefixError;

    fn from_str(input: &str) -> Result<Self, PrefixError> {
        let err = |offset, kind| PrefixError::new(input, offset, kind);
        let (scheme, rest) = if let Some(rest) = input.strip_prefix("http://") {
            (UrlScheme::Http, rest)
        } else if let Some(rest) = input.strip_prefix("https://") {
            (UrlScheme::Https, rest)
        } else {
            return Err(err(0, PrefixErrorKind::Scheme));
        };
        let host_at = input.len() - rest.len();
        let (host, host_len) = parse_host(rest).map_err(|(o, k)| err(host_at + o, k))?;
        let rest = &rest[host_len..];
        let port_at = input.len() - rest.len();
        let Some(rest) = rest.strip_prefix(':') else {
            return Err(err(port_at, PrefixErrorKind::MissingPort));
        };
        let digits = rest.find('/').map_or(rest, |end| &rest[..end]);
        let port = parse_port(digits).ok_or_else(|| err(port_at + 1, PrefixErrorKind::Port))?;
        let path_at = port_at + 1 + digits.len();
        let path = &rest[digits.len()..];
        let segment = parse_path(path).map_err(|(o, k)| err(path_at + o, k))?;
        Ok(UrlPrefix {
            scheme,
            host,
            port,
            segment_key: segment.to_lowercase(),
            segment: segment.to_owned(),
        })
    }
}

/// Parses the host at the start of `s`; returns it and how many bytes it took.
fn parse_host(s: &str) -> Result<(Host, usize), (usize, PrefixErrorKind)> {
    if let Some(inner) = s.strip_prefix('[') {
        let end = inner.find(']').ok_or((0, PrefixErrorKind::Ipv6))?;
        let ip: Ipv6Addr = inner[..end]
            .parse()
            .map_err(|_| (1, PrefixErrorKind::Ipv6))?;
        if ip.is_unspecified() {
            return Err((1, PrefixErrorKind::Unspecified));
        }
        return Ok((Host::Ip(IpAddr::V6(ip)), end + 2));
    }
    let end = s.find([':', '/']).unwrap_or(s.len());
    let text = &s[..end];
    let host = match text {
        "" => return Err((0, PrefixErrorKind::EmptyHost)),
        "+" => Host::StrongWildcard,
        "*" => Host::WeakWildcard,
        _ if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') => {
            let ip: Ipv4Addr = text.parse().map_err(|_| (0, PrefixErrorKind::Ipv4))?;
            if ip.is_unspecified() {
                return Err((0, PrefixErrorKind::Unspecified));
            }
            Host::Ip(IpAddr::V4(ip))
        }
        _ => Host::Name(parse_host_name(text).map_err(|o| (o, PrefixErrorKind::HostName))?),
    };
    Ok((host, end))
}

/// A DNS-style name: dot-separated labels of letters, digits, `-` and `_`, no empty label, at most 253
/// bytes. Returns it lowercased, or the offset of the first bad byte.
fn parse_host_name(text: &str) -> Result<String, usize> {
    if text.len() > 253 {
        return Err(253);
    }
    let mut offset = 0;
    for label in text.split('.') {
        let bad = label
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        if let Some(at) = bad {
            return Err(offset + at);
        }
        if label.is_empty() || label.len() > 63 || label.starts_with('-') || label.ends_with('-') {
            return Err(offset);
        }
        offset += label.len() + 1;
    }
    Ok(text.to_ascii_lowercase())
}

fn parse_port(digits: &str) -> Option<u16> {
    let valid = !digits.is_empty()
        && digits.len() <= 5
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !valid {
        return None;
    }
    digits.parse().ok()
}

/// `/Segment/` or `/Segment`: exactly one segment.
fn parse_path(path: &str) -> Result<&str, (usize, PrefixErrorKind)> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err((0, PrefixErrorKind::MissingSegment));
    };
    let (segment, after) = match rest.find('/') {
        Some(end) => (&rest[..end], &rest[end + 1..]),
        None => (rest, ""),
    };
    if segment.is_empty() {
        return Err((1, PrefixErrorKind::MissingSegment));
    }
    if !after.is_empty() {
        return Err((segment.len() + 2, PrefixErrorKind::ExtraSegment));
    }
    check_prefix_segment(segment).map_err(|(o, e)| (1 + o, PrefixErrorKind::Segment(e)))?;
    Ok(segment)
}

/// A prefix segment is written literally (no percent-encoding, no `?` or `#`), so that the URL printed for
/// it is the URL a client sends.
fn check_prefix_segment(segment: &str) -> Result<(), (usize, SegmentError)> {
    if let Some(at) = segment.find(['%', '?', '#', ' ']) {
        return Err((at, SegmentError::Character));
    }
    check_segment(segment).map_err(|e| (0, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> UrlPrefix {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn kind(s: &str) -> PrefixErrorKind {
        match s.parse::<UrlPrefix>() {
            Ok(p) => panic!("{s} parsed as {p}"),
            Err(e) => e.kind,
        }
    }

    #[test]
    fn accepts_every_host_kind() {
        assert_eq!(ok("http://+:80/Demo/").host(), &Host::StrongWildcard);
        assert_eq!(ok("http://*:80/Demo/").host(), &Host::WeakWildcard);
        assert_eq!(
            ok("http://Files.Example.COM:80/Demo/").host(),
            &Host::Name("files.example.com".into())
        );
        assert_eq!(
            ok("https://10.0.0.1:443/Demo/").host(),
            &Host::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            ok("https://[::1]:443/Demo/").host(),
            &Host::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            ok("http://under_score:1/x/").host(),
            &Host::Name("under_score".into())
        );
    }

    #[test]
    fn parts_and_display() {
        let p = ok("https://[fe80::1]:65535/Demo");
        assert_eq!(p.scheme(), UrlScheme::Https);
        assert_eq!(p.port(), 65535);
        assert_eq!(p.segment(), "Demo");
        assert_eq!(p.to_string(), "https://[fe80::1]:65535/Demo/");
        assert_eq!(ok("http://HOST:8080/a").to_string(), "http://host:8080/a/");
    }

    #[test]
    fn trailing_slash_is_normalised_and_case_ignored_in_equality() {
        assert_eq!(ok("http://+:80/Demo"), ok("http://+:80/demo/"));
        assert_eq!(ok("http://Host:80/x/"), ok("http://host:80/X/"));
        assert_ne!(ok("http://+:80/x/"), ok("http://*:80/x/"));
        assert_ne!(ok("http://+:80/x/"), ok("https://+:80/x/"));
        assert_ne!(ok("http://+:80/x/"), ok("http://+:81/x/"));
    }

    #[test]
    fn base_url_fills_wildcards_only() {
        assert_eq!(ok("http://+:8080/D/").base_url("m1"), "http://m1:8080/D/");
        assert_eq!(ok("http://*:8080/D/").base_url("m1"), "http://m1:8080/D/");
        assert_eq!(ok("http://h:8080/D/").base_url("m1"), "http://h:8080/D/");
        assert_eq!(ok("http://[::1]:1/D/").base_url("m1"), "http://[::1]:1/D/");
        assert_eq!(
            ok("http://+:1/caf\u{e9}/").base_url("m"),
            "http://m:1/caf%C3%A9/"
        );
    }

    #[test]
    fn rejects_bad_schemes() {
        for s in [
            "HTTP://+:80/a/",
            "ftp://+:80/a/",
            "http:/+:80/a/",
            "+:80/a/",
            "",
            "https:",
            "http//+:80/a/",
        ] {
            assert_eq!(kind(s), PrefixErrorKind::Scheme, "{s}");
        }
    }

    #[test]
    fn rejects_bad_hosts() {
        assert_eq!(kind("http://:80/a/"), PrefixErrorKind::EmptyHost);
        assert_eq!(kind("http:///a/"), PrefixErrorKind::EmptyHost);
        assert_eq!(kind("http://999.1.1.1:80/a/"), PrefixErrorKind::Ipv4);
        assert_eq!(kind("http://1.2.3:80/a/"), PrefixErrorKind::Ipv4);
        assert_eq!(kind("http://[::g]:80/a/"), PrefixErrorKind::Ipv6);
        assert_eq!(kind("http://[::1:80/a/"), PrefixErrorKind::Ipv6);
        assert_eq!(kind("http://[1.2.3.4]:80/a/"), PrefixErrorKind::Ipv6);
        // SECURITY: these would listen on every address and route no connection to the group.
        assert_eq!(kind("http://0.0.0.0:80/a/"), PrefixErrorKind::Unspecified);
        assert_eq!(kind("http://[::]:80/a/"), PrefixErrorKind::Unspecified);
        for s in [
            "http://a..b:80/a/",
            "http://a.:80/a/",
            "http://-a:80/a/",
            "http://a b:80/a/",
            "http://a@b:80/a/",
            "http://++:80/a/",
            "http://a*:80/a/",
            "http://h\u{e9}:80/a/",
        ] {
            assert_eq!(kind(s), PrefixErrorKind::HostName, "{s}");
        }
    }

    #[test]
    fn rejects_bad_ports() {
        assert_eq!(kind("http://+/a/"), PrefixErrorKind::MissingPort);
        assert_eq!(kind("http://[::1]/a/"), PrefixErrorKind::MissingPort);
        for s in [
            "http://+:/a/",
            "http://+:0/a/",
            "http://+:080/a/",
            "http://+:65536/a/",
            "http://+:123456/a/",
            "http://+:-1/a/",
            "http://+:+80/a/",
            "http://+:8a/a/",
            "http://+:80:81/a/",
        ] {
            assert_eq!(kind(s), PrefixErrorKind::Port, "{s}");
        }
    }

    #[test]
    fn requires_exactly_one_segment() {
        assert_eq!(kind("http://+:80"), PrefixErrorKind::MissingSegment);
        assert_eq!(kind("http://+:80/"), PrefixErrorKind::MissingSegment);
        assert_eq!(kind("http://+:80//"), PrefixErrorKind::MissingSegment);
        assert_eq!(kind("http://+:80/a/b/"), PrefixErrorKind::ExtraSegment);
        assert_eq!(kind("http://+:80/a/b"), PrefixErrorKind::ExtraSegment);
        assert_eq!(kind("http://+:80/a//"), PrefixErrorKind::ExtraSegment);
    }

    #[test]
    fn rejects_bad_segments() {
        for s in [
            "http://+:80/../",
            "http://+:80/./",
            "http://+:80/a%20b/",
            "http://+:80/a?b/",
            "http://+:80/a#/",
            "http://+:80/a b/",
            "http://+:80/a\\b/",
            "http://+:80/a\u{0}/",
            "http://+:80/a\u{7f}/",
        ] {
            assert!(matches!(kind(s), PrefixErrorKind::Segment(_)), "{s}");
        }
    }

    #[test]
    fn error_names_input_offset_and_rule() {
        let e = "http://+:80/a/b/".parse::<UrlPrefix>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid URL prefix \"http://+:80/a/b/\": only one path segment is allowed"
        );
        assert_eq!(e.offset(), 14);
        assert_eq!(e.input(), "http://+:80/a/b/");
        let e = "http://+:0/a/".parse::<UrlPrefix>().unwrap_err();
        assert_eq!(e.offset(), 9);
    }

    #[test]
    fn total_on_arbitrary_bytes() {
        // Every prefix of a tricky input parses or errs without panicking (char boundaries included).
        let tricky = "https://[\u{e9}::1]:6\u{e9}5/\u{1F600}/%/";
        for end in 0..=tricky.len() {
            if let Some(s) = tricky.get(..end) {
                let _ = s.parse::<UrlPrefix>();
            }
        }
    }
}
