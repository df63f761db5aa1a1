//! NTLM with real clients: curl --ntlm and Python's requests_ntlm (which sends a MIC).

use bits_compact::{AuthScheme, Password, Principals, ServerCertificate};

use crate::support::{
    curl_http_version, have, have_module, pattern, python, run, status_with_header, write_file,
    Reply, TestServer,
};

struct Site {
    srv: TestServer,
    _dir: tempfile::TempDir,
    bob_sid: String,
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let mut principals = Principals::default();
    principals
        .set_user("alice", &Password::from("alice-RIGHT"), &[])
        .unwrap();
    principals
        .set_user("bob", &Password::from("bob-RIGHT"), &[])
        .unwrap();
    let bob_sid = principals.user("bob").unwrap().1.sid.to_string();
    let srv = TestServer::start();
    srv.server.set_principals(principals);
    let group = srv.server.create_url_group(srv.prefix("N")).unwrap();
    group.set_authentication(AuthScheme::Ntlm, true).unwrap();
    let d = dir.path();
    group
        .add_url(
            "f.txt",
            write_file(d, "f.txt", b"ntlm data"),
            Some("D:(A;;GR;;;AU)"),
        )
        .unwrap();
    let not_bob = format!("D:(D;;GA;;;{bob_sid})(A;;GR;;;AU)");
    group
        .add_url(
            "not-bob.txt",
            write_file(d, "nb.txt", b"not for bob"),
            Some(&not_bob),
        )
        .unwrap();
    Site {
        srv,
        _dir: dir,
        bob_sid,
    }
}

fn curl_ntlm(url: &str, user: &str, extra: &[&str]) -> Reply {
    let out = run(
        "curl",
        &[&["-s", "-i", "--ntlm", "-u", user], extra, &[url]].concat(),
    );
    // With -i, curl prints the 401 of the handshake too: the last response is the one that counts.
    let text = out.stdout;
    let last = text
        .windows(9)
        .rposition(|w| w == b"HTTP/1.1 ")
        .expect("a response");
    Reply::parse(&text[last..]).expect("a parsable response")
}

#[test]
fn curl_ntlm_right_and_wrong_passwords() {
    if !have("curl") {
        return;
    }
    let s = site();
    let url = s.srv.url("/N/f.txt");
    let r = curl_ntlm(&url, "alice:alice-RIGHT", &[]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ntlm data"[..]));
    assert_eq!(curl_ntlm(&url, "alice:WRONG", &[]).status, 401);
    assert_eq!(curl_ntlm(&url, "nobody:alice-RIGHT", &[]).status, 401);
    assert_eq!(curl_ntlm(&url, "CORP\\alice:alice-RIGHT", &[]).status, 200);
    let anonymous = Reply::parse(&run("curl", &["-s", "-i", &url]).stdout).unwrap();
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), Some("NTLM"));
    // SDDL applies to NTLM identities.
    let nb = s.srv.url("/N/not-bob.txt");
    assert_eq!(curl_ntlm(&nb, "alice:alice-RIGHT", &[]).status, 200);
    assert_eq!(
        curl_ntlm(&nb, "bob:bob-RIGHT", &[]).status,
        403,
        "bob is {}",
        s.bob_sid
    );
}

#[test]
fn an_authenticated_connection_needs_no_header_and_a_big_post_keeps_it() {
    if !have("curl") {
        return;
    }
    let s = site();
    let url = s.srv.url("/N/f.txt");
    let out = run(
        "curl",
        &[
            "-s",
            "-v",
            "--ntlm",
            "-u",
            "alice:alice-RIGHT",
            &url,
            &url,
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
        ],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        log.matches("> Authorization: NTLM").count(),
        2,
        "one handshake for two requests:\n{log}"
    );
    assert_eq!(log.matches("< HTTP/1.1 200").count(), 2, "{log}");
    assert!(log.contains("Re-using existing connection"), "{log}");

    // A 1 MB POST during the handshake: the 401 waits for the body, so the connection survives.
    let dir = tempfile::tempdir().unwrap();
    let body = write_file(dir.path(), "post.bin", &pattern(1 << 20, 9));
    let data = format!("@{}", body.display());
    let out = run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{num_connects}",
            "--ntlm",
            "-u",
            "alice:alice-RIGHT",
            "--data-binary",
            &data,
            &url,
        ],
    );
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Authenticated, then refused for the method, over one connection.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "405 1");
}

