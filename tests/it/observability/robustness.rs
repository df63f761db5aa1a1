//! What must not hurt a running server: clients sending huge headers while the access log is stuck
//! (memory stays bounded), a SIGHUP with no access-log file (logrotate's `kill -HUP`), and a metrics
//! listener opened beyond loopback (warned about).

use std::time::{Duration, Instant};

use crate::cli::spawn_host;
use crate::service::text;
use crate::support::{free_port, have, pattern, raw_request, run, write_file};

/// The resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// SECURITY: the access-log writer is stuck (its file is a FIFO nobody reads) and clients send
/// 64 KiB User-Agent and Referer values. Each queued entry would pin a 128 KiB request head if it kept
/// the header values; it keeps 800-byte copies, and the queue stops at 4 MiB: 1500 requests leave the
/// server's memory within a bound far below the 190 MiB of heads they carried.
#[test]
fn huge_headers_with_a_stuck_access_log_keep_memory_bounded() {
    if !have("mkfifo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "a.bin", &pattern(1000, 7));
    let fifo = dir.path().join("access.log");
    assert!(run("mkfifo", &[fifo.to_str().unwrap()]).status.success());
    // Read and write: opening does not wait for a writer, and the FIFO is never read.
    let _held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let (mut bcs, port) = spawn_host(
        "http",
        "Big",
        &["--access-log", fifo.to_str().unwrap()],
        &[file.as_path()],
    );
    let pid = bcs.child.id();
    let huge = "h".repeat(64 << 10);
    let request = format!(
        "GET /Big/a.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: {huge}\r\nReferer: {huge}\r\n\r\n"
    );
    let send = |n: usize| {
        for _ in 0..n {
            let answer = raw_request(port, request.as_bytes());
            assert!(
                answer.starts_with(b"HTTP/1.1 200"),
                "{}",
                text(&answer[..answer.len().min(60)])
            );
        }
    };
    // Enough to fill the FIFO (64 KiB) and the writer's buffer (64 KiB): from here the writer is stuck.
    send(300);
    let before = rss_kib(pid);
    send(1500);
    let after = rss_kib(pid);
    assert!(
        after < before + 48 * 1024,
        "resident memory grew from {before} KiB to {after} KiB"
    );
    assert_eq!(bcs.child.try_wait().ok().flatten(), None);
    bcs.stop("-KILL");
}

/// logrotate's `postrotate kill -HUP` reaches a `bcs host` started without `--access-log`: SIGHUP's
/// default action would end it; it keeps serving.
#[test]
fn sighup_without_an_access_log_keeps_host_serving() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "a.bin", &pattern(5000, 3));
    let (mut bcs, port) = spawn_host("http", "Hup", &[], &[file.as_path()]);
    let pid = bcs.child.id().to_string();
    for _ in 0..2 {
        assert!(run("kill", &["-HUP", &pid]).status.success());
    }
    // A process killed by the signal no longer answers: the download proves it serves on.
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let url = format!("http://127.0.0.1:{port}/Hup/a.bin");
        assert_eq!(super::fetch(&[&url]), (5000, 200));
        assert_eq!(bcs.child.try_wait().unwrap(), None);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, _) = bcs.stop("-TERM");
    assert_eq!(code, Some(0));
}

/// `--metrics` on an address beyond loopback serves metrics without credentials: one warning line on
/// stderr says so; on loopback there is none.
#[test]
fn metrics_beyond_loopback_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "a.bin", &pattern(10, 1));
    let warning = "need no credentials";
    for (addr, warned) in [
        (format!("0.0.0.0:{}", free_port()), true),
        (format!("127.0.0.1:{}", free_port()), false),
    ] {
        let (bcs, _) = spawn_host("http", "M", &["--metrics", &addr], &[file.as_path()]);
        let (_, stderr) = bcs.stop("-TERM");
        assert_eq!(
            stderr.matches(warning).count(),
            usize::from(warned),
            "{addr}: {stderr}"
        );
    }
}
