//! What a newcomer to `bcs host` expects of a file server (issue 10, library side): an index at the
//! group's root that lists only what the caller may read, an exit summary, caching headers, a 400 that
//! says why, and the minimum send rate cutting a slow client after its documented window.

use std::path::Path;
use std::time::Duration;

use bits_compact::auth::Password;
use bits_compact::{AuthScheme, Principals};

use crate::cli::Running;
use crate::support::{curl, have, pattern, write_file, TestServer};

#[test]
fn the_index_lists_exactly_what_each_caller_may_read() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start();
    let mut users = Principals::default();
    users
        .set_user("alice", &Password::from("alice-pw"), &["ops".into()])
        .unwrap();
    users
        .set_user("bob", &Password::from("bob-pw"), &[])
        .unwrap();
    let ops = users.user("alice").unwrap().1.groups.clone();
    assert_eq!(ops, ["ops"]);
    let ops_sid = {
        let text = users.to_toml();
        let at = text.find("[groups.ops]").unwrap();
        text[at..].split('"').nth(1).unwrap().to_owned()
    };
    srv.server.set_principals(users);
    let group = srv.server.create_url_group(srv.prefix("Ix")).unwrap();
    group.set_authentication(AuthScheme::Basic, true).unwrap();
    group.allow_basic_over_http(true).unwrap();
    group.set_index(true).unwrap();
    let f = write_file(dir.path(), "f.txt", b"0123456789");
    group
        .add_url("public.txt", &f, Some("D:(A;;GR;;;WD)"))
        .unwrap();
    group.add_url("team.txt", &f, None).unwrap(); // authenticated users
    let ops_rule = format!("D:(A;;GR;;;{ops_sid})");
    group.add_url("ops/<b>.txt", &f, Some(&ops_rule)).unwrap();
    let url = srv.url("/Ix/");
    let listed = |user: Option<&str>| {
        let mut args = vec!["-H", "Accept: application/json"];
        if let Some(u) = user {
            args.extend(["-u", u]);
        }
        args.push(&url);
        let r = curl(&args);
        assert_eq!(r.status, 200, "{user:?}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["urls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["suffix"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(listed(None), ["public.txt"]);
    assert_eq!(listed(Some("bob:bob-pw")), ["public.txt", "team.txt"]);
    assert_eq!(
        listed(Some("alice:alice-pw")),
        ["ops/<b>.txt", "public.txt", "team.txt"]
    );
    // HTML: names are escaped, links work, sizes are shown.
    let r = curl(&["-u", "alice:alice-pw", &url]);
    let html = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(
        html.contains("ops/&lt;b&gt;.txt") && !html.contains("<b>"),
        "{html}"
    );
    assert!(html.contains("href=\"/Ix/ops/%3Cb%3E.txt\""), "{html}");
    assert!(html.contains("<td>10</td>"), "{html}");
    let r = curl(&["-u", "alice:alice-pw", &srv.url("/Ix/ops/%3Cb%3E.txt")]);
    assert_eq!(r.body, b"0123456789");
    // Nothing anonymous to show in a group where everything needs a login: challenged, as for a URL.
    group.remove_url("public.txt").unwrap();
    let r = curl(&[&url]);
    assert_eq!(r.status, 401);
    // Off (the library's default): the root is not a URL.
    group.set_index(false).unwrap();
    assert_eq!(curl(&["-u", "alice:alice-pw", &url]).status, 404);
}

/// `bcs host` over http under `/n/`.
fn bcs_host(args: &[&str], files: &[&Path]) -> (Running, u16) {
    crate::cli::spawn_host("http", "n", args, files)
}

#[test]
fn bcs_host_has_an_index_caching_headers_and_an_exit_summary() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.bin", &pattern(300_000, 4));
    let b = write_file(dir.path(), "b.txt", b"bee");
    let (bcs, port) = bcs_host(&[], &[&a, &b]);
    let base = format!("http://127.0.0.1:{port}/n/");
    let r = curl(&["-H", "Accept: application/json", &base]);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["urls"].as_array().unwrap().len(), 2);
    assert_eq!(v["urls"][0]["size"], 300_000);
    // Files may change on disk: caches keep them but ask again, with the ETag.
    let a_url = format!("{base}a.bin");
    let r = curl(&["-I", &a_url]);
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    // Two whole downloads, one range, one HEAD of a.bin; one download of b.txt.
    for args in [vec![], vec![], vec!["-r", "0-99"]] {
        let mut args: Vec<&str> = args;
        args.push(&a_url);
        assert!(curl(&args).status < 300);
    }
    curl(&[&format!("{base}b.txt")]);
    let (code, _, out) = bcs.stop_with_output("-INT");
    assert_eq!(code, Some(0));
    let summary: Vec<&String> = out.iter().skip_while(|l| *l != "Served:").collect();
    assert_eq!(
        summary[1..],
        [
            &"  a.bin  4 requests, 3 downloads completed, 586.0 KiB sent".to_owned(),
            &"  b.txt  1 request, 1 download completed, 3 B sent".to_owned(),
        ],
        "{out:?}"
    );

    let (bcs, port) = bcs_host(&["--no-index"], &[&b]);
    let r = curl(&[&format!("http://127.0.0.1:{port}/n/")]);
    assert_eq!(r.status, 404);
    drop(bcs);
}

#[test]
fn a_host_that_matches_no_group_is_told_so() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start();
    let group = srv
        .server
        .create_url_group(format!("http://files.test:{}/G/", srv.port))
        .unwrap();
    group
        .add_url("f", write_file(dir.path(), "f", b"x"), None)
        .unwrap();
    group
        .set_cache_max_age(Some(Duration::from_secs(60)))
        .unwrap();
    let r = curl(&["-H", "Host: files.test", &srv.url("/G/f")]);
    assert_eq!(
        (r.status, r.header("cache-control")),
        (200, Some("max-age=60"))
    );
    let r = curl(&["-H", "Host: other.test", &srv.url("/G/f")]);
    assert_eq!(r.status, 400);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "400 Bad Request: no URL group here serves this host name and path\n"
    );
}

#[test]
fn a_client_below_the_minimum_send_rate_is_cut_after_one_window() {
    let dir = tempfile::tempdir().unwrap();
    // bcs keeps HTTP.sys's minimum send rate: 150 bytes/s over a 10 s window.
    let window = Duration::from_secs(10);
    let big = write_file(dir.path(), "big", &pattern(8 << 20, 1));
    let (bcs, port) = bcs_host(&[], &[&big]);
    // A client that reads 16 bytes every 200 ms (80 bytes/s, under the 150 asked for) through a 4 KiB
    // receive buffer, and says when the server cut it. Unread data would hide the server's FIN for a
    // minute at this pace, so it also writes an empty line each time (allowed before a request, RFC 9112
    // §2.2): on a closed connection that brings an RST at once.
    let script = format!(
        r#"
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", {port}))
s.sendall(b"GET /n/big HTTP/1.1\r\nHost: x\r\n\r\n")
start = time.time()
s.settimeout(1)
while time.time() - start < 30:
    try:
        s.sendall(b"\r\n")
        if not s.recv(16):
            break
    except socket.timeout:
        continue
    except OSError:
        break
    time.sleep(0.2)
print(time.time() - start)
"#
    );
    let printed = crate::support::python(&script);
    let cut = Duration::from_secs_f64(printed.trim().parse().unwrap());
    drop(bcs);
    // One window after the client slowed down, looked at every quarter window; before, it took up to two
    // windows (about 20 s).
    assert!(
        cut >= window - Duration::from_secs(1) && cut < window + window / 2,
        "cut after {cut:?}"
    );
}
