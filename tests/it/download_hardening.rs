//! `bcs download` against a malicious origin (the hostile origin of `job_hardening`: a strong ETag over
//! two versions, an encoded body, a server that ignores ranges and stalls, 401s) and at the edges an
//! administrator meets: file modes under the umask, what a failure leaves, `--list` and `--forget`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::cli::BCS;
use crate::download::{download, no_jobs_left, text, PATIENCE};
use crate::job_hardening::{two_faced_origin, Asked, HostileOrigin, Reply, Then};
use crate::support::pattern;

/// `bcs download ARGS` under `umask`, with its state in `state`.
fn download_with_umask(state: &Path, umask: &str, args: &[&str]) -> Output {
    Command::new("sh")
        .args([
            "-c",
            "umask \"$0\" && exec \"$@\"",
            umask,
            "timeout",
            "120",
            BCS,
            "download",
        ])
        .args(args)
        .env("BCS_STATE", state)
        .env("HOME", state)
        .env_remove("BCS_LOG")
        .output()
        .unwrap()
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Issue 22.7 through `bcs download`: an origin that keeps its strong ETag but serves version A for the
/// first GET (broken off half-way) and Z after, without a digest: the download ends with Z, whole (before:
/// half of A and the rest of Z, saved as one file).
#[test]
fn a_resumed_download_never_mixes_two_versions() {
    let (origin, z) = two_faced_origin(256 * 1024);
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dest = out.path().join("mixed.bin");
    let done = download(
        state.path(),
        &["-o", dest.to_str().unwrap(), &origin.url("mixed.bin")],
    );
    assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
    assert!(std::fs::read(&dest).unwrap() == z, "not version Z, whole");
    no_jobs_left(state.path());
}

/// Issue 22.8 through `bcs download`: a gzip body in answer to `Accept-Encoding: identity` fails with
/// `content_encoding` and leaves nothing: no file, no temporary, no kept job (before: the compressed
/// bytes were saved as the file).
#[test]
fn an_encoded_body_fails_and_leaves_nothing() {
    let compressed = pattern(331, 42);
    let origin = HostileOrigin::start(move |asked: &Asked| {
        let mut headers = vec![("ETag", "\"gz\"".to_owned())];
        if asked.method == "GET" {
            headers.push(("Content-Encoding", "gzip".to_owned()));
        }
        Reply::serve(asked, &compressed, &headers)
    });
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let failed = download(state.path(), &["-d", dir, &origin.url("page.html")]);
    let stderr = text(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ServerResponse content_encoding"),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    no_jobs_left(state.path());
}

/// Issue 22.11: a server that ignores ranges and stalls after a part of the body each time. `bcs download
/// --stall-time 1` stops each stalled transfer and, on the next, keeps the bytes it holds (the server's
/// re-sent first bytes are compared with them) rather than emptying its temporary and starting over
/// (before: the temporary fell back to zero after each stall). The temporary stays 0600 meanwhile; the
/// file then gets 0644 under umask 022 (issue 23.4).
#[test]
fn a_download_that_stalls_resumes_from_the_bytes_held() {
    const CHUNK: usize = 64 * 1024;
    let content = pattern(3 * CHUNK, 43);
    let served = content.clone();
    let origin = HostileOrigin::start(move |asked: &Asked| {
        let whole = Asked {
            range: None,
            ..asked.clone()
        };
        let mut reply = Reply::serve(&whole, &served, &[("ETag", "\"drip\"".to_owned())]);
        if asked.method == "GET" {
            let sent = ((asked.gets_before + 1) * CHUNK).min(served.len());
            reply.body.truncate(sent);
            reply.pause = Duration::from_millis(400);
            if sent < served.len() {
                reply.then = Then::Stall;
            }
        }
        reply
    });
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dest = out.path().join("drip.bin");
    let part = out.path().join(".drip.bin.bcs-part");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (part, done) = (part.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut sizes, mut modes) = (Vec::new(), Vec::new());
            let deadline = Instant::now() + PATIENCE;
            while !done.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                if let Ok(m) = std::fs::symlink_metadata(&part) {
                    use std::os::unix::fs::PermissionsExt;
                    sizes.push(m.len());
                    modes.push(m.permissions().mode() & 0o777);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (sizes, modes)
        })
    };
    let args = [
        "--stall-time",
        "1",
        "-o",
        dest.to_str().unwrap(),
        &origin.url("drip.bin"),
    ];
    let finished = download_with_umask(state.path(), "022", &args);
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (sizes, modes) = watcher.join().unwrap();
    let stderr = text(&finished.stderr);
    assert_eq!(finished.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("Transport stalled"), "{stderr}");
    assert!(
        std::fs::read(&dest).unwrap() == content,
        "not byte-identical"
    );
    let shrank = sizes.windows(2).find(|w| w[1] < w[0]);
    assert_eq!(
        shrank,
        None,
        "the temporary shrank ({} sizes seen)",
        sizes.len()
    );
    assert!(
        sizes.iter().any(|&s| s >= CHUNK as u64),
        "never held a chunk"
    );
    let private = modes.iter().all(|&m| m == 0o600);
    assert!(private, "the temporary was not 0600: {:?}", modes.first());
    assert_eq!(mode_of(&dest), 0o644);
    no_jobs_left(state.path());
}

