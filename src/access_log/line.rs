//! One request as an access-log line: the combined log format (as Apache and nginx write it) or a JSON
//! object.
//!
//! SECURITY: the threat is a client writing its own log lines, or breaking the one it is on, through the
//! fields it controls (target, Referer, User-Agent, a user name). In the combined format every field is
//! escaped as nginx does (`"`, `\`, control characters and bytes outside printable ASCII become `\xHH`),
//! so a line is always one line with its quotes where the format has them; JSON strings are escaped by
//! the serializer. Fields are cut at [`MAX_FIELD`] characters, so a huge header cannot make a huge line.

use std::fmt::Write;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Version};

/// The most characters of one client-controlled field written to a line (escapes included), so that a
/// line stays under the 4 KiB log tools read a line in (goaccess splits longer ones).
pub(crate) const MAX_FIELD: usize = 800;

/// SECURITY: a copy of at most [`MAX_FIELD`] bytes of a client's value, so an entry never holds more
/// than the line can write. A header value must not be kept as it is: it shares the buffer the whole
/// request head was read into (up to hundreds of KiB), for as long as the entry lives (a download, then
/// the queue).
pub(crate) fn clip_bytes(value: &[u8]) -> Bytes {
    Bytes::copy_from_slice(&value[..value.len().min(MAX_FIELD)])
}

/// `s` cut to at most [`MAX_FIELD`] bytes, at a character boundary, in an allocation of that size.
pub(crate) fn clip_string(mut s: String) -> String {
    if s.len() > MAX_FIELD {
        let mut end = MAX_FIELD;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.shrink_to_fit();
    }
    s
}

/// What the log says of one request, taken when it started and completed when its body ended. The
/// client's fields are cut at [`MAX_FIELD`] when taken ([`clip_bytes`], [`clip_string`]).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) time: SystemTime,
    pub(crate) client: IpAddr,
    pub(crate) user: Option<String>,
    pub(crate) method: Method,
    pub(crate) target: String,
    pub(crate) version: Version,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) complete: bool,
    pub(crate) referer: Option<Bytes>,
    pub(crate) user_agent: Option<Bytes>,
    pub(crate) group: Option<String>,
    pub(crate) duration: Duration,
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Appends `bytes` escaped as nginx escapes variables, or `-` when empty; `space` escapes spaces too
/// (for a field the format does not quote).
fn escaped(out: &mut String, bytes: &[u8], space: bool) {
    if bytes.is_empty() {
        out.push('-');
        return;
    }
    let end = out.len() + MAX_FIELD;
    for &b in bytes {
        if out.len() >= end {
            break;
        }
        let plain = (0x21..0x7f).contains(&b) && b != b'"' && b != b'\\' || (b == b' ' && !space);
        if plain {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02X}");
        }
    }
}

fn header_bytes(value: Option<&Bytes>) -> &[u8] {
    value.map_or(&[], Bytes::as_ref)
}

impl Entry {
    /// The memory the entry holds, for the queue's bound in bytes.
    pub(crate) fn size(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
        let bytes = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
        std::mem::size_of::<Self>()
            + self.target.capacity()
            + text(&self.user)
            + text(&self.group)
            + bytes(&self.referer)
            + bytes(&self.user_agent)
    }

    /// The combined log format: `%h - %u [%d/%b/%Y:%H:%M:%S %z] "%r" %>s %b "%{Referer}i"
    /// "%{User-agent}i"`, time in UTC, with a newline.
    pub(crate) fn combined(&self) -> String {
        let mut out = String::with_capacity(256);
        let t = time::OffsetDateTime::from(self.time);
        let month = MONTHS[usize::from(u8::from(t.month())) - 1];
        let _ = write!(out, "{} - ", self.client);
        escaped(
            &mut out,
            self.user.as_deref().unwrap_or("").as_bytes(),
            true,
        );
        let _ = write!(
            out,
            " [{:02}/{month}/{:04}:{:02}:{:02}:{:02} +0000] \"",
            t.day(),
            t.year(),
            t.hour(),
            t.minute(),
            t.second()
        );
        let _ = write!(out, "{} ", self.method);
        escaped(&mut out, self.target.as_bytes(), true);
        let _ = write!(out, " {}\" {} ", protocol(self.version), self.status);
        if self.bytes == 0 {
            out.push('-');
        } else {
            let _ = write!(out, "{}", self.bytes);
        }
        out.push_str(" \"");
        escaped(&mut out, header_bytes(self.referer.as_ref()), false);
        out.push_str("\" \"");
        escaped(&mut out, header_bytes(self.user_agent.as_ref()), false);
        out.push_str("\"\n");
        out
    }

