//! Black-box tests of the real `bcs` binary and of the example, as a user runs them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::support::{curl, free_port, have, pattern, run, target_dir, write_file};

pub(crate) const BCS: &str = env!("CARGO_BIN_EXE_bcs");

/// A running child whose stdout lines arrive on a channel.
pub(crate) struct Running {
    pub(crate) child: Child,
    lines: mpsc::Receiver<String>,
    /// stderr, read as it comes so that a chatty child never blocks on a full pipe.
    stderr: Option<std::thread::JoinHandle<String>>,
    /// Its HOME and XDG_STATE_HOME, unless the test gave its own: bcs keeps its self-signed certificate
    /// there, and a test must not write into the user's.
    _home: tempfile::TempDir,
}

impl Running {
    pub(crate) fn spawn(program: &Path, args: &[&str]) -> Self {
        Self::spawn_with_env(program, args, &[])
    }

    pub(crate) fn spawn_with_env(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn_into(program, args, env, Stdio::piped())
    }

    /// With stdout going to `stdout`; only a piped stdout gives lines to `lines_until`.
    pub(crate) fn spawn_into(
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        stdout: Stdio,
    ) -> Self {
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(program)
            .args(args)
            .env("HOME", home.path())
            .env("XDG_STATE_HOME", home.path().join("state"))
            .env("BCS_LOG", "info")
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take();
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            text
        });
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            stderr: Some(stderr),
            _home: home,
        }
    }

    /// Lines up to and including the first that contains `marker`.
    pub(crate) fn lines_until(&self, marker: &str) -> Vec<String> {
        self.try_lines_until(marker)
            .unwrap_or_else(|seen| panic!("no {marker:?} in {seen:?}"))
    }

    /// Lines up to and including the first that contains `marker`; the lines seen when stdout ends (or
    /// 30 s pass) first.
    pub(crate) fn try_lines_until(&self, marker: &str) -> Result<Vec<String>, Vec<String>> {
        let mut seen = Vec::new();
        loop {
            let Ok(line) = self.lines.recv_timeout(Duration::from_secs(30)) else {
                return Err(seen);
            };
            let done = line.contains(marker);
            seen.push(line);
            if done {
                return Ok(seen);
            }
        }
    }

    /// Sends a signal and returns the exit code, stderr, and the stdout lines not read yet.
    pub(crate) fn stop_with_output(mut self, signal: &str) -> (Option<i32>, String, Vec<String>) {
        let lines = std::mem::replace(&mut self.lines, mpsc::channel().1);
        let (code, stderr) = self.stop(signal);
        // The reader thread ends at EOF and closes the channel: by then every line is in it.
        (code, stderr, lines.iter().collect())
    }

    /// Sends a signal and returns the exit code and stderr.
    pub(crate) fn stop(self, signal: &str) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        assert!(run("kill", &[signal, &pid]).status.success());
        self.exited()
    }

    /// Waits for the child to exit; its exit code and stderr.
    pub(crate) fn exited(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        let stderr = self
            .stderr
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default();
        (status.code(), stderr)
    }
}

