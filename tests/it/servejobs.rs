//! Download jobs inside `bcs serve`, as their users run them: the real `bcs serve`, `bcs job` and
//! `bcs host` processes over loopback sockets. The original's WinRM walkthrough scripted with `bcs job`,
//! `kill -9` in mid-transfer, ownership on the remote listener, and paths that try to leave the download
//! root.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::spawn_host;
use crate::job_hardening::{redirecting_origin, HostileOrigin, Reply};
use crate::service::{api_over, ok, text, Admin, Service};
use crate::support::{have, run};

/// A file of `len` bytes that differ (so that a misplaced range shows).
fn payload(dir: &Path, name: &str, len: usize) -> PathBuf {
    let path = dir.join(name);
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `bcs job show ID --json` until `done` holds of it; at most `within`.
fn poll(svc: &Service, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let job = svc.bcs_json(&["job", "show", id]);
        if done(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "not there after {within:?}: {job}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `bcs job create ... --json`: the new job.
fn create(svc: &Service, args: &[&str]) -> Value {
    let mut all = vec!["job", "create"];
    all.extend_from_slice(args);
    svc.bcs_json(&all)
}

fn id_of(job: &Value) -> String {
    job["id"].as_str().unwrap().to_owned()
}

/// The original's WinRM walkthrough with `bcs job`: a job for a file `bcs host` serves on loopback,
/// followed to TRANSFERRED (6), completed (ACKNOWLEDGED 7) and byte-identical; a second job cancelled in
/// mid-transfer (CANCELLED 8) leaves no temporary. Exit codes and plain output as a script sees them.
#[test]
fn the_winrm_walkthrough_scripted_with_bcs_job() {
    let files = tempfile::tempdir().unwrap();
    let small = payload(files.path(), "setup.bin", 300_000);
    let big = payload(files.path(), "big.bin", 4_000_000);
    // The group's bandwidth keeps the second job in mid-transfer long enough to cancel it there.
    let (host, port) = spawn_host("http", "dist", &["--rate", "200KiB/s"], &[&small, &big]);
    let svc = Service::start(&[]);
    let url = |name: &str| format!("http://127.0.0.1:{port}/dist/{name}");

    // Plain output: the id alone on stdout, so that `ID=$(bcs job create ...)` works.
    let out = svc.bcs(&[
        "job",
        "create",
        "walkthrough",
        &url("setup.bin"),
        "in/setup.bin",
    ]);
    let id = ok(&out).trim().to_owned();
    assert_eq!(id.len(), 36, "{id}");
    let shown = svc.bcs_json(&["job", "show", &id]);
    assert!(
        ["QUEUED", "CONNECTING", "TRANSFERRING", "TRANSFERRED"]
            .contains(&shown["state"].as_str().unwrap()),
        "{shown}"
    );
    assert_eq!(shown["priority"], "NORMAL");
    assert_eq!(shown["priority_number"], 2);
    assert_eq!(shown["owner"], whoami());
    assert!(shown["creation_time"].as_str().unwrap().ends_with('Z'));
    // `watch` follows the event stream to TRANSFERRED and exits 0; without a terminal it prints lines.
    let watched = svc.bcs(&["job", "watch", &id]);
    assert!(watched.status.success(), "{}", text(&watched.stderr));
    assert!(
        text(&watched.stderr).contains("state: TRANSFERRED"),
        "{}",
        text(&watched.stderr)
    );
    let job = poll(&svc, &id, Duration::from_secs(60), |j| {
        j["state_number"] == 6
    });
    assert_eq!(job["state"], "TRANSFERRED");
    assert_eq!(job["bytes_transferred"], 300_000);
    assert_eq!(job["files_transferred"], 1);
    assert!(job["transfer_completion_time"].is_string());
    let dest = svc.state().join("downloads/in/setup.bin");
    assert!(!dest.exists(), "the file appears only on Complete");
    let done = svc.bcs_json(&["job", "complete", &id]);
    assert_eq!(
        (done["state"].as_str(), done["state_number"].as_u64()),
        (Some("ACKNOWLEDGED"), Some(7))
    );
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&small).unwrap()
    );
    // Final jobs refuse changes (exit 2), and can then be deleted.
    assert_eq!(svc.bcs(&["job", "resume", &id]).status.code(), Some(2));
    ok(&svc.bcs(&["job", "delete", &id]));
    assert_eq!(svc.bcs(&["job", "show", &id]).status.code(), Some(3));

    // The second job: cancelled in mid-transfer.
    let second = create(
        &svc,
        &["second", &url("big.bin"), "big.bin", "--priority", "high"],
    );
    let second = id_of(&second);
    let part = svc.state().join("downloads/.big.bin.bcs-part");
    poll(&svc, &second, Duration::from_secs(30), |j| {
        j["state"] == "TRANSFERRING" && j["bytes_transferred"].as_u64() > Some(0)
    });
    assert!(part.exists());
    let listed = svc.bcs(&["job", "list"]);
    assert!(ok(&listed).contains(&second), "{}", text(&listed.stdout));
    let cancelled = svc.bcs_json(&["job", "cancel", &second]);
    assert_eq!(
        (
            cancelled["state"].as_str(),
            cancelled["state_number"].as_u64()
        ),
        (Some("CANCELLED"), Some(8))
    );
    assert!(!part.exists(), "the temporary is gone");
    assert!(!svc.state().join("downloads/big.bin").exists());

    // A job whose file is missing: ERROR, and GetError says why.
    let missing = create(&svc, &["missing", &url("nope.bin"), "nope.bin"]);
    let missing = id_of(&missing);
    poll(&svc, &missing, Duration::from_secs(30), |j| {
        j["state"] == "ERROR"
    });
    let error = svc.bcs_json(&["job", "error", &missing]);
    assert_eq!(
        (error["code"].as_str(), error["context"].as_str()),
        (Some("http_404"), Some("REMOTE_FILE")),
        "{error}"
    );
    // `watch` of a job in ERROR exits 1.
    assert_eq!(svc.bcs(&["job", "watch", &missing]).status.code(), Some(1));
    // `set` changes what it is given.
    let set = svc.bcs_json(&[
        "job",
        "set",
        &missing,
        "--priority",
        "low",
        "--retry-delay",
        "30",
        "--no-progress-timeout",
        "90",
    ]);
    assert_eq!(
        (
            set["priority_number"].as_u64(),
            set["minimum_retry_delay_secs"].as_u64(),
            set["no_progress_timeout_secs"].as_u64()
        ),
        (Some(3), Some(30), Some(90))
    );
    assert_eq!(
        svc.bcs(&["job", "set", &missing, "--retry-delay", "4"])
            .status
            .code(),
        Some(2)
    );
    drop(host);
}

/// The user this test runs as, as the local socket names the owner of the jobs it creates.
fn whoami() -> String {
    text(&run("id", &["-un"]).stdout).trim().to_owned()
}

/// `kill -9` of `bcs serve` while three jobs of different priorities transfer from a slow `bcs host`
/// group: after a restart (one transfer at a time) every job resumes from the bytes on disk, FOREGROUND
/// first, and ends byte-identical; `bcs host`'s access log shows each file's rest fetched with one ranged
/// GET of exactly the bytes missing from its temporary.
#[test]
fn kill_9_in_mid_transfer_resumes_foreground_first_from_the_bytes_on_disk() {
    let files = tempfile::tempdir().unwrap();
    const LEN: usize = 1_200_000;
    let names = ["low.bin", "normal.bin", "fg.bin"];
    let paths: Vec<PathBuf> = names
        .iter()
        .map(|n| payload(files.path(), n, LEN))
        .collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let (host, port) = spawn_host("http", "slow", &["--rate", "300KiB/s"], &refs);
    let mut svc = Service::start(&["--max-job-transfers", "3"]);
    let mut ids = Vec::new();
    for (name, priority) in names.iter().zip(["low", "normal", "foreground"]) {
        let url = format!("http://127.0.0.1:{port}/slow/{name}");
        let job = create(&svc, &[name, &url, name, "--priority", priority]);
        ids.push(id_of(&job));
    }
    for id in &ids {
        poll(&svc, id, Duration::from_secs(30), |j| {
            j["state"] == "TRANSFERRING" && j["bytes_transferred"].as_u64() > Some(0)
        });
    }
    svc.stop("-KILL");
    let downloads = svc.state().join("downloads");
    let on_disk: Vec<u64> = names
        .iter()
        .map(|n| {
            std::fs::metadata(downloads.join(format!(".{n}.bcs-part")))
                .unwrap()
                .len()
        })
        .collect();
    assert!(
        on_disk.iter().all(|&n| n > 0 && n < LEN as u64),
        "{on_disk:?}"
    );

    // One transfer at a time after the restart: the order shows the priorities.
    svc.extra = vec!["--max-job-transfers".into(), "1".into()];
    svc.restart();
    for (i, id) in ids.iter().enumerate() {
        let job = poll(&svc, id, Duration::from_secs(60), |j| {
            j["state_number"] == 6
        });
        assert_eq!(job["bytes_transferred"], LEN as u64, "{}", names[i]);
        ok(&svc.bcs(&["job", "complete", id]));
        assert_eq!(
            std::fs::read(downloads.join(names[i])).unwrap(),
            std::fs::read(&paths[i]).unwrap(),
            "{} is byte-identical",
            names[i]
        );
    }
    let (_, log) = host.stop("-TERM");
    // After the restart each file was fetched once more: a 206 of exactly what its temporary lacked.
    let mut resumed_order = Vec::new();
    for line in log
        .lines()
        .filter(|l| l.contains("method=GET") && l.contains("status=206"))
    {
        let name = names
            .iter()
            .find(|n| line.contains(&format!("url=/slow/{n} ")))
            .unwrap();
        let i = names.iter().position(|n| n == name).unwrap();
        let bytes: u64 = field(line, "bytes").parse().unwrap();
        assert_eq!(
            bytes,
            LEN as u64 - on_disk[i],
            "{name} fetched again what it had: {line}"
        );
        resumed_order.push(*name);
    }
    assert_eq!(resumed_order, ["fg.bin", "normal.bin", "low.bin"], "{log}");
    let full_gets = log
        .lines()
        .filter(|l| l.contains("method=GET") && l.contains("status=200"))
        .count();
    assert_eq!(full_gets, 3, "one whole GET each, before the kill: {log}");
}

/// `key=value` from an access log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let start = line.find(&format!(" {key}=")).unwrap() + key.len() + 2;
    line[start..].split(' ').next().unwrap()
}

