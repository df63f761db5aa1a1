//! What a server exposes beyond what was published: files reached through symbolic links swapped in after
//! publishing.

use std::os::unix::fs::symlink;
use std::time::Duration;

use crate::support::{raw_request, write_file, Reply, TestServer};

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
        .create_url(&srv.prefix("G"), "f", &published, None)
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
        .create_url(&srv.prefix("G"), "f", &published, None)
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
        .create_url(&srv.prefix("G"), "f", &published, None)
        .unwrap();
    srv.server
        .create_url(&srv.prefix("G"), "large", &large, None)
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
