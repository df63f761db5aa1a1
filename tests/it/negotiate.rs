//! Our Negotiate (Kerberos) initiator against `bcs host --auth negotiate` and a real MIT KDC: a download
//! job and `bcs download --negotiate` (byte-identical), no ticket (ERROR after the challenge, no retry),
//! a redirect to another origin (no token sent there), and a server whose mutual authentication is forged.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bits_compact::client::{ClientSettings, Credentials, ProxySetting};
use bits_compact::jobs::{
    part_path, Action, ErrorContext, JobEvent, JobId, JobManager, JobState, NewJob,
};

use crate::cli::{Running, BCS};
use crate::kdc::Kdc;
use crate::support::{free_port, pattern, scripted_server, write_file, Heads};

const PATIENCE: Duration = Duration::from_secs(60);

fn negotiate() -> ClientSettings {
    ClientSettings {
        proxy: ProxySetting::NoProxy,
        credentials: Some(Credentials::negotiate()),
        ..ClientSettings::default()
    }
}

/// A job for `url` → `dest`; the states it went through until one of `end` (bounded by PATIENCE).
async fn run_job(
    m: &JobManager,
    url: &str,
    dest: &Path,
    end: &[JobState],
) -> (JobId, Vec<JobState>) {
    let mut events = m.subscribe();
    let new = NewJob::new("negotiate")
        .file(url, dest)
        .minimum_retry_delay(Duration::from_secs(5))
        .client(negotiate());
    let id = m.create_job(new).await.unwrap().id;
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let job = m.job(id).unwrap();
        if end.contains(&job.state) {
            while let Ok(e) = events.try_recv() {
                if let JobEvent::State { id: i, state, .. } = e {
                    if i == id {
                        seen.push(state);
                    }
                }
            }
            return (id, seen);
        }
        assert!(
            Instant::now() < deadline,
            "job is {} ({:?}), expected {end:?}",
            job.state,
            job.error
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `bcs download ARGS --negotiate` with the realm's config and `cache` (none: an empty one), bounded.
fn download(kdc: &Kdc, state: &Path, cache: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["120", BCS, "download", "--negotiate"])
        .args(args)
        .env("BCS_STATE", state)
        .env("HOME", state)
        .env_remove("BCS_LOG");
    kdc.client_env(&mut cmd, cache).output().unwrap()
}

fn sent_a_token(heads: &Heads) -> bool {
    heads
        .lock()
        .unwrap()
        .iter()
        .any(|h| h.to_ascii_lowercase().contains("\nauthorization:"))
}

// The KRB5_* lock is a process-wide one held for the whole test, whose other holder is a synchronous
// test: no task of this runtime ever waits for it.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiate_jobs_and_bcs_download_against_bcs_host_and_a_real_kdc() {
    if !Kdc::available() {
        return;
    }
    let _env = crate::kdc::env_lock();
    let kdc = Kdc::start();
    let alice = kdc.kinit("alice", "alice-pw");
    let empty = kdc.dir.path().join("none.ccache");
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(700_000, 41);
    let file = write_file(dir.path(), "k.bin", &data);
    let port = free_port();
    let prefix = format!("http://+:{port}/K/");
    let (conf, keytab) = (kdc.krb5_conf(), kdc.keytab());
    let host = Running::spawn_with_env(
        Path::new(BCS),
        &[
            "host",
            "--bind",
            "127.0.0.1",
            "--auth",
            "negotiate",
            "--url",
            &prefix,
            "--keytab",
            keytab.to_str().unwrap(),
            "--sddl",
            "D:(A;;GR;;;AU)",
            file.to_str().unwrap(),
        ],
        &[
            ("KRB5_CONFIG", conf.to_str().unwrap()),
            ("KRB5RCACHEDIR", kdc.dir.path().to_str().unwrap()),
        ],
    );
    host.lines_until("Press Ctrl-C");
    // The service principal is HTTP/localhost: the URL names localhost.
    let url = format!("http://localhost:{port}/K/k.bin");

    // The in-process client's GSS-API reads these (the lock above keeps other tests off them).
    std::env::set_var("KRB5_CONFIG", &conf);
    std::env::set_var("KRB5CCNAME", format!("FILE:{}", alice.display()));
    let m = JobManager::builder().start().await.unwrap();
    let dest = dir.path().join("out/k.bin");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let (id, _) = run_job(&m, &url, &dest, &[JobState::Transferred, JobState::Error]).await;
    assert_eq!(
        m.job(id).unwrap().state,
        JobState::Transferred,
        "{:?}",
        m.error(id)
    );
    m.set_state(id, Action::Complete).await.unwrap();
    assert!(std::fs::read(&dest).unwrap() == data, "not byte-identical");

    // No ticket: ERROR after the challenge, at once, never TRANSIENT_ERROR and a retry.
    std::env::set_var("KRB5CCNAME", format!("FILE:{}", empty.display()));
    let none = dir.path().join("out/none.bin");
    let started = Instant::now();
    let (id, states) = run_job(&m, &url, &none, &[JobState::Error, JobState::Transferred]).await;
    let error = m.error(id).unwrap().expect("GetError");
    assert_eq!(m.job(id).unwrap().state, JobState::Error, "{error}");
    assert_eq!(
        (error.code.as_str(), error.context),
        ("negotiate_failed", ErrorContext::Transport),
        "{error}"
    );
    assert!(!states.contains(&JobState::TransientError), "{states:?}");
    assert_eq!(m.job(id).unwrap().transient_error_count, 0);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let written = std::fs::metadata(part_path(&none).unwrap()).map_or(0, |m| m.len());
    assert_eq!(written, 0);

    // SECURITY: Negotiate toward a redirect to another origin sends no token. The job's own origin
    // redirects to another port of the same host (the same service name, HTTP@localhost: without the
    // origin rule a ticket would be sent), which asks for Negotiate.
    std::env::set_var("KRB5CCNAME", format!("FILE:{}", alice.display()));
    let (other, other_heads) = scripted_server(vec![
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    ]);
    let (origin, origin_heads) = scripted_server(vec![format!(
        "HTTP/1.1 302 Found\r\nLocation: http://localhost:{other}/x.bin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )]);
    let redirected = dir.path().join("out/x.bin");
    let (id, _) = run_job(
        &m,
        &format!("http://localhost:{origin}/x.bin"),
        &redirected,
        &[JobState::Error, JobState::Transferred],
    )
    .await;
    let error = m.error(id).unwrap().expect("GetError");
    assert_eq!(error.code, "http_401", "{error}");
    assert!(
        !origin_heads.lock().unwrap().is_empty(),
        "the origin got no request"
    );
    assert!(
        !other_heads.lock().unwrap().is_empty(),
        "the redirect was not followed"
    );
    assert!(
        !sent_a_token(&other_heads),
        "a Negotiate token followed the redirect to another origin"
    );

    // The same origin asking for Negotiate does get a token, and a forged mutual-authentication token on
    // its final answer is refused rather than its body taken.
    let (forger, forger_heads) = scripted_server(vec![
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Negotiate\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
        "HTTP/1.1 200 OK\r\nWWW-Authenticate: Negotiate oQcwBaADCgEA\r\nContent-Length: 5\r\nConnection: close\r\n\r\nforged".into(),
    ]);
    let forged = dir.path().join("out/f.bin");
    let (id, _) = run_job(
        &m,
        &format!("http://localhost:{forger}/f.bin"),
        &forged,
        &[JobState::Error, JobState::Transferred],
    )
    .await;
    let error = m.error(id).unwrap().expect("GetError");
    assert_eq!(error.code, "negotiate_failed", "{error}");
    assert!(
        sent_a_token(&forger_heads),
        "the job's own origin got no token"
    );
    m.shutdown().await;

    // bcs download --negotiate: byte-identical with a ticket; without one, exit 1 naming the failure.
    let state = tempfile::tempdir().unwrap();
    let out = dir.path().join("cli.bin");
    let ok = download(
        &kdc,
        state.path(),
        Some(&alice),
        &["-o", out.to_str().unwrap(), &url],
    );
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == data, "not byte-identical");
    let out = dir.path().join("cli-none.bin");
    let refused = download(
        &kdc,
        state.path(),
        None,
        &["-o", out.to_str().unwrap(), &url],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("negotiate_failed"), "{stderr}");
    assert!(!out.exists());
    // The first job's requests, in the host's access log: one 401, then HEAD, GET and HEAD as alice,
    // all on the one connection the Negotiate exchange authenticated (one peer address and port).
    let (_, log) = host.stop("-TERM");
    let field = |line: &str, name: &str| -> String {
        let rest = line.split(&format!(" {name}=")).nth(1).unwrap_or_default();
        let value = rest.split(' ').next().unwrap_or_default();
        value.trim_matches('"').to_owned()
    };
    let first: Vec<_> = log
        .lines()
        .filter(|l| l.contains("bits_compact::access") && l.contains("url=/K/k.bin "))
        .take(4)
        .map(|l| {
            (
                field(l, "method"),
                field(l, "status"),
                field(l, "identity"),
                field(l, "peer"),
            )
        })
        .collect();
    let shape: Vec<_> = first
        .iter()
        .map(|(m, s, i, _)| (m.as_str(), s.as_str(), i.as_str()))
        .collect();
    let alice = format!("alice@{}", crate::kdc::REALM);
    assert_eq!(
        shape,
        [
            ("HEAD", "401", "-"),
            ("HEAD", "200", alice.as_str()),
            ("GET", "200", alice.as_str()),
            ("HEAD", "200", alice.as_str()),
        ],
        "{log}"
    );
    assert!(first.iter().all(|f| f.3 == first[0].3), "{first:?}");
}
