//! `bcs download` as a user runs it, against `bcs host` and nginx on 127.0.0.1; and `Repr-Digest` as the
//! server sends it (curl) and as the download checks it (a relay that corrupts one byte).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::cli::{spawn_host, Running, BCS};
use crate::jobs::{Kind, Origin};
use crate::support::{curl, have, pattern, run, write_file};

/// How long any wait in these tests may take.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// `bcs download ARGS` with its state in `state`, bounded by `timeout`.
pub(crate) fn download(state: &Path, args: &[&str]) -> Output {
    download_limited(state, args, None)
}

/// The same under a file size limit (RLIMIT_FSIZE, through util-linux's prlimit).
fn download_limited(state: &Path, args: &[&str], fsize: Option<u64>) -> Output {
    let mut cmd = match fsize {
        Some(bytes) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--fsize={bytes}")).arg("--").arg("timeout");
            c
        }
        None => Command::new("timeout"),
    };
    cmd.args(["120", BCS, "download"])
        .args(args)
        .env("BCS_STATE", state)
        .env("HOME", state)
        .env_remove("BCS_LOG")
        .output()
        .unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// What `openssl dgst -sha256 -binary FILE | base64` prints.
fn openssl_digest(file: &Path) -> String {
    let out = run(
        "sh",
        &[
            "-c",
            &format!("openssl dgst -sha256 -binary '{}' | base64", file.display()),
        ],
    );
    assert!(out.status.success());
    text(&out.stdout).trim().to_owned()
}

/// HEAD through curl: (ETag, Repr-Digest).
fn head(url: &str) -> (String, Option<String>) {
    let reply = curl(&["-sI", url]);
    let etag = reply.header("etag").expect("an ETag").to_owned();
    (etag, reply.header("repr-digest").map(str::to_owned))
}