/// Issue 23.4: new files follow the umask, as curl's and wget's do (0644 under 022, 0640 under 027); a
/// file downloaded over an existing one keeps that file's mode, less any setuid bit (before: 0600
/// always, and an existing 0644 file became 0600).
#[test]
fn downloaded_files_follow_the_umask_or_keep_the_mode_they_replace() {
    use std::os::unix::fs::PermissionsExt;
    let content = pattern(10_000, 44);
    let served = content.clone();
    let origin = HostileOrigin::start(move |asked: &Asked| {
        Reply::serve(asked, &served, &[("ETag", "\"m\"".to_owned())])
    });
    let url = origin.url("m.bin");
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    for (umask, existing, expected) in [
        ("022", None, 0o644),
        ("027", None, 0o640),
        ("077", None, 0o600),
        ("077", Some(0o644), 0o644),
        ("022", Some(0o604), 0o604),
        ("022", Some(0o4755), 0o755),
    ] {
        let dest = out.path().join(format!("m-{umask}-{existing:?}.bin"));
        if let Some(mode) = existing {
            std::fs::write(&dest, b"old").unwrap();
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let done = download_with_umask(state.path(), umask, &["-o", dest.to_str().unwrap(), &url]);
        assert_eq!(done.status.code(), Some(0), "{}", text(&done.stderr));
        assert!(std::fs::read(&dest).unwrap() == content);
        assert_eq!(mode_of(&dest), expected, "umask {umask}, over {existing:?}");
    }
}

/// Issue 23.5: a download that failed before its first byte (a 404) leaves nothing: no temporary, no kept
/// job. One that holds bytes is kept: `--list` shows it (id, state, bytes held, URL and destination,
/// also as JSON), and `--forget DEST` or `--forget ID` discards it, temporary and all.
#[test]
fn a_failure_before_any_byte_leaves_nothing_and_kept_downloads_can_be_listed_and_forgotten() {
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = out.path().to_str().unwrap();
    let (missing, _) = crate::support::scripted_server(vec![
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    ]);
    let failed = download(
        state.path(),
        &["-d", dir, &format!("http://127.0.0.1:{missing}/gone.bin")],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    assert!(!out.path().join(".gone.bin.bcs-part").exists());
    no_jobs_left(state.path());
    let listed = download(state.path(), &["--list"]);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed.stderr));
    assert!(
        text(&listed.stdout).contains("No download is kept"),
        "{}",
        text(&listed.stdout)
    );

    // Half a file, then the server loses it: kept, with its bytes.
    const SIZE: usize = 128 * 1024;
    let content = pattern(SIZE, 45);
    let lost = move |asked: &Asked| {
        if asked.gets_before > 0 {
            return Reply::new(
                "404 Not Found",
                &[("Content-Length", "0".into())],
                Vec::new(),
            );
        }
        let mut reply = Reply::serve(asked, &content, &[("ETag", "\"h\"".to_owned())]);
        if asked.method == "GET" {
            reply.body.truncate(SIZE / 2);
            reply.then = Then::Close;
        }
        reply
    };
    let (first, second) = (
        HostileOrigin::start(lost.clone()),
        HostileOrigin::start(lost),
    );
    let dest = out.path().join("half.bin");
    let other = out.path().join("other.bin");
    for (origin, file) in [(&first, &dest), (&second, &other)] {
        let failed = download(
            state.path(),
            &["-o", file.to_str().unwrap(), &origin.url("half.bin")],
        );
        let stderr = text(&failed.stderr);
        assert_eq!(failed.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("http_404"), "{stderr}");
    }
    let part = out.path().join(".half.bin.bcs-part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), SIZE as u64 / 2);
    let listed = text(&download(state.path(), &["--list"]).stdout);
    assert!(listed.contains("64.0 KiB of 128.0 KiB held"), "{listed}");
    assert!(
        listed.contains(&format!("{} → {}", first.url("half.bin"), dest.display())),
        "{listed}"
    );
    let json = text(&download(state.path(), &["--list", "--json"]).stdout);
    let kept: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(kept.len(), 2, "{json}");
    assert_eq!(kept[0]["bytes_held"], SIZE / 2, "{json}");
    assert_eq!(kept[0]["state"], "ERROR", "{json}");
    // By destination (as -o names it), then by id.
    let forgot = download(state.path(), &["--forget", dest.to_str().unwrap()]);
    assert_eq!(forgot.status.code(), Some(0), "{}", text(&forgot.stderr));
    assert!(!part.exists(), "the temporary is gone");
    let id = kept[1]["id"].as_str().unwrap();
    let forgot = download(state.path(), &["--forget", id]);
    assert_eq!(forgot.status.code(), Some(0), "{}", text(&forgot.stderr));
    assert!(!out.path().join(".other.bin.bcs-part").exists());
    no_jobs_left(state.path());
    let again = download(state.path(), &["--forget", id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        text(&again.stderr).contains("no download is kept"),
        "{}",
        text(&again.stderr)
    );
}

/// Issue 23.6: a 401 says what the server asks for and the option that gives it ("the server asks for
/// NTLM or Negotiate: use --user NAME --ntlm, or --negotiate") when no credentials were given, and that
/// the server rejected those given otherwise.
#[test]
fn an_authentication_failure_says_what_to_do() {
    let origin = HostileOrigin::start(|_: &Asked| {
        Reply::new(
            "401 Unauthorized",
            &[
                ("WWW-Authenticate", "NTLM".into()),
                ("WWW-Authenticate", "Negotiate".into()),
                ("Content-Length", "0".into()),
            ],
            Vec::new(),
        )
    });
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let dest = out.path().join("secret.bin");
    let url = origin.url("secret.bin");
    let none = download(state.path(), &["-o", dest.to_str().unwrap(), &url]);
    let stderr = text(&none.stderr);
    assert_eq!(none.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("http_401"), "{stderr}");
    assert!(stderr.contains("none given"), "{stderr}");
    assert!(
        stderr.contains(
            "the server asks for NTLM or Negotiate: use --user NAME --ntlm, or --negotiate"
        ),
        "{stderr}"
    );
    let mut cmd = Command::new("timeout");
    cmd.args(["120", BCS, "download", "--user", "carol", "--ntlm", "-o"])
        .arg(&dest)
        .arg(&url)
        .env("BCS_STATE", state.path())
        .env("HOME", state.path())
        .env("BCS_PASSWORD", "not-it")
        .env_remove("BCS_LOG");
    let wrong = cmd.output().unwrap();
    let stderr = text(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("rejected the NTLM credentials"), "{stderr}");
    assert!(
        stderr.contains("check the user name and the password"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-it"), "{stderr}");
    no_jobs_left(state.path());
}
