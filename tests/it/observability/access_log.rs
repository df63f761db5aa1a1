//! Access logs as log tools read them: `bcs host`'s combined log read by goaccess, whose totals match
//! what the test sent; `bcs serve`'s JSON lines parsed line by line; logrotate renaming the file and
//! SIGHUP reopening it without losing a line; hostile headers that cannot break or add a line.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fetch;
use crate::cli::spawn_host;
use crate::service::{text, Service};
use crate::support::{free_port, have, pattern, raw_request, run, write_file};

/// The file's lines once it has `n` (polling; the writer flushes when its queue empties).
fn lines_when(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let content = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = content.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            assert_eq!(lines.len(), n, "more lines than requests: {lines:#?}");
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} has {} lines, wanted {n}: {lines:#?}",
            path.display(),
            lines.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The acceptance test: goaccess reads the combined log of a run, and its totals (requests, bytes) are
/// what the test sent. Hostile User-Agent and Referer values (quotes, tabs, bytes outside ASCII, 6 KB)
/// stay inside their fields: one line per request, which goaccess parses.
#[test]
fn goaccess_totals_match_the_combined_log() {
    if !have("curl") || !have("goaccess") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.bin", &pattern(10_000, 1));
    let b = write_file(dir.path(), "b.bin", &pattern(33_333, 2));
    let log = dir.path().join("access.log");
    let (bcs, port) = spawn_host(
        "http",
        "Logs",
        &["--access-log", log.to_str().unwrap()],
        &[a.as_path(), b.as_path()],
    );
    let base = format!("http://127.0.0.1:{port}/Logs/");
    let (mut requests, mut bytes) = (0u64, 0u64);
    let mut count = |(size, _): (u64, u16)| {
        requests += 1;
        bytes += size;
    };
    for _ in 0..5 {
        count(fetch(&[&format!("{base}a.bin")]));
    }
    for _ in 0..3 {
        count(fetch(&["-A", "Mozilla/5.0 (X11)", &format!("{base}b.bin")]));
    }
    for _ in 0..2 {
        count(fetch(&[&format!("{base}missing.bin")]));
    }
    count(fetch(&["-r", "0-99", &format!("{base}b.bin")]));
    count(fetch(&["-I", &format!("{base}a.bin")]));
    // SECURITY: hostile header values, sent raw.
    let mut hostile = format!(
        "GET /Logs/a.bin?q=%22x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nReferer: \" 200 1 \"evil\r\nUser-Agent: a\"\tb\\c"
    )
    .into_bytes();
    hostile.push(0xff);
    hostile.extend(std::iter::repeat_n(b'u', 6000));
    hostile.extend(b"\r\n\r\n");
    let answer = raw_request(port, &hostile);
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        text(&answer[..answer.len().min(40)])
    );
    requests += 1;
    bytes += 10_000;

    let lines = lines_when(&log, usize::try_from(requests).unwrap());
    for line in &lines {
        assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
        // Six quotes: the request, the Referer and the User-Agent, each quoted once.
        assert_eq!(line.matches('"').count(), 6, "{line}");
    }
    let last = lines.last().unwrap();
    assert!(
        last.contains("\"\\x22 200 1 \\x22evil\" \"a\\x22\\x09b\\x5Cc\\xFF"),
        "{last}"
    );
    let report = dir.path().join("report.json");
    let out = run(
        "goaccess",
        &[
            log.to_str().unwrap(),
            "--log-format=COMBINED",
            "--no-global-config",
            "-o",
            report.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "goaccess: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let general = &report["general"];
    assert_eq!(general["total_requests"], requests, "{general}");
    assert_eq!(general["failed_requests"], 0, "{general}");
    assert_eq!(general["bandwidth"], bytes, "{general}");
    bcs.stop("-TERM");
}

/// `bcs serve --access-log FILE --access-log-format json`: one JSON object per line with the request's
/// fields; logrotate renames the file and signals the service (SIGHUP), which reopens it: the lines
/// before are in the old file, the lines after in the new one, none lost.
#[test]
fn json_lines_survive_logrotate() {
    if !have("curl") || !have("logrotate") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bcs-access.log");
    let svc = Service::start(&[
        "--access-log",
        log.to_str().unwrap(),
        "--access-log-format",
        "json",
    ]);
    let file = write_file(dir.path(), "f.bin", &pattern(4_321, 4));
    let port = free_port();
    let prefix = format!("http://127.0.0.1:{port}/J/");
    svc.bcs_json(&["group", "create", &prefix]);
    svc.bcs_json(&["url", "add", &prefix, "f.bin", file.to_str().unwrap()]);
    let url = format!("{prefix}f.bin");
    for _ in 0..20 {
        assert_eq!(fetch(&["-e", "https://ref.example/", &url]), (4_321, 200));
    }
    let before = lines_when(&log, 20);
    for line in &before {
        let entry: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(entry["status"], 200, "{entry}");
        assert_eq!(entry["bytes"], 4_321);
        assert_eq!(entry["method"], "GET");
        assert_eq!(entry["target"], "/J/f.bin");
        assert_eq!(entry["protocol"], "HTTP/1.1");
        assert_eq!(entry["group"], prefix.as_str());
        assert_eq!(entry["referer"], "https://ref.example/");
        assert_eq!(entry["client"], "127.0.0.1");
        assert!(entry["user_agent"].as_str().unwrap().starts_with("curl/"));
        assert!(entry["duration_ms"].as_f64().unwrap() >= 0.0);
        assert!(entry["time"].as_str().unwrap().ends_with('Z'));
    }
    let config = format!(
        "{} {{\n    rotate 1\n    nocompress\n    missingok\n    postrotate\n        kill -HUP {}\n    endscript\n}}\n",
        log.display(),
        svc.pid()
    );
    let conf = write_file(dir.path(), "logrotate.conf", config.as_bytes());
    let state = dir.path().join("logrotate.state");
    let out = run(
        "logrotate",
        &["-f", "-s", state.to_str().unwrap(), conf.to_str().unwrap()],
    );
    assert!(out.status.success(), "logrotate: {}", text(&out.stderr));
    let rotated = dir.path().join("bcs-access.log.1");
    assert!(rotated.exists());
    // The service reopens on SIGHUP: the file is there again (and the service still runs).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.exists() {
        assert!(Instant::now() < deadline, "the log was not reopened");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..15 {
        assert_eq!(fetch(&[&url]), (4_321, 200));
    }
    let after = lines_when(&log, 15);
    assert_eq!(
        lines_when(&rotated, 20),
        before,
        "the old file kept its lines"
    );
    for line in &after {
        let entry: Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["referer"], "");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o640, 0, "{mode:o}");
}
