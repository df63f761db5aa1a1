//! What a server exposes beyond what was published: files reached through symbolic links swapped in after
//! publishing, and addresses listened on beyond the one an IP-literal prefix names.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::time::Duration;

use bits_compact::{Server, ServerError};

use crate::support::{free_port, raw_request, write_file, Reply, TestServer};

const SECRET: &[u8] = b"outside-secret-7f3a9c";

/// A GET on a new connection to 127.0.0.1:`port`.
fn get(port: u16, path: &str) -> Reply {
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    Reply::parse(&raw_request(port, req.as_bytes())).expect("a parsable response")
}

/// Asserts that `path` is answered 404 to GET, HEAD and a range request, and that `secret` never shows.
fn assert_not_served(port: u16, path: &str, secret: &[u8]) {
    for head in [
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        format!("HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes=0-5\r\nConnection: close\r\n\r\n"
        ),
    ] {
        let raw = raw_request(port, head.as_bytes());
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret),
            "the secret was served"
        );
        let reply = Reply::parse(&raw).expect("a parsable response");
        assert_eq!(reply.status, 404, "{head:?}");
    }
}

#[test]
fn a_published_file_swapped_for_a_symbolic_link_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let published = write_file(&dir.path().join("pub"), "f", b"public");
    write_file(&dir.path().join("outside"), "secret", SECRET);
    let srv = TestServer::start_with(|b| b.revalidate_interval(Duration::ZERO));
    srv.server
        .create_url(srv.prefix("G"), "f", &published, None)
        .unwrap();
    assert_eq!(get(srv.port, "/G/f").body, b"public");

    // As `ln -sf ../outside/secret pub/f.new && mv -T pub/f.new pub/f`.
    let staged = dir.path().join("pub/f.new");
    symlink("../outside/secret", &staged).unwrap();
    std::fs::rename(&staged, &published).unwrap();
    assert_not_served(srv.port, "/G/f", SECRET);
}

#[test]
fn a_parent_directory_swapped_for_a_symbolic_link_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let published = write_file(&dir.path().join("pub/sub"), "f", b"public");
    write_file(&dir.path().join("other"), "f", SECRET);
    let srv = TestServer::start_with(|b| b.revalidate_interval(Duration::ZERO));
    srv.server
        .create_url(srv.prefix("G"), "f", &published, None)
        .unwrap();
    assert_eq!(get(srv.port, "/G/f").body, b"public");

    // pub/sub becomes a link to ../other, which holds a file of the same name.
    let sub = dir.path().join("pub/sub");
    std::fs::rename(&sub, dir.path().join("pub/sub.old")).unwrap();
    symlink("../other", &sub).unwrap();
    assert_not_served(srv.port, "/G/f", SECRET);
}

#[test]
fn a_published_file_replaced_by_a_regular_file_is_served_anew() {
    let dir = tempfile::tempdir().unwrap();
    let published = write_file(dir.path(), "f", b"first version");
    let big = crate::support::pattern(1 << 20, 3);
    let large = write_file(dir.path(), "large", &big);
    let srv = TestServer::start_with(|b| b.revalidate_interval(Duration::ZERO));
    srv.server
        .create_url(srv.prefix("G"), "f", &published, None)
        .unwrap();
    srv.server
        .create_url(srv.prefix("G"), "large", &large, None)
        .unwrap();
    assert_eq!(get(srv.port, "/G/f").body, b"first version");
    assert_eq!(get(srv.port, "/G/large").body, big);

    // An atomic replacement, as editors and deploy scripts do it.
    let staged = write_file(dir.path(), "f.new", b"the second version");
    std::fs::rename(&staged, &published).unwrap();
    let reply = get(srv.port, "/G/f");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"the second version");
    let bigger = crate::support::pattern(1 << 20, 4);
    let staged = write_file(dir.path(), "large.new", &bigger);
    std::fs::rename(&staged, &large).unwrap();
    assert_eq!(get(srv.port, "/G/large").body, bigger);
}

/// Local addresses other than 127.0.0.1 that a wildcard listener would answer on: another loopback
/// address and `::1`. (Tests send nothing beyond loopback, so the machine's other interfaces are left out;
/// a listener on 0.0.0.0 answers 127.0.0.2 as it would them.)
fn other_local_addresses() -> Vec<IpAddr> {
    vec![
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]
}

/// Whether something accepts connections on `ip:port`.
fn accepts(ip: IpAddr, port: u16) -> bool {
    TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(2)).is_ok()
}

/// A GET sent to `ip:port` (naming host 127.0.0.1, so only the local address differs).
fn get_via(ip: IpAddr, port: u16, path: &str) -> Reply {
    let mut stream =
        TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(2)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    Reply::parse(&out).expect("a parsable response")
}

