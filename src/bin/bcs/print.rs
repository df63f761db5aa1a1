//! What `bcs host` prints: the URLs (text or JSON), the limits, what was skipped, the certificate, ready
//! download commands and a QR code.

use std::fmt::Display;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use bits_compact::{ByteRate, ConnectionLimit, Host, ServerCertificate, Url, UrlGroup};

use crate::selfsigned::Kept;

/// `text` fit for a terminal: control characters (C0, DEL, C1) and bidirectional overrides are written
/// as `\u{..}` escapes.
///
/// SECURITY: names and messages may come from a server or a URL (a percent-decoded file name, a
/// redirect's target, a job's name on the service); printed raw, ESC and its kin would let them move the
/// cursor, rewrite earlier lines, set the window title or write the clipboard (OSC 52) on the user's
/// terminal.
pub(crate) fn terminal_safe(text: impl Display) -> String {
    escape(text.to_string(), |c| format!("\\u{{{:x}}}", u32::from(c)))
}

/// JSON text fit for a terminal, and still the same JSON: what `terminal_safe` escapes becomes a JSON
/// `\uXXXX` escape. serde_json escapes only C0 controls, so DEL, C1 and the bidirectional overrides would
/// otherwise be printed raw; outside strings JSON text is ASCII, so each one found is inside a string
/// (but for the line feeds of pretty printing, which serde_json never leaves raw in a string).
pub(crate) fn json_safe(text: String) -> String {
    escape(text, |c| match c {
        '\n' => c.to_string(),
        c => format!("\\u{:04x}", u32::from(c)),
    })
}

/// Whether a character must not reach a terminal raw: the rule the service refuses names by.
use bits_compact::service::is_unprintable as is_unsafe;

/// `text` with each unsafe character written as `written` says; `text` itself when it has none.
fn escape(text: String, written: impl Fn(char) -> String) -> String {
    if !text.chars().any(is_unsafe) {
        return text;
    }
    text.chars()
        .map(|c| match is_unsafe(c) {
            true => written(c),
            false => c.to_string(),
        })
        .collect()
}

/// The host names to print for wildcard prefixes.
pub(crate) struct PrintHosts {
    main: String,
    local: Option<String>,
}

impl PrintHosts {
    pub(crate) fn new(bind: &[IpAddr]) -> Self {
        let any = bind.is_empty() || bind.iter().any(IpAddr::is_unspecified);
        let main = match bind.first() {
            Some(ip) if !any => host_literal(*ip),
            _ => gethostname::gethostname().to_string_lossy().into_owned(),
        };
        let v4_local = bind.is_empty()
            || bind.iter().any(|ip| {
                *ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) || *ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
            });
        let local = v4_local.then(|| "127.0.0.1".to_owned());
        PrintHosts { main, local }
    }

    /// The URL through the machine's name, and the loopback form when it differs.
    fn locations(&self, url: &Url) -> (String, Option<String>) {
        let main = url.location(&self.main);
        let local = self
            .local
            .as_ref()
            .map(|h| url.location(h))
            .filter(|l| *l != main);
        (main, local)
    }
}

fn host_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

/// What was left out below the directories given, counted for the banner.
#[derive(Debug, Default, serde::Serialize)]
pub(crate) struct Skipped {
    /// Symbolic links (never followed inside directories).
    pub(crate) links: usize,
    /// Names that are not UTF-8 or cannot be a URL suffix.
    pub(crate) bad_names: usize,
    /// Sockets, FIFOs and devices.
    pub(crate) special: usize,
}

/// Colour for a terminal that allows it; plain text otherwise.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn stdout() -> Self {
        let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
        Paint(std::io::stdout().is_terminal() && crate::colour_allowed() && !dumb)
    }

    /// `text` in SGR `code` (ECMA-48 §8.3.117).
    fn sgr(self, code: &str, text: impl Display) -> String {
        match self.0 {
            true => format!("\x1b[{code}m{text}\x1b[0m"),
            false => text.to_string(),
        }
    }

    fn bold(self, text: impl Display) -> String {
        self.sgr("1", text)
    }

    fn url(self, text: impl Display) -> String {
        self.sgr("32", text)
    }

    fn dim(self, text: impl Display) -> String {
        self.sgr("2", text)
    }
}

