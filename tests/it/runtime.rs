//! The library API while serving: groups and URLs changed at runtime, files changed on disk, deadlines,
//! the connection cap and graceful shutdown.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use bits_compact::{Server, ServerError, UrlError};

use crate::support::{curl, free_port, have, pattern, write_file, Reply, TestServer};

fn get(port: u16, path: &str) -> Option<Reply> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    stream.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).ok()?;
    Reply::parse(&out)
}

#[test]
fn groups_and_urls_change_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("One")).unwrap();
    assert_eq!(get(srv.port, "/One/a.txt").unwrap().status, 404);
    group.add_url("a.txt", &a, None).unwrap();
    assert_eq!(get(srv.port, "/One/a.txt").unwrap().body, b"alpha");
    assert!(group.contains_url("A.TXT"));
    assert_eq!(group.urls().len(), 1);
    assert!(group.remove_url("a.txt").unwrap());
    assert!(!group.remove_url("a.txt").unwrap());
    assert_eq!(get(srv.port, "/One/a.txt").unwrap().status, 404);

    // A group on a new port gets a listener at once; deleting the last group on it closes it.
    let port = free_port();
    let prefix = format!("http://+:{port}/Two/");
    let url = srv
        .server
        .create_url(&prefix, "a.txt", &a, Some("D:(A;;GR;;;WD)"))
        .unwrap();
    assert_eq!(
        url.sddl().map(ToString::to_string).as_deref(),
        Some("D:(A;;GR;;;WD)")
    );
    assert_eq!(
        srv.server.local_addrs(port),
        vec![(Ipv4Addr::LOCALHOST, port).into()]
    );
    assert_eq!(get(port, "/Two/a.txt").unwrap().body, b"alpha");
    assert_eq!(srv.server.url_groups().len(), 2);
    srv.server.delete_url_group(&prefix).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
        assert!(Instant::now() < deadline, "port {port} still open");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(
        srv.server.delete_url_group(&prefix),
        Err(ServerError::GroupNotFound(_))
    ));
    // The first port still serves its group.
    assert_eq!(get(srv.port, "/One/a.txt").unwrap().status, 404);
}

#[test]
fn registration_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();

    let e = srv.server.create_url_group(srv.prefix("g")).unwrap_err();
    assert!(matches!(e, ServerError::GroupExists(_)), "{e}");
    let e = srv.server.create_url_group("http://+:80/a/b/").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid URL prefix \"http://+:80/a/b/\": only one path segment is allowed"
    );
    let e = srv
        .server
        .create_url_group(format!("https://+:{}/S/", srv.port))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "port {} already serves http URL groups, so it cannot serve https",
            srv.port
        )
    );
    let cert = bits_compact::ServerCertificate::self_signed(&["localhost".into()]).unwrap();
    let e = srv.server.set_ssl_certificate(srv.port, cert).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "port {} serves http URL groups; certificates bind to https ports",
            srv.port
        )
    );

    let e = group
        .add_url("x", dir.path().join("missing"), None)
        .unwrap_err();
    assert!(matches!(e, UrlError::File { .. }), "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
    let e = group.add_url("x", dir.path(), None).unwrap_err();
    assert!(matches!(e, UrlError::NotAFile { .. }), "{e}");
    let e = group.add_url("../x", &a, None).unwrap_err();
    assert!(matches!(e, UrlError::Suffix { .. }), "{e}");
    group.add_url("a.txt", &a, None).unwrap();
    let e = group.add_url("A.txt", &a, None).unwrap_err();
    assert!(matches!(e, UrlError::Exists { .. }), "{e}");

    let e = Server::builder()
        .max_connections(0)
        .idle_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid server configuration: the idle timeout must be more than zero; the connection limit must be at least 1"
    );
}

#[test]
fn port_in_use_is_an_error_at_group_creation() {
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    let server = Server::builder()
        .bind_addresses([Ipv4Addr::LOCALHOST.into()])
        .build()
        .unwrap();
    let e = server
        .create_url_group(format!("http://+:{port}/x/"))
        .unwrap_err();
    assert!(matches!(e, ServerError::Bind { .. }), "{e}");
    assert_eq!(e.to_string(), format!("cannot listen on 127.0.0.1:{port}"));
    assert!(server.url_groups().is_empty());
}

#[test]
fn a_changed_file_is_seen_within_the_revalidation_interval() {
    let dir = tempfile::tempdir().unwrap();
    let small = write_file(dir.path(), "small.txt", b"version one");
    let srv = TestServer::start_with(|b| b.revalidate_interval(Duration::from_millis(300)));
    srv.server
        .create_url(srv.prefix("G"), "small.txt", &small, None)
        .unwrap();
    assert_eq!(get(srv.port, "/G/small.txt").unwrap().body, b"version one");
    std::fs::write(&small, b"version two!").unwrap();
    // Within the interval the old version may still be served, but always whole and consistent.
    let r = get(srv.port, "/G/small.txt").unwrap();
    let len = r
        .header("content-length")
        .unwrap()
        .parse::<usize>()
        .unwrap();
    assert!(r.body == b"version one" || r.body == b"version two!");
    assert_eq!(len, r.body.len());
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(get(srv.port, "/G/small.txt").unwrap().body, b"version two!");
}

