//! Black-box tests of the real `bcs` binary and of the example, as a user runs them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{curl, free_port, have, pattern, run, target_dir, write_file};

const BCS: &str = env!("CARGO_BIN_EXE_bcs");

/// A running child whose stdout lines arrive on a channel.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn spawn(program: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .env("BCS_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines }
    }

    /// Lines up to and including the first that contains `marker`.
    fn lines_until(&self, marker: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("no {marker:?} in {seen:?}"));
            let done = line.contains(marker);
            seen.push(line);
            if done {
                return seen;
            }
        }
    }

    /// Sends a signal and returns the exit code and stderr.
    fn stop(mut self, signal: &str) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        assert!(run("kill", &[signal, &pid]).status.success());
        let status = self.child.wait().unwrap();
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut stderr).unwrap();
        }
        (status.code(), stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bcs_fails(args: &[&str]) -> String {
    let out = Command::new(BCS).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?} should fail with 1");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one-line error: {stderr}"
    );
    stderr
}

#[test]
fn bcs_host_publishes_a_tree_prints_urls_and_stops_on_sigterm() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("release");
    let big = pattern(2 << 20, 7);
    write_file(&root, "setup.exe", &big);
    write_file(&root, "docs/read me.txt", b"hello");
    let port = free_port();
    let prefix = format!("http://+:{port}/rel/");
    let bcs = Running::spawn(
        Path::new(BCS),
        &[
            "host",
            "--bind",
            "127.0.0.1",
            "--max-downloads",
            "2",
            "--rate",
            "64MiB/s",
            "--url",
            &prefix,
            root.to_str().unwrap(),
        ],
    );
    let lines = bcs.lines_until("Ctrl-C");
    assert_eq!(lines[0], format!("Serving 2 files under {prefix}"));
    let local_urls: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("http://127.0.0.1"))
        .collect();
    assert_eq!(
        local_urls,
        vec![
            format!(":{port}/rel/docs/read%20me.txt").as_str(),
            format!(":{port}/rel/setup.exe").as_str()
        ]
    );
    let r = curl(&[&format!("http://127.0.0.1:{port}/rel/setup.exe")]);
    assert!(r.body == big);
    assert_eq!(lines[1], "Limits: 2 downloads at once, 64MiB/s shared");
    let r = curl(&[&format!("http://127.0.0.1:{port}/rel/docs/read%20me.txt")]);
    assert_eq!(r.body, b"hello");

    let (code, stderr) = bcs.stop("-TERM");
    assert_eq!(code, Some(0), "{stderr}");
    // One access-log line per request, with the peer and status.
    let access: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("bits_compact::access"))
        .collect();
    assert_eq!(access.len(), 2, "{stderr}");
    assert!(access[0].contains("status=200") && access[0].contains("peer=127.0.0.1:"));
    assert!(access[0].contains(&format!("bytes={}", big.len())));
}

#[test]
fn bcs_host_json_lists_the_published_files_and_stops_on_ctrl_c() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let b = write_file(dir.path(), "b.bin", &pattern(1000, 8));
    let port = free_port();
    let prefix = format!("http://127.0.0.1:{port}/x/");
    let (a_arg, b_arg) = (a.to_str().unwrap(), b.to_str().unwrap());
    let bcs = Running::spawn(
        Path::new(BCS),
        &[
            "host",
            "--json",
            "--bind",
            "127.0.0.1",
            "--url",
            &prefix,
            a_arg,
            b_arg,
        ],
    );
    let mut lines = Vec::new();
    while lines.last().map(String::as_str) != Some("}") {
        lines.push(bcs.lines.recv_timeout(Duration::from_secs(30)).unwrap());
    }
    let doc: serde_json::Value = serde_json::from_str(&lines.join("\n")).unwrap();
    assert_eq!(doc["prefix"], prefix.as_str());
    let urls = doc["urls"].as_array().unwrap();
    assert_eq!(urls.len(), 2);
    assert_eq!(urls[0]["suffix"], "a.txt");
    assert_eq!(urls[0]["size"], 5);
    assert_eq!(urls[1]["suffix"], "b.bin");
    let url = urls[0]["url"].as_str().unwrap();
    assert_eq!(url, format!("http://127.0.0.1:{port}/x/a.txt"));
    assert_eq!(curl(&[url]).body, b"alpha");
    let (code, stderr) = bcs.stop("-INT");
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn bcs_errors_are_one_line_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let a = a.to_str().unwrap();

    // A bad prefix is refused by argument parsing (clap's usage error, exit 2) with the rule broken.
    let out = Command::new(BCS)
        .args(["host", "--url", "http://+:80/a/b/", a])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("only one path segment is allowed"),
        "{stderr}"
    );

    for (args, message) in [
        (
            ["--rate", "1000"],
            "a bandwidth limit must be at least 1024 bytes per second, not 1000",
        ),
        (["--rate", "4XB/s"], "unknown unit"),
        (
            ["--max-downloads", "0"],
            "a connection limit must be at least 1",
        ),
    ] {
        let out = Command::new(BCS)
            .arg("host")
            .args(args)
            .arg(a)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }

    let missing = dir.path().join("missing.bin");
    let e = bcs_fails(&["host", "--bind", "127.0.0.1", missing.to_str().unwrap()]);
    assert!(e.starts_with("bcs: error: cannot publish"), "{e}");
    assert!(e.contains("No such file or directory"), "{e}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let url = format!("http://+:{port}/x/");
    let e = bcs_fails(&["host", "--bind", "127.0.0.1", "--url", &url, a]);
    assert!(
        e.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{e}"
    );
    assert!(e.contains("in use"), "{e}");

    let empty = tempfile::tempdir().unwrap();
    let e = bcs_fails(&[
        "host",
        "--bind",
        "127.0.0.1",
        empty.path().to_str().unwrap(),
    ]);
    assert!(e.contains("nothing to publish"), "{e}");

    let other = tempfile::tempdir().unwrap();
    let twin = write_file(other.path(), "A.TXT", b"twin");
    let e = bcs_fails(&["host", "--bind", "127.0.0.1", a, twin.to_str().unwrap()]);
    assert!(e.contains("published twice"), "{e}");
}

#[test]
fn the_host_files_example_serves_its_files() {
    if !have("curl") {
        return;
    }
    let example = target_dir().join("examples").join("host_files");
    assert!(example.exists(), "{} not built", example.display());
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "notes.txt", b"example notes");
    let port = free_port();
    let running = Running::spawn(
        &example,
        &[
            &format!("http://127.0.0.1:{port}/demo/"),
            a.to_str().unwrap(),
        ],
    );
    let lines = running.lines_until("Ctrl-C");
    assert_eq!(lines[0], format!("http://127.0.0.1:{port}/demo/notes.txt"));
    assert_eq!(curl(&[&lines[0]]).body, b"example notes");
    let (code, stderr) = running.stop("-INT");
    assert_eq!(code, Some(0), "{stderr}");
}