/// The published group, as `bcs host` prints it.
pub(crate) struct Banner<'a> {
    pub(crate) group: &'a UrlGroup,
    pub(crate) urls: &'a [Url],
    pub(crate) hosts: PrintHosts,
    pub(crate) skipped: Skipped,
}

impl Banner<'_> {
    pub(crate) fn print_text(&self) {
        let paint = Paint::stdout();
        let prefix = self.group.prefix();
        let files = count(self.urls.len(), "file", "files");
        say!("{}", paint.bold(format!("Serving {files} under {prefix}")));
        let limits = limits(self.group.connection_limit(), self.group.bandwidth_limit());
        if let Some(limits) = limits {
            say!("Limits: {limits}");
        }
        for url in self.urls {
            match self.hosts.locations(url) {
                (main, Some(local)) => say!(
                    "  {}  {}",
                    paint.url(main),
                    paint.dim(format!("(local: {local})"))
                ),
                (main, None) => say!("  {}", paint.url(main)),
            }
        }
        let Skipped {
            links,
            bad_names,
            special,
        } = self.skipped;
        let skipped: Vec<String> = [
            (links, "symbolic link", "symbolic links"),
            (
                bad_names,
                "name that cannot be a URL",
                "names that cannot be URLs",
            ),
            (special, "special file", "special files"),
        ]
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, one, many)| count(n, one, many))
        .collect();
        if !skipped.is_empty() {
            say!(
                "Skipped {} (BCS_LOG=info,bcs=debug lists them)",
                skipped.join(", ")
            );
        }
    }

    /// The certificate, and for a self-signed one where it is kept and the pin clients can check.
    pub(crate) fn print_certificate(&self, cert: &ServerCertificate, kept: Option<&Kept>) {
        let info = cert.info();
        let dir = || {
            let file = kept.and_then(Kept::cert_file);
            file.and_then(Path::parent)
                .map_or_else(String::new, |d| d.display().to_string())
        };
        let kind = match kept {
            None => "loaded".to_owned(),
            Some(Kept::Reused(_)) => format!("self-signed, kept in {}", dir()),
            Some(Kept::Made(_)) => format!("self-signed, made now and kept in {}", dir()),
            Some(Kept::Ephemeral) => "self-signed, made now; it lasts until bcs stops".to_owned(),
        };
        say!("TLS certificate ({kind}): {}", info.subject);
        say!("  SHA-256 fingerprint: {}", info.sha256_fingerprint);
        say!("  SHA-1 thumbprint:    {}", info.sha1_thumbprint);
        say!("  Valid until:         {}", info.not_after);
        say!("  Public-key pin:      {}", info.spki_pin);
    }

    /// Ready-to-paste commands that download the first URL: `curl -O` and `wget -c` (which resumes). For a
    /// self-signed certificate, curl checks the pin (`-k` only skips the CA check, RFC 7469 pinning is
    /// still enforced) and wget trusts the kept certificate file.
    pub(crate) fn print_downloads(&self, self_signed: Option<(&ServerCertificate, &Kept)>) {
        let Some(first) = self.urls.first() else {
            return;
        };
        let location = self.hosts.locations(first).0;
        // curl -O names the file after the URL's last segment as it is, percent escapes included.
        let name = first.suffix().rsplit('/').next().unwrap_or(first.suffix());
        let mut output = match location.ends_with(&format!("/{name}")) {
            true => "-O".to_owned(),
            false => format!("-o {}", shell_word(name)),
        };
        if location.contains('[') {
            // curl reads [] in a URL as a range to expand, unless told not to.
            output.push_str(" -g");
        }
        let url = shell_word(&location);
        say!("Download the first file with:");
        match self_signed {
            None => {
                say!("  curl {output} {url}");
                say!("  wget -c {url}");
            }
            Some((cert, kept)) => {
                // Quoted although base64 needs no quotes, as curl's documentation writes pins.
                let pin = &cert.info().spki_pin;
                say!("  curl {output} --pinnedpubkey '{pin}' -k {url}");
                if let Some(file) = kept.cert_file() {
                    let trust = shell_word(&format!("--ca-certificate={}", file.display()));
                    say!("  wget -c {trust} {url}  # elsewhere, with a copy of that file");
                }
            }
        }
    }

    /// The first URL as a QR code, for a phone's camera: two modules a character cell (▀ ▄ █), light on
    /// dark, as terminals mostly are, with the 4-module quiet zone that ISO/IEC 18004 §5.3.8 requires.
    pub(crate) fn print_qr(&self) {
        use qrcode::render::unicode::Dense1x2;
        let Some(first) = self.urls.first() else {
            return;
        };
        let url = self.hosts.locations(first).0;
        match qrcode::QrCode::new(url.as_bytes()) {
            Ok(code) => {
                let text = code
                    .render::<Dense1x2>()
                    .dark_color(Dense1x2::Light)
                    .light_color(Dense1x2::Dark)
                    .quiet_zone(true)
                    .build();
                for line in text.lines() {
                    say!("{line}");
                }
            }
            Err(e) => note!("bcs: warning: no QR code for {url}: {e}"),
        }
    }

    /// The last line of the banner, with what limits who reaches the URLs: an IP-literal prefix is served
    /// on that local address only (whatever host clients name), a host name only to clients that name it.
    pub(crate) fn print_stop_hint(&self) {
        let prefix = self.group.prefix();
        match prefix.host() {
            Host::Ip(_) => say!("Press Ctrl-C to stop. Listening on {} only.", prefix.host()),
            Host::Name(_) => say!(
                "Press Ctrl-C to stop. Clients must name host {}.",
                prefix.host()
            ),
            _ => say!("Press Ctrl-C to stop."),
        }
    }

    pub(crate) fn print_json(&self) {
        #[derive(serde::Serialize)]
        struct Published<'a> {
            prefix: String,
            urls: Vec<Entry<'a>>,
            skipped: &'a Skipped,
        }
        #[derive(serde::Serialize)]
        struct Entry<'a> {
            suffix: &'a str,
            file: &'a Path,
            size: Option<u64>,
            url: String,
            local_url: Option<String>,
        }
        let published = Published {
            prefix: self.group.prefix().to_string(),
            urls: self
                .urls
                .iter()
                .map(|u| {
                    let (url, local_url) = self.hosts.locations(u);
                    Entry {
                        suffix: u.suffix(),
                        file: u.path(),
                        size: std::fs::metadata(u.path()).ok().map(|m| m.len()),
                        url,
                        local_url,
                    }
                })
                .collect(),
            skipped: &self.skipped,
        };
        match serde_json::to_string_pretty(&published) {
            Ok(text) => say!("{text}"),
            Err(e) => note!("bcs: error: cannot print JSON: {e}"),
        }
    }
}