/// Starts `bcs host` for `{scheme}://+:PORT/{segment}/` on a free loopback port (`--bind 127.0.0.1`), with
/// `args` before the files; waits for its banner.
pub(crate) fn spawn_host(
    scheme: &str,
    segment: &str,
    args: &[&str],
    files: &[&Path],
) -> (Running, u16) {
    let port = free_port();
    let prefix = format!("{scheme}://+:{port}/{segment}/");
    let mut all = vec!["host", "--bind", "127.0.0.1", "--url", &prefix];
    all.extend_from_slice(args);
    all.extend(files.iter().map(|f| f.to_str().unwrap()));
    let bcs = Running::spawn(Path::new(BCS), &all);
    bcs.lines_until("Press Ctrl-C");
    (bcs, port)
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `bcs` with HOME and XDG_STATE_HOME in `home`, never the user's.
pub(crate) fn bcs(home: &Path) -> Command {
    let mut cmd = Command::new(BCS);
    cmd.env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"));
    cmd
}

fn bcs_fails(args: &[&str]) -> String {
    bcs_fails_with(1, args, &[])
}

/// Runs bcs, which must exit with `code` and print exactly one line, `bcs: error: ...`, on stderr.
fn bcs_fails_with(code: i32, args: &[&str], env: &[(&str, &str)]) -> String {
    let home = tempfile::tempdir().unwrap();
    let out = bcs(home.path())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?} should fail with {code}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one-line error: {stderr}"
    );
    assert!(stderr.starts_with("bcs: error: "), "{stderr}");
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
    std::os::unix::fs::symlink("/etc/passwd", root.join("passwd")).unwrap();
    std::os::unix::fs::symlink("setup.exe", root.join("docs/setup-link.exe")).unwrap();
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
    assert_eq!(lines[1], "Limits: 2 downloads at once, 64 MiB/s shared");
    assert!(
        lines.contains(&"Skipped 2 symbolic links (BCS_LOG=info,bcs=debug lists them)".to_owned()),
        "{lines:?}"
    );
    // The ready command downloads the first file under its own name, as pasted into a shell.
    let curl_line = lines
        .iter()
        .find(|l| l.trim().starts_with("curl "))
        .unwrap();
    let wget_line = lines
        .iter()
        .find(|l| l.trim().starts_with("wget -c "))
        .unwrap();
    assert!(
        wget_line.ends_with(&format!(":{port}/rel/docs/read%20me.txt")),
        "{wget_line}"
    );
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let ran = Command::new("sh")
        .args(["-c", &format!("{} -s -S", curl_line.trim())])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(ran.status.success(), "{curl_line}: {ran:?}");
    assert_eq!(std::fs::read(out.join("read me.txt")).unwrap(), b"hello");
    let r = curl(&[&format!("http://127.0.0.1:{port}/rel/docs/read%20me.txt")]);
    assert_eq!(r.body, b"hello");

    let (code, stderr) = bcs.stop("-TERM");
    assert_eq!(code, Some(0), "{stderr}");
    // One access-log line per request, with the peer and status.
    let access: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("bits_compact::access"))
        .collect();
    assert_eq!(access.len(), 3, "{stderr}");
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

    // Argument parsing refuses these (a usage error, exit 2, as clap's), on one line like any other.
    for (args, message) in [
        (
            &["host", "--url", "http://+:80/a/b/", a][..],
            "only one path segment is allowed",
        ),
        (
            &["host", "--rate", "1000", a],
            "a bandwidth limit must be at least 1024 bytes per second, not 1000",
        ),
        (&["host", "--rate", "4XB/s", a], "unknown unit"),
        (
            &["host", "--max-downloads", "0", a],
            "a connection limit must be at least 1",
        ),
        (
            &["host", "--frobnicate", a],
            "unexpected argument '--frobnicate' found",
        ),
        (&["host"], "required arguments were not provided: <PATH>"),
        (
            &["hots", a],
            "unrecognized subcommand 'hots' (a similar subcommand exists: 'host')",
        ),
        (&["host", "--bind", "example.com", a], "or localhost"),
        (
            &["user", "add", "alice", "--users", "u.toml", "--json"],
            "'--users <FILE>' cannot be used with '--json'",
        ),
    ] {
        let e = bcs_fails_with(2, args, &[]);
        assert!(e.contains(message), "{args:?}: {e}");
    }
    // A BCS_LOG that does not parse is an error, not silence.
    let e = bcs_fails_with(1, &["host", a], &[("BCS_LOG", "info,bits_compact=loud")]);
    assert!(
        e.starts_with("bcs: error: invalid BCS_LOG \"info,bits_compact=loud\""),
        "{e}"
    );

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

/// The management commands without a service: unreachable is exit 5, and what is refused before any
/// request (plain http, a bad limit) is exit 2. (Against a real `bcs serve`: the service's tests.)
#[test]
fn bcs_management_commands_say_why_they_cannot_ask() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bcs.sock");
    let socket = socket.to_str().unwrap();
    for args in [
        &["group", "list", "--server", socket][..],
        &[
            "url",
            "check",
            "http://+:8080/a/",
            "x",
            "--json",
            "--server",
            socket,
        ],
        &["export", "--server", socket],
    ] {
        let e = bcs_fails_with(5, args, &[]);
        assert!(
            e.contains(&format!("cannot reach bcs serve at {socket}")),
            "{e}"
        );
    }
    let e = bcs_fails_with(
        2,
        &["group", "list", "--server", "http://127.0.0.1:1/"],
        &[],
    );
    assert!(e.contains("only https://"), "{e}");
    let limit = ["limit", "set", "http://+:8080/a/", "BandwidthLimit", "fast"];
    let e = bcs_fails_with(2, &[&limit[..], &["--server", socket]].concat(), &[]);
    assert!(e.contains("invalid rate \"fast\""), "{e}");
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

