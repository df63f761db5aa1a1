//! HTTPS with curl: certificates per port and per SNI name, replacement while serving, client certificates,
//! stalled handshakes, and clear errors for bad certificate files.

use std::io::Write;
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bits_compact::{ClientCertMode, ClientCertificates, ServerCertificate, TlsError};

use crate::pki::Ca;
use crate::support::{curl_http_version, have, pattern, run, write_file, Reply, TestServer};

/// An https server on 127.0.0.1 with one group and a certificate from `ca` for 127.0.0.1 and localhost.
struct Https {
    srv: TestServer,
    dir: tempfile::TempDir,
    ca: Ca,
    data: Vec<u8>,
}

fn https() -> Https {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    ca.write(dir.path(), "ca.pem");
    let leaf = ca.server(dir.path(), "server", &["127.0.0.1", "localhost"]);
    let data = pattern(2 << 20, 21);
    let file = write_file(dir.path(), "data.bin", &data);
    let srv = TestServer::start();
    let cert = ServerCertificate::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    srv.server.set_ssl_certificate(srv.port, cert).unwrap();
    let group = srv
        .server
        .create_url_group(format!("https://+:{}/S/", srv.port))
        .unwrap();
    group.add_url("data.bin", file, None).unwrap();
    Https { srv, dir, ca, data }
}

impl Https {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.srv.port)
    }

    fn ca(&self) -> String {
        self.dir.path().join("ca.pem").to_str().unwrap().to_owned()
    }
}

/// curl over TLS; `None` when curl itself failed (a refused handshake).
fn curl_tls(args: &[&str]) -> Option<Reply> {
    let out = run("curl", &[&["-s", "-i", "--max-time", "30"], args].concat());
    if !out.status.success() {
        return None;
    }
    Reply::parse(&out.stdout)
}

#[test]
fn https_get_range_and_http2_with_curl() {
    if !have("curl") {
        return;
    }
    let h = https();
    let url = h.url("/S/data.bin");
    let r = curl_tls(&["--cacert", &h.ca(), &url]).expect("handshake");
    assert_eq!(r.status, 200);
    assert!(r.body == h.data);
    let r = curl_tls(&["--cacert", &h.ca(), "-r", "100-199", &url]).unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.body, h.data[100..200]);
    // ALPN: HTTP/2 by default, HTTP/1.1 when the client asks.
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        assert_eq!(
            curl_http_version(&[flag, "--cacert", &h.ca(), &url]),
            version,
            "{flag}"
        );
    }
    // A client that does not trust the CA refuses the server.
    assert!(curl_tls(&[&url]).is_none());
    // TLS below 1.2 is not offered.
    assert!(curl_tls(&["--cacert", &h.ca(), "--tls-max", "1.1", &url]).is_none());
    // Switching HTTP/2 off leaves HTTP/1.1 in ALPN.
    h.srv.server.set_http2(h.srv.port, false).unwrap();
    assert_eq!(
        curl_http_version(&["--http2", "--cacert", &h.ca(), &url]),
        "1.1"
    );
}

