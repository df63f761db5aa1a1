//! Paths that no URL serves, as a browser and curl meet them: 404 with the groups one may list (issue
//! 23.9); a malformed path stays 400.

use crate::support::{curl, have, write_file, TestServer};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A browser at `http://host:port/` of `bcs host` got `400 invalid path: empty segment`, as did
/// `/h/sub/`. Both are 404 now, naming the group whose index is on; a malformed path is still 400.
#[cfg(feature = "cli")]
#[test]
fn a_browser_at_the_root_of_bcs_host_is_shown_the_group() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "f.txt", b"x");
    let (bcs, port) = crate::cli::spawn_host("http", "h", &[], &[file.as_path()]);
    let base = format!("http://127.0.0.1:{port}");
    let root = curl(&["-H", "Accept: text/html", &format!("{base}/")]);
    assert_eq!(root.status, 404, "{}", text(&root.body));
    let page = text(&root.body);
    assert!(page.contains("<a href=\"/h/\">/h/</a>"), "{page}");
    for path in ["/h/sub/", "/h/f.txt/", "/h//f.txt", "/nothing/here"] {
        let r = curl(&[&format!("{base}{path}")]);
        assert_eq!(r.status, 404, "{path}: {}", text(&r.body));
    }
    for path in ["/h/../f.txt", "/h/%2e%2e/f.txt", "/h/a%2fb"] {
        let r = curl(&["--path-as-is", &format!("{base}{path}")]);
        assert_eq!(r.status, 400, "{path}: {}", text(&r.body));
    }
    drop(bcs);
}

/// The 404 page names only what the caller could open: groups with an index, that this request's host
/// reaches. A host that no group serves is still a 400.
#[test]
fn the_not_found_page_names_only_reachable_groups_with_an_index() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start();
    let file = write_file(dir.path(), "f", b"x");
    let listed = srv.server.create_url_group(srv.prefix("Listed")).unwrap();
    listed.set_index(true).unwrap();
    let unlisted = srv.server.create_url_group(srv.prefix("Quiet")).unwrap();
    unlisted.add_url("f", &file, None).unwrap();
    let named = format!("http://files.test:{}/Named/", srv.port);
    let named = srv.server.create_url_group(named).unwrap();
    named.set_index(true).unwrap();

    let r = curl(&[&srv.url("/")]);
    assert_eq!(r.status, 404);
    let page = text(&r.body);
    assert!(page.contains("/Listed/"), "{page}");
    assert!(!page.contains("Quiet") && !page.contains("Named"), "{page}");
    let r = curl(&["-H", "Host: files.test", &srv.url("/Nope/x")]);
    assert_eq!(r.status, 404);
    let page = text(&r.body);
    assert!(
        page.contains("/Listed/") && page.contains("/Named/"),
        "{page}"
    );
    // Without any index on the port's groups, the page lists nothing.
    listed.set_index(false).unwrap();
    named.set_index(false).unwrap();
    let r = curl(&[&srv.url("/Quiet/")]);
    assert_eq!(r.status, 404);
    assert!(!text(&r.body).contains("Listed"), "{}", text(&r.body));

    // Only the named group: another host name reaches no group at all, which is the client's mistake.
    let only = TestServer::start();
    let group = format!("http://files.test:{}/G/", only.port);
    only.server.create_url_group(group).unwrap();
    let r = curl(&["-H", "Host: other.test", &only.url("/")]);
    assert_eq!(r.status, 400, "{}", text(&r.body));
}