impl Banner<'_> {
    /// What each URL served, for the exit: requests, completed downloads, bytes sent.
    pub(crate) fn print_summary(&self, json: bool) {
        if json {
            let urls: Vec<serde_json::Value> = self
                .urls
                .iter()
                .map(|u| {
                    let s = u.stats();
                    serde_json::json!({
                        "suffix": u.suffix(),
                        "requests": s.requests,
                        "downloads_completed": s.downloads_completed,
                        "bytes_sent": s.bytes_sent,
                    })
                })
                .collect();
            say!("{}", serde_json::json!({ "served": urls }));
            return;
        }
        say!("Served:");
        for url in self.urls {
            let s = url.stats();
            say!(
                "  {}  {}, {}, {} sent",
                url.suffix(),
                count(s.requests as usize, "request", "requests"),
                count(
                    s.downloads_completed as usize,
                    "download completed",
                    "downloads completed"
                ),
                human_bytes(s.bytes_sent)
            );
        }
    }
}

/// Bytes in the largest binary unit with one decimal (`4.0 MiB`), or bytes below 1 KiB.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    match UNITS.iter().find(|(_, size)| bytes >= *size) {
        Some((unit, size)) => format!("{:.1} {unit}", bytes as f64 / *size as f64),
        None => format!("{bytes} B"),
    }
}