#[test]
fn python_requests_ntlm_with_a_mic() {
    if !have("python3") || !have_module("requests_ntlm") {
        return;
    }
    let s = site();
    let script = format!(
        r#"
import requests
from requests_ntlm import HttpNtlmAuth
url = "{url}"
print(requests.get(url, auth=HttpNtlmAuth("alice", "alice-RIGHT")).status_code)
print(requests.get(url, auth=HttpNtlmAuth("alice", "WRONG")).status_code)
print(requests.get(url, auth=HttpNtlmAuth("CORP\\alice", "alice-RIGHT")).status_code)
session = requests.Session()
session.auth = HttpNtlmAuth("alice", "alice-RIGHT")
print(session.get(url).text, session.get(url).status_code)
"#,
        url = s.srv.url("/N/f.txt")
    );
    assert_eq!(python(&script), "200\n401\n200\nntlm data 200\n");
}

#[test]
fn malformed_ntlm_tokens_are_400_or_401() {
    if !have("curl") {
        return;
    }
    let s = site();
    let url = s.srv.url("/N/f.txt");
    let status = |header: &str| status_with_header(&url, header, &[]);
    assert_eq!(status("Authorization: NTLM !!!"), "400");
    assert_eq!(status("Authorization: NTLM"), "400");
    assert_eq!(status("Authorization: NTLM TlRMTVNT"), "400"); // "NTLMSS": truncated
    assert_eq!(status("Authorization: NTLM TlRMTVNTUAABAAAA"), "400"); // NEGOTIATE without flags
    assert_eq!(
        status("Authorization: NTLM TlRMTVNTUAAEAAAAAAAAAA=="),
        "400"
    ); // type 4
    assert_eq!(status("Authorization: NTLM bm90IG50bG0gYXQgYWxs"), "400"); // "not ntlm at all"
                                                                           // An AUTHENTICATE with no challenge on this connection is refused.
    let type3 = "TlRMTVNTUAADAAAAGAAYAEAAAABgAGAAWAAAAAAAAABAAAAAAAAAAEAAAAAAAAAAQAAAAAAAAABAAAAABYKIogAAAAAAAAAAAAAAAAAAAAA=";
    assert_eq!(status(&format!("Authorization: NTLM {type3}")), "401");
    let huge = format!("Authorization: NTLM {}", "A".repeat(30_000));
    assert_eq!(status(&huge), "400");
    assert_eq!(
        curl_ntlm(&url, "alice:alice-RIGHT", &[]).status,
        200,
        "still serving"
    );
}

#[test]
fn tls_ports_with_ntlm_groups_speak_http1_only() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::pki::Ca::new("CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let leaf = ca.server(dir.path(), "s", &["127.0.0.1"]);
    let srv = TestServer::start();
    let mut principals = Principals::default();
    principals
        .set_user("alice", &Password::from("pw"), &[])
        .unwrap();
    srv.server.set_principals(principals);
    let cert = ServerCertificate::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    srv.server.set_ssl_certificate(srv.port, cert).unwrap();
    let group = srv
        .server
        .create_url_group(format!("https://+:{}/T/", srv.port))
        .unwrap();
    group
        .add_url("f", write_file(dir.path(), "f", b"x"), None)
        .unwrap();
    let url = format!("https://127.0.0.1:{}/T/f", srv.port);
    let ca = ca_file.to_str().unwrap();
    let version = |extra: &[&str]| {
        curl_http_version(&[&["--http2", "--cacert", ca], extra, &[url.as_str()]].concat())
    };
    assert_eq!(version(&[]), "2");
    group.set_authentication(AuthScheme::Ntlm, true).unwrap();
    assert_eq!(version(&["--ntlm", "-u", "alice:pw"]), "1.1");
}