#[test]
fn a_changed_or_vanished_file_is_served_as_it_is_now() {
    let dir = tempfile::tempdir().unwrap();
    let small = write_file(dir.path(), "small.txt", b"version one");
    let big_v1 = pattern(1 << 20, 3);
    let big = write_file(dir.path(), "big.bin", &big_v1);
    let srv = TestServer::start_with(|b| b.revalidate_interval(Duration::ZERO));
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    group.add_url("small.txt", &small, None).unwrap();
    group.add_url("big.bin", &big, None).unwrap();
    assert_eq!(get(srv.port, "/G/small.txt").unwrap().body, b"version one");
    assert!(get(srv.port, "/G/big.bin").unwrap().body == big_v1);
    let etag_before = get(srv.port, "/G/small.txt")
        .unwrap()
        .header("etag")
        .map(str::to_owned);

    std::fs::write(&small, b"v2, longer than before").unwrap();
    let big_v2 = pattern(700_000, 4);
    std::fs::write(&big, &big_v2).unwrap();
    let r = get(srv.port, "/G/small.txt").unwrap();
    assert_eq!(r.body, b"v2, longer than before");
    assert_eq!(r.header("content-length"), Some("22"));
    assert_ne!(r.header("etag").map(str::to_owned), etag_before);
    let r = get(srv.port, "/G/big.bin").unwrap();
    assert_eq!(r.header("content-length"), Some("700000"));
    assert!(r.body == big_v2);

    std::fs::remove_file(&small).unwrap();
    std::fs::remove_file(&big).unwrap();
    assert_eq!(get(srv.port, "/G/small.txt").unwrap().status, 404);
    assert_eq!(get(srv.port, "/G/big.bin").unwrap().status, 404);
}

#[test]
fn header_timeout_closes_a_silent_or_slow_client() {
    let srv = TestServer::start_with(|b| b.header_timeout(Duration::from_millis(500)));
    srv.server.create_url_group(srv.prefix("G")).unwrap();
    for partial in [&b""[..], b"GET /G/x HTTP/1.1\r\nHost: x\r\n"] {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, srv.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(partial).unwrap();
        let start = Instant::now();
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(400) && waited < Duration::from_secs(8),
            "closed after {waited:?}"
        );
    }
}

#[test]
fn idle_timeout_drops_a_client_that_stops_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sparse.bin");
    let len: u64 = 256 << 20;
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    let srv = TestServer::start_with(|b| b.idle_timeout(Duration::from_millis(500)));
    srv.server
        .create_url(srv.prefix("G"), "sparse.bin", &path, None)
        .unwrap();
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, srv.port)).unwrap();
    stream
        .write_all(b"GET /G/sparse.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    assert!(
        total < len,
        "the whole file arrived: the connection was not dropped"
    );
}

#[test]
fn connection_cap_holds_further_clients_in_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let srv = TestServer::start_with(|b| b.max_connections(1));
    srv.server
        .create_url(srv.prefix("G"), "a.txt", &a, None)
        .unwrap();
    let req = b"GET /G/a.txt HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut first = TcpStream::connect((Ipv4Addr::LOCALHOST, srv.port)).unwrap();
    first.write_all(req).unwrap();
    let mut buf = [0u8; 4096];
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(first.read(&mut buf).unwrap() > 0);
    let mut second = TcpStream::connect((Ipv4Addr::LOCALHOST, srv.port)).unwrap();
    second.write_all(req).unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    assert!(
        second.read(&mut buf).is_err(),
        "served past the connection cap"
    );
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = second.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
}

#[test]
fn shutdown_drains_a_download_in_flight_and_refuses_new_connections() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(3 << 20, 5);
    let path = write_file(dir.path(), "big.bin", &data);
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    group.add_url("big.bin", &path, None).unwrap();
    // Server-side pacing keeps the response in flight (loopback buffers would swallow it at once).
    group
        .set_bandwidth_limit("2MiB/s".parse().unwrap())
        .unwrap();
    let url = srv.url("/G/big.bin");
    let port = srv.port;
    let out = dir.path().join("out.bin");
    let mut child = std::process::Command::new("curl")
        .args(["-s", "-o", out.to_str().unwrap(), &url])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while group.active_transfers() == 0 {
        assert!(Instant::now() < deadline, "the download did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let asked = Instant::now();
    drop(srv); // signals shutdown and waits for serve to return
    assert!(
        asked.elapsed() > Duration::from_millis(500),
        "serve returned before draining"
    );
    assert!(child.wait().unwrap().success());
    assert!(std::fs::read(&out).unwrap() == data);
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let srv = TestServer::start();
    srv.server
        .create_url(srv.prefix("G"), "a.txt", &a, None)
        .unwrap();
    let url = srv.url("/G/a.txt");
    let out = crate::support::run("curl", &["-s", "-v", &url, &url, &url]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alphaalphaalpha");
    assert!(
        log.contains("Re-using existing connection") || log.contains("Reusing existing"),
        "{log}"
    );
    let r = curl(&["-H", "Accept-Encoding: gzip", &url]);
    assert!(r.header("content-encoding").is_none());
}