#[test]
fn bcs_https_with_a_pfx_and_required_client_certificates_logs_the_upn() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = crate::pki::Ca::new("Corp CA");
    let ca_file = ca.write(d, "ca.pem");
    let server = ca.server(d, "server", &["127.0.0.1"]);
    let pfx = d.join("server.pfx");
    server.pkcs12(&pfx, "s3cret pfx");
    let alice = ca.client(d, "alice", "Alice", Some("alice@corp.example"));
    let file = write_file(d, "a.txt", b"alpha over tls");
    let port = free_port();
    let prefix = format!("https://+:{port}/sec/");
    let (pfx_arg, ca_arg, file_arg) = (
        pfx.to_str().unwrap(),
        ca_file.to_str().unwrap(),
        file.to_str().unwrap(),
    );
    let bcs = Running::spawn_with_env(
        Path::new(BCS),
        &[
            "host",
            "--bind",
            "127.0.0.1",
            "--url",
            &prefix,
            "--pfx",
            pfx_arg,
            "--client-ca",
            ca_arg,
        ]
        .into_iter()
        .chain(["--client-cert", "required", file_arg])
        .collect::<Vec<_>>(),
        &[("BCS_PFX_PASSWORD", "s3cret pfx")],
    );
    let printed = bcs.lines_until("Ctrl-C");
    assert!(
        printed
            .iter()
            .any(|l| l.starts_with("TLS certificate (loaded): CN=127.0.0.1")),
        "{printed:?}"
    );
    let url = format!("https://127.0.0.1:{port}/sec/a.txt");
    let (ca_arg, cert, key) = (
        ca_file.to_str().unwrap(),
        alice.cert.to_str().unwrap(),
        alice.key.to_str().unwrap(),
    );
    let r = curl(&["--cacert", ca_arg, "--cert", cert, "--key", key, &url]);
    assert_eq!(r.body, b"alpha over tls");
    let refused = run("curl", &["-s", "--cacert", ca_arg, &url]);
    assert!(
        !refused.status.success(),
        "no client certificate on a required port"
    );
    let (code, stderr) = bcs.stop("-TERM");
    assert_eq!(code, Some(0), "{stderr}");
    let access: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("bits_compact::access"))
        .collect();
    assert_eq!(access.len(), 1, "{stderr}");
    assert!(
        access[0].contains("identity=\"alice@corp.example\""),
        "{}",
        access[0]
    );
}

