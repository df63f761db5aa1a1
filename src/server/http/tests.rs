//! The request path without sockets: an in-memory request and a `ConnInfo` in, a response out.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};

use super::peer::ConnInfo;
use super::request::handle;
use super::site::{Settings, Site};
use crate::auth::{AuthScheme, Authenticator};
use crate::files::{FileCache, ResponseBody};
use crate::limits::ReadBudget;
use crate::metrics::{GroupSeries, Metrics};
use crate::router::RouteTable;
use crate::url::UrlGroup;

struct Fixture {
    site: Arc<Site>,
    group: UrlGroup,
    _dir: tempfile::TempDir,
}

/// One group `http://+:8080/G/` publishing `f.txt` (26 letters) and routes for it.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, b"abcdefghijklmnopqrstuvwxyz").unwrap();
    let cache = FileCache::new(Duration::ZERO, 0, 0);
    let prefix = "http://+:8080/G/".parse().unwrap();
    let group = UrlGroup::new(
        prefix,
        cache,
        None,
        Default::default(),
        GroupSeries::detached(),
    );
    group.add_url("f.txt", &file, None).unwrap();
    let site = Site {
        settings: Settings {
            header_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
            min_send_rate: 0,
            min_send_window: Duration::from_secs(1),
            max_connections: 1,
        },
        routes: ArcSwap::from_pointee(RouteTable::new(std::slice::from_ref(&group))),
        tls: ArcSwap::from_pointee(HashMap::new()),
        auth: Authenticator::new(("BCS".into(), "BCS".into()), false),
        transfers: Default::default(),
        zero_copy: None,
        metrics: Arc::new(Metrics::new(None)),
        access_log: None,
    };
    Fixture {
        site: Arc::new(site),
        group,
        _dir: dir,
    }
}

fn conn() -> Arc<ConnInfo> {
    let peer: std::net::SocketAddr = "192.0.2.7:50000".parse().unwrap();
    Arc::new(ConnInfo {
        peer,
        local: "192.0.2.1:8080".parse().unwrap(),
        client: None,
        secure: false,
        auth: Default::default(),
        budget: ReadBudget::new(false, ReadBudget::server(1 << 20), peer.ip()),
        zero_copy: None,
    })
}

async fn call(f: &Fixture, req: Request<Empty<Bytes>>) -> (StatusCode, http::HeaderMap, Bytes) {
    let response = handle(req, f.site.clone(), conn()).await.unwrap();
    let (parts, body): (_, ResponseBody) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, bytes)
}

fn get(path: &str) -> http::request::Builder {
    Request::get(path).header(header::HOST, "example.test")
}

#[tokio::test]
async fn routing_answers_without_a_socket() {
    let f = fixture();
    let (status, _, body) = call(&f, get("/G/f.txt").body(Empty::new()).unwrap()).await;
    assert_eq!(
        (status, &body[..]),
        (StatusCode::OK, &b"abcdefghijklmnopqrstuvwxyz"[..])
    );
    // No such URL in the group: 404; no group for the path: 404 too (no URL serves it; HTTP.sys
    // answers 400); a bad path: 400.
    let (status, _, _) = call(&f, get("/G/nope").body(Empty::new()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&f, get("/Other/f.txt").body(Empty::new()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = call(&f, get("/G/../f.txt").body(Empty::new()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, headers, _) = call(
        &f,
        Request::delete("/G/f.txt")
            .header(header::HOST, "x")
            .body(Empty::new())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "GET, HEAD");
}

#[tokio::test]
async fn a_path_no_url_serves_is_a_404_naming_the_groups_with_an_index() {
    let f = fixture();
    for path in ["/", "/G/f.txt/", "/G//f.txt", "/Other/"] {
        let (status, headers, body) = call(&f, get(path).body(Empty::new()).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
        assert!(
            !body.windows(3).any(|w| w == b"/G/"),
            "{path}: no index, no list"
        );
    }
    f.group.set_index(true).unwrap();
    let (status, headers, body) = call(&f, get("/").body(Empty::new()).unwrap()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let page = String::from_utf8_lossy(&body);
    assert!(page.contains("<a href=\"/G/\">/G/</a>"), "{page}");
    // Malformed paths stay 400.
    for path in ["/G/../f.txt", "/G/%2e%2e/f.txt", "/G/a%2fb", "/G/%zz"] {
        let (status, _, _) = call(&f, get(path).body(Empty::new()).unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
    }
}

#[tokio::test]
async fn a_ranged_get_is_a_206_with_the_exact_bytes() {
    let f = fixture();
    let req = get("/G/f.txt")
        .header(header::RANGE, "bytes=2-5")
        .body(Empty::new())
        .unwrap();
    let (status, headers, body) = call(&f, req).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(headers[header::CONTENT_RANGE], "bytes 2-5/26");
    assert_eq!(headers[header::CONTENT_LENGTH], "4");
    assert_eq!(&body[..], b"cdef");
}

#[tokio::test]
async fn a_group_with_schemes_challenges_an_anonymous_caller() {
    let f = fixture();
    f.group.set_authentication(AuthScheme::Ntlm, true).unwrap();
    f.group.set_authentication(AuthScheme::Basic, true).unwrap();
    f.group.allow_basic_over_http(true).unwrap();
    let (status, headers, body) = call(&f, get("/G/f.txt").body(Empty::new()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<_> = headers
        .get_all(header::WWW_AUTHENTICATE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        challenges,
        [
            "NTLM",
            "Basic realm=\"http://+:8080/G/\", charset=\"UTF-8\""
        ]
    );
    assert!(!body.windows(5).any(|w| w == b"abcde"), "no file bytes");
    // A malformed Authorization header is a 400, and credentials of no enabled scheme are ignored.
    let req = get("/G/f.txt")
        .header(header::AUTHORIZATION, "Basic !!!")
        .body(Empty::new())
        .unwrap();
    assert_eq!(call(&f, req).await.0, StatusCode::BAD_REQUEST);
    let req = get("/G/f.txt")
        .header(header::AUTHORIZATION, "Bearer x")
        .body(Empty::new())
        .unwrap();
    assert_eq!(call(&f, req).await.0, StatusCode::UNAUTHORIZED);
}