/// On the remote listener anyone authenticated may manage their own jobs, and nothing else: another's job
/// is 404 (as if it did not exist), every other endpoint 403. Administrators see and manage every job.
#[test]
fn other_callers_jobs_are_invisible_and_the_rest_of_the_api_stays_for_administrators() {
    if !have("curl") {
        return;
    }
    // The jobs below name loopback URLs (never fetched: suspended or cancelled).
    let admin = Admin::start(false, &["--job-allow", "127.0.0.1"]);
    let svc = &admin.svc;
    for (name, password, groups) in [
        ("admin", "admin-pw-1", vec!["BA"]),
        ("alice", "alice-pw-1", vec![]),
        ("bob", "bob-pw-1", vec![]),
    ] {
        let body = json!({"password": password, "groups": groups});
        let (code, answer) = svc.api("PUT", &format!("/v1/users/{name}"), Some(&body));
        assert_eq!(code, 200, "{answer}");
    }
    let base = admin.base();
    let ca = admin.ca_file.to_str().unwrap().to_owned();
    let as_user = |user: &str, method: &str, path: &str, body: Option<&Value>| {
        let creds = format!("{user}:{user}-pw-1");
        api_over(&["--cacert", &ca, "-u", &creds], &base, method, path, body)
    };
    let job = json!({"display_name": "alice's", "files": [{"remote_url": "http://127.0.0.1:9/a", "local_file": "alice/a.bin"}], "suspended": true});
    let (code, body) = as_user("alice", "POST", "/v1/jobs", Some(&job));
    assert_eq!(code, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    // The owner carries the SID the name maps to: names alone collide across schemes and case.
    let owner = created["owner"].as_str().unwrap().to_owned();
    assert!(owner.starts_with("alice (S-1-"), "{owner}");
    let id = id_of(&created);
    let mine = format!("/v1/jobs/{id}");

    // Alice's paths resolve in an area of her own below the root; Bob can neither name her file (outside
    // his area) nor collide with it by using the same relative path (his lands in his area).
    let alices = created["files"][0]["local_file"]
        .as_str()
        .unwrap()
        .to_owned();
    let root = svc.state().join("downloads").canonicalize().unwrap();
    let area = Path::new(&alices)
        .strip_prefix(root.join("users"))
        .expect("under users/");
    assert_eq!(
        area.components().count(),
        3,
        "users/<owner>/alice/a.bin: {alices}"
    );
    let steal = json!({"display_name": "bob's", "files": [{"remote_url": "http://127.0.0.1:9/x", "local_file": alices}], "suspended": true});
    let (code, body) = as_user("bob", "POST", "/v1/jobs", Some(&steal));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("path_outside_download_root"), "{body}");
    let same = json!({"display_name": "bob's", "files": [{"remote_url": "http://127.0.0.1:9/x", "local_file": "alice/a.bin"}], "suspended": true});
    let (code, body) = as_user("bob", "POST", "/v1/jobs", Some(&same));
    assert_eq!(code, 201, "{body}");
    let bobs: Value = serde_json::from_str(&body).unwrap();
    assert_ne!(bobs["files"][0]["local_file"].as_str().unwrap(), alices);
    let (code, body) = as_user(
        "bob",
        "PUT",
        &format!("/v1/jobs/{}/state", id_of(&bobs)),
        Some(&json!({"action": 0})),
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = as_user("bob", "DELETE", &format!("/v1/jobs/{}", id_of(&bobs)), None);
    assert!(code == 200 || code == 204, "{code} {body}");

    // Bob: not in his list, and every operation on it is 404, exactly as for a job that does not exist.
    let (code, body) = as_user("bob", "GET", "/v1/jobs", None);
    assert_eq!((code, body.trim()), (200, "[]"));
    let resume = json!({"action": 2});
    let creds = json!({"scheme": "ntlm", "user": "x", "password": "y"});
    let file = json!({"remote_url": "http://127.0.0.1:9/b", "local_file": "b.bin"});
    let change = json!({"priority": "HIGH"});
    for (method, path, body) in [
        ("GET", mine.clone(), None),
        ("GET", format!("{mine}/error"), None),
        ("GET", format!("{mine}/events"), None),
        ("PUT", format!("{mine}/state"), Some(&resume)),
        ("PATCH", mine.clone(), Some(&change)),
        ("POST", format!("{mine}/files"), Some(&file)),
        ("PUT", format!("{mine}/credentials"), Some(&creds)),
        ("DELETE", format!("{mine}/credentials"), None),
        ("DELETE", mine.clone(), None),
    ] {
        let (code, answer) = as_user("bob", method, &path, body);
        assert_eq!(code, 404, "{method} {path}: {answer}");
        assert!(answer.contains("job_not_found"), "{answer}");
        let missing = path.replace(&id, "00000000-0000-4000-8000-000000000000");
        let (code_missing, answer_missing) = as_user("bob", method, &missing, body);
        assert_eq!(
            (
                code_missing,
                answer_missing.replace("00000000-0000-4000-8000-000000000000", &id)
            ),
            (code, answer),
            "{method} {path}"
        );
    }
    // Everything but /v1/jobs stays for administrators, whatever the path says (curl removes `..`
    // itself; an encoded one reaches the router, which matches no job route with it).
    for (method, path, expected) in [
        ("GET", "/v1/groups", 403),
        ("GET", "/v1/users", 403),
        ("GET", "/v1/config", 403),
        ("GET", "/v1/openapi.json", 403),
        ("GET", "/v1/certificates", 403),
        ("GET", "/v1/nonexistent", 403),
        ("GET", "/v1/jobsx", 403),
        ("GET", "/v1/jobs/../users", 403),
        ("GET", "/v1/jobs/%2e%2e/users", 404),
        ("GET", "/v1//jobs", 403),
        ("PUT", "/v1/principal-groups/x", 403),
    ] {
        let (code, answer) = as_user("bob", method, path, None);
        assert_eq!(code, expected, "{method} {path}: {answer}");
        assert!(
            !answer.contains("\"prefix\"") && !answer.contains("\"sid\""),
            "{answer}"
        );
    }
    let escalate = json!({"groups": ["BA"]});
    assert_eq!(
        as_user("bob", "PUT", "/v1/users/bob", Some(&escalate)).0,
        403
    );

    // Alice manages her own job; the admin sees and manages it too.
    let (code, body) = as_user("alice", "PATCH", &mine, Some(&change));
    assert_eq!(code, 200, "{body}");
    let (code, body) = as_user("admin", "GET", "/v1/jobs", None);
    assert_eq!(code, 200);
    assert!(body.contains(&id), "{body}");
    let (code, body) = as_user(
        "admin",
        "PUT",
        &format!("{mine}/state"),
        Some(&json!({"action": "CANCEL"})),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"state_number\":8"), "{body}");
    // Through `bcs job` remotely: Bob sees an empty list (exit 0), and 'not found' (exit 3) for her job.
    let bcs_remote = |user: &str, args: &[&str]| {
        let mut cmd = std::process::Command::new(crate::cli::BCS);
        cmd.args(args)
            .args(["--server", &format!("{base}/"), "--ca", &ca, "--user", user])
            .env("BCS_PASSWORD", format!("{user}-pw-1"));
        cmd.output().unwrap()
    };
    let listed = bcs_remote("bob", &["job", "list", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert_eq!(
        serde_json::from_slice::<Value>(&listed.stdout).unwrap(),
        json!([])
    );
    assert_eq!(
        bcs_remote("bob", &["job", "show", &id]).status.code(),
        Some(3)
    );
    assert_eq!(bcs_remote("bob", &["group", "list"]).status.code(), Some(4));
    assert_eq!(
        bcs_remote("alice", &["job", "show", &id]).status.code(),
        Some(0)
    );
    // The local socket is the service's administrator.
    assert!(svc.bcs(&["job", "list"]).status.success());
    assert!(ok(&svc.bcs(&["job", "list"])).contains(&id));
}

/// Local files must stay inside the download root: `..`, absolute paths elsewhere, and symbolic links
/// (a linked directory, a linked file, a linked temporary) are refused with `path_outside_download_root`;
/// a directory swapped for a link after the job was created does not redirect its write.
#[test]
fn paths_cannot_leave_the_download_root() {
    if !have("curl") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("root");
    let outside = work.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let small = payload(work.path(), "f.bin", 100_000);
    let (_host, port) = spawn_host("http", "p", &[], &[&small]);
    let svc = Service::start(&["--download-root", root.to_str().unwrap()]);
    let url = format!("http://127.0.0.1:{port}/p/f.bin");
    let root = root.canonicalize().unwrap();
    std::fs::create_dir(root.join("real")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("linkdir")).unwrap();
    std::os::unix::fs::symlink(outside.join("target"), root.join("linkfile")).unwrap();
    std::os::unix::fs::symlink(outside.join("target"), root.join(".part.bin.bcs-part")).unwrap();
    let try_create = |local: &str| {
        let body = json!({"display_name": "p", "files": [{"remote_url": url, "local_file": local}], "suspended": true});
        svc.api("POST", "/v1/jobs", Some(&body))
    };
    let outside_abs = outside.join("x.bin");
    let escape_abs = format!("{}/../outside/x.bin", root.display());
    for local in [
        "../outside/x.bin",
        "real/../../outside/x.bin",
        outside_abs.to_str().unwrap(),
        escape_abs.as_str(),
        "/etc/passwd",
        "linkdir/x.bin",
        "linkfile",
        "part.bin",
        "",
        "real",
    ] {
        let (code, body) = try_create(local);
        assert_eq!(code, 400, "{local:?}: {body}");
        assert!(
            body.contains("path_outside_download_root"),
            "{local:?}: {body}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing was written outside"
    );
    // Inside: relative (parents created) or absolute.
    let (code, body) = try_create("a/b/ok.bin");
    assert_eq!(code, 201, "{body}");
    let inside = root.join("real/abs.bin");
    let (code, body) = try_create(inside.to_str().unwrap());
    assert_eq!(code, 201, "{body}");
    // Adding a file checks it the same way.
    let id = id_of(&serde_json::from_str::<Value>(&body).unwrap());
    let add = json!({"remote_url": url, "local_file": "linkdir/y.bin"});
    let (code, body) = svc.api("POST", &format!("/v1/jobs/{id}/files"), Some(&add));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("path_outside_download_root"));

    // A directory swapped for a link after the job was created: the job fails, nothing lands outside.
    let (code, body) = try_create("swap/s.bin");
    assert_eq!(code, 201, "{body}");
    let swapped = id_of(&serde_json::from_str::<Value>(&body).unwrap());
    std::fs::remove_dir(root.join("swap")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("swap")).unwrap();
    ok(&svc.bcs(&["job", "resume", &swapped]));
    let job = poll(&svc, &swapped, Duration::from_secs(30), |j| {
        j["state"] == "ERROR"
    });
    assert_eq!(job["bytes_transferred"], 0);
    let error = svc.bcs_json(&["job", "error", &swapped]);
    assert_eq!(error["context"], "LOCAL_FILE", "{error}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing was written outside"
    );
    // The swap after the transfer: Complete refuses to rename through the link.
    let (code, body) = try_create("late/l.bin");
    assert_eq!(code, 201, "{body}");
    let late = id_of(&serde_json::from_str::<Value>(&body).unwrap());
    ok(&svc.bcs(&["job", "resume", &late]));
    poll(&svc, &late, Duration::from_secs(30), |j| {
        j["state_number"] == 6
    });
    std::fs::rename(root.join("late"), root.join("late-real")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("late")).unwrap();
    let out = svc.bcs(&["job", "complete", &late]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing was written outside"
    );
}

/// Credentials given to a job are never returned, are not in the database in the clear, survive a restart
/// (sealed with the state directory's key), and a key file others may read stops the service with a
/// clear error. The event stream ends when the job reaches a final state.
#[test]
fn credentials_are_sealed_at_rest_and_the_event_stream_ends_with_the_job() {
    if !have("curl") {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let file = payload(files.path(), "e.bin", 600_000);
    let (_host, port) = spawn_host("http", "e", &["--rate", "300KiB/s"], &[&file]);
    let mut svc = Service::start(&[]);
    let secret = "Sealed-Pa55word-9";
    let body = json!({
        "display_name": "with credentials",
        "files": [{"remote_url": format!("http://127.0.0.1:{port}/e/e.bin"), "local_file": "e.bin"}],
        "credentials": {"scheme": "ntlm", "user": "CORP\\alice", "password": secret},
        "proxy": {"usage": "no_proxy"},
        "suspended": true,
    });
    let (code, answer) = svc.api("POST", "/v1/jobs", Some(&body));
    assert_eq!(code, 201, "{answer}");
    assert!(!answer.contains(secret), "{answer}");
    let job: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        job["credentials"],
        json!({"scheme": "ntlm", "user": "CORP\\alice", "password": true})
    );
    assert_eq!(job["state"], "SUSPENDED");
    let id = id_of(&job);
    let key = svc.state().join("jobs.key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    for name in ["config.db", "config.db-wal"] {
        let bytes = std::fs::read(svc.state().join(name)).unwrap_or_default();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the password is in {name} in the clear"
        );
    }
    svc.stop("-KILL");
    svc.restart();
    let (_, answer) = svc.api("GET", &format!("/v1/jobs/{id}"), None);
    let job: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        job["credentials"]["password"], true,
        "the password came back: {answer}"
    );
    assert_eq!(job["state"], "SUSPENDED", "{answer}");
    let (code, answer) = svc.api("DELETE", &format!("/v1/jobs/{id}/credentials"), None);
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        serde_json::from_str::<Value>(&answer).unwrap()["credentials"],
        Value::Null
    );

    // The event stream, read while the job runs: its state first, progress, then TRANSFERRED; after
    // Complete it ends by itself.
    let socket = svc.socket();
    let url = format!("http://localhost/v1/jobs/{id}/events");
    let reader = std::process::Command::new("curl")
        .args(["-sN", "--max-time", "60", "--unix-socket", &socket, &url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    ok(&svc.bcs(&["job", "resume", &id]));
    poll(&svc, &id, Duration::from_secs(30), |j| {
        j["state_number"] == 6
    });
    ok(&svc.bcs(&["job", "complete", &id]));
    let started = Instant::now();
    let out = reader.wait_with_output().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the stream did not end with the job"
    );
    let stream = text(&out.stdout);
    assert!(stream.starts_with("event: job\ndata: {"), "{stream}");
    assert!(stream.contains("event: progress\ndata: {"), "{stream}");
    for state in ["TRANSFERRING", "TRANSFERRED", "ACKNOWLEDGED"] {
        assert!(
            stream.contains(&format!("\"state\":\"{state}\"")),
            "{state}: {stream}"
        );
    }
    assert!(
        stream.trim_end().ends_with("\"state_number\":7}"),
        "{stream}"
    );
    let (code, _) = svc.api("DELETE", &format!("/v1/jobs/{id}"), None);
    assert_eq!(code, 204);

    // A key others may read is refused, not used.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    svc.stop("-TERM");
    let state = svc.state();
    // Bounded: a service that started anyway is killed after 20 s, and the test fails.
    let mut child = std::process::Command::new(crate::cli::BCS)
        .args([
            "serve",
            "--state",
            state.to_str().unwrap(),
            "--bind",
            "127.0.0.1",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("jobs.key") && err.contains("by others"),
        "{err}"
    );
}

/// The `code` of an error answer.
fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Every entry below `dir`, recursively (none when it does not exist).
fn entries_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(at) = todo.pop() {
        let Ok(read) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in read {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Hostile job fields (issue 22, items 3, 4 and 5): control characters and bidirectional overrides in a
/// name, a description or a file name are refused (`control_character`, the character never echoed);
/// every string field has a documented bound (`field_too_long`, naming the field), SDDL included where
/// the API takes it (groups and URLs); and a refused creation leaves the download root as it was: 20,000
/// files over the 200-file cap, or a name shaped like a temporary after a new directory, create nothing.
#[test]
fn hostile_job_fields_are_refused_before_anything_changes() {
    if !have("curl") {
        return;
    }
    let svc = Service::start(&[]);
    let url = "http://192.0.2.1/a.bin";
    let job = |name: &str, description: &str, local: &str| {
        json!({"display_name": name, "description": description, "suspended": true,
               "files": [{"remote_url": url, "local_file": local}]})
    };
    let create = |body: &Value| svc.api("POST", "/v1/jobs", Some(body));
    for bad in [
        '\u{1b}', '\u{7}', '\r', '\n', '\u{7f}', '\u{9b}', '\u{202e}', '\u{2066}',
    ] {
        let text = format!("a{bad}b");
        for (field, body) in [
            ("display_name", job(&text, "", "ok.bin")),
            ("description", job("n", &text, "ok.bin")),
            ("local_file", job("n", "", &format!("d/{text}.bin"))),
        ] {
            let (code, answer) = create(&body);
            assert_eq!(
                (code, code_of(&answer).as_str()),
                (400, "control_character"),
                "{field} with U+{:04X}: {answer}",
                bad as u32
            );
            let message: Value = serde_json::from_str(&answer).unwrap();
            let message = message["message"].as_str().unwrap();
            assert!(message.contains(field), "{answer}");
            assert!(
                !message.contains(bad),
                "the character is echoed: {answer:?}"
            );
        }
    }
    // Bounds: name 256 characters, description 1024, URL 8 KiB, path 4 KiB; at the bound it is taken.
    let long = |n: usize| "é".repeat(n);
    let (code, answer) = create(&job(&long(256), &long(1024), "fits.bin"));
    assert_eq!(code, 201, "{answer}");
    let long_url = format!("http://192.0.2.1/{}", "a".repeat(8 << 10));
    let long_path = format!("{}/x.bin", "d".repeat(4 << 10));
    let with_url =
        json!({"display_name": "u", "files": [{"remote_url": long_url, "local_file": "u.bin"}]});
    for (field, body) in [
        ("display_name", job(&long(257), "", "n.bin")),
        ("description", job("n", &long(1025), "n.bin")),
        ("local_file", job("n", "", &long_path)),
        ("remote_url", with_url),
    ] {
        let (code, answer) = create(&body);
        assert_eq!(
            (code, code_of(&answer).as_str()),
            (400, "field_too_long"),
            "{field}: {answer}"
        );
        assert!(answer.contains(field), "{field}: {answer}");
    }
    let root = svc.state().join("downloads");
    let before = entries_below(&root);

    // 20,000 files, each in a directory of its own: refused, and not one directory made.
    let files: Vec<Value> = (0..20_000)
        .map(|i| json!({"remote_url": url, "local_file": format!("many/{i}/f.bin")}))
        .collect();
    let (code, answer) =
        create(&json!({"display_name": "many", "files": files, "suspended": true}));
    assert_eq!(code, 400, "{answer}");
    // A new directory, then a name shaped like a temporary: refused, and the directory is not there.
    let sneaky = json!({"display_name": "sneaky", "suspended": true, "files": [
        {"remote_url": url, "local_file": "fresh/dir/a.bin"},
        {"remote_url": url, "local_file": "other/.b.bin.bcs-part"}]});
    let (code, answer) = create(&sneaky);
    assert_eq!(code, 400, "{answer}");
    // Two files to one path: refused after both directories would have been made.
    let twice = json!({"display_name": "twice", "suspended": true, "files": [
        {"remote_url": url, "local_file": "twice/a/x.bin"},
        {"remote_url": url, "local_file": "twice/a/x.bin"}]});
    let (code, answer) = create(&twice);
    assert_eq!(code, 400, "{answer}");
    assert_eq!(
        entries_below(&root),
        before,
        "a refused creation changed the download root"
    );
    // Accepted: only the directories it needs.
    let (code, answer) = create(&job("ok", "", "made/for/it.bin"));
    assert_eq!(code, 201, "{answer}");
    let made: Vec<PathBuf> = entries_below(&root)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(made, [root.join("made"), root.join("made/for")]);

    // SDDL is bounded where the API takes it: a group's default and a URL's.
    let files_dir = tempfile::tempdir().unwrap();
    let file = payload(files_dir.path(), "s.bin", 10);
    let port = crate::support::free_port();
    let prefix = format!("http://127.0.0.1:{port}/sddl/");
    let huge_sddl = format!("D:{}", "(A;;GR;;;WD)".repeat(6_000));
    let (code, answer) = svc.api(
        "POST",
        "/v1/groups",
        Some(&json!({"prefix": prefix, "default_sddl": huge_sddl})),
    );
    assert_eq!(
        (code, code_of(&answer).as_str()),
        (400, "field_too_long"),
        "{answer}"
    );
    assert!(answer.contains("default_sddl"), "{answer}");
    let (code, answer) = svc.api("POST", "/v1/groups", Some(&json!({"prefix": prefix})));
    assert_eq!(code, 201, "{answer}");
    let encoded: String = prefix
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let url_body = json!({"suffix": "s.bin", "file": file, "sddl": huge_sddl});
    let (code, answer) = svc.api(
        "POST",
        &format!("/v1/groups/{encoded}/urls"),
        Some(&url_body),
    );
    assert_eq!(
        (code, code_of(&answer).as_str()),
        (400, "field_too_long"),
        "{answer}"
    );
    assert!(answer.contains("sddl"), "{answer}");
}

/// Jobs reach only what their caller may (issue 22, item 9): for a caller who is not an administrator, a
/// job's URL (or its proxy) may not name loopback, link-local, unspecified or the machine's own addresses,
/// whatever name or spelling leads there, and the refusal is `refused_by_policy`, the same whether a port
/// is open or closed. An administrator's jobs may; `--job-allow` lets others reach what it names.
#[test]
fn jobs_of_callers_who_are_not_administrators_stay_off_the_services_own_addresses() {
    if !have("curl") {
        return;
    }
    let mut admin = Admin::start(false, &[]);
    for (name, password, groups) in [
        ("admin", "admin-pw-1", vec!["BA"]),
        ("alice", "alice-pw-1", vec![]),
    ] {
        let body = json!({"password": password, "groups": groups});
        let (code, answer) = admin
            .svc
            .api("PUT", &format!("/v1/users/{name}"), Some(&body));
        assert_eq!(code, 200, "{answer}");
    }
    let (base, ca) = (admin.base(), admin.ca_file.to_str().unwrap().to_owned());
    let as_user = |user: &str, method: &str, path: &str, body: Option<&Value>| {
        let creds = format!("{user}:{user}-pw-1");
        api_over(&["--cacert", &ca, "-u", &creds], &base, method, path, body)
    };
    // An open port (the admin listener itself) and a closed one.
    let open = base.rsplit(':').next().unwrap().to_owned();
    let closed = crate::support::free_port().to_string();
    let job = |url: &str| {
        json!({"display_name": "probe", "suspended": true,
               "files": [{"remote_url": url, "local_file": "p.bin"}]})
    };
    let mut answers = Vec::new();
    for port in [&open, &closed] {
        let mut per_port = Vec::new();
        for host in [
            "127.0.0.1",
            "localhost",
            "127.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "0.0.0.0",
            "169.254.169.254",
            "[fe80::1]",
        ] {
            let url = format!("http://{host}:{port}/v1/openapi.json");
            let (code, answer) = as_user("alice", "POST", "/v1/jobs", Some(&job(&url)));
            assert!(code == 400 || code == 403, "{url}: {code} {answer}");
            assert_eq!(code_of(&answer), "refused_by_policy", "{url}: {answer}");
            per_port.push((code, answer.replace(port.as_str(), "PORT")));
        }
        answers.push(per_port);
    }
    assert_eq!(
        answers[0], answers[1],
        "an open port answers as a closed one"
    );
    // A proxy is a target too; so is a file added later.
    let proxied = json!({"display_name": "p", "suspended": true,
        "proxy": {"usage": "override", "proxy": format!("http://127.0.0.1:{open}")},
        "files": [{"remote_url": "http://192.0.2.1/a", "local_file": "q.bin"}]});
    let (_, answer) = as_user("alice", "POST", "/v1/jobs", Some(&proxied));
    assert_eq!(code_of(&answer), "refused_by_policy", "{answer}");
    let (code, answer) = as_user(
        "alice",
        "POST",
        "/v1/jobs",
        Some(&job("http://192.0.2.1/a")),
    );
    assert_eq!(code, 201, "{answer}");
    let id = id_of(&serde_json::from_str(&answer).unwrap());
    let add = json!({"remote_url": format!("http://localhost:{open}/"), "local_file": "r.bin"});
    let (_, answer) = as_user("alice", "POST", &format!("/v1/jobs/{id}/files"), Some(&add));
    assert_eq!(code_of(&answer), "refused_by_policy", "{answer}");
    // An administrator's job may reach loopback.
    let mine = format!("http://127.0.0.1:{open}/x");
    let (code, answer) = as_user("admin", "POST", "/v1/jobs", Some(&job(&mine)));
    assert_eq!(code, 201, "{answer}");
    // --job-allow lets the others reach what it names.
    admin.svc.stop("-TERM");
    admin
        .svc
        .extra
        .extend(["--job-allow".into(), "127.0.0.0/8".into()]);
    admin.svc.restart();
    let mut allowed = job(&mine);
    allowed["files"][0]["local_file"] = json!("allowed.bin");
    let (code, answer) = as_user("alice", "POST", "/v1/jobs", Some(&allowed));
    assert_eq!(code, 201, "{answer}");
    let (_, answer) = as_user("alice", "POST", "/v1/jobs", Some(&job("http://[::1]:9/")));
    assert_eq!(code_of(&answer), "refused_by_policy", "{answer}");
}

/// Final jobs (issue 23, item 10): an ACKNOWLEDGED and a CANCELLED job stay listed with their end time,
/// the same after a restart (and after `kill -9`), until deleted, or until `--job-retention` has passed
/// since they ended.
#[test]
fn final_jobs_are_listed_the_same_across_a_restart_until_deleted_or_retained_no_longer() {
    if !have("curl") {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let small = payload(files.path(), "f.bin", 50_000);
    let (_host, port) = spawn_host("http", "fin", &[], &[&small]);
    let mut svc = Service::start(&[]);
    let done = create(
        &svc,
        &[
            "done",
            &format!("http://127.0.0.1:{port}/fin/f.bin"),
            "f.bin",
        ],
    );
    let done = id_of(&done);
    poll(&svc, &done, Duration::from_secs(30), |j| {
        j["state_number"] == 6
    });
    ok(&svc.bcs(&["job", "complete", &done]));
    let body = json!({"display_name": "dropped", "suspended": true,
        "files": [{"remote_url": "http://127.0.0.1:9/x", "local_file": "x.bin"}]});
    let (code, answer) = svc.api("POST", "/v1/jobs", Some(&body));
    assert_eq!(code, 201, "{answer}");
    let dropped = id_of(&serde_json::from_str(&answer).unwrap());
    let (code, answer) = svc.api(
        "PUT",
        &format!("/v1/jobs/{dropped}/state"),
        Some(&json!({"action": "CANCEL"})),
    );
    assert_eq!(code, 200, "{answer}");
    let listed = |svc: &Service| -> Vec<Value> {
        let (code, answer) = svc.api("GET", "/v1/jobs", None);
        assert_eq!(code, 200, "{answer}");
        serde_json::from_str(&answer).unwrap()
    };
    let before = listed(&svc);
    let states: Vec<&str> = before
        .iter()
        .map(|j| j["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["ACKNOWLEDGED", "CANCELLED"], "{before:?}");
    for job in &before {
        assert!(job["end_time"].as_str().unwrap().ends_with('Z'), "{job}");
    }
    svc.stop("-TERM");
    svc.restart();
    assert_eq!(listed(&svc), before, "a restart changed the final jobs");
    svc.stop("-KILL");
    svc.restart();
    assert_eq!(listed(&svc), before, "kill -9 changed the final jobs");
    // A final job refuses changes as before the restart; deleted, it stays gone.
    let (code, answer) = svc.api(
        "PUT",
        &format!("/v1/jobs/{dropped}/state"),
        Some(&json!({"action": "RESUME"})),
    );
    assert_eq!(
        (code, code_of(&answer).as_str()),
        (409, "invalid_job_state"),
        "{answer}"
    );
    let (code, _) = svc.api("DELETE", &format!("/v1/jobs/{dropped}"), None);
    assert_eq!(code, 204);
    svc.stop("-TERM");
    svc.restart();
    let after: Vec<Value> = listed(&svc);
    assert_eq!(after, before[..1], "the deleted job came back");
    // Retention: with one second, the ACKNOWLEDGED job is gone, now and after a restart.
    svc.stop("-TERM");
    svc.extra = vec!["--job-retention".into(), "1s".into()];
    svc.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listed(&svc).is_empty() {
        assert!(
            Instant::now() < deadline,
            "still listed: {:?}",
            listed(&svc)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, _) = svc.api("GET", &format!("/v1/jobs/{done}"), None);
    assert_eq!(code, 404);
    svc.stop("-TERM");
    svc.extra.clear();
    svc.restart();
    let remaining = listed(&svc);
    assert!(remaining.is_empty(), "{remaining:?}");
}

/// Issue 22, item 9, while the job runs: a job of a caller who is not an administrator, to a host
/// `--job-allow` lets it reach (127.0.0.2, standing for a public address), that redirects to one it may
/// not (127.0.0.1, standing for what only the service reaches), ends in ERROR `refused_by_policy` saying
/// no more, and the internal server sees no connection. An administrator's job follows the redirect.
#[test]
fn a_redirect_does_not_lead_the_jobs_of_callers_who_are_not_administrators_off_policy() {
    if !have("curl") {
        return;
    }
    let secret = crate::support::pattern(4096, 36);
    let served = secret.clone();
    let internal = HostileOrigin::start(move |asked| {
        Reply::serve(asked, &served, &[("ETag", "\"in\"".to_owned())])
    });
    let port = redirecting_origin([127, 0, 0, 2], internal.url("secret"));
    let url = format!("http://127.0.0.2:{port}/public");
    let admin = Admin::start(false, &["--job-allow", "127.0.0.2"]);
    for (name, password, groups) in [
        ("admin", "admin-pw-1", vec!["BA"]),
        ("alice", "alice-pw-1", vec![]),
    ] {
        let body = json!({"password": password, "groups": groups});
        let (code, answer) = admin
            .svc
            .api("PUT", &format!("/v1/users/{name}"), Some(&body));
        assert_eq!(code, 200, "{answer}");
    }
    let (base, ca) = (admin.base(), admin.ca_file.to_str().unwrap().to_owned());
    let as_user = |user: &str, body: &Value| {
        let creds = format!("{user}:{user}-pw-1");
        let (code, answer) = api_over(
            &["--cacert", &ca, "-u", &creds],
            &base,
            "POST",
            "/v1/jobs",
            Some(body),
        );
        assert_eq!(code, 201, "{answer}");
        id_of(&serde_json::from_str(&answer).unwrap())
    };
    let job = |local: &str| json!({"display_name": "redirected", "files": [{"remote_url": url, "local_file": local}]});
    let svc = &admin.svc;
    let alices = as_user("alice", &job("a.bin"));
    poll(svc, &alices, Duration::from_secs(30), |j| {
        j["state"] == "ERROR" || j["state"] == "TRANSFERRED"
    });
    let error = svc.bcs_json(&["job", "error", &alices]);
    assert_eq!(
        (error["code"].as_str(), error["message"].as_str()),
        (Some("refused_by_policy"), Some("refused by policy")),
        "{error}"
    );
    assert!(internal.asked().is_empty(), "{:?}", internal.asked());
    let admins = as_user("admin", &job("b.bin"));
    let done = poll(svc, &admins, Duration::from_secs(30), |j| {
        j["state"] == "ERROR" || j["state"] == "TRANSFERRED"
    });
    assert_eq!(done["state"], "TRANSFERRED", "{done}");
    assert!(!internal.asked().is_empty());
}

// SECURITY: a caller who is not an administrator owns at most 60 jobs (BITS's MaxJobsPerUser), also when
// the calls come at once: creations checked side by side must not all count the same jobs.
#[test]
fn a_caller_who_is_not_an_administrator_cannot_pass_the_job_cap_with_calls_at_once() {
    if !have("curl") {
        return;
    }
    // `localhost` is looked up, so each call waits between its first check and its job.
    let admin = Admin::start(false, &["--job-allow", "localhost"]);
    for (name, groups) in [("admin", vec!["BA"]), ("alice", vec![])] {
        let body = json!({"password": format!("{name}-pw-1"), "groups": groups});
        let (code, answer) = admin
            .svc
            .api("PUT", &format!("/v1/users/{name}"), Some(&body));
        assert_eq!(code, 200, "{answer}");
    }
    let (base, ca) = (admin.base(), admin.ca_file.to_str().unwrap().to_owned());
    let job = |n: usize| {
        json!({"display_name": format!("j{n}"), "suspended": true,
               "files": [{"remote_url": "http://localhost:9/a", "local_file": format!("j{n}.bin")}]})
    };
    // 4 callers at once, 20 calls each: 80 attempts for 60 places.
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let callers: Vec<_> = (0..4)
            .map(|t| {
                let (base, ca, job) = (&base, &ca, &job);
                s.spawn(move || {
                    (0..20)
                        .map(|i| {
                            let how = ["--cacert", ca.as_str(), "-u", "alice:alice-pw-1"];
                            api_over(&how, base, "POST", "/v1/jobs", Some(&job(t * 20 + i)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        callers
            .into_iter()
            .flat_map(|c| c.join().unwrap())
            .collect()
    });
    let created = answers.iter().filter(|(code, _)| *code == 201).count();
    for (code, body) in &answers {
        assert!(
            *code == 201 || (*code == 400 && code_of(body) == "too_many_jobs"),
            "{code} {body}"
        );
    }
    assert_eq!(created, 60, "every place is taken, and no more");
    let how = ["--cacert", ca.as_str(), "-u", "alice:alice-pw-1"];
    let (code, listed) = api_over(&how, &base, "GET", "/v1/jobs", None);
    assert_eq!(code, 200, "{listed}");
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 60);
}