#[test]
fn client_certificates_required_optional_and_per_group() {
    if !have("curl") {
        return;
    }
    let h = https();
    let d = h.dir.path();
    let alice = h.ca.client(d, "alice", "Alice", Some("alice@corp.example"));
    let stranger_ca = Ca::new("Other CA");
    let mallory = stranger_ca.client(d, "mallory", "Mallory", None);
    let ca_file = h.dir.path().join("ca.pem");
    let url = h.url("/S/data.bin");
    let (ca, a_cert, a_key) = (h.ca(), path(&alice.cert), path(&alice.key));
    let (m_cert, m_key) = (path(&mallory.cert), path(&mallory.key));
    let with_alice = ["--cacert", &ca, "--cert", &a_cert, "--key", &a_key, &url];
    let with_mallory = ["--cacert", &ca, "--cert", &m_cert, "--key", &m_key, &url];
    let without = ["--cacert", &ca, &url];

    let required =
        ClientCertificates::from_pem_files(ClientCertMode::Required, &ca_file, &[]).unwrap();
    h.srv
        .server
        .set_client_certificates(h.srv.port, required)
        .unwrap();
    assert_eq!(curl_tls(&with_alice).map(|r| r.status), Some(200));
    assert!(
        curl_tls(&without).is_none(),
        "no certificate on a required port"
    );
    assert!(
        curl_tls(&with_mallory).is_none(),
        "untrusted CA on a required port"
    );

    let optional =
        ClientCertificates::from_pem_files(ClientCertMode::Optional, &ca_file, &[]).unwrap();
    h.srv
        .server
        .set_client_certificates(h.srv.port, optional)
        .unwrap();
    assert_eq!(curl_tls(&with_alice).map(|r| r.status), Some(200));
    assert_eq!(curl_tls(&without).map(|r| r.status), Some(200));
    assert!(
        curl_tls(&with_mallory).is_none(),
        "untrusted CA on an optional port"
    );

    // A group that requires a certificate answers 403 with the reason to a client without one.
    let group = h.srv.server.url_groups().remove(0);
    group
        .set_authentication(bits_compact::AuthScheme::ClientCertificate, true)
        .unwrap();
    let r = curl_tls(&without).unwrap();
    assert_eq!(r.status, 403);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "403 Forbidden: a client certificate is required\n"
    );
    assert_eq!(curl_tls(&with_alice).map(|r| r.status), Some(200));
}

