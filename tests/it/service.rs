//! `bcs serve` as its users run it: the real binary, managed with the real `bcs` commands and curl over
//! its Unix socket and its TLS admin port, downloads with curl (NTLM), restarts, `kill -9`, other uids,
//! schemathesis against the OpenAPI document, and what an attacker would try on the new listeners.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::{Running, BCS};
use crate::pki::Ca;
use crate::support::{free_port, have, pattern, run, write_file};

/// A `bcs serve` on loopback with its state in a temporary directory.
pub(crate) struct Service {
    running: Option<Running>,
    dir: tempfile::TempDir,
    pub(crate) extra: Vec<String>,
    /// The line `bcs serve` printed when ready (`bcs: serving ...`).
    pub(crate) banner: String,
}

impl Service {
    pub(crate) fn start(extra: &[&str]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let mut service = Service {
            running: None,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            banner: String::new(),
        };
        service.restart();
        service
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(crate) fn socket(&self) -> String {
        self.state().join("bcs.sock").to_str().unwrap().to_owned()
    }

    /// Starts it (again) on the same state; waits for its banner.
    pub(crate) fn restart(&mut self) {
        let state = self.state();
        let mut args = vec![
            "serve",
            "--state",
            state.to_str().unwrap(),
            "--bind",
            "127.0.0.1",
        ];
        args.extend(self.extra.iter().map(String::as_str));
        let running = Running::spawn(Path::new(BCS), &args);
        let lines = running.lines_until("bcs: serving");
        self.banner = lines.last().cloned().unwrap_or_default();
        self.running = Some(running);
    }

    /// The running service's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.running.as_ref().unwrap().child.id()
    }

    /// Stops it with a signal; its exit code and stderr.
    pub(crate) fn stop(&mut self, signal: &str) -> (Option<i32>, String) {
        self.running.take().unwrap().stop(signal)
    }

    /// Runs `bcs ARGS --server SOCKET`.
    pub(crate) fn bcs(&self, args: &[&str]) -> Output {
        let socket = self.socket();
        let mut all = args.to_vec();
        all.extend(["--server", &socket]);
        run(BCS, &all)
    }

    /// `bcs ARGS --json`: succeeds and prints JSON.
    pub(crate) fn bcs_json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.bcs(&all);
        assert!(out.status.success(), "bcs {args:?}: {}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "bcs {args:?} --json printed no JSON ({e}): {}",
                text(&out.stdout)
            )
        })
    }

    /// A management request with curl over the socket: (status, body).
    pub(crate) fn api(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String) {
        api_over(
            &["--unix-socket", &self.socket()],
            "http://localhost",
            method,
            path,
            body,
        )
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.stop("-KILL");
        }
    }
}

/// A `bcs serve` with the remote admin listener on a free loopback port, its certificate from a test CA
/// (whose file clients trust, and whose client certificates `--admin-client-ca` accepts when asked for).
pub(crate) struct Admin {
    pub(crate) svc: Service,
    pki: tempfile::TempDir,
    ca: Ca,
    pub(crate) ca_file: PathBuf,
    port: u16,
}

impl Admin {
    pub(crate) fn start(client_certificates: bool, extra: &[&str]) -> Admin {
        let pki = tempfile::tempdir().unwrap();
        let ca = Ca::new("bcs test admin CA");
        let ca_file = ca.write(pki.path(), "ca.pem");
        let server = ca.server(pki.path(), "admin", &["127.0.0.1", "localhost"]);
        let port = free_port();
        let url = format!("https://127.0.0.1:{port}/");
        let mut args = vec![
            "--admin-url",
            &url,
            "--admin-cert",
            server.cert.to_str().unwrap(),
            "--admin-key",
            server.key.to_str().unwrap(),
        ];
        if client_certificates {
            args.extend(["--admin-client-ca", ca_file.to_str().unwrap()]);
        }
        args.extend_from_slice(extra);
        let svc = Service::start(&args);
        Admin {
            svc,
            pki,
            ca,
            ca_file,
            port,
        }
    }