    /// One JSON object, with a newline.
    pub(crate) fn json(&self) -> String {
        let text = |v: Option<&Bytes>| {
            let bytes = header_bytes(v);
            String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_FIELD)]).into_owned()
        };
        let cut = |s: &str| {
            let mut end = s.len().min(MAX_FIELD);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s[..end].to_owned()
        };
        let object = serde_json::json!({
            "time": rfc3339(self.time),
            "client": self.client.to_string(),
            "user": self.user,
            "method": self.method.as_str(),
            "target": cut(&self.target),
            "protocol": protocol(self.version),
            "status": self.status,
            "bytes": self.bytes,
            "complete": self.complete,
            "referer": text(self.referer.as_ref()),
            "user_agent": text(self.user_agent.as_ref()),
            "group": self.group,
            "duration_ms": self.duration.as_secs_f64() * 1000.0,
        });
        let mut line = object.to_string();
        line.push('\n');
        line
    }
}

/// `2026-12-07T03:30:00.123Z`.
fn rfc3339(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000),
            client: "192.0.2.7".parse().unwrap(),
            user: None,
            method: Method::GET,
            target: "/A/file.bin?x=1".into(),
            version: Version::HTTP_11,
            status: 200,
            bytes: 1024,
            complete: true,
            referer: None,
            user_agent: Some(Bytes::from_static(b"curl/8.0")),
            group: Some("http://+:80/A/".into()),
            duration: Duration::from_millis(3),
        }
    }

    #[test]
    fn combined_is_the_apache_format() {
        assert_eq!(
            entry().combined(),
            "192.0.2.7 - - [30/Nov/2026:00:53:20 +0000] \"GET /A/file.bin?x=1 HTTP/1.1\" 200 1024 \"-\" \"curl/8.0\"\n"
        );
    }

    /// SECURITY: a hostile User-Agent, Referer, user or target stays inside its field of one line.
    #[test]
    fn hostile_fields_cannot_break_a_line() {
        let mut e = entry();
        e.user_agent = Some(Bytes::from_static(b"a\" 200 9 \"x\tb\\\xff"));
        e.referer = Some(Bytes::from(vec![b'r'; 100_000]));
        e.user = Some("DOM\\bob \"x\"\n1.2.3.4 - - [".into());
        e.target = "/A/\"\r\n1.2.3.4 - - x".into();
        let line = e.combined();
        assert_eq!(line.matches('\n').count(), 1);
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('"').count(), 6, "{line}");
        assert!(
            line.contains("a\\x22 200 9 \\x22x\\x09b\\x5C\\xFF"),
            "{line}"
        );
        assert!(
            line.contains("DOM\\x5Cbob\\x20\\x22x\\x22\\x0A1.2.3.4"),
            "{line}"
        );
        assert!(line.len() < 4 * MAX_FIELD + 200, "{}", line.len());
        let json = e.json();
        assert_eq!(json.matches('\n').count(), 1);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["user"], "DOM\\bob \"x\"\n1.2.3.4 - - [");
        assert_eq!(parsed["status"], 200);
        assert_eq!(parsed["referer"].as_str().unwrap().len(), MAX_FIELD);
    }

    /// SECURITY: what an entry keeps of a client's value is an owned copy of at most MAX_FIELD bytes,
    /// cut at a character boundary for text.
    #[test]
    fn clipped_fields_are_small_owned_copies() {
        let huge = Bytes::from(vec![b'u'; 64 << 10]);
        let kept = clip_bytes(&huge);
        assert_eq!(kept.len(), MAX_FIELD);
        let range = huge.as_ptr_range();
        assert!(!range.contains(&kept.as_ptr()));
        assert_eq!(clip_bytes(b"short").as_ref(), b"short");
        // A two-byte character across the cut is left out whole.
        let text = "a".repeat(MAX_FIELD - 1) + &"\u{e9}".repeat(40_000);
        let cut = clip_string(text);
        assert_eq!(cut.len(), MAX_FIELD - 1);
        assert!(cut.capacity() <= MAX_FIELD);
        assert_eq!(clip_string("/G/a".into()), "/G/a");
    }

    #[test]
    fn empty_body_is_a_dash_and_json_names_its_fields() {
        let mut e = entry();
        e.bytes = 0;
        e.status = 304;
        assert!(e.combined().contains("\" 304 - \""));
        let v: serde_json::Value = serde_json::from_str(&e.json()).unwrap();
        assert_eq!(v["time"], "2026-11-30T00:53:20.000Z");
        assert_eq!(v["group"], "http://+:80/A/");
        assert_eq!(v["protocol"], "HTTP/1.1");
        assert_eq!(v["method"], "GET");
    }
}
