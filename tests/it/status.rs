//! The live view and what the package ships: `bcs status` against a real `bcs serve` during curl
//! downloads that the group's bandwidth limit paces; who may read it; a bounded answer; and the shell
//! completions and man pages `bcs` generates, read by the shells and `man` themselves.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::BCS;
use crate::service::{api_over, ok, text, Admin};
use crate::support::{free_port, have, pattern, run, write_file};

/// Bytes per second each download should get: the group shares three times this between three.
const EACH: u64 = 200 * 1024;

/// curl downloads running in the background, killed when dropped.
struct Downloads(Vec<Child>);

impl Drop for Downloads {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `bcs status --json` (with more arguments) over the service's socket.
fn status_json(admin: &Admin, extra: &[&str]) -> Value {
    admin.svc.bcs_json(&[&["status"], extra].concat())
}

/// Polls `bcs status --json` until `done` holds, at most 30 s.
fn status_when(admin: &Admin, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let report = status_json(admin, &[]);
        if done(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "status never got there: {report}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn downloads(report: &Value) -> Vec<Value> {
    report["server"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["downloads"].as_array().unwrap().clone())
        .collect()
}

/// Three curl downloads, each in a group of its own whose bandwidth limit paces it (not curl):
/// `bcs status --json` lists all three, each at the limit within 10%, with client, file, bytes and total;
/// each group's limits and how full they are; `--max` bounds the answer and says so; text and `--watch`
/// JSON lines; an anonymous or non-administrator caller of the remote listener is refused.
#[test]
fn status_shows_paced_downloads_at_their_rate() {
    if !have("curl") {
        return;
    }
    let admin = Admin::start(false, &[]);
    let files = tempfile::tempdir().unwrap();
    let size = 8 << 20;
    let file = write_file(files.path(), "big.bin", &pattern(size, 26));
    let port = free_port();
    let prefixes: Vec<String> = (0..3)
        .map(|i| format!("http://127.0.0.1:{port}/live{i}/"))
        .collect();
    let limit = EACH.to_string();
    for prefix in &prefixes {
        ok(&admin.svc.bcs(&[
            "group",
            "create",
            prefix,
            "--bandwidth-limit",
            &limit,
            "--connection-limit",
            "2",
        ]));
        ok(&admin
            .svc
            .bcs(&["url", "add", prefix, "big.bin", file.to_str().unwrap()]));
    }
    let _curls = Downloads(
        prefixes
            .iter()
            .map(|prefix| {
                Command::new("curl")
                    .args(["-s", "-o", "/dev/null", &format!("{prefix}big.bin")])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect(),
    );
    // Wait until each has run long enough for a whole window past its start, then read once.
    let window = (bits_compact::url::WINDOW_SECS + 2) * EACH;
    let report = status_when(&admin, |r| {
        let d = downloads(r);
        d.len() == 3
            && d.iter()
                .all(|d| d["bytes_sent"].as_u64().unwrap() >= window)
    });
    for (group, prefix) in report["server"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&prefixes)
    {
        assert_eq!(group["prefix"], prefix.as_str(), "{report}");
        assert_eq!(group["transfers"], 1, "{report}");
        assert_eq!(group["connection_limit"], 2, "{report}");
        assert_eq!(group["bandwidth_limit"], EACH, "{report}");
        assert_eq!(group["downloads_in_progress"], 1, "{report}");
        assert_eq!(group["rate"], group["downloads"][0]["rate"], "{report}");
    }
    for d in downloads(&report) {
        let rate = d["rate"].as_u64().unwrap();
        assert!(
            rate.abs_diff(EACH) * 10 <= EACH,
            "a rate of {rate} B/s is not within 10% of {EACH}: {report}"
        );
        assert!(
            d["client"].as_str().unwrap().starts_with("127.0.0.1:"),
            "{d}"
        );
        assert_eq!(d["url"], "big.bin");
        assert_eq!(d["bytes_total"], size as u64);
        assert!(
            d.get("user").is_none(),
            "anonymous downloads name no user: {d}"
        );
    }
    assert!(
        report["server"]["transfers"].as_u64().unwrap() >= 3,
        "{report}"
    );
    assert_eq!(report["server"]["downloads_truncated"], false);
    assert_eq!(report["jobs"], serde_json::json!([]));

    // Bounded: two listed of three, and the answer says there are more.
    let capped = status_json(&admin, &["--max", "2"]);
    assert_eq!(downloads(&capped).len(), 2, "{capped}");
    assert_eq!(capped["server"]["downloads_truncated"], true, "{capped}");
    assert_eq!(capped["server"]["groups"][2]["downloads_in_progress"], 1);
    assert_eq!(
        capped["server"]["groups"][2]["downloads"],
        serde_json::json!([])
    );
    for hostile in [
        "max=abc",
        "max=-1",
        "max=99999999999999999999999",
        "other=1",
    ] {
        let (code, body) = admin.svc.api("GET", &format!("/v1/status?{hostile}"), None);
        assert_eq!(code, 400, "{hostile}: {body}");
    }
    let (code, body) = admin.svc.api("GET", "/v1/status?max=4000000000", None);
    assert_eq!(code, 200, "a huge max is the ceiling: {body}");

    // Text: the groups, their limits and each download's file.
    let shown = ok(&admin.svc.bcs(&["status"]));
    assert!(
        prefixes.iter().all(|p| shown.contains(p.as_str())),
        "{shown}"
    );
    assert_eq!(shown.matches("big.bin").count(), 3, "{shown}");
    assert_eq!(shown.matches("of 200 KiB/s").count(), 3, "{shown}");

    // --watch --json: one JSON text per line, again and again.
    let socket = admin.svc.socket();
    let mut watch = Command::new(BCS)
        .args(["status", "--watch", "--json", "--interval", "1"])
        .args(["--server", &socket])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(watch.stdout.take().unwrap()));
    for _ in 0..2 {
        let line = lines.next().unwrap().unwrap();
        let frame: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(downloads(&frame).len(), 3, "{line}");
    }
    let _ = watch.kill();
    let _ = watch.wait();

    // The remote listener: anonymous 401, a user who is not an administrator 403, an administrator 200.
    let (code, body) = admin.svc.api(
        "PUT",
        "/v1/users/bob",
        Some(&serde_json::json!({"password": "bob-pw-1"})),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = admin.svc.api(
        "PUT",
        "/v1/users/root2",
        Some(&serde_json::json!({"password": "root-pw-1", "groups": ["BA"]})),
    );
    assert_eq!(code, 200, "{body}");
    let ca = admin.ca_file.to_str().unwrap();
    let remote = |extra: &[&str]| {
        let how = [&["--cacert", ca][..], extra].concat();
        api_over(&how, &admin.base(), "GET", "/v1/status", None)
    };
    let (code, body) = remote(&[]);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("big.bin"), "{body}");
    let (code, body) = remote(&["-u", "bob:bob-pw-1"]);
    assert_eq!(code, 403, "{body}");
    assert!(!body.contains("big.bin"), "{body}");
    let (code, body) = remote(&["-u", "root2:root-pw-1"]);
    assert_eq!(code, 200, "{body}");
    let remote_report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(downloads(&remote_report).len(), 3, "{body}");
    // `bcs status` itself over the remote listener.
    let out = Command::new(BCS)
        .args([
            "status",
            "--json",
            "--server",
            &format!("{}/", admin.base()),
        ])
        .args(["--ca", ca, "--user", "bob"])
        .env("BCS_PASSWORD", "bob-pw-1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
}

/// A download by an authenticated user names the user; when downloads end (cut short by the client or
/// run to their end) the view is empty again: nothing is left in the registry.
#[test]
fn downloads_name_their_user_and_leave_the_view_when_they_end() {
    if !have("curl") {
        return;
    }
    let admin = Admin::start(false, &[]);
    let files = tempfile::tempdir().unwrap();
    let file = write_file(files.path(), "small.bin", &pattern(300 * 1024, 3));
    let prefix = format!("http://127.0.0.1:{}/gone/", free_port());
    ok(&admin.svc.bcs(&[
        "group",
        "create",
        &prefix,
        "--auth",
        "ntlm",
        "--bandwidth-limit",
        "100KiB/s",
    ]));
    ok(&admin
        .svc
        .bcs(&["url", "add", &prefix, "small.bin", file.to_str().unwrap()]));
    let (code, body) = admin.svc.api(
        "PUT",
        "/v1/users/alice",
        Some(&serde_json::json!({"password": "alice-pw-1"})),
    );
    assert_eq!(code, 200, "{body}");
    let url = format!("{prefix}small.bin");
    let ntlm = ["-s", "-o", "/dev/null", "--ntlm", "-u", "alice:alice-pw-1"];
    let alice = Downloads(vec![Command::new("curl")
        .args(ntlm)
        .arg(&url)
        .spawn()
        .unwrap()]);
    let report = status_when(&admin, |r| downloads(r).len() == 1);
    let user = downloads(&report)[0]["user"].as_str().unwrap().to_owned();
    assert!(user.ends_with("alice"), "{report}");
    drop(alice);
    // One download cut short by curl (--max-time), one run to its end.
    let cut = run("curl", &[&ntlm[..], &["--max-time", "1", &url]].concat());
    assert!(!cut.status.success());
    let whole = run("curl", &[&ntlm[..], &["-w", "%{http_code}", &url]].concat());
    assert_eq!(text(&whole.stdout), "200");
    let report = status_when(&admin, |r| downloads(r).is_empty());
    assert_eq!(report["server"]["groups"][0]["downloads_in_progress"], 0);
    assert_eq!(report["server"]["groups"][0]["transfers"], 0);
}

/// A job in progress is listed with its state, bytes and a rate measured between calls, and its download
/// shows among the group's when the job fetches from the service itself: both near the group's limit.
#[test]
fn a_job_in_progress_shows_its_rate() {
    if !have("curl") {
        return;
    }
    let admin = Admin::start(false, &[]);
    let files = tempfile::tempdir().unwrap();
    let file = write_file(files.path(), "job.bin", &pattern(8 << 20, 9));
    let prefix = format!("http://127.0.0.1:{}/jobs/", free_port());
    let limit = EACH.to_string();
    ok(&admin
        .svc
        .bcs(&["group", "create", &prefix, "--bandwidth-limit", &limit]));
    ok(&admin
        .svc
        .bcs(&["url", "add", &prefix, "job.bin", file.to_str().unwrap()]));
    let url = format!("{prefix}job.bin");
    let id = ok(&admin
        .svc
        .bcs(&["job", "create", "rated", &url, "in/job.bin"]))
    .trim()
    .to_owned();
    let report = status_when(&admin, |r| {
        r["jobs"].as_array().unwrap().iter().any(|j| {
            j["id"] == id.as_str()
                && j["state"] == "TRANSFERRING"
                && j["bytes_transferred"].as_u64().unwrap()
                    >= (bits_compact::url::WINDOW_SECS + 2) * EACH
                && j["rate"].is_u64()
        })
    });
    let job = &report["jobs"][0];
    assert_eq!(job["display_name"], "rated", "{report}");
    assert_eq!(job["bytes_total"], 8 << 20, "{report}");
    let rate = job["rate"].as_u64().unwrap();
    // Measured between two calls at least a second apart, from the job's progress updates: coarser
    // than the server's own window.
    assert!(
        rate.abs_diff(EACH) * 4 <= EACH,
        "the job's rate {rate} B/s is not within 25% of {EACH}: {report}"
    );
    let served = downloads(&report);
    assert_eq!(served.len(), 1, "{report}");
    let served_rate = served[0]["rate"].as_u64().unwrap();
    assert!(
        served_rate.abs_diff(EACH) * 10 <= EACH,
        "the job's download is served at {served_rate} B/s: {report}"
    );
    ok(&admin.svc.bcs(&["job", "cancel", &id]));
    let report = status_when(&admin, |r| r["jobs"] == serde_json::json!([]));
    assert_eq!(report["jobs_truncated"], false);
}

/// `bcs completions SHELL` prints a script each shell reads without error (`bash -n`, and `zsh -n`,
/// `fish -n` where installed), and bash's defines the completion; `bcs manpages DIR` writes a page per
/// command that `man -l` renders; an unknown shell is a usage error.
#[test]
fn completions_and_man_pages_are_read_by_their_tools() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = run(BCS, &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("bcs"), "{shell}");
        let script = dir.path().join(format!("bcs.{shell}"));
        std::fs::write(&script, &out.stdout).unwrap();
        if shell != "bash" && !have(shell) {
            continue;
        }
        let checked = run(shell, &["-n", script.to_str().unwrap()]);
        assert!(
            checked.status.success(),
            "{shell} -n: {}",
            text(&checked.stderr)
        );
    }
    let bash = format!(
        "source {}; complete -p bcs",
        dir.path().join("bcs.bash").display()
    );
    let defined = run("bash", &["-c", &bash]);
    assert!(
        text(&defined.stdout).contains("complete") && defined.status.success(),
        "{}",
        text(&defined.stderr)
    );
    let refused = run(BCS, &["completions", "tcsh-or-worse"]);
    assert_eq!(refused.status.code(), Some(2));

    let pages = dir.path().join("man");
    let out = run(BCS, &["manpages", pages.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for page in ["bcs.1", "bcs-serve.1", "bcs-status.1", "bcs-group-create.1"] {
        assert!(pages.join(page).is_file(), "{page} missing");
    }
    if !have("man") {
        return;
    }
    let rendered = Command::new("man")
        .args(["-l", pages.join("bcs-serve.1").to_str().unwrap()])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    let page = text(&rendered.stdout);
    assert!(rendered.status.success(), "{}", text(&rendered.stderr));
    assert!(
        page.contains("bcs-serve") && page.contains("--state"),
        "{page}"
    );
}