fn wait_until<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// No job is left behind in the state directory once a download succeeded.
pub(crate) fn no_jobs_left(state: &Path) {
    let jobs = state.join("download-jobs");
    let left: Vec<_> = std::fs::read_dir(&jobs)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn repr_digest_is_the_files_sha256_and_never_stale() {
    if !have("curl") || !have("openssl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "a.bin", &pattern(300_000, 1));
    let (host, port) = spawn_host("http", "d", &[], &[&file]);
    let url = format!("http://127.0.0.1:{port}/d/a.bin");
    let want = format!("sha-256=:{}:", openssl_digest(&file));
    let (old_etag, digest) = wait_until("a digest", || match head(&url) {
        (etag, Some(d)) => Some((etag, d)),
        _ => None,
    });
    assert_eq!(digest, want);
    // A 206 carries the digest of the whole representation too.
    let ranged = curl(&["-s", "-D", "-", "-o", "/dev/null", "-r", "10-19", &url]);
    assert_eq!(ranged.status, 206);
    assert_eq!(ranged.header("repr-digest"), Some(want.as_str()));
    // A new version (another length, so another ETag whatever the clock): never with the old digest.
    std::fs::write(&file, pattern(200_000, 2)).unwrap();
    let new = format!("sha-256=:{}:", openssl_digest(&file));
    let mut seen = Vec::new();
    wait_until("the new version's digest", || {
        let (etag, digest) = head(&url);
        if etag != old_etag {
            assert_ne!(digest.as_deref(), Some(want.as_str()), "a stale digest");
        }
        seen.push((etag, digest.clone()));
        (digest.as_deref() == Some(new.as_str())).then_some(())
    });
    drop(host);
}

#[test]
fn download_from_bcs_host_is_identical_and_leaves_no_job() {
    if !have("curl") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let content = pattern(1_500_000, 3);
    let file = write_file(src.path(), "b.bin", &content);
    let (_host, port) = spawn_host("http", "d", &[], &[&file]);
    let url = format!("http://127.0.0.1:{port}/d/b.bin");
    // Wait for the digest, so that the download below is checked against it.
    wait_until("a digest", || head(&url).1);
    let dest = out.path().to_str().unwrap();
    let done = download(state.path(), &["--json", "-d", dest, &url]);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    assert_eq!(std::fs::read(out.path().join("b.bin")).unwrap(), content);
    let stdout = text(&done.stdout);
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("JSON lines")).unwrap();
    assert_eq!(last["event"], "saved", "{stdout}");
    assert_eq!(last["bytes"], content.len());
    assert!(stdout.contains(r#""state":"TRANSFERRED""#), "{stdout}");
    assert!(
        stdout.contains(r#"{"error":null,"event":"end","state":"ACKNOWLEDGED"}"#),
        "{stdout}"
    );
    no_jobs_left(state.path());
}

#[test]
fn download_from_nginx_is_identical() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let content = pattern(1_200_000, 4);
    write_file(src.path(), "n.bin", &content);
    let Some(nginx) = Origin::start(Kind::Nginx, src.path()) else {
        eprintln!("skipped: no nginx");
        return;
    };
    let url = format!("http://127.0.0.1:{}/{}", nginx.port, nginx.path("n.bin"));
    let dest = out.path().join("copy.bin");
    let done = download(state.path(), &["-o", dest.to_str().unwrap(), &url]);
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), content);
    assert!(
        text(&done.stdout).starts_with("Saved "),
        "{}",
        text(&done.stdout)
    );
    no_jobs_left(state.path());
}

/// (status, bytes) of each access-log line for GET `path` in a `bcs host`'s stderr.
fn gets(log: &str, path: &str) -> Vec<(u16, u64)> {
    let field = |line: &str, name: &str| -> Option<u64> {
        let rest = line.split(&format!(" {name}=")).nth(1)?;
        rest.split(' ').next()?.parse().ok()
    };
    log.lines()
        .filter(|l| l.contains("bits_compact::access") && l.contains("method=GET"))
        .filter(|l| l.contains(&format!("url={path} ")))
        .filter_map(|l| Some((u16::try_from(field(l, "status")?).ok()?, field(l, "bytes")?)))
        .collect()
}

#[test]
fn a_killed_download_resumes_from_the_bytes_on_disk() {
    const SIZE: usize = 3 << 20;
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let content = pattern(SIZE, 5);
    let file = write_file(src.path(), "slow.bin", &content);
    // 3 MiB at 256 KiB/s: 12 s, time enough to kill it half-way.
    let (host, port) = spawn_host("http", "d", &["--rate", "256KiB/s"], &[&file]);
    let url = format!("http://127.0.0.1:{port}/d/slow.bin");
    let dest = out.path().join("slow.bin");
    let args = ["download", "-o", dest.to_str().unwrap(), &url];
    let state_env = state.path().to_str().unwrap();
    let first = Running::spawn_with_env(Path::new(BCS), &args, &[("BCS_STATE", state_env)]);
    let part = out.path().join(".slow.bin.bcs-part");
    let size = |p: &PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    wait_until("half a MiB on disk", || {
        (size(&part) >= 512 << 10).then_some(())
    });
    let (code, _) = first.stop("-KILL");
    assert_eq!(code, None, "killed by a signal");
    let kept = size(&part);
    assert!(kept < SIZE as u64, "{kept}");
    assert!(!dest.exists());
    // The same command again.
    let again = download(state.path(), &args[1..]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(std::fs::read(&dest).unwrap(), content);
    assert!(!part.exists());
    no_jobs_left(state.path());
    let (_, log) = host.stop("-TERM");
    let gets = gets(&log, "/d/slow.bin");
    // The resumed request asked for exactly the bytes that were not on disk.
    assert_eq!(
        gets.last(),
        Some(&(206, SIZE as u64 - kept)),
        "GETs (status, bytes): {gets:?}"
    );
}

#[test]
fn a_missing_file_fails_naming_the_remote_file() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let file = write_file(src.path(), "here.bin", b"x");
    let (_host, port) = spawn_host("http", "d", &[], &[&file]);
    let url = format!("http://127.0.0.1:{port}/d/gone.bin");
    let args = ["--json", "-d", out.path().to_str().unwrap(), &url];
    let failed = download(state.path(), &args);
    let stderr = text(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("download failed: RemoteFile http_404"),
        "{stderr}"
    );
    let stdout = text(&failed.stdout);
    let end: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(end["state"], "ERROR", "{stdout}");
    assert_eq!(end["error"]["context"], "REMOTE_FILE", "{stdout}");
    assert_eq!(end["error"]["code"], "http_404", "{stdout}");
    assert!(!out.path().join("gone.bin").exists());
    // The job is kept, and the same command tries it again (failing the same way).
    let again = download(state.path(), &args);
    assert_eq!(again.status.code(), Some(1));
    // -o naming a directory is a usage error.
    let usage = download(state.path(), &["-o", out.path().to_str().unwrap(), &url]);
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage.stderr));
}

