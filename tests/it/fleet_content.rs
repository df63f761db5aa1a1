//! A fleet's content: a file published on node A (present only there) is pulled by B and C into their
//! own verified copies, from A or from each other, over the peer path; every node serves the same bytes
//! with the same validators. Real etcd members, real `bcs serve` nodes on 127.0.0.1, .2 and .3, real
//! clients (curl, `bcs download`). Waits are polls with deadlines; rates are bounded so that a pull is
//! seen under way.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use bits_compact::service::fleet::peer_user;
use bits_compact::Password;

use crate::cli::BCS;
use crate::fleet::{eventually, have_etcd, Etcd, Node};
use crate::service::text;
use crate::support::{free_port, have, pattern, run, write_file};

const MIB: usize = 1 << 20;

fn sha256_hex(bytes: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Three nodes with peer paths on one port; `extra[i]` are node i's further arguments.
fn nodes(etcd: &Etcd, fleet: &str, extra: [&[&str]; 3]) -> [Node; 3] {
    let peer = free_port();
    let mut n = 0u8;
    extra.map(|more| {
        n += 1;
        let addr = format!("127.0.0.{n}:{peer}");
        let mut args = vec!["--fleet-peer", addr.as_str()];
        args.extend_from_slice(more);
        Node::start_with(etcd, fleet, n, &args)
    })
}

/// A GET (or HEAD) with curl: status, response headers (lowercase names), body.
fn fetch(url: &str, head: bool, extra: &[&str]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("h");
    let mut args = vec![
        "-s",
        "--max-time",
        "20",
        "-D",
        headers.to_str().unwrap(),
        "-o",
        "-",
    ];
    if head {
        args.push("-I");
    }
    args.extend_from_slice(extra);
    args.push(url);
    let out = run("curl", &args);
    let raw = std::fs::read_to_string(&headers).unwrap_or_default();
    let mut status = 0;
    let mut list = Vec::new();
    for line in raw.lines() {
        if line.starts_with("HTTP/") {
            status = line
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            list.clear();
        } else if let Some((k, v)) = line.split_once(':') {
            list.push((k.trim().to_lowercase(), v.trim().to_owned()));
        }
    }
    (status, list, out.stdout)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The `content` of `bcs fleet status --json` as `node` answers it.
fn content_status(node: &Node) -> Vec<Value> {
    node.json(&["fleet", "status"])["content"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Whether `node` holds `sha` (a verified copy in its content directory).
fn holds(node: &Node, sha: &str) -> bool {
    node.state().join("content").join(sha).is_file()
}

/// The bytes `node` is fetching of `sha` from `from`, per `bcs fleet status` (asked of `ask`).
fn fetching(ask: &Node, node: &Node, sha: &str) -> Option<(String, u64)> {
    content_status(ask)
        .iter()
        .filter(|c| c["sha256"] == sha)
        .flat_map(|c| c["fetching"].as_array().cloned().unwrap_or_default())
        .find(|f| f["node"] == node.name.as_str())
        .map(|f| {
            (
                f["from"].as_str().unwrap_or_default().to_owned(),
                f["bytes"].as_u64().unwrap_or(0),
            )
        })
}

/// The GETs of `sha` in `node`'s peer-path log: (status, bytes) each.
fn peer_gets(node: &Node, sha: &str) -> Vec<(u64, u64)> {
    let log = std::fs::read_to_string(node.state().join("peer-access.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["method"] == "GET" && e["target"].as_str().is_some_and(|t| t.ends_with(sha)))
        .map(|e| {
            (
                e["status"].as_u64().unwrap_or(0),
                e["bytes"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Seeded bytes written to `dir/name`, with their SHA-256 and the file's path.
struct Payload {
    bytes: Vec<u8>,
    sha: String,
    file: PathBuf,
}

fn payload(dir: &Path, name: &str, mib: usize, seed: u64) -> Payload {
    let bytes = pattern(mib * MIB, seed);
    let sha = sha256_hex(&bytes);
    let file = write_file(dir, name, &bytes);
    Payload { bytes, sha, file }
}

/// A group `/app/` on a free port, made through `node`: the port and the prefix.
fn app_group(node: &Node) -> (u16, String) {
    let port = free_port();
    let prefix = format!("http://+:{port}/app/");
    node.ok(&["group", "create", &prefix]);
    (port, prefix)
}

fn wait_held(node: &Node, sha: &str, limit: Duration) {
    assert!(
        eventually(limit, || holds(node, sha)),
        "{} does not hold {sha} after {limit:?}",
        node.name
    );
}

/// Publishing on A: until C holds the bytes it answers 503 with Retry-After and never other bytes;
/// `bcs fleet status` shows C fetching; then all three serve the same bytes with equal ETag,
/// Last-Modified and Repr-Digest, curl and `bcs download` started while C was still fetching end with
/// the file, and with the file moved away and A stopped, B and C still serve their own copies. The
/// origin sent about one copy.
#[test]
fn content_published_on_one_node_is_served_by_every_node() {
    if !have_etcd() || !have("curl") {
        return;
    }
    let etcd = Etcd::start();
    let [mut a, b, c] = nodes(&etcd, "reach", [&[], &[], &["--fleet-pull-rate", "16MB"]]);
    let files = tempfile::tempdir().unwrap();
    let Payload {
        bytes: content,
        sha,
        file,
    } = payload(files.path(), "big.bin", 64, 25);
    let (port, prefix) = app_group(&a);
    let url = |n: &Node| format!("http://{}:{port}/app/big.bin", n.ip);
    // The group exists everywhere before the URL does: the first answers are about the URL.
    assert!(eventually(Duration::from_secs(5), || fetch(
        &url(&c),
        true,
        &[]
    )
    .0 == 404));

    let published = a.json(&["url", "add", &prefix, "big.bin", file.to_str().unwrap()]);
    assert_eq!(published["content"]["sha256"], sha.as_str(), "{published}");
    assert_eq!(published["content"]["origin"], "node1");
    // Clients that start while C is still fetching.
    let out = tempfile::tempdir().unwrap();
    let curl_file = out.path().join("curl.bin");
    let curl = {
        let (url, to) = (url(&c), curl_file.clone());
        std::thread::spawn(move || {
            run(
                "curl",
                &[
                    "-s",
                    "--retry",
                    "20",
                    "--retry-delay",
                    "1",
                    "--max-time",
                    "60",
                    "-o",
                    to.to_str().unwrap(),
                    "-w",
                    "%{http_code}",
                    &url,
                ],
            )
        })
    };
    let bcs_file = out.path().join("bcs.bin");
    let download = {
        let (url, to) = (url(&c), bcs_file.clone());
        let home = out.path().join("home");
        std::thread::spawn(move || {
            std::process::Command::new("timeout")
                .args([
                    "90",
                    BCS,
                    "download",
                    &url,
                    "-o",
                    to.to_str().unwrap(),
                    "--json",
                ])
                .env("HOME", &home)
                .env("XDG_STATE_HOME", home.join("state"))
                .output()
                .unwrap()
        })
    };

    let mut pending = 0;
    let mut seen_fetching = None;
    let started = Instant::now();
    loop {
        let (status, headers, body) = fetch(&url(&c), false, &[]);
        match status {
            503 => {
                pending += 1;
                assert_eq!(header(&headers, "retry-after"), Some("5"), "{headers:?}");
            }
            200 => {
                assert!(
                    body == content,
                    "C served other bytes ({} bytes)",
                    body.len()
                );
                break;
            }
            other => panic!("C answered {other} while fetching: {}", text(&body)),
        }
        if seen_fetching.is_none() {
            seen_fetching = fetching(&a, &c, &sha).filter(|(_, bytes)| *bytes > 0);
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "C never served it"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pending > 0, "C never answered 503 before it held the bytes");
    let (from, bytes) = seen_fetching.expect("bcs fleet status never showed C fetching");
    // B took its turn first (name order) from the origin; C then pulled from B, not the origin.
    assert_eq!(from, "node2");
    assert!(bytes > 0 && bytes < content.len() as u64);

    // Same bytes, same validators everywhere.
    let heads: Vec<_> = [&a, &b, &c]
        .iter()
        .map(|n| {
            assert!(
                eventually(Duration::from_secs(20), || holds(n, &sha)),
                "{}",
                n.name
            );
            let (status, headers, _) = fetch(&url(n), true, &[]);
            assert_eq!(status, 200, "{}", n.name);
            ["etag", "last-modified", "repr-digest", "content-length"]
                .map(|h| header(&headers, h).unwrap_or_default().to_owned())
        })
        .collect();
    assert_eq!(heads[0][0], format!("\"sha256-{sha}\""));
    assert!(heads.iter().all(|h| *h == heads[0]), "{heads:?}");
    for n in [&b, &c] {
        assert!(fetch(&url(n), false, &[]).2 == content, "{}", n.name);
    }
    let status = content_status(&b);
    assert_eq!(status.len(), 1, "{status:?}");
    let holders: BTreeSet<_> = status[0]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        holders,
        ["node1", "node2", "node3"].map(String::from).into()
    );
    assert_eq!(status[0]["urls"][0], format!("{prefix}big.bin"));

    // The clients that started early got the file whole.
    let curl = curl.join().unwrap();
    assert_eq!(text(&curl.stdout), "200", "{}", text(&curl.stderr));
    assert!(
        std::fs::read(&curl_file).unwrap() == content,
        "curl's copy differs"
    );
    let download = download.join().unwrap();
    assert!(
        download.status.success(),
        "bcs download: {}",
        text(&download.stderr)
    );
    assert!(
        std::fs::read(&bcs_file).unwrap() == content,
        "bcs download's copy differs"
    );

    // The origin sent about one copy: C pulled from B, or B from A and C from A only after waiting.
    let sent: u64 = peer_gets(&a, &sha).iter().map(|(_, n)| n).sum();
    assert!(
        sent < 2 * content.len() as u64,
        "the origin sent {sent} bytes"
    );

    // The file gone from A's disk and A stopped: B and C serve their own copies.
    std::fs::rename(&file, files.path().join("moved")).unwrap();
    a.stop("-TERM");
    for n in [&b, &c] {
        let (status, _, body) = fetch(&url(n), false, &[]);
        assert_eq!(status, 200, "{}", n.name);
        assert!(body == content, "{} after A stopped", n.name);
    }
}

/// A TCP forwarder on 127.0.0.9 standing in for a load balancer: it sends each new connection to the
/// current backend, and `switch` moves to another one, cutting the connections open now.
struct Balancer {
    backend: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

impl Balancer {
    fn start(port: u16, backends: Vec<String>) -> Balancer {
        let listener = TcpListener::bind(("127.0.0.9", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let balancer = Balancer {
            backend: Arc::new(AtomicUsize::new(0)),
            open: Arc::default(),
            stop: Arc::default(),
        };
        let (backend, open, stop) = (
            balancer.backend.clone(),
            balancer.open.clone(),
            balancer.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let target = &backends[backend.load(Ordering::SeqCst)];
                let Ok(server) = TcpStream::connect((target.as_str(), port)) else {
                    continue;
                };
                open.lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        balancer
    }

    fn switch(&self, to: usize) {
        self.backend.store(to, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.switch(0);
    }
}

/// Half from A, cut, the rest from B: curl `-C -` with `If-Range` and `bcs download` behind a
/// balancer that moves it from A to B both end byte-identical, and B's log shows the 206s.
#[test]
fn a_download_started_on_one_node_resumes_on_another() {
    if !have_etcd() || !have("curl") {
        return;
    }
    let etcd = Etcd::start();
    let [a, mut b, c] = nodes(&etcd, "resume", [&[], &[], &[]]);
    let files = tempfile::tempdir().unwrap();
    let Payload {
        bytes: content,
        sha,
        file,
    } = payload(files.path(), "big.bin", 64, 26);
    let (port, prefix) = app_group(&a);
    a.ok(&["url", "add", &prefix, "big.bin", file.to_str().unwrap()]);
    for n in [&a, &b, &c] {
        wait_held(n, &sha, Duration::from_secs(30));
    }
    let url = |n: &Node| format!("http://{}:{port}/app/big.bin", n.ip);
    let etag = format!("\"sha256-{sha}\"");

    // curl: the first half from A, then `-C -` from B with the ETag A gave.
    let out = tempfile::tempdir().unwrap();
    let part = out.path().join("curl.bin");
    let half = (content.len() / 2 - 1).to_string();
    let first = run(
        "curl",
        &[
            "-s",
            "-r",
            &format!("0-{half}"),
            "-o",
            part.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &url(&a),
        ],
    );
    assert_eq!(text(&first.stdout), "206");
    assert_eq!(
        std::fs::metadata(&part).unwrap().len() as usize,
        content.len() / 2
    );
    let rest = run(
        "curl",
        &[
            "-s",
            "-C",
            "-",
            "-H",
            &format!("If-Range: {etag}"),
            "-o",
            part.to_str().unwrap(),
            "-w",
            "%{http_code}",
            &url(&b),
        ],
    );
    assert_eq!(text(&rest.stdout), "206", "{}", text(&rest.stderr));
    assert!(
        std::fs::read(&part).unwrap() == content,
        "curl's resumed copy differs"
    );
    // Another version's validator restarts it: a whole 200.
    let (status, _, body) = fetch(
        &url(&b),
        false,
        &["-r", "10-", "-H", "If-Range: \"sha256-00\""],
    );
    assert_eq!((status, body.len()), (200, content.len()));

    // bcs download through a balancer that moves it from A to B mid-transfer.
    let balancer = Balancer::start(port, vec![a.ip.clone(), b.ip.clone()]);
    let target = out.path().join("bcs.bin");
    let home = out.path().join("home");
    let mut download = std::process::Command::new("timeout")
        .args([
            "120",
            BCS,
            "download",
            &format!("http://127.0.0.9:{port}/app/big.bin"),
            "-o",
            target.to_str().unwrap(),
            "--rate",
            "16MB",
            "--json",
        ])
        .env("HOME", &home)
        .env("XDG_STATE_HOME", home.join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let temporary = out.path().join(".bcs.bin.bcs-part");
    let quarter = (content.len() / 4) as u64;
    assert!(
        eventually(Duration::from_secs(30), || std::fs::metadata(&temporary)
            .is_ok_and(|m| m.len() > quarter)),
        "bcs download did not get a quarter from A"
    );
    balancer.switch(1);
    let status = download.wait().unwrap();
    let mut stderr = String::new();
    download
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "bcs download: {stderr}");
    assert!(
        std::fs::read(&target).unwrap() == content,
        "bcs download's copy differs"
    );
    drop(balancer);

    let (_, log) = b.stop("-TERM");
    let resumed = log
        .lines()
        .filter(|l| l.contains("/app/big.bin") && l.contains("status=206"))
        .count();
    assert!(
        resumed >= 2,
        "B's log shows {resumed} 206s for the URL:\n{log}"
    );
}

/// The origin stops while B holds the content and C is still fetching: C completes from B. Then B dies
/// mid-pull of new content: C resumes from A by range (A's peer log shows a 206) and completes.
#[test]
fn a_pull_survives_the_origin_and_then_its_holder_going_away() {
    if !have_etcd() || !have("curl") {
        return;
    }
    let etcd = Etcd::start();
    let [mut a, mut b, c] = nodes(&etcd, "survive", [&[], &[], &["--fleet-pull-rate", "8MB"]]);
    let files = tempfile::tempdir().unwrap();
    let Payload {
        bytes: x,
        sha: x_sha,
        file: x_file,
    } = payload(files.path(), "x.bin", 48, 27);
    let (port, prefix) = app_group(&a);
    a.ok(&["url", "add", &prefix, "x.bin", x_file.to_str().unwrap()]);
    wait_held(&b, &x_sha, Duration::from_secs(20));
    let under_way = eventually(Duration::from_secs(20), || {
        fetching(&b, &c, &x_sha).is_some_and(|(_, bytes)| bytes > 4 * MIB as u64)
    });
    assert!(under_way, "C is not fetching: {:?}", content_status(&b));
    a.stop("-KILL");
    assert!(!holds(&c, &x_sha), "C finished before A stopped: no proof");
    wait_held(&c, &x_sha, Duration::from_secs(40));
    let (status, _, body) = fetch(&format!("http://{}:{port}/app/x.bin", c.ip), false, &[]);
    assert!(status == 200 && body == x, "C's copy of x");
    assert!(!peer_gets(&b, &x_sha).is_empty(), "C did not pull from B");

    // A back; new content; B dies while C pulls it from B.
    a.restart();
    let Payload {
        bytes: y,
        sha: y_sha,
        file: y_file,
    } = payload(files.path(), "y.bin", 32, 28);
    a.ok(&["url", "add", &prefix, "y.bin", y_file.to_str().unwrap()]);
    wait_held(&b, &y_sha, Duration::from_secs(20));
    let from_b = eventually(Duration::from_secs(20), || {
        fetching(&a, &c, &y_sha)
            .is_some_and(|(from, bytes)| from == "node2" && bytes > 4 * MIB as u64)
    });
    assert!(
        from_b,
        "C is not fetching y from B: {:?}",
        content_status(&a)
    );
    b.stop("-KILL");
    wait_held(&c, &y_sha, Duration::from_secs(40));
    let (status, _, body) = fetch(&format!("http://{}:{port}/app/y.bin", c.ip), false, &[]);
    assert!(status == 200 && body == y, "C's copy of y");
    let from_a = peer_gets(&a, &y_sha);
    assert!(
        from_a.iter().any(|(status, _)| *status == 206),
        "A's peer log: {from_a:?}"
    );
    // A sent B its copy of y, then C only the rest of what it lacked.
    let sent: u64 = from_a.iter().map(|(_, n)| n).sum();
    let to_c = sent - y.len() as u64;
    assert!(
        to_c < y.len() as u64 - 4 * MIB as u64,
        "A sent C {to_c} bytes of y: not resumed"
    );
}

/// A node killed with `kill -9` mid-pull resumes from the bytes it has after its restart: its holder
/// answers a 206, and sends not much more than one copy in all.
#[test]
fn a_node_killed_mid_pull_resumes_from_its_bytes() {
    if !have_etcd() || !have("curl") {
        return;
    }
    let etcd = Etcd::start();
    let [a, b, mut c] = nodes(&etcd, "killed", [&[], &[], &["--fleet-pull-rate", "8MB"]]);
    let files = tempfile::tempdir().unwrap();
    let Payload {
        bytes: content,
        sha,
        file,
    } = payload(files.path(), "big.bin", 48, 29);
    let (port, prefix) = app_group(&a);
    a.ok(&["url", "add", &prefix, "big.bin", file.to_str().unwrap()]);
    wait_held(&b, &sha, Duration::from_secs(20));
    let temporary = c
        .state()
        .join("content-incoming")
        .join(format!(".{sha}.bcs-part"));
    let third = (content.len() / 3) as u64;
    assert!(
        eventually(Duration::from_secs(30), || std::fs::metadata(&temporary)
            .is_ok_and(|m| m.len() > third)),
        "C did not get a third"
    );
    c.stop("-KILL");
    let kept = std::fs::metadata(&temporary).unwrap().len();
    assert!(kept > third);
    c.restart();
    wait_held(&c, &sha, Duration::from_secs(40));
    let (status, _, body) = fetch(&format!("http://{}:{port}/app/big.bin", c.ip), false, &[]);
    assert!(status == 200 && body == content, "C's copy");
    // After the restart C asked only for what it lacked: the 206s (only C's pulls are ranged) carry
    // no more than the rest and the bytes re-asked to check the resume.
    let gets: Vec<_> = [&a, &b].iter().flat_map(|n| peer_gets(n, &sha)).collect();
    let ranged: u64 = gets.iter().filter(|(s, _)| *s == 206).map(|(_, n)| n).sum();
    assert!(ranged > 0, "no ranged pull after the restart: {gets:?}");
    let rest = content.len() as u64 - kept;
    assert!(
        ranged <= rest + MIB as u64,
        "C was sent {ranged} bytes after its restart, lacking {rest}: {gets:?}"
    );
}

/// A new version published while clients download: each ends with the old or the new file whole;
/// every node then serves the new one, with its ETag; the old copies are gone from every node.
#[test]
fn a_new_version_replaces_the_old_on_every_node() {
    if !have_etcd() || !have("curl") {
        return;
    }
    let etcd = Etcd::start();
    // C pulls slowly: the old version is seen served there after the change.
    let [a, b, c] = nodes(&etcd, "version", [&[], &[], &["--fleet-pull-rate", "4MB"]]);
    let files = tempfile::tempdir().unwrap();
    let Payload {
        bytes: old,
        sha: old_sha,
        file,
    } = payload(files.path(), "app.bin", 8, 30);
    let new = pattern(8 * MIB, 31);
    let new_sha = sha256_hex(&new);
    let (port, prefix) = app_group(&a);
    a.ok(&[
        "url",
        "add",
        &prefix,
        "app.bin",
        file.to_str().unwrap(),
        "--sddl",
        "D:(A;;GR;;;WD)",
    ]);
    for n in [&a, &b, &c] {
        wait_held(n, &old_sha, Duration::from_secs(20));
    }
    let url = |n: &Node| format!("http://{}:{port}/app/app.bin", n.ip);
    let out = tempfile::tempdir().unwrap();
    let clients: Vec<_> = [&a, &b, &c, &b, &c]
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (url, to) = (url(n), out.path().join(format!("{i}.bin")));
            std::thread::spawn(move || {
                run(
                    "curl",
                    &["-s", "--limit-rate", "3M", "-o", to.to_str().unwrap(), &url],
                );
                std::fs::read(&to).unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    // While it changes, B and C answer every request whole from one version, never 503.
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (urls, watching) = ([url(&b), url(&c)], watching.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while watching.load(Ordering::SeqCst) {
                for url in &urls {
                    let (status, headers, body) = fetch(url, false, &[]);
                    let etag = header(&headers, "etag").unwrap_or_default().to_owned();
                    seen.push((status, etag, sha256_hex(&body)));
                }
            }
            seen
        })
    };
    // The origin's file changes and is published again.
    std::fs::write(&file, &new).unwrap();
    let again = a.json(&["url", "set", &prefix, "app.bin", file.to_str().unwrap()]);
    assert_eq!(again["content"]["sha256"], new_sha.as_str(), "{again}");
    assert_eq!(
        again["sddl"], "D:(A;;GR;;;WD)",
        "set without --sddl keeps the SDDL"
    );
    for client in clients {
        let got = client.join().unwrap();
        assert!(
            got == old || got == new,
            "a client got a mix ({} bytes)",
            got.len()
        );
    }
    for n in [&a, &b, &c] {
        let serves_new = eventually(Duration::from_secs(20), || {
            let (status, headers, body) = fetch(&url(n), false, &[]);
            status == 200
                && body == new
                && header(&headers, "etag") == Some(&format!("\"sha256-{new_sha}\""))
        });
        assert!(serves_new, "{} does not serve the new version", n.name);
        let gone = eventually(Duration::from_secs(10), || !holds(n, &old_sha));
        assert!(gone, "{} still keeps the old copy", n.name);
    }
    watching.store(false, Ordering::SeqCst);
    let seen = watcher.join().unwrap();
    for (status, etag, body) in &seen {
        assert_eq!(*status, 200, "{seen:?}");
        assert!(
            (*etag == format!("\"sha256-{old_sha}\"") && *body == old_sha)
                || (*etag == format!("\"sha256-{new_sha}\"") && *body == new_sha),
            "{etag} with the bytes of {body}"
        );
    }
    let saw_both = seen.iter().any(|(_, _, body)| *body == old_sha);
    assert!(saw_both && seen.last().is_some_and(|s| s.2 == new_sha));
}

/// SECURITY: a URL readable by administrators only is not readable anonymously on any node, nor
/// through the peer path (anonymous, a wrong secret, another hash, a path that escapes); a hostile
/// content record is refused and changes nothing.
#[test]
fn restricted_content_stays_restricted_on_every_path() {
    if !have_etcd() || !have("curl") {
        return;
    }
    let etcd = Etcd::start();
    let [mut a, b, c] = nodes(&etcd, "restricted", [&[], &[], &[]]);
    let files = tempfile::tempdir().unwrap();
    let Payload {
        bytes: content,
        sha,
        file,
    } = payload(files.path(), "secret.bin", 1, 32);
    let (port, prefix) = app_group(&a);
    a.ok(&["auth", "set", &prefix, "ntlm", "on"]);
    a.ok(&[
        "url",
        "add",
        &prefix,
        "secret.bin",
        file.to_str().unwrap(),
        "--sddl",
        "D:(A;;GR;;;BA)",
    ]);
    for n in [&a, &b, &c] {
        wait_held(n, &sha, Duration::from_secs(20));
        let (status, _, body) = fetch(
            &format!("http://{}:{port}/app/secret.bin", n.ip),
            false,
            &[],
        );
        assert_eq!(status, 401, "{}: {}", n.name, text(&body));
        assert!(body != content);
    }
    let peer_port: u16 = {
        let record = a.json(&["fleet", "status"]);
        assert!(record.to_string().contains(&sha));
        let extra = &a.extra;
        extra[1].rsplit(':').next().unwrap().parse().unwrap()
    };
    let secret = {
        let out = etcd_get(&etcd, "/bcs/restricted/peer-secret");
        assert_eq!(out.len(), 64, "the secret is 32 random bytes in hex");
        out
    };
    for n in [&a, &b, &c] {
        let peer = |path: &str| format!("http://{}:{peer_port}/bcs-content/{path}", n.ip);
        let (status, _, body) = fetch(&peer(&sha), false, &[]);
        assert_eq!(status, 401, "{} anonymous", n.name);
        assert!(body != content);
        let account = peer_user(&Password::from(secret.as_str()));
        assert!(
            account.starts_with("bcs-fleet-") && account.len() == 26,
            "{account}"
        );
        for (user, password) in [
            (account.as_str(), "wrong"),
            ("bcs-fleet", secret.as_str()),
            ("admin", secret.as_str()),
        ] {
            let creds = format!("{user}:{password}");
            let (status, _, _) = fetch(&peer(&sha), false, &["--ntlm", "-u", &creds]);
            assert_eq!(status, 401, "{} as {user}", n.name);
            let (status, _, _) = fetch(&peer(&sha), false, &["--basic", "-u", &creds]);
            assert_eq!(status, 401, "{} Basic as {user}", n.name);
        }
        let other = "0".repeat(64);
        let fleet_account = format!("{account}:{secret}");
        let (status, _, _) = fetch(&peer(&other), false, &["--ntlm", "-u", &fleet_account]);
        assert_eq!(status, 404, "{} another hash", n.name);
        for escape in [
            "..%2f..%2fetc%2fpasswd",
            "%2e%2e/%2e%2e/etc/passwd",
            "../content",
        ] {
            let (status, _, _) = fetch(
                &peer(escape),
                false,
                &["--path-as-is", "--ntlm", "-u", &fleet_account],
            );
            assert!(
                status == 400 || status == 404,
                "{} {escape}: {status}",
                n.name
            );
        }
        // The fleet's account reads the copy (what the pulls use) but not the public URL.
        let (status, _, body) = fetch(&peer(&sha), false, &["--ntlm", "-u", &fleet_account]);
        assert!(status == 200 && body == content, "{}: {status}", n.name);
        let public = format!("http://{}:{port}/app/secret.bin", n.ip);
        let (status, _, _) = fetch(&public, false, &["--ntlm", "-u", &fleet_account]);
        assert_eq!(status, 401, "{} public URL as the fleet's account", n.name);
    }

    // A content record that names a path, not a hash, is refused; nothing changes.
    let before = b.export();
    let exported = b.bcs(&["export"]);
    assert!(exported.status.success());
    let hostile = text(&exported.stdout).replace(&sha, "../../../../etc/passwd");
    assert!(hostile.contains("etc/passwd"), "{hostile}");
    let doc = files.path().join("hostile.toml");
    std::fs::write(&doc, hostile).unwrap();
    let out = b.bcs(&["apply", doc.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("invalid_content")
            || text(&out.stderr).contains("64 lowercase hex"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(b.export(), before);
    // A version no HTTP date can say is refused too (it would have panicked every request for the URL).
    let late = text(&exported.stdout).replace("version = ", "version = 9999999999999 #");
    std::fs::write(&doc, late).unwrap();
    let out = b.bcs(&["apply", doc.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("year 9999"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(b.export(), before);
    let (status, _, _) = fetch(
        &format!("http://{}:{port}/app/secret.bin", b.ip),
        false,
        &[],
    );
    assert_eq!(status, 401);

    // A peer path others could not reach is refused before anything starts.
    let dir = tempfile::tempdir().unwrap();
    for addr in ["0.0.0.0:9001", "[::]:9001", "127.0.0.1:0"] {
        let out = run(
            BCS,
            &[
                "serve",
                "--state",
                dir.path().join("s").to_str().unwrap(),
                "--etcd",
                "http://127.0.0.1:1",
                "--fleet",
                "f",
                "--node",
                "n",
                "--fleet-peer",
                addr,
            ],
        );
        assert!(!out.status.success(), "{addr}");
        assert!(
            text(&out.stderr).contains("--fleet-peer"),
            "{}",
            text(&out.stderr)
        );
    }

    // logrotate's way: the peer log renamed, SIGHUP, and the next request is in a new file.
    let peer_log = a.state().join("peer-access.log");
    std::fs::rename(&peer_log, a.state().join("peer-access.log.1")).unwrap();
    assert!(run("kill", &["-HUP", &a.pid().to_string()])
        .status
        .success());
    let reopened = eventually(Duration::from_secs(5), || {
        fetch(
            &format!("http://{}:{peer_port}/bcs-content/{sha}", a.ip),
            false,
            &[],
        );
        std::fs::read_to_string(&peer_log).is_ok_and(|l| l.contains(&sha))
    });
    assert!(reopened, "the peer log was not reopened on SIGHUP");

    // The secret is in no log.
    let (_, log) = a.stop("-TERM");
    assert!(log.contains("bits_compact::access"), "{log}");
    assert!(!log.contains(&secret));
}

/// The value etcd holds at `key`.
fn etcd_get(etcd: &Etcd, key: &str) -> String {
    let out = etcd.etcdctl(&["get", "--print-value-only", key]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}