#[test]
fn ntlm_under_negotiate_bare_and_wrapped_in_spnego() {
    if !have("python3") || !have_module("requests_ntlm") || !have_module("spnego") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut principals = Principals::default();
    principals
        .set_user("alice", &Password::from("alice-RIGHT"), &[])
        .unwrap();
    let srv = TestServer::start();
    srv.server.set_principals(principals);
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    // Negotiate only: clients without a ticket fall back to NTLM inside it.
    group
        .set_authentication(AuthScheme::Negotiate, true)
        .unwrap();
    group
        .add_url(
            "f.txt",
            write_file(dir.path(), "f.txt", b"negotiated"),
            Some("D:(A;;GR;;;AU)"),
        )
        .unwrap();
    let script = format!(
        r#"
import base64, requests, spnego
from requests_ntlm import HttpNtlmAuth
url = "{url}"
# requests_ntlm answers a Negotiate challenge with bare NTLM tokens.
print(requests.get(url, auth=HttpNtlmAuth("alice", "alice-RIGHT")).status_code)
print(requests.get(url, auth=HttpNtlmAuth("alice", "WRONG")).status_code)
# pyspnego's Negotiate client, leg by leg on one connection: bare NTLM (use_ntlm), then its own SPNEGO
# (use_negotiate), whose NegTokenInit carries NTLM, whose last leg carries a mechListMIC, and which checks
# ours in the final NegTokenResp before calling the context complete.
for option in [spnego.NegotiateOptions.use_ntlm, spnego.NegotiateOptions.use_negotiate]:
    for password in ["alice-RIGHT", "WRONG"]:
        s = requests.Session()
        ctx = spnego.client("alice", password, hostname="localhost", service="HTTP", protocol="negotiate",
                            options=option)
        token = ctx.step()
        r = s.get(url, headers={{"Authorization": "Negotiate " + base64.b64encode(token).decode()}})
        challenge = r.headers["WWW-Authenticate"].split(" ", 1)[1]
        token = ctx.step(base64.b64decode(challenge))
        r = s.get(url, headers={{"Authorization": "Negotiate " + base64.b64encode(token).decode()}})
        print(r.status_code, r.text if r.status_code == 200 else "")
        final = r.headers.get("WWW-Authenticate")
        if r.status_code == 200 and final:
            ctx.step(base64.b64decode(final.split(" ", 1)[1]))
            print("complete", ctx.complete)
"#,
        url = srv.url("/G/f.txt")
    );
    assert_eq!(
        python(&script),
        "200\n401\n200 negotiated\n401 \n200 negotiated\ncomplete True\n401 \n"
    );
}

#[test]
fn malformed_and_truncated_spnego_tokens_are_400_or_401() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    group
        .set_authentication(AuthScheme::Negotiate, true)
        .unwrap();
    group
        .add_url("f", write_file(dir.path(), "f", b"x"), None)
        .unwrap();
    let url = srv.url("/G/f");
    let status =
        |token: &str| status_with_header(&url, &format!("Authorization: Negotiate {token}"), &[]);
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    // A NegTokenInit offering NTLM, cut at every length: each a clean 400 or 401.
    let ntlm = b"NTLMSSP\0\x01\0\0\0\x07\x82\x08\xa2\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
    let mut init = vec![
        0x60, 0x30, 0x06, 0x06, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x02, 0xa0, 0x26, 0x30, 0x24,
    ];
    init.extend_from_slice(&[
        0xa0, 0x0e, 0x30, 0x0c, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37, 0x02, 0x02,
        0x0a,
    ]);
    init.extend_from_slice(&[0xa2, 0x12, 0x04, 0x10]);
    init.extend_from_slice(&ntlm[..16]);
    for end in [1, 2, 5, 10, 14, 20, 30, init.len() - 1] {
        let s = status(&b64(&init[..end]));
        assert!(s == "400" || s == "401", "cut at {end}: {s}");
    }
    assert_eq!(status("!!!"), "400");
    assert_eq!(status(&b64(&[0x60, 0x84, 0xff, 0xff, 0xff, 0xff])), "400");
    // A GSS-API token for Kerberos that is garbage: refused by Kerberos (or absent Kerberos), 401.
    let krb = [
        0x60, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x12, 0x01, 0x02, 0x02, 0x01, 0x00,
    ];
    assert_eq!(status(&b64(&krb)), "401");
    assert_eq!(status(&b64(b"not spnego at all")), "401");
    let ok = run(
        "curl",
        &["-s", "-o", "/dev/null", "-w", "%{http_code}", &url],
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "401", "still serving");
}