#[test]
fn a_full_disk_fails_and_puts_no_file_in_place() {
    if !have("prlimit") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let file = write_file(src.path(), "big.bin", &pattern(2 << 20, 6));
    let (_host, port) = spawn_host("http", "d", &[], &[&file]);
    let url = format!("http://127.0.0.1:{port}/d/big.bin");
    let dest = out.path().to_str().unwrap();
    let failed = download_limited(state.path(), &["-d", dest, &url], Some(1 << 20));
    let stderr = text(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("LocalFile local_io"), "{stderr}");
    assert!(!out.path().join("big.bin").exists());
}

/// A relay to `upstream` that flips one byte of every response body longer than 1000 bytes, and passes
/// the headers (Repr-Digest included) on untouched. One request per connection, as the job client does.
fn corrupting_relay(upstream: u16) -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            std::thread::spawn(move || relay_one(client, upstream));
        }
    });
    port
}

fn relay_one(mut client: TcpStream, upstream: u16) {
    let Ok(mut server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)) else {
        return;
    };
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = c_in.read(&mut buf) {
            if s_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let mut flipped = false;
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = server.read(&mut buf) {
        let start = seen.len();
        seen.extend_from_slice(&buf[..n]);
        let body_at = seen
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4);
        if let Some(target) = body_at.map(|b| b + 1000) {
            if !flipped && (start..seen.len()).contains(&target) {
                buf[target - start] ^= 0xff;
                flipped = true;
            }
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
}

#[test]
fn a_body_that_does_not_match_its_digest_is_an_error() {
    if !have("curl") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let file = write_file(src.path(), "c.bin", &pattern(100_000, 7));
    let (_host, port) = spawn_host("http", "d", &[], &[&file]);
    wait_until("a digest", || {
        head(&format!("http://127.0.0.1:{port}/d/c.bin")).1
    });
    let relay = corrupting_relay(port);
    let url = format!("http://127.0.0.1:{relay}/d/c.bin");
    let failed = download(state.path(), &["-d", out.path().to_str().unwrap(), &url]);
    let stderr = text(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ServerResponse digest_mismatch"),
        "{stderr}"
    );
    assert!(!out.path().join("c.bin").exists());
}

#[test]
fn ctrl_c_suspends_with_status_130_and_the_same_command_resumes() {
    const SIZE: usize = 2 << 20;
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let content = pattern(SIZE, 8);
    let file = write_file(src.path(), "int.bin", &content);
    let (host, port) = spawn_host("http", "d", &["--rate", "256KiB/s"], &[&file]);
    let url = format!("http://127.0.0.1:{port}/d/int.bin");
    let dir = out.path().to_str().unwrap();
    let args = ["download", "-d", dir, &url];
    let state_env = state.path().to_str().unwrap();
    let first = Running::spawn_with_env(Path::new(BCS), &args, &[("BCS_STATE", state_env)]);
    let part = out.path().join(".int.bin.bcs-part");
    let size = |p: &PathBuf| std::fs::metadata(p).map_or(0, |m| m.len());
    wait_until("bytes on disk", || (size(&part) >= 256 << 10).then_some(()));
    // The same command while it runs is refused: two runs never share the job.
    let twice = download(state.path(), &args[1..]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        text(&twice.stderr).contains("already running"),
        "{}",
        text(&twice.stderr)
    );
    let (code, stderr) = first.stop("-INT");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    // Suspended: nothing more is written once it has exited.
    let kept = size(&part);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(size(&part), kept);
    let again = download(state.path(), &args[1..]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(std::fs::read(out.path().join("int.bin")).unwrap(), content);
    no_jobs_left(state.path());
    let (_, log) = host.stop("-TERM");
    let gets = gets(&log, "/d/int.bin");
    assert_eq!(gets.last(), Some(&(206, SIZE as u64 - kept)), "{gets:?}");
}

#[test]
fn rate_holds_the_download_to_its_bandwidth() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let content = pattern(1 << 20, 9);
    let file = write_file(src.path(), "r.bin", &content);
    let (_host, port) = spawn_host("http", "d", &[], &[&file]);
    let url = format!("http://127.0.0.1:{port}/d/r.bin");
    let dest = out.path().to_str().unwrap();
    let start = Instant::now();
    let done = download(state.path(), &["--rate", "512KiB/s", "-d", dest, &url]);
    let took = start.elapsed();
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    assert_eq!(std::fs::read(out.path().join("r.bin")).unwrap(), content);
    // 1 MiB at 512 KiB/s: 2 s, less the first piece, which is not waited for.
    assert!(took >= Duration::from_millis(1800), "{took:?}");
}

/// `bcs download` with the client options: `--pin` (as `bcs host` prints it) for a self-signed https
/// host, `--user` with Basic over TLS (password from BCS_PASSWORD; a wrong one fails with 401), and
/// `--user --ntlm` against an NTLM group; a wrong pin fails before any byte is written.
#[test]
fn download_with_a_pin_basic_and_ntlm_credentials() {
    if !have("curl") {
        return;
    }
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let content = pattern(400_000, 9);
    let file = write_file(src.path(), "c.bin", &content);
    let users = src.path().join("users.toml");
    let mut add = Command::new(BCS);
    add.args(["user", "add", "carol", "--users", users.to_str().unwrap()]);
    let added = crate::support::with_stdin(&mut add, "carols-password");
    assert!(added.status.success(), "{}", text(&added.stderr));
    let users = users.to_str().unwrap();

    let port = crate::support::free_port();
    let prefix = format!("https://+:{port}/p/");
    let args = [
        "host",
        "--bind",
        "127.0.0.1",
        "--url",
        &prefix,
        "--auth",
        "basic",
    ];
    let https = Running::spawn(
        Path::new(BCS),
        &[&args[..], &["--users", users, file.to_str().unwrap()]].concat(),
    );
    let printed = https.lines_until("Press Ctrl-C");
    let pin = printed
        .iter()
        .find(|l| l.contains("--pinnedpubkey"))
        .and_then(|l| l.split('\'').nth(1))
        .expect("bcs host prints a pin")
        .to_owned();
    let url = format!("https://127.0.0.1:{port}/p/c.bin");
    let with = |password: &str, extra: &[&str], dest: &str| {
        let mut cmd = Command::new("timeout");
        cmd.args(["120", BCS, "download", "-o", dest, "--pin", &pin])
            .args(extra)
            .arg(&url)
            .env("BCS_STATE", state.path())
            .env("HOME", state.path())
            .env("BCS_PASSWORD", password)
            .env_remove("BCS_LOG");
        cmd.output().unwrap()
    };
    let good = out.path().join("good.bin");
    let done = with(
        "carols-password",
        &["--user", "carol"],
        good.to_str().unwrap(),
    );
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    assert!(
        std::fs::read(&good).unwrap() == content,
        "not byte-identical"
    );
    let wrong = out.path().join("wrong.bin");
    let failed = with("not-it", &["--user", "carol"], wrong.to_str().unwrap());
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        text(&failed.stderr).contains("http_401"),
        "{}",
        text(&failed.stderr)
    );
    assert!(!wrong.exists());
    let bad_pin = out.path().join("badpin.bin");
    let mut cmd = Command::new("timeout");
    cmd.args(["120", BCS, "download", "-o", bad_pin.to_str().unwrap()])
        .args([
            "--pin",
            "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            &url,
        ])
        .env("BCS_STATE", state.path())
        .env("HOME", state.path())
        .env_remove("BCS_LOG");
    let refused = cmd.output().unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(!bad_pin.exists());
    drop(https);

    let (_ntlm, port) = spawn_host("http", "n", &["--auth", "ntlm", "--users", users], &[&file]);
    let url = format!("http://127.0.0.1:{port}/n/c.bin");
    let dest = out.path().join("ntlm.bin");
    let mut cmd = Command::new("timeout");
    cmd.args([
        "120",
        BCS,
        "download",
        "-o",
        dest.to_str().unwrap(),
        "--user",
        "carol",
        "--ntlm",
        &url,
    ])
    .env("BCS_STATE", state.path())
    .env("HOME", state.path())
    .env("BCS_PASSWORD", "carols-password")
    .env_remove("BCS_LOG");
    let done = cmd.output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    assert!(
        std::fs::read(&dest).unwrap() == content,
        "not byte-identical over NTLM"
    );
}

