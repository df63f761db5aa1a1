//! SECURITY: hostile request targets and Host headers never return a byte of an unregistered file.
//!
//! The published directory holds a secret file beside the public one; /etc/passwd is a second target. Each
//! request goes out raw on its own connection, so no client normalises it first.

use crate::support::{have, raw_request, run, write_file, Reply, TestServer};

const SECRET: &[u8] = b"TOP-SECRET-7f3a9c";

fn setup() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "secret.txt", SECRET);
    write_file(dir.path(), "sub/secret.txt", SECRET);
    let public = write_file(dir.path(), "sub/public.txt", b"public");
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    group.add_url("sub/public.txt", public, None).unwrap();
    (srv, dir)
}

fn leaks(raw: &[u8]) -> bool {
    let has = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    has(SECRET) || has(b"root:x:0:0")
}

const TARGETS: &[&str] = &[
    "/G/../secret.txt",
    "/G/sub/../secret.txt",
    "/G/sub/../../secret.txt",
    "/G/%2e%2e/secret.txt",
    "/G/sub/%2e%2e/secret.txt",
    "/G/%2E%2E/%2E%2E/etc/passwd",
    "/G/..%2fsecret.txt",
    "/G/sub%2fsecret.txt",
    "/G/sub%2Fpublic.txt",
    "/G/..%5csecret.txt",
    "/G/sub%5c..%5csecret.txt",
    "/G/sub\\..\\secret.txt",
    "/G/sub/public.txt%00",
    "/G/sub/public.txt%00.secret",
    "/G/secret.txt%00",
    "/G/%252e%252e/secret.txt",
    "/G/%25%32%65%25%32%65/secret.txt",
    "/G/%c0%ae%c0%ae/secret.txt",
    "/G/%c0%af..%c0%afsecret.txt",
    "/G/%e0%80%ae%e0%80%ae/secret.txt",
    "/G/.%2e/secret.txt",
    "/G//secret.txt",
    "/G/./secret.txt",
    "/G/sub/./secret.txt",
    "/G/secret.txt",
    "/G/sub/secret.txt",
    "/../../../../etc/passwd",
    "/G/../../../../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/etc/passwd",
    "//etc/passwd",
    "/G/%2fetc%2fpasswd",
    "/G/%00/../secret.txt",
    "/G/sub/public.txt/../../secret.txt",
    "/G/sub/public.txt/..%2f..%2fsecret.txt",
    "*",
];

#[test]
fn hostile_targets_never_reach_unregistered_files() {
    let (srv, _dir) = setup();
    // Control: the registered file is reachable over the same raw path.
    let ok = raw_request(
        srv.port,
        b"GET /G/sub/public.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let ok = Reply::parse(&ok).unwrap();
    assert_eq!((ok.status, ok.body.as_slice()), (200, &b"public"[..]));

    for target in TARGETS {
        for host in ["127.0.0.1", "localhost"] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            let raw = raw_request(srv.port, req.as_bytes());
            assert!(!leaks(&raw), "{target} leaked");
            let status = Reply::parse(&raw).map(|r| r.status);
            assert!(
                matches!(status, Some(400 | 404) | None),
                "{target}: unexpected {status:?}"
            );
        }
    }
}

#[test]
fn absolute_form_targets_are_routed_by_their_authority_and_checked_alike() {
    let (srv, _dir) = setup();
    let port = srv.port;
    let ok = raw_request(
        port,
        format!("GET http://127.0.0.1:{port}/G/sub/public.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(Reply::parse(&ok).unwrap().body, b"public");
    for target in TARGETS.iter().filter(|t| t.starts_with('/')) {
        for authority in [
            format!("127.0.0.1:{port}"),
            "evil.example".to_owned(),
            "[::1]".to_owned(),
        ] {
            let req = format!(
                "GET http://{authority}{target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            );
            let raw = raw_request(port, req.as_bytes());
            assert!(!leaks(&raw), "http://{authority}{target} leaked");
        }
    }
}

#[test]
fn odd_host_headers_are_refused_or_harmless() {
    let (srv, _dir) = setup();
    let hosts: &[&str] = &[
        "Host: ../../etc\r\n",
        "Host: 127.0.0.1/../secret.txt\r\n",
        "Host: \r\n",
        "Host: a b\r\n",
        "Host: 127.0.0.1\r\nHost: other\r\n",
        "Host: [::1\r\n",
        "Host: x:99999999\r\n",
        "Host: %2e%2e\r\n",
        "",
    ];
    for host in hosts {
        for target in [
            "/G/sub/public.txt",
            "/G/../secret.txt",
            "/G/%2e%2e/secret.txt",
        ] {
            let req = format!("GET {target} HTTP/1.1\r\n{host}Connection: close\r\n\r\n");
            let raw = raw_request(srv.port, req.as_bytes());
            assert!(!leaks(&raw), "{host:?} {target} leaked");
            let status = Reply::parse(&raw).map(|r| r.status);
            assert!(
                matches!(status, Some(400 | 404) | None),
                "{host:?} {target}: {status:?}"
            );
        }
    }
    // HTTP/1.0 needs no Host: the wildcard group still serves the registered file.
    let raw = raw_request(srv.port, b"GET /G/sub/public.txt HTTP/1.0\r\n\r\n");
    assert_eq!(Reply::parse(&raw).unwrap().body, b"public");
}

#[test]
fn garbage_requests_get_an_error_and_the_server_keeps_serving() {
    let (srv, _dir) = setup();
    let garbage: &[&[u8]] = &[
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /G/sub/public.txt\r\n\r\n",
        b"GET /G/sub/public.txt HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /G/sub/public.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=\xff\xfe\r\n\r\n",
        b"GET /G/sub/public.txt HTTP/1.1\r\nHost: x\r\nX: \x01\x02\r\n\r\n",
        b"GET /G/sub/p\xc3\xbcblic.txt HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /G/sub/public.txt HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        b"GET /G/sub/public.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    ];
    for req in garbage {
        let raw = raw_request(srv.port, req);
        assert!(!leaks(&raw));
    }
    let ok = raw_request(
        srv.port,
        b"GET /G/sub/public.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(Reply::parse(&ok).unwrap().status, 200);
}

#[test]
fn curl_path_as_is_traversal() {
    if !have("curl") {
        return;
    }
    let (srv, _dir) = setup();
    for target in [
        "/G/../secret.txt",
        "/G/sub/../secret.txt",
        "/G/%2e%2e/secret.txt",
    ] {
        let out = run(
            "curl",
            &[
                "-s",
                "-i",
                "--path-as-is",
                "--max-time",
                "10",
                &srv.url(target),
            ],
        );
        assert!(!leaks(&out.stdout), "{target}");
        assert!(Reply::parse(&out.stdout).is_some_and(|r| r.status == 400));
    }
}