#[test]
fn bcs_https_self_signed_prints_a_pin_that_curl_accepts() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "a.txt", b"pinned");
    let port = free_port();
    let prefix = format!("https://+:{port}/p/");
    let bcs = Running::spawn(
        Path::new(BCS),
        &[
            "host",
            "--bind",
            "127.0.0.1",
            "--url",
            &prefix,
            file.to_str().unwrap(),
        ],
    );
    let printed = bcs.lines_until("Ctrl-C");
    let pin_line = printed
        .iter()
        .find(|l| l.contains("--pinnedpubkey"))
        .expect("a pin");
    let pin = pin_line.split('\'').nth(1).unwrap();
    let url = format!("https://127.0.0.1:{port}/p/a.txt");
    assert_eq!(curl(&["-k", "--pinnedpubkey", pin, &url]).body, b"pinned");
    let wrong = run(
        "curl",
        &[
            "-s",
            "-k",
            "--pinnedpubkey",
            "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            &url,
        ],
    );
    assert!(!wrong.status.success());
    let (code, stderr) = bcs.stop("-TERM");
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn bcs_tls_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = crate::pki::Ca::new("CA");
    let one = ca.server(d, "one", &["localhost"]);
    let two = ca.server(d, "two", &["localhost"]);
    let pfx = d.join("s.pfx");
    one.pkcs12(&pfx, "right");
    let file = write_file(d, "a.txt", b"x");
    let port = free_port().to_string();
    let url = format!("https://+:{port}/t/");
    let base = ["host", "--bind", "127.0.0.1", "--url", url.as_str()];
    let (one_cert, two_key) = (one.cert.to_str().unwrap(), two.key.to_str().unwrap());
    let e = bcs_fails(
        &[
            &base[..],
            &["--cert", one_cert, "--key", two_key, file.to_str().unwrap()],
        ]
        .concat(),
    );
    assert!(e.contains("does not match") && e.contains("two.key"), "{e}");
    let with_pfx = [
        &base[..],
        &["--pfx", pfx.to_str().unwrap(), file.to_str().unwrap()],
    ]
    .concat();
    let e = bcs_fails_with(1, &with_pfx, &[("BCS_PFX_PASSWORD", "wrong")]);
    assert!(e.contains("s.pfx") && e.contains("wrong password"), "{e}");
    // Without the variable and without a terminal to prompt on (setsid: no controlling terminal), bcs
    // says what to set.
    if have("setsid") {
        let home = tempfile::tempdir().unwrap();
        let out = Command::new("setsid")
            .arg(BCS)
            .args(&with_pfx)
            .env("HOME", home.path())
            .env_remove("BCS_PFX_PASSWORD")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let e = String::from_utf8(out.stderr).unwrap();
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        assert!(
            e.starts_with("bcs: error: --pfx needs its password: set BCS_PFX_PASSWORD"),
            "{e}"
        );
    }
    let e = bcs_fails(
        &[
            &base[..],
            &[
                "--client-ca",
                two_key,
                "--client-cert",
                "required",
                file.to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    assert!(e.contains("CA file") && e.contains("two.key"), "{e}");
    let plain = format!("http://+:{port}/t/");
    // A usage error: exit 2.
    let e = bcs_fails_with(
        2,
        &[
            "host",
            "--url",
            &plain,
            "--cert",
            one_cert,
            "--key",
            two_key,
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(e.contains("--cert needs an https --url"), "{e}");
}

/// `bcs host … | head -1`: the reader goes away while bcs prints its banner (every other round, before it
/// prints anything). bcs neither panics nor stops serving.
#[test]
fn a_closed_stdout_never_panics_nor_stops_the_server() {
    if !have("curl") || !have("head") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    for round in 0..20 {
        let lines = if round % 2 == 0 { "1" } else { "0" };
        let mut head = Command::new("head")
            .args(["-n", lines])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pipe = head.stdin.take().unwrap();
        if lines == "0" {
            // head -n 0 exits without reading: the pipe is closed before bcs writes.
            head.wait().unwrap();
        }
        let port = free_port();
        let url = format!("http://+:{port}/h/");
        let args = [
            "host",
            "--bind",
            "127.0.0.1",
            "--url",
            &url,
            a.to_str().unwrap(),
        ];
        let bcs = Running::spawn_into(Path::new(BCS), &args, &[], Stdio::from(pipe));
        head.wait().unwrap();
        let served = curl(&[
            "--retry",
            "50",
            "--retry-connrefused",
            "--retry-delay",
            "0",
            &format!("http://127.0.0.1:{port}/h/a.txt"),
        ]);
        assert_eq!(served.body, b"alpha");
        let (code, stderr) = bcs.stop("-TERM");
        assert_eq!(code, Some(0), "round {round}: {stderr}");
        assert!(!stderr.contains("panicked"), "round {round}: {stderr}");
    }
}

fn banner_value<'a>(lines: &'a [String], label: &str) -> &'a str {
    lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} in {lines:?}"))
        .trim()
}

/// The self-signed certificate is kept in XDG_STATE_HOME: the same fingerprint and pin at the next start,
/// a new one with --new-cert; a state directory that cannot be written gives a warning and a certificate
/// that lasts until bcs stops.
#[test]
fn the_self_signed_certificate_is_kept_across_starts() {
    let home = tempfile::tempdir().unwrap();
    let state = home.path().join("state");
    let file = write_file(home.path(), "a.txt", b"kept");
    let start = |state: &Path, extra: &[&str]| {
        let port = free_port();
        let url = format!("https://+:{port}/k/");
        let mut args = vec!["host", "--bind", "127.0.0.1", "--url", &url];
        args.extend_from_slice(extra);
        args.push(file.to_str().unwrap());
        let env = [
            ("HOME", home.path().to_str().unwrap()),
            ("XDG_STATE_HOME", state.to_str().unwrap()),
        ];
        let bcs = Running::spawn_with_env(Path::new(BCS), &args, &env);
        let lines = bcs.lines_until("Ctrl-C");
        if have("wget") {
            // The ready wget line trusts the kept certificate, whose names include 127.0.0.1.
            if let Some(wget) = lines.iter().find(|l| l.trim().starts_with("wget -c ")) {
                let into = tempfile::tempdir().unwrap();
                let out = Command::new("sh")
                    .args(["-c", &format!("{} -q", wget.trim())])
                    .current_dir(into.path())
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{wget}: {out:?}");
                assert_eq!(std::fs::read(into.path().join("a.txt")).unwrap(), b"kept");
            }
        }
        let (code, stderr) = bcs.stop("-TERM");
        assert_eq!(code, Some(0), "{stderr}");
        (lines, stderr)
    };
    let fingerprint = |lines: &[String]| {
        let pin = banner_value(lines, "Public-key pin:").to_owned();
        (banner_value(lines, "SHA-256 fingerprint:").to_owned(), pin)
    };

    let (first, _) = start(&state, &[]);
    let subject = first
        .iter()
        .find(|l| l.starts_with("TLS certificate"))
        .unwrap();
    let host = String::from_utf8(run("uname", &["-n"]).stdout).unwrap();
    assert!(
        subject.ends_with(&format!("): CN={}", host.trim())),
        "{subject}"
    );
    assert!(subject.contains("made now and kept in"), "{subject}");
    let key = state.join("bcs/self-signed-key.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (second, _) = start(&state, &[]);
    assert_eq!(fingerprint(&first), fingerprint(&second));
    assert!(second
        .iter()
        .any(|l| l.starts_with("TLS certificate (self-signed, kept in")));
    let (third, _) = start(&state, &["--new-cert"]);
    assert_ne!(fingerprint(&third).0, fingerprint(&first).0);
    assert_ne!(fingerprint(&third).1, fingerprint(&first).1);
    let (fourth, _) = start(&state, &[]);
    assert_eq!(fingerprint(&fourth), fingerprint(&third));

    // A state "directory" that is a file cannot be written.
    let blocked = write_file(home.path(), "not-a-dir", b"");
    let (lines, stderr) = start(&blocked, &[]);
    assert!(lines
        .iter()
        .any(|l| l.contains("(self-signed, made now; it lasts until bcs stops)")));
    assert!(
        stderr.contains("bcs: warning: cannot keep the self-signed certificate in"),
        "{stderr}"
    );
}

#[test]
fn bcs_warns_before_serving_a_configuration_that_refuses_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let users = dir.path().join("users.toml");
    let mut principals = bits_compact::Principals::default();
    principals
        .set_user("alice", &bits_compact::Password::from("pw"), &[])
        .unwrap();
    principals.save(&users).unwrap();
    let users = users.to_str().unwrap();
    let warnings = |args: &[&str]| {
        let port = free_port();
        let url = format!("http://+:{port}/w/");
        let all = [
            &["host", "--bind", "127.0.0.1", "--url", &url],
            args,
            &[a.to_str().unwrap()],
        ]
        .concat();
        let bcs = Running::spawn(Path::new(BCS), &all);
        bcs.lines_until("Ctrl-C");
        let (_, stderr) = bcs.stop("-TERM");
        stderr
            .lines()
            .filter(|l| l.starts_with("bcs: warning: "))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let w = warnings(&["--sddl", "D:(A;;GR;;;AU)"]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("without --auth every caller is anonymous") && w[0].contains("add --auth"),
        "{w:?}"
    );
    let w = warnings(&["--auth", "basic", "--users", users]);
    assert!(w[0].contains("add --allow-basic-over-http"), "{w:?}");
    let w = warnings(&["--auth", "ntlm", "--sddl", "D:(A;;GR;;;AU)"]);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("add --users FILE"), "{w:?}");
    for fine in [
        &["--sddl", "D:(A;;GR;;;WD)"][..],
        &[
            "--auth",
            "ntlm",
            "--users",
            users,
            "--sddl",
            "D:(A;;GR;;;AU)",
        ],
        &[
            "--auth",
            "basic",
            "--users",
            users,
            "--allow-basic-over-http",
        ],
    ] {
        assert_eq!(warnings(fine), Vec::<String>::new(), "{fine:?}");
    }
}

#[test]
fn bcs_binds_localhost_and_bracketed_ipv6() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let ipv6 = std::net::TcpListener::bind("[::1]:0").is_ok();
    for (bind, client) in [
        ("localhost", "127.0.0.1"),
        ("[::1]", "[::1]"),
        ("localhost", "[::1]"),
    ] {
        if client.starts_with('[') && !ipv6 {
            eprintln!("skipping {bind} on {client}: no IPv6 here");
            continue;
        }
        let port = free_port();
        let url = format!("http://+:{port}/b/");
        let bcs = Running::spawn(
            Path::new(BCS),
            &["host", "--bind", bind, "--url", &url, a.to_str().unwrap()],
        );
        bcs.lines_until("Ctrl-C");
        let r = curl(&["-g", &format!("http://{client}:{port}/b/a.txt")]);
        assert_eq!(r.body, b"alpha", "{bind} on {client}");
        let (code, stderr) = bcs.stop("-TERM");
        assert_eq!(code, Some(0), "{stderr}");
    }
}

