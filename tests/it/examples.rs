//! The library examples in `examples/`, run as their readers would run them: as programs on a free loopback
//! port, driven by real clients. `cargo test` builds them with the package (`cargo test --test it` alone
//! does not: run `cargo build --examples` first). Needs the `cli` feature for `Running` and for
//! `bcs user add`, which makes the NTLM example's principals file.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bits_compact::ServerCertificate;

use crate::auth::user_add;
use crate::cli::Running;
use crate::pki::Ca;
use crate::support::{
    curl, free_port, have, have_module, pattern, python, run, target_dir, write_file,
};

/// The built example, or a failure that says how to build it.
fn example(name: &str) -> PathBuf {
    let path = target_dir().join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built (cargo build --examples)",
        path.display()
    );
    path
}

#[test]
fn the_tls_example_serves_with_given_pem_files_or_a_self_signed_certificate() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("Example CA");
    let ca_file = ca.write(d, "ca.pem");
    let leaf = ca.server(d, "server", &["127.0.0.1"]);
    let file = write_file(d, "notes.txt", b"over tls");
    let (cert, key, file) = (
        leaf.cert.to_str().unwrap(),
        leaf.key.to_str().unwrap(),
        file.to_str().unwrap(),
    );

    let port = free_port();
    let prefix = format!("https://127.0.0.1:{port}/secure/");
    let running = Running::spawn(&example("tls_files"), &[&prefix, "--pem", cert, key, file]);
    let lines = running.lines_until("Ctrl-C");
    let url = format!("{prefix}notes.txt");
    assert_eq!(lines[0], url);
    let loaded = ServerCertificate::from_pem_files(cert, key).unwrap();
    let fingerprint = format!("SHA-256 fingerprint: {}", loaded.info().sha256_fingerprint);
    assert!(lines.contains(&fingerprint), "{lines:?}");
    let ca_arg = ca_file.to_str().unwrap();
    assert_eq!(curl(&["--cacert", ca_arg, &url]).body, b"over tls");
    // Verified against the test CA, not accepted blindly: without it curl refuses the certificate.
    assert!(!run("curl", &["-s", &url]).status.success());
    let (code, stderr) = running.stop("-TERM");
    assert_eq!(code, Some(0), "{stderr}");

    // No --pem: a self-signed certificate, which curl accepts by the printed pin.
    let port = free_port();
    let prefix = format!("https://127.0.0.1:{port}/secure/");
    let running = Running::spawn(&example("tls_files"), &[&prefix, file]);
    let lines = running.lines_until("Ctrl-C");
    assert!(
        lines.contains(&"certificate: CN=127.0.0.1".to_owned()),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("SHA-256 fingerprint: ")));
    let pin = lines
        .iter()
        .find_map(|l| l.strip_prefix("curl --pinnedpubkey '"))
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no pin in {lines:?}"));
    let url = format!("{prefix}notes.txt");
    assert_eq!(curl(&["-k", "--pinnedpubkey", pin, &url]).body, b"over tls");
    let (code, stderr) = running.stop("-INT");
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn the_ntlm_example_admits_signed_in_users_but_the_denied_one() {
    if !have("python3") || !have_module("requests_ntlm") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let users = d.join("users.toml");
    user_add(&users, "alice", "alice-RIGHT", &[]);
    user_add(&users, "bob", "bob-RIGHT", &[]);
    let file = write_file(d, "plan.txt", b"team plan");
    let port = free_port();
    let prefix = format!("http://127.0.0.1:{port}/team/");
    let args = [
        prefix.as_str(),
        users.to_str().unwrap(),
        "bob",
        file.to_str().unwrap(),
    ];
    let running = Running::spawn(&example("ntlm_sddl"), &args);
    let lines = running.lines_until("Ctrl-C");
    let (all, except_bob) = (
        format!("{prefix}all/plan.txt"),
        format!("{prefix}except-bob/plan.txt"),
    );
    assert_eq!(lines[..2], [all.clone(), except_bob.clone()]);

    // One line per URL: alice's body and status, bob's status, a wrong password's, and an anonymous
    // caller's status with the challenges it gets.
    let script = format!(
        r#"
import requests
from requests_ntlm import HttpNtlmAuth
for url in ["{all}", "{except_bob}"]:
    alice = requests.get(url, auth=HttpNtlmAuth("alice", "alice-RIGHT"), timeout=30)
    bob = requests.get(url, auth=HttpNtlmAuth("bob", "bob-RIGHT"), timeout=30)
    wrong = requests.get(url, auth=HttpNtlmAuth("alice", "WRONG"), timeout=30)
    anonymous = requests.get(url, timeout=30)
    print(alice.text, alice.status_code, bob.status_code, wrong.status_code,
          anonymous.status_code, anonymous.headers.get("www-authenticate"))
"#
    );
    assert_eq!(
        python(&script),
        "team plan 200 200 401 401 Negotiate, NTLM\n\
         team plan 200 403 401 401 Negotiate, NTLM\n"
    );
    let (code, stderr) = running.stop("-TERM");
    assert_eq!(code, Some(0), "{stderr}");
}

/// A curl download to a file, started in the background.
struct Download {
    child: Child,
    out: PathBuf,
    started: Instant,
}