#[test]
fn an_ip_literal_prefix_listens_on_that_address_only() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let server = Server::builder().build().unwrap(); // all addresses by default
    let port = free_port();
    let group = server
        .create_url_group(format!("http://127.0.0.1:{port}/x/"))
        .unwrap();
    group.add_url("a.txt", &a, None).unwrap();
    assert_eq!(
        server.local_addrs(port),
        vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))]
    );
    let _serving = TestServer::serving(server.clone(), port);
    assert_eq!(get(port, "/x/a.txt").body, b"alpha");
    for ip in other_local_addresses() {
        assert!(!accepts(ip, port), "{ip}:{port} accepts connections");
    }
}

#[test]
fn groups_needing_other_addresses_than_their_port_listens_on_are_refused() {
    let server = Server::builder().build().unwrap();
    let port = free_port();
    let only = format!("http://127.0.0.1:{port}/x/");
    server.create_url_group(&only).unwrap();
    let listening = vec![SocketAddr::from((Ipv4Addr::LOCALHOST, port))];
    for prefix in [
        format!("http://+:{port}/y/"),
        format!("http://*:{port}/y/"),
        format!("http://files.example:{port}/y/"),
        format!("http://[::1]:{port}/y/"),
    ] {
        let e = server.create_url_group(&prefix).unwrap_err();
        match &e {
            ServerError::AddressConflict {
                port: p,
                addrs,
                prefix: refused,
            } => {
                assert_eq!((*p, addrs, refused), (port, &listening, &prefix));
            }
            other => panic!("{prefix}: {other}"),
        }
        assert_eq!(
            e.to_string(),
            format!("port {port} listens on 127.0.0.1:{port} only, so it cannot serve {prefix}")
        );
    }
    // Another group of the same address is fine; nothing was widened.
    server
        .create_url_group(format!("http://127.0.0.1:{port}/z/"))
        .unwrap();
    assert_eq!(server.local_addrs(port), listening);
    assert_eq!(server.url_groups().len(), 2);

    // A prefix outside the addresses the server may bind is refused before anything listens.
    let narrow = Server::builder()
        .bind_addresses([Ipv4Addr::LOCALHOST.into()])
        .build()
        .unwrap();
    let e = narrow
        .create_url_group(format!("http://[::1]:{port}/x/"))
        .unwrap_err();
    assert!(matches!(e, ServerError::Config(_)), "{e}");
    assert!(narrow.local_addrs(port).is_empty());

    // An adopted listener is used as bound; an IP-literal group outside its address is refused, and the
    // listener stays for a group that fits.
    let srv = TestServer::start();
    let e = srv
        .server
        .create_url_group(format!("http://[::1]:{}/x/", srv.port))
        .unwrap_err();
    assert!(matches!(e, ServerError::AddressConflict { .. }), "{e}");
    srv.server.create_url_group(srv.prefix("x")).unwrap();
    assert_eq!(
        srv.server.local_addrs(srv.port),
        vec![SocketAddr::from((Ipv4Addr::LOCALHOST, srv.port))]
    );
}

#[test]
fn an_ip_literal_group_on_a_port_open_to_all_addresses_answers_on_its_address_only() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    // Loopback only, both families: the `+` group's port listens on 127.0.0.1 and ::1.
    let loopback = [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()];
    let server = Server::builder().bind_addresses(loopback).build().unwrap();
    let port = free_port();
    server
        .create_url_group(format!("http://+:{port}/open/"))
        .unwrap();
    let group = server
        .create_url_group(format!("http://127.0.0.1:{port}/local/"))
        .unwrap();
    group.add_url("a.txt", &a, None).unwrap();
    let _serving = TestServer::serving(server.clone(), port);
    assert_eq!(get(port, "/local/a.txt").body, b"alpha");
    assert!(
        accepts(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        "the + group's port"
    );
    for ip in other_local_addresses() {
        if accepts(ip, port) {
            // No group matches there: no URL serves the path (HTTP.sys answers 400).
            let reply = get_via(ip, port, "/local/a.txt");
            assert_eq!(reply.status, 404, "via {ip}");
            assert_ne!(reply.body, b"alpha", "via {ip}");
        }
    }
}

#[cfg(feature = "cli")]
#[test]
fn bcs_with_an_ip_literal_prefix_says_and_does_listen_on_that_address_only() {
    use crate::cli::{Running, BCS};

    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let port = free_port();
    let prefix = format!("http://127.0.0.1:{port}/rel/");
    let child = Running::spawn(
        std::path::Path::new(BCS),
        &["host", "--url", &prefix, a.to_str().unwrap()],
    );
    let seen = child.lines_until("Ctrl-C");
    let banner = seen.last().cloned().unwrap_or_default();
    let reached = get(port, "/rel/a.txt").body;
    let exposed: Vec<IpAddr> = other_local_addresses()
        .into_iter()
        .filter(|ip| accepts(*ip, port))
        .collect();
    drop(child);
    assert_eq!(banner, "Press Ctrl-C to stop. Listening on 127.0.0.1 only.");
    assert_eq!(reached, b"alpha");
    assert!(exposed.is_empty(), "also listening on {exposed:?}");
}