    /// `https://127.0.0.1:PORT` (no slash).
    pub(crate) fn base(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// A client certificate from the test CA.
    fn client(&self, file: &str, cn: &str) -> crate::pki::Leaf {
        self.ca.client(self.pki.path(), file, cn, None)
    }
}

/// The status curl gets for `url` (with extra arguments; the body goes to /dev/null unless they say `-o`).
fn status(url: &str, extra: &[&str]) -> String {
    let mut args = vec!["-s", "-w", "%{http_code}"];
    if !extra.contains(&"-o") {
        args.extend(["-o", "/dev/null"]);
    }
    args.extend_from_slice(extra);
    args.push(url);
    text(&run("curl", &args).stdout)
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A request with curl: `how` says how to reach the service (socket, TLS options, credentials).
pub(crate) fn api_over(
    how: &[&str],
    base: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String) {
    let url = format!("{base}{path}");
    let mut args = vec!["-s", "-X", method, "-w", "\n%{http_code}"];
    args.extend_from_slice(how);
    // The body goes through a file: a large one would not fit in an argument.
    let data = body.map(|b| {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), b.to_string()).unwrap();
        let arg = format!("@{}", file.path().display());
        (file, arg)
    });
    if let Some((_, arg)) = &data {
        args.extend(["-H", "content-type: application/json", "--data-binary", arg]);
    }
    args.push(&url);
    let out = run("curl", &args);
    let all = text(&out.stdout);
    let (body, code) = all.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// A path parameter, percent-encoded as one segment.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The original's walkthrough, with `bcs` against a running `bcs serve`: create a group, enable NTLM,
/// set ConnectionLimit and BandwidthLimit, add a URL with SDDL, download with curl (NTLM), remove the URL
/// (404), delete the group (404 too). Every `--json` output parses.
#[test]
fn the_original_walkthrough_with_bcs_and_curl() {
    if !have("curl") {
        return;
    }
    let svc = Service::start(&[]);
    let files = tempfile::tempdir().unwrap();
    let body = pattern(3 << 20, 12);
    let file = write_file(files.path(), "setup.bin", &body);
    let port = free_port();
    let prefix = format!("http://127.0.0.1:{port}/deploy/");
    // Another group on the port keeps it open once the first is deleted, as HTTP.sys's port stays.
    let other = format!("http://127.0.0.1:{port}/other/");

    let created = svc.bcs_json(&["group", "create", &prefix]);
    assert_eq!(created["prefix"], prefix.as_str());
    svc.bcs_json(&["group", "create", &other]);
    let auth = svc.bcs_json(&["auth", "set", &prefix, "ntlm", "on"]);
    assert_eq!(auth["ntlm"], true);
    // The original's WMI number for NTLM is 1: the same call.
    assert_eq!(
        svc.bcs_json(&["auth", "set", &prefix, "1", "on"])["ntlm"],
        true
    );
    // Limits print as every other command prints them: the group's fields, text.
    let limits = svc.bcs_json(&["limit", "set", &prefix, "ConnectionLimit", "10"]);
    assert_eq!(limits["connection_limit"], "10");
    let limits = svc.bcs_json(&["limit", "set", &prefix, "BandwidthLimit", "8MiB/s"]);
    assert_eq!(
        limits,
        json!({"connection_limit": "10", "bandwidth_limit": "8MiB/s"})
    );
    let mut add_user = std::process::Command::new(BCS);
    add_user.args(["user", "add", "alice", "--server", &svc.socket()]);
    let out = crate::support::with_stdin(&mut add_user, "walk-through-pw");
    ok(&out);
    let url = svc.bcs_json(&[
        "url",
        "add",
        &prefix,
        "setup.bin",
        file.to_str().unwrap(),
        "--sddl",
        "D:(A;;GR;;;AU)",
    ]);
    assert_eq!(url["suffix"], "setup.bin");
    assert_eq!(
        svc.bcs_json(&["url", "check", &prefix, "setup.bin"]),
        json!(true)
    );
    for listing in [
        svc.bcs_json(&["group", "list"]),
        svc.bcs_json(&["group", "show", &prefix]),
        svc.bcs_json(&["url", "list", &prefix]),
        svc.bcs_json(&["auth", "show", &prefix]),
        svc.bcs_json(&["limit", "show", &prefix]),
        svc.bcs_json(&["user", "list"]),
        svc.bcs_json(&["cert", "show"]),
        svc.bcs_json(&["export"]),
    ] {
        assert!(listing.is_array() || listing.is_object(), "{listing}");
    }
    assert_eq!(svc.bcs_json(&["user", "list"])[0]["password"], true);
    assert!(
        !svc.bcs_json(&["user", "list"])
            .to_string()
            .contains("argon2"),
        "a secret was returned"
    );

    let target = format!("{prefix}setup.bin");
    let got = files.path().join("got");
    let download = [
        "--ntlm",
        "-u",
        "alice:walk-through-pw",
        "-o",
        got.to_str().unwrap(),
    ];
    assert_eq!(status(&target, &download), "200");
    assert!(
        std::fs::read(&got).unwrap() == body,
        "the download differs from the file"
    );
    assert_eq!(status(&target, &[]), "401");

    ok(&svc.bcs(&["url", "remove", &prefix, "setup.bin"]));
    assert_eq!(
        status(&target, &["--ntlm", "-u", "alice:walk-through-pw"]),
        "404"
    );
    let check = svc.bcs(&["url", "check", &prefix, "setup.bin", "--json"]);
    assert_eq!(check.status.code(), Some(3), "not found");
    assert_eq!(
        serde_json::from_slice::<Value>(&check.stdout).unwrap(),
        json!(false)
    );

    ok(&svc.bcs(&["group", "delete", &prefix]));
    // No URL serves the path any more: 404 (HTTP.sys answers 400 for a path no group has).
    assert_eq!(status(&target, &[]), "404");
    let missing = svc.bcs(&["group", "show", &prefix, "--json"]);
    assert_eq!(missing.status.code(), Some(3));
    let err: Value = serde_json::from_slice(&missing.stdout).unwrap();
    assert_eq!(err["code"], "group_not_found");
    let invalid = svc.bcs(&["group", "create", "ftp://nope/"]);
    assert_eq!(invalid.status.code(), Some(2), "{}", text(&invalid.stderr));
    assert!(text(&invalid.stderr).contains("invalid_prefix"));
}

/// Everything survives a restart and is served again; each change is in the audit trail with who made
/// it.
#[test]
fn a_restart_keeps_and_serves_everything() {
    if !have("curl") {
        return;
    }
    let mut svc = Service::start(&[]);
    let files = tempfile::tempdir().unwrap();
    let file = write_file(files.path(), "a.bin", &pattern(6_000, 3));
    let port = free_port();
    let prefix = format!("http://127.0.0.1:{port}/keep/");
    ok(&svc.bcs(&["group", "create", &prefix, "--auth", "basic", "--index"]));
    ok(&svc.bcs(&["limit", "set", &prefix, "BandwidthLimit", "4096"]));
    ok(&svc.bcs(&[
        "url",
        "add",
        &prefix,
        "dir/a.bin",
        file.to_str().unwrap(),
        "--sddl",
        "D:(A;;GR;;;WD)",
    ]));
    let mut add_user = std::process::Command::new(BCS);
    add_user.args([
        "user",
        "add",
        "carol",
        "--group",
        "Deploy",
        "--server",
        &svc.socket(),
    ]);
    ok(&crate::support::with_stdin(&mut add_user, "carols-pw"));
    let before = svc.bcs_json(&["export"]);

    let (code, _) = svc.stop("-TERM");
    assert_eq!(code, Some(0));
    svc.restart();
    assert_eq!(svc.bcs_json(&["export"]), before);
    assert_eq!(
        status(&format!("{prefix}dir/a.bin"), &[]),
        "200",
        "served again after the restart"
    );
    assert_eq!(
        svc.bcs_json(&["limit", "show", &prefix])["bandwidth_limit"],
        "4KiB/s"
    );
    let users = svc.bcs_json(&["user", "list"]);
    assert_eq!(users[0]["groups"], json!(["Deploy"]));

    svc.stop("-TERM");
    let audit = audit_trail(&svc.state());
    assert!(
        audit.contains("uid 0 (local): add URL http://127.0.0.1:"),
        "{audit}"
    );
    assert!(audit.contains("set user carol"), "{audit}");
}

/// The audit trail, read with the library's store.
fn audit_trail(state: &Path) -> String {
    let store = bits_compact::service::store::SqliteStore::open(state.join("config.db")).unwrap();
    store
        .audit_log()
        .unwrap()
        .into_iter()
        .map(|(at, who, what)| format!("{at} {who}: {what}\n"))
        .collect()
}

/// `kill -9` during 200 concurrent changes from eight clients: after a restart every acknowledged change
/// is there, nothing that was never asked for is, and each multi-row change (a group with two URLs,
/// applied in one call) is whole or absent.
#[test]
fn kill_9_loses_no_acknowledged_change_and_leaves_no_half_change() {
    if !have("curl") {
        return;
    }
    let mut svc = Service::start(&[]);
    let files = tempfile::tempdir().unwrap();
    let file = write_file(files.path(), "f.bin", b"payload");
    let port = free_port();
    let prefix = format!("http://127.0.0.1:{port}/load/");
    let (code, _) = svc.api("POST", "/v1/groups", Some(&json!({"prefix": prefix})));
    assert_eq!(code, 201);

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let applied = Arc::new(Mutex::new(Vec::<String>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let socket = svc.socket();
    let mut clients = Vec::new();
    for client in 0..8 {
        let (acked, applied, count, socket, prefix, file) = (
            acked.clone(),
            applied.clone(),
            count.clone(),
            socket.clone(),
            prefix.clone(),
            file.to_str().unwrap().to_owned(),
        );
        clients.push(std::thread::spawn(move || {
            for i in 0..25 {
                let how = ["--unix-socket", socket.as_str(), "--max-time", "20"];
                if i % 10 == 9 {
                    // A group with two URLs in one call.
                    let group = format!("http://127.0.0.1:{port}/c{client}x{i}/");
                    let doc = json!({"groups": [{"prefix": group, "urls": [
                        {"suffix": "one", "file": file}, {"suffix": "two", "file": file}]}]});
                    let (code, _) =
                        api_over(&how, "http://localhost", "PUT", "/v1/config", Some(&doc));
                    if code == 200 {
                        applied.lock().unwrap().push(group);
                    }
                } else {
                    let suffix = format!("c{client}-{i}");
                    let path = format!("/v1/groups/{}/urls", enc(&prefix));
                    let body =
                        json!({"suffix": suffix, "file": file, "sddl": format!("D:(A;;GR;;;WD)")});
                    let (code, _) = api_over(&how, "http://localhost", "POST", &path, Some(&body));
                    if code == 201 {
                        acked.lock().unwrap().push(suffix);
                    }
                }
                count.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while count.load(Ordering::SeqCst) < 90 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    svc.stop("-KILL");
    for c in clients {
        c.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let applied = applied.lock().unwrap().clone();
    assert!(
        acked.len() >= 50,
        "only {} acknowledged before the kill",
        acked.len()
    );
    assert!(
        acked.len() < 175,
        "the kill came after every change ({})",
        acked.len()
    );

    svc.restart();
    let (code, body) = svc.api("GET", &format!("/v1/groups/{}/urls", enc(&prefix)), None);
    assert_eq!(code, 200, "{body}");
    let present: Vec<Value> = serde_json::from_str(&body).unwrap();
    let suffixes: Vec<String> = present
        .iter()
        .map(|u| u["suffix"].as_str().unwrap().to_owned())
        .collect();
    for s in &acked {
        assert!(suffixes.contains(s), "acknowledged {s} was lost");
    }
    for u in &present {
        let s = u["suffix"].as_str().unwrap();
        assert!(
            s.starts_with('c') && s.contains('-'),
            "{s} was never asked for"
        );
        assert_eq!(u["file"], file.to_str().unwrap(), "{u}");
        assert_eq!(u["sddl"], "D:(A;;GR;;;WD)", "{u}");
    }
    let groups: Vec<Value> = serde_json::from_str(&svc.api("GET", "/v1/groups", None).1).unwrap();
    for g in &groups {
        let name = g["prefix"].as_str().unwrap();
        if name == prefix {
            continue;
        }
        let urls: Vec<&str> = g["urls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["suffix"].as_str().unwrap())
            .collect();
        assert_eq!(urls, ["one", "two"], "{name} is half there");
    }
    for group in &applied {
        assert!(
            groups.iter().any(|g| g["prefix"] == group.as_str()),
            "acknowledged {group} was lost"
        );
    }
    eprintln!(
        "kill -9: {} URL adds and {} group applies acknowledged; {} URLs and {} groups after the restart",
        acked.len(),
        applied.len(),
        present.len(),
        groups.len() - 1
    );
}

/// The remote listener: anonymous 401, a non-admin 403, an admin 200 with Basic and with a client
/// certificate, with curl and with `bcs --server https://…`; a non-admin cannot make itself one; the
/// failed-password limit applies.
#[test]
fn the_remote_admin_listener_lets_in_administrators_only() {
    if !have("curl") {
        return;
    }
    let admin = Admin::start(true, &[]);
    let (svc, ca_file) = (&admin.svc, &admin.ca_file);
    let admin_url = format!("{}/", admin.base());
    let ops = admin.client("ops", "ops-console");
    let stranger = admin.client("stranger", "stranger");
    for (name, password, groups, certs) in [
        ("admin", Some("admin-pw-1"), vec!["BA"], vec![]),
        ("bob", Some("bob-pw-1"), vec![], vec![]),
        ("ops", None, vec!["Administrators"], vec!["ops-console"]),
    ] {
        let mut body = json!({"groups": groups, "certificates": certs});
        if let Some(p) = password {
            body["password"] = json!(p);
        }
        let (code, answer) = svc.api("PUT", &format!("/v1/users/{name}"), Some(&body));
        assert_eq!(code, 200, "{answer}");
    }
    let tls = ["--cacert", ca_file.to_str().unwrap()];
    let remote = |extra: &[&str], method: &str, path: &str, body: Option<&Value>| {
        let how = [&tls[..], extra].concat();
        api_over(&how, &admin_url[..admin_url.len() - 1], method, path, body)
    };
    let (code, body) = remote(&[], "GET", "/v1/groups", None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("unauthenticated"));
    assert_eq!(
        remote(
            &[
                "--cert",
                stranger.cert.to_str().unwrap(),
                "--key",
                stranger.key.to_str().unwrap()
            ],
            "GET",
            "/v1/groups",
            None
        )
        .0,
        403,
        "an unmapped certificate is not an administrator"
    );
    assert_eq!(
        remote(&["-u", "bob:bob-pw-1"], "GET", "/v1/groups", None).0,
        403
    );
    let escalate = json!({"groups": ["BA"]});
    assert_eq!(
        remote(
            &["-u", "bob:bob-pw-1"],
            "PUT",
            "/v1/users/bob",
            Some(&escalate)
        )
        .0,
        403
    );
    assert_eq!(
        remote(&["-u", "admin:admin-pw-1"], "GET", "/v1/groups", None).0,
        200
    );
    assert_eq!(
        remote(
            &["--ntlm", "-u", "admin:admin-pw-1"],
            "GET",
            "/v1/users",
            None
        )
        .0,
        200,
        "NTLM"
    );
    let cert = [
        "--cert",
        ops.cert.to_str().unwrap(),
        "--key",
        ops.key.to_str().unwrap(),
    ];
    let group = json!({"prefix": format!("http://127.0.0.1:{}/remote/", free_port())});
    let (code, body) = remote(&cert, "POST", "/v1/groups", Some(&group));
    assert_eq!(
        code, 201,
        "a client certificate mapped to an administrator: {body}"
    );
    let (_, users) = svc.api("GET", "/v1/users", None);
    assert!(
        users.contains("\"bob\"") && !users.contains("\"BA\",\"bob\""),
        "{users}"
    );
    let bob: Vec<Value> = serde_json::from_str(&users).unwrap();
    assert!(
        bob.iter()
            .any(|u| u["name"] == "bob" && u["groups"] == json!([])),
        "bob stayed a plain user"
    );

    // The same through `bcs`, as a script would: exit 0 for the admin, 4 (refused) for others, 5 when
    // nothing answers.
    let bcs_remote = |user: Option<(&str, &str)>, server: &str| {
        let mut cmd = std::process::Command::new(BCS);
        cmd.args([
            "group",
            "list",
            "--json",
            "--server",
            server,
            "--ca",
            ca_file.to_str().unwrap(),
        ]);
        if let Some((name, password)) = user {
            cmd.args(["--user", name]).env("BCS_PASSWORD", password);
        }
        cmd.output().unwrap()
    };
    let admin = bcs_remote(Some(("admin", "admin-pw-1")), &admin_url);
    assert!(admin.status.success(), "{}", text(&admin.stderr));
    let listed: Value = serde_json::from_slice(&admin.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(
        bcs_remote(Some(("bob", "bob-pw-1")), &admin_url)
            .status
            .code(),
        Some(4)
    );
    assert_eq!(bcs_remote(None, &admin_url).status.code(), Some(4));
    let nowhere = format!("https://127.0.0.1:{}/", free_port());
    assert_eq!(
        bcs_remote(Some(("admin", "admin-pw-1")), &nowhere)
            .status
            .code(),
        Some(5)
    );

    // Guessing: the URL groups' failed-password limit applies here too.
    let mut statuses = Vec::new();
    for i in 0..14 {
        let creds = format!("admin:wrong-{i}");
        statuses.push(remote(&["-u", &creds], "GET", "/v1/groups", None).0);
    }
    assert!(
        statuses.contains(&429),
        "no limit on guessing: {statuses:?}"
    );
    assert!(!statuses.contains(&200));
}

/// Over the Unix socket only root and the service's own user may manage: another uid cannot reach the
/// socket (0600 in a 0700 directory), and even with both opened up, its requests are refused (the peer
/// uid comes from the kernel).
#[test]
fn the_local_socket_refuses_other_uids() {
    if !have("curl") || !have("setpriv") {
        return;
    }
    if !rustix_is_root() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root"
        );
        eprintln!("skipping: needs root to run curl as another uid");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let svc = Service::start(&[]);
    let socket = svc.socket();
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the socket's mode");
    let dir_mode = std::fs::metadata(svc.state()).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700, "the state directory's mode");
    let as_nobody = |method: &str| {
        run(
            "setpriv",
            &[
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "curl",
                "-s",
                "-X",
                method,
                "-w",
                "\n%{http_code}",
                "--unix-socket",
                &socket,
                "http://localhost/v1/groups",
            ],
        )
    };
    let blocked = as_nobody("GET");
    assert_eq!(
        blocked.status.code(),
        Some(7),
        "curl could connect: {}",
        text(&blocked.stdout)
    );
    // Open the way: the uid check still refuses.
    std::fs::set_permissions(svc.state(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    for method in ["GET", "DELETE"] {
        let refused = as_nobody(method);
        let out = text(&refused.stdout);
        assert!(
            out.ends_with("\n403") && out.contains("\"refused\""),
            "{method}: {out}"
        );
    }
    assert_eq!(
        svc.api("GET", "/v1/groups", None).0,
        200,
        "root still manages"
    );
}

fn rustix_is_root() -> bool {
    text(&run("id", &["-u"]).stdout).trim() == "0"
}

/// `bcs apply` of a file then `bcs export` gives an equivalent file; applying it again changes
/// nothing; a file with one bad entry changes nothing; `--prune` removes what the file lacks.
#[test]
fn apply_and_export_round_trip_all_or_nothing() {
    let svc = Service::start(&[]);
    let files = tempfile::tempdir().unwrap();
    let a = write_file(files.path(), "a.bin", b"a");
    let port = free_port();
    let keep = format!("http://127.0.0.1:{port}/keep/");
    ok(&svc.bcs(&["group", "create", &keep]));
    let file = files.path().join("wanted.toml");
    let wanted = format!(
        r#"[[groups]]
prefix = "http://127.0.0.1:{port}/apps/"
auth = ["basic"]
connection_limit = "4"
bandwidth_limit = "1MiB/s"
default_sddl = "D:(A;;GR;;;AU)"
index = true

[[groups.urls]]
suffix = "tools/a.bin"
file = "{}"
"#,
        a.display()
    );
    std::fs::write(&file, &wanted).unwrap();
    let applied = svc.bcs_json(&["apply", file.to_str().unwrap()]);
    assert_eq!(applied["changed"], true);
    let again = svc.bcs_json(&["apply", file.to_str().unwrap()]);
    assert_eq!(again["changed"], false, "apply is idempotent");

    let export = ok(&svc.bcs(&["export"]));
    let exported = files.path().join("exported.toml");
    std::fs::write(&exported, &export).unwrap();
    assert!(
        export.contains("tools/a.bin") && export.contains("1MiB/s"),
        "{export}"
    );
    assert_eq!(
        svc.bcs_json(&["apply", exported.to_str().unwrap()])["changed"],
        false,
        "the export is what is there:\n{export}"
    );

    let before = svc.bcs_json(&["export"]);
    let bad = wanted.replace("tools/a.bin", "tools/missing.bin").replace(
        &a.display().to_string(),
        &files.path().join("missing.bin").display().to_string(),
    ) + &format!("\n[[groups]]\nprefix = \"http://127.0.0.1:{port}/more/\"\n");
    let bad_file = files.path().join("bad.toml");
    std::fs::write(&bad_file, bad).unwrap();
    let refused = svc.bcs(&["apply", bad_file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("file_unreadable"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(
        svc.bcs_json(&["export"]),
        before,
        "a file with one bad entry changed something"
    );

    let prune = svc.bcs_json(&["apply", file.to_str().unwrap(), "--prune"]);
    assert_eq!(prune["changed"], true);
    let groups = svc.bcs_json(&["group", "list"]);
    assert_eq!(groups.as_array().unwrap().len(), 1, "{groups}");
    assert_eq!(
        groups[0]["prefix"],
        format!("http://127.0.0.1:{port}/apps/")
    );
}

/// Schemathesis, from PyPI, against `/v1/openapi.json` on the admin port: no 5xx, every response as the
/// schema says. It authenticates with a client certificate that no call can take away (a password could
/// be changed by the very calls it fuzzes).
#[test]
fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    if !have("schemathesis") {
        return;
    }
    let admin = Admin::start(true, &["--admin-sddl", "D:(A;;GA;;;AU)"]);
    let (ca_file, base) = (&admin.ca_file, admin.base());
    let client = admin.client("fuzzer", "fuzzer");
    let schema = format!("{base}/v1/openapi.json");
    let out = std::process::Command::new("schemathesis")
        .args([
            "run", &schema, "--url", &base,
            "--tls-verify", ca_file.to_str().unwrap(),
            "--request-cert", client.cert.to_str().unwrap(),
            "--request-cert-key", client.key.to_str().unwrap(),
            "--max-examples", "25",
            // An event stream of a job that stays unfinished lasts until the reader leaves: schemathesis
            // leaves at its request timeout (10 s by default, which made the run four times longer).
            "--request-timeout", "4",
            "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
            "--no-color",
        ])
        .current_dir(admin.pki.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .unwrap();
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis failed:\n{report}\n{}",
        text(&out.stderr)
    );
    // "Selected: 38/38" and "Tested: 38": every operation of the document was tried.
    let count = |label: &str| {
        let line = report
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_default();
        line.rsplit(['/', ' '])
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let (selected, tested) = (count("Selected:"), count("Tested:"));
    assert!(
        !tested.is_empty() && tested == selected,
        "tested {tested} of {selected} operations:\n{report}"
    );
    // The 27 configuration operations and the 11 of /v1/jobs, at least.
    assert!(
        selected.parse::<usize>().is_ok_and(|n| n >= 38),
        "only {selected} operations selected:\n{report}"
    );
    let summary = report
        .lines()
        .rev()
        .find(|l| l.contains("generated"))
        .unwrap_or_default();
    eprintln!("schemathesis: {}", summary.trim());
}

/// systemd's `Type=notify`: READY=1 is sent once the listeners are up, and the unit file says so.
#[test]
fn readiness_reaches_systemd_once_the_socket_answers() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let listener = std::os::unix::net::UnixDatagram::bind(&notify).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let state = dir.path().join("state");
    let running = Running::spawn_with_env(
        Path::new(BCS),
        &[
            "serve",
            "--state",
            state.to_str().unwrap(),
            "--bind",
            "127.0.0.1",
        ],
        &[("NOTIFY_SOCKET", notify.to_str().unwrap())],
    );
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf).expect("no READY=1 within 30 s");
    assert!(text(&buf[..n]).contains("READY=1"), "{}", text(&buf[..n]));
    // Ready means ready: the management socket answers now.
    let socket = state.join("bcs.sock");
    let mut s = std::os::unix::net::UnixStream::connect(&socket).expect("socket not up at READY=1");
    s.write_all(b"GET /v1/groups HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (code, _) = running.stop("-TERM");
    assert_eq!(code, Some(0));
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/bcs.service"))
        .unwrap();
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/bcs serve",
        "KillSignal=SIGTERM",
    ] {
        assert!(unit.contains(line), "contrib/bcs.service lacks {line}");
    }
}

/// What an attacker tries on the new listeners: stalled connections (TLS and socket) are cut at their
/// deadlines, a flood of connections is bounded, an oversized body is refused, paths that escape are
/// refused; the service answers its administrator throughout and its memory stays bounded.
#[test]
fn stalls_floods_and_bad_input_on_the_management_listeners() {
    let admin = Admin::start(false, &[]);
    let (svc, admin_port) = (&admin.svc, admin.port);
    let pid = svc.running.as_ref().unwrap().child.id();
    let rss = || crate::hardening::memory_kib(pid, "VmRSS");
    let start_rss = rss();

    // 100 TCP connections that never start TLS (64 are served at once, the rest wait in the backlog), and
    // 50 socket connections that send half a header.
    let mut tcp: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", admin_port)).ok())
        .collect();
    let mut local: Vec<std::os::unix::net::UnixStream> = (0..50)
        .map(|_| {
            let mut s = std::os::unix::net::UnixStream::connect(svc.socket()).unwrap();
            s.write_all(b"GET /v1/groups HTTP/1.1\r\nHost: loc")
                .unwrap();
            s
        })
        .collect();
    // The administrator still gets in over the socket while it is flooded (its flood holds 50 of 64).
    assert_eq!(svc.api("GET", "/v1/groups", None).0, 200);
    let waited = Instant::now();
    for s in &mut tcp {
        s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    }
    let mut cut = 0;
    for s in &mut tcp {
        let mut b = [0u8; 16];
        if matches!(s.read(&mut b), Ok(0) | Err(_)) {
            cut += 1;
        }
    }
    for s in &mut local {
        s.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
        let mut b = Vec::new();
        let _ = s.read_to_end(&mut b);
        assert!(
            b.is_empty() || text(&b).starts_with("HTTP/1.1 408"),
            "{}",
            text(&b)
        );
    }
    let elapsed = waited.elapsed();
    assert_eq!(cut, tcp.len(), "stalled TLS connections left open");
    assert!(
        elapsed < Duration::from_secs(28),
        "stalled connections held {elapsed:?}"
    );
    let peak = rss();
    assert!(
        peak < start_rss + 30_000,
        "RSS {start_rss} → {peak} KiB under the flood"
    );

    // An 9 MiB body is refused without a 5xx, and nothing changed.
    let big = json!({"groups": [], "tls": [], "padding": "x".repeat(9 << 20)});
    let (code, body) = svc.api("PUT", "/v1/config", Some(&big));
    assert_eq!(code, 400, "{}", &body[..body.len().min(200)]);
    // Paths that escape or mean nothing to the service.
    let files = tempfile::tempdir().unwrap();
    let f = write_file(files.path(), "f", b"x");
    let prefix = format!("http://127.0.0.1:{}/atk/", free_port());
    assert_eq!(
        svc.api("POST", "/v1/groups", Some(&json!({"prefix": prefix})))
            .0,
        201
    );
    let urls = format!("/v1/groups/{}/urls", enc(&prefix));
    for (body, code) in [
        (
            json!({"suffix": "rel", "file": "relative/f"}),
            "relative_path",
        ),
        (json!({"suffix": "../up", "file": f}), "invalid_suffix"),
        (json!({"suffix": "d", "file": files.path()}), "not_a_file"),
        (
            json!({"suffix": "gone", "file": files.path().join("nope")}),
            "file_unreadable",
        ),
        (
            json!({"suffix": "s", "file": f, "sddl": "D:(X;;GA;;;WD)"}),
            "invalid_sddl",
        ),
        (
            json!({"suffix": "x", "file": f, "extra": 1}),
            "invalid_request",
        ),
    ] {
        let (status, answer) = svc.api("POST", &urls, Some(&body));
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.contains(code), "{body}: {answer}");
    }
    let (status, answer) = svc.api("GET", "/v1/groups/%2E%2E%2Fetc/urls", None);
    assert_eq!(status, 400, "{answer}");
    let (status, _) = svc.api("GET", "/v1/nothing/here", None);
    assert_eq!(status, 404);
    assert_eq!(
        svc.bcs_json(&["url", "list", &prefix]),
        json!([]),
        "nothing was published"
    );
}

/// SIGTERM drains as `bcs host` does: a download in flight finishes, byte for byte, then the service
/// exits 0; new connections are refused meanwhile.
#[test]
fn sigterm_lets_a_download_in_flight_finish() {
    if !have("curl") {
        return;
    }
    let mut svc = Service::start(&[]);
    let files = tempfile::tempdir().unwrap();
    let body = pattern(160 * 1024, 5);
    let file = write_file(files.path(), "slow.bin", &body);
    let prefix = format!("http://127.0.0.1:{}/drain/", free_port());
    ok(&svc.bcs(&["group", "create", &prefix, "--bandwidth-limit", "64KiB/s"]));
    ok(&svc.bcs(&["url", "add", &prefix, "slow.bin", file.to_str().unwrap()]));
    let got = files.path().join("got");
    let (target, out) = (format!("{prefix}slow.bin"), got.clone());
    let download = std::thread::spawn(move || status(&target, &["-o", out.to_str().unwrap()]));
    std::thread::sleep(Duration::from_millis(700));
    let started = Instant::now();
    let (code, stderr) = svc.stop("-TERM");
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(download.join().unwrap(), "200");
    assert!(
        std::fs::read(&got).unwrap() == body,
        "the drained download is not the file"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "it exited before the download ended"
    );
}

/// What the review found, each kept fixed: a restart (whole or in part) never gives a URL its group's
/// later default SDDL; a group named in another case is the same group in the store as on the server;
/// the service's own files are never published; certificate paths that are devices or FIFOs are refused
/// at once; a state directory others may write to is refused.
#[test]
fn review_findings_stay_fixed() {
    if !have("curl") {
        return;
    }
    let mut svc = Service::start(&[]);
    let files = tempfile::tempdir().unwrap();
    let secret = write_file(files.path(), "secret.txt", b"TOPSECRET");
    let gone = write_file(files.path(), "gone.txt", b"gone");
    let port = free_port();
    let prefix = format!("http://127.0.0.1:{port}/App/");
    ok(&svc.bcs(&["group", "create", &prefix, "--auth", "ntlm"]));
    ok(&svc.bcs(&[
        "url",
        "add",
        &prefix,
        "secret.txt",
        secret.to_str().unwrap(),
    ]));
    ok(&svc.bcs(&["url", "add", &prefix, "gone.txt", gone.to_str().unwrap()]));
    let patch = json!({"default_sddl": "D:(A;;GR;;;WD)"});
    assert_eq!(
        svc.api(
            "PATCH",
            &format!("/v1/groups/{}", enc(&prefix)),
            Some(&patch)
        )
        .0,
        200
    );
    let secret_url = format!("{prefix}secret.txt");
    assert_eq!(status(&secret_url, &[]), "401");
    // The same group through another case: the store follows the server.
    let lower = prefix.to_lowercase();
    ok(&svc.bcs(&["url", "remove", &lower, "GONE.txt"]));
    std::fs::remove_file(&gone).unwrap();
    svc.stop("-TERM");
    svc.restart();
    assert_eq!(
        status(&secret_url, &[]),
        "401",
        "a restart opened a URL to anyone"
    );
    let urls = svc.bcs_json(&["url", "list", &prefix]);
    assert_eq!(
        urls,
        json!([{"suffix": "secret.txt", "file": secret.to_str().unwrap()}]),
        "{urls}"
    );

    let db = svc.state().join("config.db");
    let (code, body) = svc.api(
        "POST",
        &format!("/v1/groups/{}/urls", enc(&prefix)),
        Some(&json!({"suffix": "db", "file": db})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("private_path"), "{body}");

    let fifo = files.path().join("fifo");
    assert!(run("mkfifo", &[fifo.to_str().unwrap()]).status.success());
    for path in ["/dev/zero", fifo.to_str().unwrap()] {
        let source = json!({"source": {"kind": "pem_files", "cert": path, "key": path}});
        let started = Instant::now();
        let (code, body) = svc.api("PUT", "/v1/certificates/18570", Some(&source));
        assert_eq!(code, 400, "{path}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path} held the call"
        );
    }
    assert_eq!(
        svc.api("GET", "/v1/users", None).0,
        200,
        "changes still go through"
    );
    svc.stop("-TERM");

    // A state directory anyone may write to is refused, with the reason.
    use std::os::unix::fs::PermissionsExt;
    let open = tempfile::tempdir().unwrap();
    let state = open.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run(
        BCS,
        &[
            "serve",
            "--state",
            state.to_str().unwrap(),
            "--bind",
            "127.0.0.1",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("writable by others"),
        "{}",
        text(&out.stderr)
    );
}

/// A user removed while its NTLM connection stays open loses its rights at the next request on it
/// (Python's requests_ntlm keeps the connection and sends no credentials once it is authenticated).
#[test]
fn a_removed_administrator_loses_an_ntlm_connection_at_once() {
    if !crate::support::have_module("requests_ntlm") {
        return;
    }
    let admin = Admin::start(false, &[]);
    let (svc, ca_file, admin_port) = (&admin.svc, &admin.ca_file, admin.port);
    let user = json!({"password": "ntlm-admin-pw", "groups": ["Administrators"]});
    assert_eq!(svc.api("PUT", "/v1/users/ntadmin", Some(&user)).0, 200);
    let script = format!(
        r#"
import requests, subprocess
from requests_ntlm import HttpNtlmAuth
s = requests.Session()
s.auth = HttpNtlmAuth("ntadmin", "ntlm-admin-pw")
# Per request: REQUESTS_CA_BUNDLE in the environment would override the session's.
ca = "{ca}"
url = "https://127.0.0.1:{admin_port}/v1/groups"
first = s.get(url, verify=ca).status_code
r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{{http_code}}", "-X", "DELETE",
                    "--unix-socket", "{socket}", "http://localhost/v1/users/ntadmin"], capture_output=True, text=True)
second = s.get(url, verify=ca).status_code
print(first, r.stdout, second)
"#,
        ca = ca_file.display(),
        socket = svc.socket(),
    );
    let out = crate::support::python(&script);
    assert_eq!(
        out.trim(),
        "200 204 401",
        "first, the removal, then the same session"
    );
}

/// One client address holds at most 8 connections to the remote listener; another address is served.
#[test]
fn one_address_cannot_hold_every_admin_connection() {
    let admin = Admin::start(false, &[]);
    let admin_port = admin.port;
    let held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", admin_port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut ninth = TcpStream::connect(("127.0.0.1", admin_port)).unwrap();
    ninth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut b = [0u8; 1];
    let started = Instant::now();
    assert!(
        matches!(ninth.read(&mut b), Ok(0) | Err(_)),
        "the ninth connection was kept"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the ninth connection was not closed at once"
    );
    drop(held);
}

/// `bcs ARGS` with HOME in `home` and `env` added (no `--server`): as a user types it in another shell.
fn bcs_in(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    crate::cli::bcs(home)
        .args(args)
        .env_remove("BCS_STATE")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// A service started with `--state DIR` is managed with `--state DIR` or `BCS_STATE=DIR`, as its banner
/// says; without either, the error says what was tried and how to name the service (issue 23.1).
#[test]
fn management_commands_find_a_service_by_its_state_directory() {
    let svc = Service::start(&[]);
    let state = std::fs::canonicalize(svc.state()).unwrap();
    let state = state.to_str().unwrap();
    assert!(
        svc.banner
            .contains(&format!("manage with `bcs group list --state {state}`")),
        "{}",
        svc.banner
    );
    let home = tempfile::tempdir().unwrap();
    let listed = bcs_in(home.path(), &["group", "list", "--state", state], &[]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert!(
        text(&listed.stderr).contains("no URL groups"),
        "{}",
        text(&listed.stderr)
    );
    let by_env = bcs_in(home.path(), &["group", "list"], &[("BCS_STATE", state)]);
    assert!(by_env.status.success(), "{}", text(&by_env.stderr));

    let missed = bcs_in(home.path(), &["group", "list"], &[]);
    assert_eq!(missed.status.code(), Some(5));
    let e = text(&missed.stderr);
    assert!(
        e.contains("cannot reach bcs serve at") && e.contains("default state directory"),
        "{e}"
    );
    assert!(
        e.contains("--state DIR") && e.contains("--server https://"),
        "{e}"
    );
    let elsewhere = home.path().join("elsewhere");
    let elsewhere = elsewhere.to_str().unwrap();
    let missed = bcs_in(home.path(), &["group", "list", "--state", elsewhere], &[]);
    assert_eq!(missed.status.code(), Some(5));
    assert!(
        text(&missed.stderr).contains(&format!("the socket in --state {elsewhere}")),
        "{}",
        text(&missed.stderr)
    );
}

/// A second `bcs serve` on a state directory in use stops at once, its first line saying which process
/// has the directory, with no warning about ports before it; the first goes on (issue 23.8).
#[test]
fn a_second_service_on_one_state_directory_says_who_has_it() {
    let svc = Service::start(&[]);
    let port = free_port();
    ok(&svc.bcs(&["group", "create", &format!("http://127.0.0.1:{port}/busy/")]));
    let state = svc.state();
    let second = Running::spawn(
        Path::new(BCS),
        &[
            "serve",
            "--state",
            state.to_str().unwrap(),
            "--bind",
            "127.0.0.1",
        ],
    );
    let printed = second.try_lines_until("bcs: serving");
    let (code, stderr) = second.exited();
    assert!(printed.is_err(), "a second service started: {stderr}");
    assert_eq!(code, Some(1), "{stderr}");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains("is in use by another bcs serve")
            && first.contains(&format!("(pid {})", svc.pid())),
        "{stderr}"
    );
    assert!(!stderr.contains("warning"), "{stderr}");
    assert_eq!(
        svc.bcs_json(&["group", "list"]).as_array().unwrap().len(),
        1
    );
}

/// `bcs apply` prints what it adds, changes and removes (a URL the file's group lacks is removed even
/// without --prune, and says so); `--dry-run` prints the same and changes nothing; the help says what a
/// file replaces (issue 23.2).
#[test]
fn apply_says_what_it_changes_and_dry_run_changes_nothing() {
    let svc = Service::start(&[]);
    let files = tempfile::tempdir().unwrap();
    let a = write_file(files.path(), "a.bin", b"a");
    let b = write_file(files.path(), "b.bin", b"b");
    let port = free_port();
    let prefix = format!("http://127.0.0.1:{port}/app/");
    ok(&svc.bcs(&["group", "create", &prefix, "--connection-limit", "10"]));
    for (suffix, file) in [("a.bin", &a), ("b.bin", &b)] {
        ok(&svc.bcs(&["url", "add", &prefix, suffix, file.to_str().unwrap()]));
    }
    let file = files.path().join("wanted.toml");
    std::fs::write(
        &file,
        format!(
            "[[groups]]\nprefix = \"{prefix}\"\nconnection_limit = 5\n\n[[groups.urls]]\nsuffix = \"a.bin\"\nfile = \"{}\"\n\n[[groups]]\nprefix = \"http://127.0.0.1:{port}/new/\"\n",
            a.display()
        ),
    )
    .unwrap();
    let expected = [
        format!("changed group {prefix}: connection_limit 10 → 5"),
        format!("removed URL {prefix}b.bin: not in the file's group (downloads under way finish; new requests, resumes too, get 404)"),
        format!("added group http://127.0.0.1:{port}/new/: 0 URLs"),
    ];
    let before = svc.bcs_json(&["export"]);
    let dry = svc.bcs(&["apply", file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(
        ok(&dry).lines().collect::<Vec<_>>(),
        expected,
        "{}",
        text(&dry.stderr)
    );
    assert!(
        text(&dry.stderr).contains("3 change(s) not made"),
        "{}",
        text(&dry.stderr)
    );
    assert_eq!(
        svc.bcs_json(&["export"]),
        before,
        "--dry-run changed something"
    );
    let dry = svc.bcs_json(&["apply", file.to_str().unwrap(), "--dry-run"]);
    assert_eq!(dry["changes"][1]["action"], "removed");
    assert_eq!(dry["changed"], false);

    let applied = svc.bcs(&["apply", file.to_str().unwrap()]);
    assert_eq!(ok(&applied).lines().collect::<Vec<_>>(), expected);
    assert_eq!(
        svc.bcs(&["url", "check", &prefix, "b.bin"]).status.code(),
        Some(3)
    );
    let again = svc.bcs(&["apply", file.to_str().unwrap()]);
    assert_eq!(ok(&again), "", "nothing left to change");

    let help = ok(&run(BCS, &["apply", "--help"]));
    assert!(
        help.contains("exactly its URLs") && help.contains("with or without --prune"),
        "{help}"
    );
}

/// Hand-written TOML: numbers are numbers, errors point at the file's own line and column on one line,
/// and a limit is one type (a string) in every JSON output (issue 23.3).
#[test]
fn hand_written_toml_is_read_as_people_write_it() {
    let svc = Service::start(&[]);
    let files = tempfile::tempdir().unwrap();
    let port = free_port();
    let prefix = format!("http://127.0.0.1:{port}/hand/");
    let file = files.path().join("hand.toml");
    let apply = |body: &str| {
        std::fs::write(&file, body).unwrap();
        svc.bcs(&["apply", file.to_str().unwrap()])
    };
    let good = format!(
        "[[groups]]\nprefix = \"{prefix}\"\nconnection_limit = 5\nbandwidth_limit = 2097152\n"
    );
    ok(&apply(&good));
    let group = svc.bcs_json(&["group", "show", &prefix]);
    assert_eq!(
        (&group["connection_limit"], &group["bandwidth_limit"]),
        (&json!("5"), &json!("2MiB/s"))
    );
    let limits = svc.bcs_json(&["limit", "show", &prefix]);
    assert_eq!(limits["connection_limit"], group["connection_limit"]);
    assert_eq!(limits["bandwidth_limit"], group["bandwidth_limit"]);

    let name = file.display().to_string();
    for (body, place) in [
        (
            format!("[[groups]]\nprefix = \"{prefix}\"\nindex = [\n"),
            ":3:10: ",
        ),
        (
            format!("[[groups]]\nprefix = \"{prefix}\"\nconnection_limit = \"lots\"\n"),
            ":3:20: ",
        ),
        (
            format!("[[groups]]\nprefix = \"{prefix}\"\nauth = [\"ntlm\", \"kerberos\"]\n"),
            ":3:8: ",
        ),
    ] {
        let refused = apply(&body);
        assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
        let e = text(&refused.stderr);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with(&format!("bcs: error: {name}{place}")), "{e}");
        assert!(!e.contains("\\u{a}") && !e.contains("JSON"), "{e}");
    }
}

/// The smaller edges: a relative file that is not there, `job watch` of a failed job, empty lists, the
/// admin certificate's hint (issue 23.11).
#[test]
fn the_smaller_edges_say_what_happened() {
    let port = free_port();
    let svc = Service::start(&["--admin-url", &format!("https://127.0.0.1:{port}/")]);
    for (args, says) in [
        (&["group", "list"][..], "no URL groups"),
        (&["job", "list"], "no jobs"),
        (&["user", "list"], "no users"),
        (&["cert", "show"], "no certificates"),
    ] {
        let out = svc.bcs(args);
        assert_eq!(ok(&out), "", "{args:?}");
        assert!(
            text(&out.stderr).contains(says),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let group_port = free_port();
    let prefix = format!("http://127.0.0.1:{group_port}/g/");
    ok(&svc.bcs(&["group", "create", &prefix]));
    let url_list = svc.bcs(&["url", "list", &prefix]);
    assert!(
        text(&url_list.stderr).contains("no URLs in"),
        "{}",
        text(&url_list.stderr)
    );

    let cwd = tempfile::tempdir().unwrap();
    let socket = svc.socket();
    let missing = std::process::Command::new(BCS)
        .args([
            "url",
            "add",
            &prefix,
            "m.exe",
            "./missing.exe",
            "--server",
            &socket,
        ])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let e = text(&missing.stderr);
    assert!(e.contains("./missing.exe: does not exist here"), "{e}");

    let job = svc.bcs_json(&[
        "job",
        "create",
        "gone",
        &format!("{prefix}nope.bin"),
        "nope.bin",
    ]);
    let watched = svc.bcs(&["job", "watch", job["id"].as_str().unwrap()]);
    assert_eq!(watched.status.code(), Some(1));
    let e = text(&watched.stderr);
    assert!(e.contains("is ERROR: REMOTE_FILE http_404"), "{e}");

    let (_, stderr) = svc_stop(svc);
    assert!(
        stderr.contains(
            "management commands trust it with --ca, as in `bcs group list --server https://"
        ),
        "{stderr}"
    );
}

fn svc_stop(mut svc: Service) -> (Option<i32>, String) {
    svc.stop("-TERM")
}

/// `bcs job watch` on a terminal starts with what it knows: no full bar reading `0 B/0 B` for a file
/// whose size is unknown (issue 23.11).
#[test]
fn job_watch_on_a_terminal_starts_without_a_full_bar() {
    if !have("script") {
        return;
    }
    let svc = Service::start(&[]);
    let job = svc.bcs_json(&[
        "job",
        "create",
        "later",
        "http://127.0.0.1:9/later.bin",
        "later.bin",
        "--suspended",
    ]);
    let id = job["id"].as_str().unwrap();
    let command = format!("timeout 3 {BCS} job watch {id} --server {}", svc.socket());
    let out = run("script", &["-qec", &command, "/dev/null"]);
    let screen = text(&out.stdout);
    assert!(screen.contains("state: SUSPENDED"), "{screen}");
    assert!(screen.contains("later.bin"), "{screen}");
    assert!(!screen.contains("0 B/0 B"), "{screen}");
}

/// Removing a URL while it is being downloaded says so (issue 23.2): the group answers count the
/// downloads under way, `bcs apply --dry-run` names them for the URL it would remove, and the count
/// falls back when a download ends, a client that gave up too.
#[test]
fn removing_a_url_being_downloaded_says_so() {
    if !have("curl") {
        return;
    }
    let svc = Service::start(&[]);
    let files = tempfile::tempdir().unwrap();
    let body = pattern(1024 * 1024, 7);
    let file = write_file(files.path(), "slow.bin", &body);
    let kept = write_file(files.path(), "kept.bin", b"kept");
    let prefix = format!("http://127.0.0.1:{}/busy/", free_port());
    ok(&svc.bcs(&["group", "create", &prefix, "--bandwidth-limit", "64KiB/s"]));
    for (suffix, file) in [("slow.bin", &file), ("kept.bin", &kept)] {
        ok(&svc.bcs(&["url", "add", &prefix, suffix, file.to_str().unwrap()]));
    }
    let under_way = || -> u64 {
        let urls = svc.bcs_json(&["url", "list", &prefix]);
        let slow = urls
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["suffix"] == "slow.bin")
            .unwrap();
        slow["downloads_under_way"].as_u64().unwrap_or(0)
    };
    let wait_for = |n: u64| {
        let start = Instant::now();
        while under_way() != n {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never {n} under way"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    assert_eq!(under_way(), 0);
    // A slow client that gives up after 3 s, long before the whole file could come.
    let target = format!("{prefix}slow.bin");
    let download =
        std::thread::spawn(move || status(&target, &["--limit-rate", "32k", "--max-time", "3"]));
    wait_for(1);

    let wanted = files.path().join("wanted.toml");
    std::fs::write(
        &wanted,
        format!(
            "[[groups]]\nprefix = \"{prefix}\"\nbandwidth_limit = \"64KiB/s\"\n\n[[groups.urls]]\nsuffix = \"kept.bin\"\nfile = \"{}\"\n",
            kept.display()
        ),
    )
    .unwrap();
    let dry = svc.bcs(&["apply", wanted.to_str().unwrap(), "--dry-run"]);
    assert_eq!(
        ok(&dry).lines().collect::<Vec<_>>(),
        [format!("removed URL {prefix}slow.bin: not in the file's group, 1 download under way (they finish; new requests, resumes too, get 404)")],
        "{}",
        text(&dry.stderr)
    );
    let dry = svc.bcs_json(&["apply", wanted.to_str().unwrap(), "--dry-run"]);
    assert!(
        dry["changes"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("1 download under way"),
        "{dry}"
    );
    // The export is configuration only: no live counts in it.
    let export = svc.bcs_json(&["export"]);
    assert!(
        !export.to_string().contains("downloads_under_way"),
        "{export}"
    );

    // The client gives up: the download is no longer under way.
    assert_eq!(download.join().unwrap(), "200");
    wait_for(0);
    let dry = svc.bcs(&["apply", wanted.to_str().unwrap(), "--dry-run"]);
    assert!(
        ok(&dry).contains("(downloads under way finish; new requests"),
        "{}",
        text(&dry.stdout)
    );
}

/// The OpenAPI document the service serves is valid OpenAPI (issue 23, item 7): PyPI's
/// `openapi-spec-validator` finds nothing in it (it found duplicate operationIds: `list` ×4, `show` ×3),
/// and every operation's id is unique.
#[test]
fn the_openapi_document_passes_openapi_spec_validator() {
    if !have("curl") || !crate::support::have_module("openapi_spec_validator") {
        return;
    }
    let svc = Service::start(&[]);
    let (code, document) = svc.api("GET", "/v1/openapi.json", None);
    assert_eq!(code, 200);
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "openapi.json", document.as_bytes());
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--validation-errors", "all"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let parsed: Value = serde_json::from_str(&document).unwrap();
    let mut ids: Vec<&str> = parsed["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    let count = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), count, "duplicate operationIds: {ids:?}");
    assert!(count >= 38, "{count} operations");
}

/// A service group has the directory index unless it is turned off (issue 23, item 9), as `bcs host`'s
/// has: created through the API or applied in a document without `index`, its root lists its URLs.
#[test]
fn service_groups_have_an_index_unless_turned_off() {
    if !have("curl") {
        return;
    }
    let svc = Service::start(&[]);
    let files = tempfile::tempdir().unwrap();
    let file = write_file(files.path(), "listed.bin", b"listed");
    let port = free_port();
    let on = format!("http://127.0.0.1:{port}/on/");
    let off = format!("http://127.0.0.1:{port}/off/");
    let (code, answer) = svc.api("POST", "/v1/groups", Some(&json!({"prefix": on})));
    assert_eq!(code, 201, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["index"],
        true
    );
    let body = json!({"prefix": off, "index": false});
    let (code, answer) = svc.api("POST", "/v1/groups", Some(&body));
    assert_eq!(code, 201, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["index"],
        false
    );
    for prefix in [&on, &off] {
        let url = json!({"suffix": "listed.bin", "file": file, "sddl": "D:(A;;GR;;;WD)"});
        let (code, answer) = svc.api(
            "POST",
            &format!("/v1/groups/{}/urls", enc(prefix)),
            Some(&url),
        );
        assert_eq!(code, 201, "{answer}");
    }
    let page = run("curl", &["-s", &on]);
    assert!(
        text(&page.stdout).contains("listed.bin"),
        "{}",
        text(&page.stdout)
    );
    assert_eq!(status(&on, &[]), "200");
    assert_ne!(status(&off, &[]), "200");
    // A document's group without `index` has one too.
    let applied = format!("http://127.0.0.1:{port}/applied/");
    let doc = json!({"groups": [{"prefix": applied}]});
    let (code, answer) = svc.api("PUT", "/v1/config", Some(&doc));
    assert_eq!(code, 200, "{answer}");
    let (_, answer) = svc.api("GET", &format!("/v1/groups/{}", enc(&applied)), None);
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["index"],
        true,
        "{answer}"
    );
}

/// An administrator `admin` and a plain user `bob` (both with Basic passwords) on `admin`'s service.
fn admin_and_bob(admin: &Admin) {
    for (name, groups) in [("admin", json!(["BA"])), ("bob", json!([]))] {
        let user = json!({"password": format!("{name}-pw-1"), "groups": groups});
        let path = format!("/v1/users/{name}");
        assert_eq!(admin.svc.api("PUT", &path, Some(&user)).0, 200);
    }
}

/// An administrator's `GET /v1/groups` over the remote listener from 127.0.0.1: its status and how long
/// it took.
fn admin_call(admin: &Admin) -> (String, Duration) {
    let url = format!("{}/v1/groups", admin.base());
    let ca = admin.ca_file.to_str().unwrap();
    let started = Instant::now();
    let code = status(
        &url,
        &["--cacert", ca, "-u", "admin:admin-pw-1", "--max-time", "30"],
    );
    (code, started.elapsed())
}

/// Issue 22.2, first attack: 8 addresses × 8 TCP connections that never start TLS held every connection
/// of the remote listener, and an administrator's call from another address waited 7 s for one.
#[test]
fn idle_connections_from_many_addresses_cannot_hold_out_an_administrator() {
    if !have("curl") {
        return;
    }
    let admin = Admin::start(false, &[]);
    admin_and_bob(&admin);
    let held: Vec<TcpStream> = (0..64u8)
        .map(|i| {
            let from = std::net::Ipv4Addr::new(127, 0, 22, 1 + i / 8);
            crate::support::connect_from(from, admin.port, None)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let calls: Vec<_> = (0..3).map(|_| admin_call(&admin)).collect();
    eprintln!("an administrator's call beside 64 idle connections from 8 addresses: {calls:?}");
    // Before: 7 to 10 s (the TLS handshake deadline freed the connections). The aim is under 1 s;
    // generous for a loaded machine.
    for (code, took) in &calls {
        assert_eq!(code, "200", "{calls:?}");
        assert!(*took < Duration::from_secs(3), "{calls:?}");
    }
    drop(held);
}

/// Sends `POST /v1/jobs` with Basic `creds` on `conns` connections at once, each body one byte a second,
/// reconnecting three seconds after each end (a flood of reconnections would be another attack: on the
/// password checks), for `hold` seconds. Prints what came back: the status lines
/// with their counts, and the longest a body that was answered (not refused at once) took.
const SLOW_BODIES: &str = r#"
import base64, json, socket, ssl, sys, threading, time
port, creds, conns, hold = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
token = base64.b64encode(creds.encode()).decode()
head = ("POST /v1/jobs HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic %s\r\n"
        "Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n" % token).encode()
end = time.time() + hold
answers, lock = [], threading.Lock()
def one():
    start = time.time()
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(head)
    s.settimeout(1)
    got = b""
    while time.time() < end and b"\r\n" not in got:
        try:
            s.sendall(b" ")
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        except socket.timeout:
            pass
    s.close()
    if got:
        with lock:
            answers.append((got.split(b"\r\n")[0].decode(errors="replace"), time.time() - start))
def worker():
    while time.time() < end:
        try:
            one()
        except (OSError, ssl.SSLError):
            pass
        time.sleep(3)
threads = [threading.Thread(target=worker) for _ in range(conns)]
for t in threads:
    t.start()
for t in threads:
    t.join()
counts = {}
for line, _ in answers:
    counts[line] = counts.get(line, 0) + 1
slow = [took for line, took in answers if " 503 " not in line]
print(json.dumps({"answers": counts, "longest": max(slow, default=None)}))
"#;

/// Issue 22.2, second attack: 64 `POST /v1/jobs` bodies at one byte a second from an authenticated
/// non-administrator on the administrator's own address held the remote listener for the 60 s body
/// deadline, and the administrator's call failed meanwhile. Now bodies have a minimum rate, and
/// connections count per caller once authenticated, with room kept for administrators.
#[test]
fn slow_bodies_from_a_user_cannot_hold_out_an_administrator_on_its_address() {
    if !have("curl") || !have("python3") {
        return;
    }
    let admin = Admin::start(false, &[]);
    admin_and_bob(&admin);
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("slow_bodies.py");
    std::fs::write(&script, SLOW_BODIES).unwrap();
    let attack = std::process::Command::new("python3")
        .args([script.to_str().unwrap(), &admin.port.to_string()])
        .args(["bob:bob-pw-1", "64", "20"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let mut calls = Vec::new();
    for _ in 0..3 {
        calls.push(admin_call(&admin));
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = attack.wait_with_output().unwrap();
    let printed = text(&out.stdout);
    eprintln!(
        "an administrator's call beside 64 slow bodies from its address: {calls:?}; {printed}"
    );
    // Before: the call failed (the address's 8 connections were held for 60 s). The aim is under 1 s.
    for (code, took) in &calls {
        assert_eq!(code, "200", "{calls:?}");
        assert!(*took < Duration::from_secs(3), "{calls:?}");
    }
    // A body at one byte a second is refused within seconds, not at the 60 s deadline.
    let v: Value = serde_json::from_str(printed.trim()).unwrap_or_else(|_| panic!("{printed}"));
    let longest = v["longest"]
        .as_f64()
        .unwrap_or_else(|| panic!("no body answered: {printed}"));
    assert!(longest < 15.0, "{printed}");
    // A caller that does not authenticate is answered before its body is read.
    let port = admin.port.to_string();
    let out = run(
        "python3",
        &[script.to_str().unwrap(), &port, "bob:wrong", "1", "2"],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["answers"], json!({"HTTP/1.1 401 Unauthorized": 1}), "{v}");
    assert!(v["longest"].as_f64().unwrap() < 1.5, "{v}");
}