impl Download {
    fn start(url: &str, out: PathBuf) -> Download {
        let child = Command::new("curl")
            .args(["-s", "-f", "--max-time", "60", "-o"])
            .arg(&out)
            .arg(url)
            .spawn()
            .unwrap();
        Download {
            child,
            out,
            started: Instant::now(),
        }
    }

    /// Waits until the body has begun to arrive: the transfer then holds its place under the limit.
    fn wait_for_bytes(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&self.out).map_or(0, |m| m.len()) == 0 {
            assert!(
                Instant::now() < deadline,
                "{} never began",
                self.out.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for curl; the bytes it saved and how long it took.
    fn finish(mut self) -> (Vec<u8>, Duration) {
        assert!(self.child.wait().unwrap().success(), "a download failed");
        (std::fs::read(&self.out).unwrap(), self.started.elapsed())
    }
}

/// One request more than the limit allows: 503 with a Retry-After in whole seconds.
fn assert_turned_away(url: &str) {
    let refused = curl(&[url]);
    assert_eq!(refused.status, 503);
    let after = refused.header("retry-after").expect("a Retry-After");
    assert!(after.parse::<u32>().is_ok_and(|s| s > 0), "{after}");
}

#[test]
fn the_limits_example_turns_one_download_too_many_away_and_paces_the_rest() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = pattern(1 << 20, 5);
    let file = write_file(d, "big.bin", &data);
    let port = free_port();
    let prefix = format!("http://127.0.0.1:{port}/slow/");
    // Long enough for the first phase (a 1 MiB download at 256 KiB/s, about 4 s) to end before the change.
    let relax_after = "8";
    let args = [prefix.as_str(), relax_after, file.to_str().unwrap()];
    let running = Running::spawn(&example("limits"), &args);
    let lines = running.lines_until("Ctrl-C");
    let url = format!("{prefix}big.bin");
    assert_eq!(lines[0], url);
    assert_eq!(
        lines[1],
        "limits: connection limit 1, bandwidth limit 256KiB/s"
    );

    let first = Download::start(&url, d.join("first.bin"));
    first.wait_for_bytes();
    assert_turned_away(&url);
    let (body, took) = first.finish();
    assert!(body == data, "the download is not the file");
    // 1 MiB at 256 KiB/s takes 4 s; half that leaves room for the bucket's burst and for timing noise.
    assert!(took >= Duration::from_secs(2), "1 MiB in {took:?}");

    // The example's task relaxes the limits while it serves.
    let changed = running.lines_until("limits now");
    assert_eq!(
        changed.last().unwrap(),
        "limits now: connection limit 2, bandwidth limit 1MiB/s"
    );
    let downloads = [
        Download::start(&url, d.join("a.bin")),
        Download::start(&url, d.join("b.bin")),
    ];
    for download in &downloads {
        download.wait_for_bytes();
    }
    assert_turned_away(&url);
    let mut slowest = Duration::ZERO;
    for download in downloads {
        let (body, took) = download.finish();
        assert!(body == data, "the download is not the file");
        slowest = slowest.max(took);
    }
    // 2 MiB at 1 MiB/s takes about 2 s however the two share it; at the first phase's 256 KiB/s, 8 s.
    assert!(
        (Duration::from_secs(1)..Duration::from_secs(6)).contains(&slowest),
        "2 MiB in {slowest:?}"
    );
    let (code, stderr) = running.stop("-TERM");
    assert_eq!(code, Some(0), "{stderr}");
}

/// The Basic and SDDL example, made with `Principals::default` and `set_user` in code: curl with alice's
/// password gets the file over the pinned self-signed certificate, bob (who proves his password) gets 403,
/// a wrong password and no credentials get 401 with a Basic challenge.
#[test]
fn the_basic_example_admits_alice_alone_over_pinned_tls() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(70_000, 44);
    let file = write_file(dir.path(), "plan.bin", &data);
    let port = free_port();
    let prefix = format!("https://127.0.0.1:{port}/team/");
    let running = Running::spawn_with_env(
        &example("basic_sddl"),
        &[&prefix, file.to_str().unwrap()],
        &[("BASIC_SDDL_PASSWORD", "team-RIGHT")],
    );
    let lines = running.lines_until("Ctrl-C");
    let pin = lines[0]
        .strip_prefix("curl --pinnedpubkey '")
        .and_then(|l| l.strip_suffix('\''))
        .expect("the first line is curl's pin");
    let url = format!("{prefix}plan.bin");
    assert_eq!(lines[1], url);

    let get = |user: Option<&str>| {
        let mut args = vec!["--insecure", "--pinnedpubkey", pin];
        if let Some(user) = user {
            args.extend(["-u", user]);
        }
        args.push(&url);
        curl(&args)
    };
    let alice = get(Some("alice:team-RIGHT"));
    assert_eq!(alice.status, 200);
    assert!(alice.body == data, "alice's body differs");
    assert_eq!(get(Some("bob:team-RIGHT")).status, 403);
    let wrong = get(Some("alice:WRONG"));
    assert_eq!(wrong.status, 401);
    let anonymous = get(None);
    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Basic"), "{challenge}");
}