/// Without GSS-API built in, `--negotiate` is refused with the reason, before anything is fetched or kept.
#[cfg(not(feature = "negotiate"))]
#[test]
fn negotiate_without_the_feature_says_so() {
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("x.bin");
    let refused = download(
        state.path(),
        &[
            "--negotiate",
            "-o",
            dest.to_str().unwrap(),
            "http://127.0.0.1:9/x.bin",
        ],
    );
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("built without the negotiate feature"),
        "{stderr}"
    );
    assert!(!state.path().join("download-jobs").exists());
}

/// Two `bcs download` of one destination started at once: exactly one runs (the other says the same
/// download is already running), in each of three rounds, and the file is whole.
#[test]
fn two_downloads_to_one_destination_at_once_run_one() {
    let src = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let content = pattern(256 << 10, 12);
    let file = write_file(src.path(), "twice.bin", &content);
    let (_host, port) = spawn_host("http", "d", &["--rate", "512KiB/s"], &[&file]);
    let url = format!("http://127.0.0.1:{port}/d/twice.bin");
    let dest = out.path().join("twice.bin");
    let args = ["download", "-o", dest.to_str().unwrap(), &url];
    let state_env = state.path().to_str().unwrap();
    for round in 0..3 {
        let runs: Vec<_> = (0..2)
            .map(|_| Running::spawn_with_env(Path::new(BCS), &args, &[("BCS_STATE", state_env)]))
            .collect();
        let ends: Vec<_> = runs.into_iter().map(Running::exited).collect();
        let ok = ends.iter().filter(|(code, _)| *code == Some(0)).count();
        let busy = ends
            .iter()
            .filter(|(code, err)| *code == Some(1) && err.contains("already running"))
            .count();
        assert_eq!((ok, busy), (1, 1), "round {round}: {ends:?}");
        assert!(std::fs::read(&dest).unwrap() == content, "round {round}");
        no_jobs_left(state.path());
    }
}