/// Colour only on a terminal (script gives bcs one), and never with NO_COLOR; --qr draws the first URL.
#[test]
fn bcs_colours_a_terminal_unless_no_color_and_draws_a_qr_code() {
    if !have("script") || !have("timeout") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let on_a_terminal = |no_color: &str| {
        let port = free_port();
        let command = format!(
            "timeout -s INT 2 {BCS} host --qr --bind 127.0.0.1 --url http://+:{port}/c/ {}",
            a.display()
        );
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env("HOME", dir.path())
            .env("NO_COLOR", no_color)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let coloured = on_a_terminal("");
    assert!(coloured.contains("\x1b[1mServing 1 file"), "{coloured:?}");
    assert!(
        coloured.contains("\u{2588}\u{2588}\u{2588}\u{2588}"),
        "a QR code: {coloured}"
    );
    let plain = on_a_terminal("1");
    assert!(
        plain.contains("Serving 1 file") && !plain.contains('\x1b'),
        "{plain:?}"
    );
}

/// `--workers N` gives the runtime N worker threads (counted in /proc), and the service still answers.
/// `bcs serve` with nothing stored is used: its only blocking-pool thread (those share the workers' name)
/// is the one that loaded its (empty) job store, and it ends after tokio's 10 s keep-alive, where `bcs
/// host` keeps hashing its files on them.
#[test]
fn workers_sets_the_number_of_worker_threads() {
    for n in ["1", "3"] {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let state = state.to_str().unwrap();
        let args = [
            "serve",
            "--state",
            state,
            "--bind",
            "127.0.0.1",
            "--workers",
            n,
        ];
        let bcs = Running::spawn(Path::new(BCS), &args);
        bcs.lines_until("bcs: serving");
        let pid = bcs.child.id();
        let count = || {
            std::fs::read_dir(format!("/proc/{pid}/task"))
                .unwrap()
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.trim() == "tokio-rt-worker")
                .count()
                .to_string()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while count() != n && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        assert_eq!(count(), n);
        let socket = format!("{state}/bcs.sock");
        let out = run(
            "curl",
            &["-s", "--unix-socket", &socket, "http://localhost/v1/groups"],
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "[]");
        let (code, _) = bcs.stop("-TERM");
        assert_eq!(code, Some(0));
    }
}

/// A stand-in for `bcs serve` on a Unix socket that answers each GET path with a fixed JSON body (404
/// for others): a malicious or mismatched service, which the real one would not be.
fn fake_service(answers: Vec<(&'static str, serde_json::Value)>) -> (tempfile::TempDir, String) {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bcs.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let path = head.split(' ').nth(1).unwrap_or_default();
            let (status, body) = match answers.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => ("200 OK", body.to_string()),
                None => (
                    "404 Not Found",
                    r#"{"code":"not_found","message":"no"}"#.to_owned(),
                ),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let socket = socket.to_str().unwrap().to_owned();
    (dir, socket)
}

/// A job as the service shows it, with `name` as its display name, description and file name.
fn hostile_job(name: &str) -> serde_json::Value {
    serde_json::json!({
        "id": "0c6d3d4e-0000-4000-8000-000000000001", "display_name": name, "description": name,
        "owner": name, "state": "ERROR", "state_number": 4, "priority": "NORMAL", "priority_number": 2,
        "creation_time": "2025-01-01T00:00:00Z", "modification_time": "2025-01-01T00:00:00Z",
        "transfer_completion_time": null, "bytes_total": null, "bytes_transferred": 0,
        "files_total": 1, "files_transferred": 0, "error_count": 0, "has_error": true,
        "minimum_retry_delay_secs": 600, "no_progress_timeout_secs": 1209600,
        "proxy": {"usage": "preconfig", "proxy": null, "bypass": []}, "credentials": null,
        "files": [{"remote_url": format!("http://h/{name}"), "local_file": format!("/d/{name}"),
            "bytes_total": null, "bytes_transferred": 0, "completed": false}],
    })
}

/// Whether `text` holds a character no terminal should get raw from a server (but line feeds).
fn raw_escape(text: &str) -> bool {
    text.chars().any(|c| {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    })
}

/// What the service sends is escaped before it reaches the terminal: job names, descriptions, file
/// names, errors, in text and in JSON (which stays the same JSON) (issue 22.3).
#[test]
fn what_the_service_sends_reaches_the_terminal_escaped() {
    // A screen clear, a window title, a clipboard write (OSC 52), a carriage return, C1 CSI, RLO.
    let name =
        "x\u{1b}[2J\u{1b}]0;owned\u{7}\u{1b}]52;c;cm0gLXJmIH4=\u{7}\r\u{9b}31m\u{202e}exe.txt";
    let id = "0c6d3d4e-0000-4000-8000-000000000001";
    let error = serde_json::json!({"has_error": true, "context": "REMOTE_FILE", "code": "http_404",
        "message": name, "file": 0, "remote_url": name, "http_status": 404});
    let (_dir, socket) = fake_service(vec![
        ("/v1/jobs", serde_json::json!([hostile_job(name)])),
        (
            "/v1/jobs/0c6d3d4e-0000-4000-8000-000000000001",
            hostile_job(name),
        ),
        ("/v1/jobs/0c6d3d4e-0000-4000-8000-000000000001/error", error),
        (
            "/v1/groups/x/urls",
            serde_json::json!([{"suffix": name, "file": name}]),
        ),
    ]);
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["job", "list"][..],
        &["job", "show", id],
        &["job", "error", id],
        &["job", "list", "--json"],
        &["job", "show", id, "--json"],
        &["url", "list", "x"],
    ] {
        let out = bcs(home.path())
            .args(args)
            .args(["--server", &socket])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(
            !raw_escape(&stdout) && !raw_escape(&stderr),
            "{args:?}: {stdout:?} {stderr:?}"
        );
        if args.contains(&"--json") {
            let parsed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert!(parsed.to_string().contains("\\u001b[2J"), "{parsed}");
        } else {
            assert!(stdout.contains("\\u{1b}[2J"), "{args:?}: {stdout}");
        }
    }
}

/// The CLI reads the service's answers as the library's types: an answer whose field was renamed is an
/// error, not a line of blanks (issue 23.12).
#[test]
fn a_renamed_field_is_an_error_not_a_blank() {
    let (_dir, socket) = fake_service(vec![(
        "/v1/groups",
        serde_json::json!([{"url_prefix": "http://+:80/a/", "urls": []}]),
    )]);
    let home = tempfile::tempdir().unwrap();
    let out = bcs(home.path())
        .args(["group", "list", "--server", &socket])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is not what this bcs"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// A bad argument exits 2 whichever command takes it, as README says, also when the library is the one
/// to refuse it (an SDDL), and an unclosed ACE is reported where the `)` is missing (issue 23.11).
#[test]
fn bad_arguments_exit_2_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let state = dir.path().join("state");
    let unclosed = "at byte 13: the ACE is not closed: expected `)`";
    let e = bcs_fails_with(
        2,
        &[
            "host",
            "--bind",
            "127.0.0.1",
            "--sddl",
            "D:(A;;GR;;;AU",
            a.to_str().unwrap(),
        ],
        &[],
    );
    assert!(e.contains(unclosed), "{e}");
    let e = bcs_fails_with(
        2,
        &[
            "serve",
            "--state",
            state.to_str().unwrap(),
            "--admin-url",
            "https://127.0.0.1:1/",
            "--admin-sddl",
            "D:(A;;GR;;;AU",
        ],
        &[],
    );
    assert!(e.contains(unclosed), "{e}");
    assert!(!state.exists(), "a refused argument started something");
}
