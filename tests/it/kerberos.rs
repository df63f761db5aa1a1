//! Negotiate with Kerberos tickets from a real MIT KDC: curl --negotiate, Python requests-gssapi, the real
//! bcs binary, replay, and SDDL for Kerberos identities.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use bits_compact::{AuthScheme, Password, Principals};

use crate::kdc::{Kdc, REALM};
use crate::support::{free_port, have, have_module, write_file, Reply, TestServer};

fn curl(kdc: &Kdc, cache: Option<&std::path::Path>, port: u16, args: &[&str]) -> (Reply, String) {
    let resolve = format!("localhost:{port}:127.0.0.1");
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-i", "-v", "--resolve", &resolve])
        .args(args);
    let out = kdc.client_env(&mut cmd, cache).output().unwrap();
    let text = out.stdout;
    let last = text
        .windows(9)
        .rposition(|w| w == b"HTTP/1.1 ")
        .expect("a response");
    (
        Reply::parse(&text[last..]).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn kerberos_with_curl_requests_gssapi_and_bcs() {
    if !Kdc::available() || !have("curl") {
        return;
    }
    let _env = crate::kdc::env_lock();
    let kdc = Kdc::start();
    // The in-process server's GSS-API reads these; other tests that set them wait for the lock.
    std::env::set_var("KRB5_CONFIG", kdc.krb5_conf());
    std::env::set_var("KRB5_KTNAME", kdc.keytab());
    std::env::set_var("KRB5RCACHEDIR", kdc.dir.path());
    let alice = kdc.kinit("alice", "alice-pw");
    let bob = kdc.kinit("bob", "bob-pw");

    let dir = tempfile::tempdir().unwrap();
    let mut principals = Principals::default();
    principals
        .set_user("alice", &Password::from("unused"), &[])
        .unwrap();
    let alice_sid = principals.user("alice").unwrap().1.sid.to_string();
    let srv = TestServer::start();
    srv.server.set_principals(principals);
    let group = srv.server.create_url_group(srv.prefix("K")).unwrap();
    group
        .set_authentication(AuthScheme::Negotiate, true)
        .unwrap();
    let file = write_file(dir.path(), "f.txt", b"kerberized");
    group
        .add_url("f.txt", &file, Some("D:(A;;GR;;;AU)"))
        .unwrap();
    group
        .add_url(
            "alice-only",
            &file,
            Some(&format!("D:(A;;GR;;;{alice_sid})")),
        )
        .unwrap();
    // An unknown principal's SID is derived from its realm-qualified name (SHA-256, 128 bits): a rule
    // naming bob's derived SID admits bob and nobody else.
    let bob_sid = bits_compact::auth::Identity::derived(
        &format!("bob@{}", crate::kdc::REALM),
        bits_compact::auth::Mechanism::Kerberos,
    )
    .token()[0]
        .to_string();
    assert!(bob_sid.starts_with("S-1-5-21-0-0-0-"), "{bob_sid}");
    group
        .add_url("bob-only", &file, Some(&format!("D:(A;;GR;;;{bob_sid})")))
        .unwrap();
    let port = srv.port;
    let url = |s: &str| format!("http://localhost:{port}/K/{s}");

    // With a ticket: 200, and the final response carries the mutual-authentication token.
    let (r, _) = curl(
        &kdc,
        Some(&alice),
        port,
        &["--negotiate", "-u", ":", &url("f.txt")],
    );
    assert_eq!((r.status, r.body.as_slice()), (200, &b"kerberized"[..]));
    assert!(
        r.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Negotiate ")),
        "{:?}",
        r.headers
    );
    // Without a ticket: 401 with the Negotiate challenge.
    let (r, _) = curl(&kdc, None, port, &["--negotiate", "-u", ":", &url("f.txt")]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Negotiate"));
    // SDDL applies to Kerberos identities: alice (mapped to her SID) yes, bob (unknown: AU only) no.
    let (r, _) = curl(
        &kdc,
        Some(&alice),
        port,
        &["--negotiate", "-u", ":", &url("alice-only")],
    );
    assert_eq!(r.status, 200);
    let (r, _) = curl(
        &kdc,
        Some(&bob),
        port,
        &["--negotiate", "-u", ":", &url("alice-only")],
    );
    assert_eq!(r.status, 403);
    let (r, _) = curl(
        &kdc,
        Some(&bob),
        port,
        &["--negotiate", "-u", ":", &url("f.txt")],
    );
    assert_eq!(
        r.status, 200,
        "an unknown principal is an Authenticated User"
    );
    let (r, _) = curl(
        &kdc,
        Some(&bob),
        port,
        &["--negotiate", "-u", ":", &url("bob-only")],
    );
    assert_eq!(r.status, 200, "bob's derived SID is granted");
    let (r, _) = curl(
        &kdc,
        Some(&alice),
        port,
        &["--negotiate", "-u", ":", &url("bob-only")],
    );
    assert_eq!(r.status, 403, "alice is not bob");

    // A server that refuses unknown principals turns bob away.
    let strict = TestServer::start_with(|b| b.refuse_unknown_principals(true));
    let mut known = Principals::default();
    known
        .set_user("alice", &Password::from("unused"), &[])
        .unwrap();
    strict.server.set_principals(known);
    let g = strict.server.create_url_group(strict.prefix("S")).unwrap();
    g.set_authentication(AuthScheme::Negotiate, true).unwrap();
    g.add_url("f.txt", &file, None).unwrap();
    let strict_url = format!("http://localhost:{}/S/f.txt", strict.port);
    let (r, _) = curl(
        &kdc,
        Some(&alice),
        strict.port,
        &["--negotiate", "-u", ":", &strict_url],
    );
    assert_eq!(r.status, 200);
    let (r, _) = curl(
        &kdc,
        Some(&bob),
        strict.port,
        &["--negotiate", "-u", ":", &strict_url],
    );
    assert_eq!(r.status, 403);

    // A captured Authorization header replayed on a new connection is refused.
    let (r, log) = curl(
        &kdc,
        Some(&alice),
        port,
        &["--negotiate", "-u", ":", &url("f.txt")],
    );
    assert_eq!(r.status, 200);
    let captured = log
        .lines()
        .find_map(|l| l.strip_prefix("> Authorization: "))
        .expect("curl sent a Negotiate header")
        .trim()
        .to_owned();
    let header = format!("Authorization: {captured}");
    let (r, _) = curl(&kdc, None, port, &["-H", &header, &url("f.txt")]);
    assert_eq!(r.status, 401, "a replayed authenticator was accepted");

    // Python requests-gssapi, with mutual authentication required.
    if have_module("requests_gssapi") {
        let script = format!(
            "import requests, requests_gssapi\n\
             r = requests.get('{}', auth=requests_gssapi.HTTPSPNEGOAuth(mutual_authentication=requests_gssapi.REQUIRED))\n\
             print(r.status_code, r.text)\n\
             r = requests.get('{}', auth=requests_gssapi.HTTPSPNEGOAuth())\n\
             print(r.status_code)\n",
            url("f.txt"),
            url("alice-only"),
        );
        for (cache, want) in [
            (&alice, "200 kerberized\n200\n"),
            (&bob, "200 kerberized\n403\n"),
        ] {
            let mut cmd = Command::new("python3");
            cmd.args(["-c", &script]);
            let out = kdc.client_env(&mut cmd, Some(cache)).output().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                want,
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    // The real bcs: --keytab, and the principal in the access log.
    let bcs_port = free_port();
    let prefix = format!("http://+:{bcs_port}/B/");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bcs"));
    cmd.args([
        "host",
        "--bind",
        "127.0.0.1",
        "--auth",
        "negotiate",
        "--url",
        &prefix,
    ])
    .args([
        "--keytab",
        kdc.keytab().to_str().unwrap(),
        "--sddl",
        "D:(A;;GR;;;AU)",
    ])
    .arg(&file)
    .env("KRB5_CONFIG", kdc.krb5_conf())
    .env("KRB5RCACHEDIR", kdc.dir.path())
    .env("BCS_LOG", "info")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("Ctrl-C") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "bcs exited early");
    }
    let (r, _) = curl(
        &kdc,
        Some(&alice),
        bcs_port,
        &[
            "--negotiate",
            "-u",
            ":",
            &format!("http://localhost:{bcs_port}/B/f.txt"),
        ],
    );
    assert_eq!(r.status, 200);
    assert!(Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let principal = format!("alice@{REALM}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("bits_compact::access") && l.contains(&principal)),
        "{stderr}"
    );
}