/// SECURITY: a file name decoded from the URL (or any text from a server) never reaches the terminal
/// with its control characters: ESC and BEL are printed as `\u{..}` escapes, in the "Saved" line and in
/// errors alike.
#[test]
fn control_characters_in_names_are_escaped_when_printed() {
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e1\"\r\nConnection: close\r\n\r\n";
    let (port, _) = crate::support::scripted_server(vec![
        head.to_owned(),
        format!("{head}hello"),
        head.to_owned(),
    ]);
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let hostile = "%1b%5d0%3bpwned%07%1b%5b2J.bin";
    let raw_name = "\x1b]0;pwned\x07\x1b[2J.bin";
    let dir = out.path().to_str().unwrap();
    let url = format!("http://127.0.0.1:{port}/{hostile}");
    let saved = download(state.path(), &["-d", dir, &url]);
    let (stdout, stderr) = (text(&saved.stdout), text(&saved.stderr));
    assert_eq!(saved.status.code(), Some(0), "{stderr:?}");
    assert_eq!(std::fs::read(out.path().join(raw_name)).unwrap(), b"hello");
    assert!(stdout.contains("Saved "), "{stdout:?}");
    for printed in [&stdout, &stderr] {
        assert!(!printed.contains(['\x1b', '\x07']), "{printed:?}");
    }
    assert!(stdout.contains("\\u{1b}]0;pwned\\u{7}"), "{stdout:?}");
    // An error naming such a file.
    let (missing, _) = crate::support::scripted_server(vec![
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    ]);
    let url = format!("http://127.0.0.1:{missing}/{hostile}");
    let failed = download(state.path(), &["-d", dir, &url]);
    let stderr = text(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr:?}");
    assert!(stderr.contains("http_404"), "{stderr:?}");
    assert!(!stderr.contains(['\x1b', '\x07']), "{stderr:?}");
    assert!(stderr.contains("\\u{1b}"), "{stderr:?}");
}