/// `1 file`, `2 files`.
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `1 download at once, 4 MiB/s shared`, or only the limit that is set; `None` when neither is.
fn limits(downloads: ConnectionLimit, rate: ByteRate) -> Option<String> {
    let downloads = downloads
        .get()
        .map(|n| format!("{} at once", count(n as usize, "download", "downloads")));
    let rate = rate.get().map(|r| format!("{} shared", human_rate(r)));
    let parts: Vec<String> = downloads.into_iter().chain(rate).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// A rate in the largest unit that shows it exactly with at most one decimal, binary or decimal as it was
/// most likely typed (`4 MiB/s`, `500 kB/s`, `100 GB/s`); else bytes, or about so many binary units.
pub(crate) fn human_rate(bytes: u64) -> String {
    const UNITS: [(&str, u64); 6] = [
        ("GiB", 1 << 30),
        ("GB", 1_000_000_000),
        ("MiB", 1 << 20),
        ("MB", 1_000_000),
        ("KiB", 1 << 10),
        ("kB", 1000),
    ];
    let tenths = u128::from(bytes) * 10;
    for (unit, size) in UNITS {
        let size = u128::from(size);
        if u128::from(bytes) >= size && tenths % size == 0 {
            let n = tenths / size;
            return match n % 10 {
                0 => format!("{} {unit}/s", n / 10),
                d => format!("{}.{d} {unit}/s", n / 10),
            };
        }
    }
    if bytes < 10 << 10 {
        return format!("{bytes} B/s");
    }
    let (unit, size) = UNITS
        .iter()
        .step_by(2)
        .find(|(_, size)| bytes >= *size)
        .copied()
        .unwrap_or(("KiB", 1 << 10));
    format!("about {:.1} {unit}/s", bytes as f64 / size as f64)
}

/// `text` as one shell word: as it is when it holds only characters no POSIX shell treats specially, else
/// in single quotes (XCU §2.2.2), a quote inside written `'\''`.
pub(crate) fn shell_word(text: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_typed() {
        for (bytes, text) in [
            (4 << 20, "4 MiB/s"),
            (100_000_000_000, "100 GB/s"),
            (500_000, "500 kB/s"),
            (1_572_864, "1.5 MiB/s"),
            (1024, "1 KiB/s"),
            (1500, "1.5 kB/s"),
            (1025, "1025 B/s"),
            (1 << 30, "1 GiB/s"),
            (1_000_000_007, "about 953.7 MiB/s"),
        ] {
            assert_eq!(human_rate(bytes), text, "{bytes}");
        }
    }

    #[test]
    fn limits_say_only_what_is_set_in_words() {
        let one = ConnectionLimit::new(1).unwrap();
        let rate = ByteRate::per_second(4 << 20).unwrap();
        assert_eq!(
            limits(one, rate).unwrap(),
            "1 download at once, 4 MiB/s shared"
        );
        let three = ConnectionLimit::new(3).unwrap();
        assert_eq!(
            limits(three, ByteRate::UNLIMITED).unwrap(),
            "3 downloads at once"
        );
        assert_eq!(
            limits(ConnectionLimit::UNLIMITED, rate).unwrap(),
            "4 MiB/s shared"
        );
        assert_eq!(
            limits(ConnectionLimit::UNLIMITED, ByteRate::UNLIMITED),
            None
        );
    }

    #[test]
    fn escapes_keep_terminals_and_json_intact() {
        let hostile = "a\u{1b}]52;c;x\u{7}b\u{9b}c\u{202e}d\u{7f}é";
        assert_eq!(
            terminal_safe(hostile),
            "a\\u{1b}]52;c;x\\u{7}b\\u{9b}c\\u{202e}d\\u{7f}é"
        );
        let json = serde_json::to_string_pretty(&serde_json::json!({ "name": hostile })).unwrap();
        let safe = json_safe(json);
        assert!(!safe.chars().any(|c| is_unsafe(c) && c != '\n'), "{safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["name"], hostile);
    }

    #[test]
    fn shell_words_survive_a_paste() {
        assert_eq!(
            shell_word("http://h:8080/r/read%20me.txt"),
            "http://h:8080/r/read%20me.txt"
        );
        assert_eq!(shell_word("read me.txt"), "'read me.txt'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("sha256//ab+c/d="), "sha256//ab+c/d=");
        assert_eq!(shell_word("a&b"), "'a&b'");
    }
}