#[test]
fn revoked_client_certificates_are_refused() {
    if !have("curl") {
        return;
    }
    let h = https();
    let d = h.dir.path();
    let alice = h.ca.client_with_serial(d, "alice", "Alice", None, 1001);
    let bob = h.ca.client_with_serial(d, "bob", "Bob", None, 1002);
    let crl = h.ca.crl(d, "ca.crl", &[1002]);
    let ca_file = d.join("ca.pem");
    let policy =
        ClientCertificates::from_pem_files(ClientCertMode::Required, &ca_file, &[crl]).unwrap();
    h.srv
        .server
        .set_client_certificates(h.srv.port, policy)
        .unwrap();
    let url = h.url("/S/data.bin");
    let get = |leaf: &crate::pki::Leaf| {
        let (cert, key) = (path(&leaf.cert), path(&leaf.key));
        curl_tls(&[
            "--cacert",
            &h.ca(),
            "--cert",
            &cert,
            "--key",
            &key,
            "-r",
            "0-0",
            &url,
        ])
        .map(|r| r.status)
    };
    assert_eq!(get(&alice), Some(206));
    assert_eq!(get(&bob), None, "a revoked certificate was accepted");
    // A CRL file without a CRL is a clear error naming it.
    let e = ClientCertificates::from_pem_files(
        ClientCertMode::Required,
        &ca_file,
        std::slice::from_ref(&ca_file),
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("ca.pem") && e.to_string().contains("revocation"),
        "{e}"
    );
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

#[test]
fn sni_picks_a_certificate_per_host_name() {
    if !have("curl") {
        return;
    }
    let h = https();
    let d = h.dir.path();
    let (ca_a, ca_b) = (Ca::new("CA A"), Ca::new("CA B"));
    let (a, b) = (
        ca_a.server(d, "a", &["a.test"]),
        ca_b.server(d, "b", &["b.test"]),
    );
    let (ca_a_file, ca_b_file) = (
        path(&ca_a.write(d, "ca-a.pem")),
        path(&ca_b.write(d, "ca-b.pem")),
    );
    let port = h.srv.port;
    let server = &h.srv.server;
    server
        .set_sni_certificate(
            port,
            "A.TEST",
            ServerCertificate::from_pem_files(&a.cert, &a.key).unwrap(),
        )
        .unwrap();
    server
        .set_sni_certificate(
            port,
            "b.test",
            ServerCertificate::from_pem_files(&b.cert, &b.key).unwrap(),
        )
        .unwrap();
    let get = |host: &str, ca: &str| {
        let resolve = format!("{host}:{port}:127.0.0.1");
        let url = format!("https://{host}:{port}/S/data.bin");
        curl_tls(&["--resolve", &resolve, "--cacert", ca, "-r", "0-9", &url]).map(|r| r.status)
    };
    assert_eq!(get("a.test", &ca_a_file), Some(206));
    assert_eq!(get("a.test", &ca_b_file), None);
    assert_eq!(get("b.test", &ca_b_file), Some(206));
    assert_eq!(get("b.test", &ca_a_file), None);
    // Another name, and a client that sends no SNI (an IP address), get the port's certificate.
    assert_eq!(get("localhost", &h.ca()), Some(206));
    assert_eq!(
        curl_tls(&["--cacert", &h.ca(), &h.url("/S/data.bin")]).map(|r| r.status),
        Some(200)
    );
    assert!(server.remove_sni_certificate(port, "a.test").unwrap());
    assert_eq!(get("a.test", &ca_a_file), None);
}

#[test]
fn a_replaced_certificate_reaches_new_handshakes_while_a_download_finishes() {
    if !have("curl") {
        return;
    }
    let h = https();
    let d = h.dir.path();
    let group = h.srv.server.url_groups().remove(0);
    group
        .set_bandwidth_limit("1MiB/s".parse().unwrap())
        .unwrap();
    let out = d.join("long.bin");
    let mut long = Command::new("curl")
        .args([
            "-s",
            "-f",
            "--cacert",
            &h.ca(),
            "-o",
            &path(&out),
            &h.url("/S/data.bin"),
        ])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while group.active_transfers() == 0 {
        assert!(Instant::now() < deadline, "the long download did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let old_thumbprint = h
        .srv
        .server
        .ssl_certificate(h.srv.port)
        .unwrap()
        .sha1_thumbprint;

    let new_ca = Ca::new("New CA");
    let new_ca_file = path(&new_ca.write(d, "new-ca.pem"));
    let leaf = new_ca.server(d, "new", &["127.0.0.1"]);
    let cert = ServerCertificate::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let new_thumbprint = cert.info().sha1_thumbprint.clone();
    h.srv.server.set_ssl_certificate(h.srv.port, cert).unwrap();
    assert_eq!(
        h.srv
            .server
            .ssl_certificate(h.srv.port)
            .unwrap()
            .sha1_thumbprint,
        new_thumbprint
    );
    assert_ne!(old_thumbprint, new_thumbprint);

    group
        .set_bandwidth_limit(bits_compact::ByteRate::UNLIMITED)
        .unwrap();
    let small = ["--cacert", &new_ca_file, "-r", "0-0", &h.url("/S/data.bin")];
    assert_eq!(curl_tls(&small).map(|r| r.status), Some(206));
    assert!(curl_tls(&["--cacert", &h.ca(), "-r", "0-0", &h.url("/S/data.bin")]).is_none());

    assert!(long.wait().unwrap().success());
    assert!(std::fs::read(&out).unwrap() == h.data);
    assert!(h.srv.server.remove_ssl_certificate(h.srv.port).unwrap());
    assert!(h.srv.server.ssl_certificate(h.srv.port).is_none());
}

#[test]
fn fifty_stalled_handshakes_do_not_slow_a_download() {
    if !have("curl") {
        return;
    }
    let h = https();
    let url = h.url("/S/data.bin");
    let timed = || {
        let start = Instant::now();
        let r = curl_tls(&["--cacert", &h.ca(), &url]).expect("download");
        assert!(r.body == h.data);
        start.elapsed()
    };
    let baseline = timed();
    // Half a ClientHello: a record header promising 512 bytes, and a few of them.
    let stalled: Vec<TcpStream> = (0..50)
        .map(|_| {
            let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, h.srv.port)).unwrap();
            s.write_all(&[
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ])
            .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let loaded = timed();
    assert!(
        loaded < baseline * 3 + Duration::from_secs(1),
        "baseline {baseline:?}, with 50 stalled handshakes {loaded:?}"
    );
    drop(stalled);
}

#[test]
fn bad_certificate_files_are_clear_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("CA");
    let one = ca.server(d, "one", &["localhost"]);
    let two = ca.server(d, "two", &["localhost"]);
    let missing = d.join("missing.pem");

    let e = ServerCertificate::from_pem_files(&missing, &one.key).unwrap_err();
    assert!(matches!(e, TlsError::Read { .. }), "{e}");
    assert!(e.to_string().contains("missing.pem"), "{e}");

    let e = ServerCertificate::from_pem_files(&one.cert, &two.key).unwrap_err();
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains("two.key") && e.to_string().contains("one.pem"),
        "{e}"
    );

    let e = ServerCertificate::from_pem_files(&one.key, &one.key).unwrap_err();
    assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
    let e = ServerCertificate::from_pem_files(&one.cert, &one.cert).unwrap_err();
    assert!(matches!(e, TlsError::NoKey { .. }), "{e}");
    assert!(e.to_string().contains("one.pem"), "{e}");

    let pfx = d.join("server.pfx");
    one.pkcs12(&pfx, "right horse");
    let ok = ServerCertificate::from_pkcs12_file(&pfx, "right horse").unwrap();
    let direct = ServerCertificate::from_pem_files(&one.cert, &one.key).unwrap();
    assert_eq!(ok.info(), direct.info());
    let e = ServerCertificate::from_pkcs12_file(&pfx, "wrong").unwrap_err();
    assert!(matches!(e, TlsError::Pkcs12 { .. }), "{e}");
    assert!(
        e.to_string().contains("server.pfx") && e.to_string().contains("wrong password"),
        "{e}"
    );

    let e =
        ClientCertificates::from_pem_files(ClientCertMode::Required, &one.key, &[]).unwrap_err();
    assert!(matches!(e, TlsError::NoCaCertificate { .. }), "{e}");
    assert!(e.to_string().contains("one.key"), "{e}");
    let e =
        ClientCertificates::from_pem_files(ClientCertMode::Required, &missing, &[]).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
}

#[test]
fn a_client_certificate_makes_the_caller_an_authenticated_user_for_sddl() {
    if !have("curl") {
        return;
    }
    let h = https();
    let d = h.dir.path();
    let alice = h.ca.client(d, "alice", "Alice", Some("alice@corp.example"));
    let ca_file = d.join("ca.pem");
    let optional =
        ClientCertificates::from_pem_files(ClientCertMode::Optional, &ca_file, &[]).unwrap();
    h.srv
        .server
        .set_client_certificates(h.srv.port, optional)
        .unwrap();
    let group = h.srv.server.url_groups().remove(0);
    let file = write_file(d, "au.txt", b"for authenticated users");
    // Without the scheme a certificate identifies nobody: the caller is anonymous, and AU-only is refused.
    group
        .add_url("au-anon.txt", &file, Some("D:(A;;GR;;;AU)"))
        .unwrap();
    let (c, k) = (path(&alice.cert), path(&alice.key));
    let anon = curl_tls(&[
        "--cacert",
        &h.ca(),
        "--cert",
        &c,
        "--key",
        &k,
        &h.url("/S/au-anon.txt"),
    ]);
    assert_eq!(anon.map(|r| r.status), Some(403));
    group
        .set_authentication(bits_compact::AuthScheme::ClientCertificate, true)
        .unwrap();
    group
        .add_url("au.txt", &file, Some("D:(A;;GR;;;AU)"))
        .unwrap();
    let url = h.url("/S/au.txt");
    let (cert, key) = (path(&alice.cert), path(&alice.key));
    let r = curl_tls(&["--cacert", &h.ca(), "--cert", &cert, "--key", &key, &url]).unwrap();
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"for authenticated users"[..])
    );
    assert_eq!(
        curl_tls(&["--cacert", &h.ca(), &url]).map(|r| r.status),
        Some(403)
    );
}
