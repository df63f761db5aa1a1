//! Attacks on the server as an adversary would make them, each with the bound it must keep: memory held for
//! clients that stop reading (HTTP/1.1 and HTTP/2), the read budget they cannot take from other sources,
//! HTTP/2 refusals that end, password guessing (bursts, many addresses, many accounts, timing),
//! password-check memory, and range amplification. Memory is read from the real `bcs`
//! process (`/proc/PID/status`), with generous margins for a noisy machine. Every load is bounded in count
//! and time, and every socket is on loopback (the whole 127.0.0.0/8 is local, which gives many sources).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bits_compact::auth::Password;
use bits_compact::{AuthScheme, Principals};

use crate::cli::Running;
use crate::pki::Ca;
use crate::support::{connect_from, curl, have, have_module, run, write_file, TestServer};

/// The `i`th address of a /16 of loopback sources: `127.<net>.x.y`.
fn source(net: u8, i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be_bytes([127, net, 0, 0]) + 1 + i)
}

/// GET `path` with Basic credentials from `from`; the response's status code.
fn basic_status(port: u16, from: Ipv4Addr, path: &str, user: &str, password: &str) -> u16 {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut s = connect_from(from, port, None);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {token}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let head = String::from_utf8_lossy(&out[..out.len().min(20)]).into_owned();
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// `field` (VmRSS, VmHWM) of a process, in KiB.
pub(crate) fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// An in-process server whose group `/B/` takes Basic over plain HTTP, with alice and bob.
fn basic_site() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start();
    let mut users = Principals::default();
    users
        .set_user("alice", &Password::from("alice-RIGHT"), &[])
        .unwrap();
    users
        .set_user("bob", &Password::from("bob-RIGHT"), &[])
        .unwrap();
    srv.server.set_principals(users);
    let group = srv.server.create_url_group(srv.prefix("B")).unwrap();
    group.set_authentication(AuthScheme::Basic, true).unwrap();
    group.allow_basic_over_http(true).unwrap();
    group
        .add_url("f", write_file(dir.path(), "f.txt", b"guarded"), None)
        .unwrap();
    (srv, dir)
}

/// Runs `n` requests at once (one thread each) and returns their statuses.
fn at_once(n: u32, request: impl Fn(u32) -> u16 + Sync) -> Vec<u16> {
    std::thread::scope(|scope| {
        let request = &request;
        let threads: Vec<_> = (0..n).map(|i| scope.spawn(move || request(i))).collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    })
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

#[test]
fn overlapping_ranges_adding_up_to_more_than_the_file_get_the_file_once() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = crate::support::pattern(1 << 20, 3);
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("R")).unwrap();
    group
        .add_url("f", write_file(dir.path(), "f", &data), None)
        .unwrap();
    let url = srv.url("/R/f");
    // 64 copies of the whole file: a 64 MiB answer before; now the file once, as a 200 (RFC 9110 §14.2).
    let whole = vec!["0-1048575"; 64].join(",");
    let r = curl(&["-H", &format!("Range: bytes={whole}"), &url]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("1048576"));
    assert!(r.body == data);
    // Ranges that add up to less than the file are still answered as asked: neither merged nor reordered.
    let r = curl(&["-H", "Range: bytes=100-199,0-149", &url]);
    assert_eq!(r.status, 206);
    let text = String::from_utf8_lossy(&r.body);
    let first = text.find("bytes 100-199/1048576").unwrap();
    let second = text.find("bytes 0-149/1048576").unwrap();
    assert!(first < second);
}

#[test]
fn a_burst_of_wrong_passwords_from_one_address_is_counted_before_it_is_checked() {
    let (srv, _dir) = basic_site();
    let statuses = at_once(50, |_| {
        basic_status(srv.port, Ipv4Addr::LOCALHOST, "/B/f", "alice", "WRONG")
    });
    // Before: all 50 were checked (401) since each was counted only after its check.
    assert!(count(&statuses, 401) <= 10, "{statuses:?}");
    assert_eq!(
        count(&statuses, 401) + count(&statuses, 429),
        50,
        "{statuses:?}"
    );
    // The address stays refused, even with the right password.
    let right = basic_status(
        srv.port,
        Ipv4Addr::LOCALHOST,
        "/B/f",
        "alice",
        "alice-RIGHT",
    );
    assert_eq!(right, 429);
}

#[test]
fn an_account_locks_across_addresses_whether_or_not_it_exists() {
    let (srv, _dir) = basic_site();
    // 30 sources, each well under its own limit, guess at alice; then 30 more at a name that does not exist.
    for (net, user) in [(20, "alice"), (21, "ghost")] {
        let statuses = at_once(30, |i| {
            basic_status(srv.port, source(net, i), "/B/f", user, "WRONG")
        });
        assert_eq!(count(&statuses, 401), 30, "{user}: {statuses:?}");
    }
    // Before: a fresh address was let in with alice's right password. Now the account is locked, and a
    // locked name that does not exist answers exactly alike.
    let fresh = source(22, 1);
    assert_eq!(
        basic_status(srv.port, fresh, "/B/f", "alice", "alice-RIGHT"),
        429
    );
    assert_eq!(
        basic_status(srv.port, source(22, 2), "/B/f", "ALICE", "x"),
        429
    );
    assert_eq!(
        basic_status(srv.port, source(22, 3), "/B/f", "ghost", "x"),
        429
    );
    // Other accounts are not affected.
    assert_eq!(
        basic_status(srv.port, source(22, 4), "/B/f", "bob", "bob-RIGHT"),
        200
    );
}

#[test]
fn password_checks_refused_for_a_full_queue_count_against_nobody() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let (srv, _dir) = basic_site();
    let port = srv.port;
    let stop = AtomicBool::new(false);
    let next = AtomicU32::new(0);
    let honest = source(26, 0);
    std::thread::scope(|scope| {
        // A flood from many sources at many names fills the password-check queue...
        for _ in 0..100 {
            scope.spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let from = source(27 + (i / 60_000) as u8, i % 60_000);
                    basic_status(port, from, "/B/f", &format!("flood{i}"), "WRONG");
                }
            });
        }
        // ...while an honest caller with the right password gets 503s: more of them than its source may
        // fail. Before, each counted as a failed password and the source was then locked out (429).
        let mut busy = 0;
        let deadline = Instant::now() + Duration::from_secs(15);
        while busy < 12 && Instant::now() < deadline {
            match basic_status(port, honest, "/B/f", "bob", "bob-RIGHT") {
                503 => busy += 1,
                200 => std::thread::sleep(Duration::from_millis(20)),
                other => panic!("the honest caller got {other}"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        assert_eq!(
            busy, 12,
            "the flood never filled the queue; the test proves nothing"
        );
    });
    assert_eq!(basic_status(port, honest, "/B/f", "bob", "bob-RIGHT"), 200);
}

#[test]
fn unknown_users_take_as_long_as_wrong_passwords() {
    let (srv, _dir) = basic_site();
    let time = |i: u32, user: &str| {
        let started = Instant::now();
        let status = basic_status(srv.port, source(23, i), "/B/f", user, "WRONG");
        assert_eq!(status, 401);
        started.elapsed()
    };
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..7 {
        known.push(time(2 * i, "alice"));
        unknown.push(time(2 * i + 1, &format!("nobody{i}")));
    }
    let (known, unknown) = (median(known), median(unknown));
    // Before: 0.9 ms against 32 ms (argon2 skipped for unknown names). Generous: within a factor of 4.
    assert!(
        unknown * 4 > known && known * 4 > unknown,
        "unknown {unknown:?}, known {known:?}"
    );
}

/// `bcs host` under `/h/`.
fn bcs_host(scheme: &str, args: &[&str], files: &[&Path]) -> (Running, u16) {
    crate::cli::spawn_host(scheme, "h", args, files)
}

#[test]
fn two_hundred_concurrent_wrong_passwords_keep_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    // 200 real accounts (one argon2id hash shared, to make the file quickly), so that every guess below is
    // a full argon2id check even on a server that would skip checks for unknown names.
    let mut one = Principals::default();
    one.set_user("u0", &Password::from("RIGHT"), &[]).unwrap();
    let written = one.to_toml();
    let hash = written
        .lines()
        .find_map(|l| l.strip_prefix("password = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_owned();
    let mut text = String::new();
    for i in 0..200 {
        text.push_str(&format!(
            "[users.user{i}]\nsid = \"S-1-5-21-1-2-3-{}\"\npassword = \"{}\"\n",
            1000 + i,
            hash
        ));
    }
    Principals::parse(&text).unwrap().save(&users).unwrap();
    let file = write_file(dir.path(), "f.txt", b"guarded");
    let users_arg = users.to_str().unwrap();
    let (bcs, port) = bcs_host(
        "http",
        &[
            "--auth",
            "basic",
            "--allow-basic-over-http",
            "--users",
            users_arg,
        ],
        &[&file],
    );
    let pid = bcs.child.id();
    // 200 sources and 200 names, so that neither limiter stops them: every one is a real argon2id check.
    let statuses = at_once(200, |i| {
        basic_status(
            port,
            source(24, i),
            "/h/f.txt",
            &format!("user{i}"),
            "WRONG",
        )
    });
    let peak = memory_kib(pid, "VmHWM");
    eprintln!(
        "200 concurrent wrong passwords: {} checked (401), {} refused (503); peak RSS {} KiB",
        count(&statuses, 401),
        count(&statuses, 503),
        peak
    );
    assert_eq!(count(&statuses, 401) + count(&statuses, 503), 200);
    assert!(count(&statuses, 401) >= 20, "{statuses:?}");
    // Before: 100 of them took the server to 1.37 GB (19 MiB each, on up to 512 blocking threads).
    assert!(peak < 150 * 1024, "peak RSS {peak} KiB");
}

/// A 64 MiB file with no holes (so that reads really allocate).
fn big_file(dir: &Path) -> std::path::PathBuf {
    write_file(dir, "big.bin", &crate::support::pattern(64 << 20, 9))
}

#[test]
fn stalled_http1_downloads_hold_little_memory() {
    let each = rss_per_stalled_download(&[], 0);
    // Before: about 1.1-1.3 MiB each (a 512 KiB chunk in hyper's queue and one read ahead). Now one
    // 256 KiB chunk (smaller chunks cost large-file speed, see limits::memory) and the connection itself.
    assert!(each <= 450, "{each} KiB per stalled download");
}

/// Plain HTTP/1.1 without `sendfile` copies file chunks through memory, as HTTPS does, and reads the next
/// one ahead while the client keeps up. SECURITY: clients that read the first 1 MiB at full speed, so that
/// read-ahead starts, and then stop, pin what clients that never read pin: one chunk each, once the
/// chunk read ahead has waited out its 250 ms (`files::readahead`), as the server's own gauge of file
/// bytes in memory says. Its RSS may keep a dropped chunk's pages for reuse (the allocator does not hand
/// them back at once), so that bound is the connection's whole budget: two chunks.
#[test]
fn downloads_that_read_then_stall_give_their_read_ahead_back() {
    const CHUNK_KIB: u64 = 256;
    for first in [0, 1 << 20] {
        let metrics = format!("127.0.0.1:{}", crate::support::free_port());
        let each = rss_per_stalled_download(&["--no-sendfile", "--metrics", &metrics], first);
        assert!(
            each <= 2 * CHUNK_KIB + 100,
            "{each} KiB per stalled download"
        );
    }
}

/// 200 HTTP/1.1 downloads of a 64 MiB file through a 4 KiB receive buffer, each reading `first` bytes of
/// it and then nothing: the server's RSS per download, in KiB. With `--metrics ADDR` in `args`, also
/// checks that the file bytes it holds in memory for them are one chunk each at most.
fn rss_per_stalled_download(args: &[&str], first: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let file = big_file(dir.path());
    let (bcs, port) = bcs_host("http", args, &[&file]);
    let pid = bcs.child.id();
    // Warm up: one full download, so that what the runtime keeps anyway is in the baseline.
    let out = run(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            &format!("http://127.0.0.1:{port}/h/big.bin"),
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        (64u64 << 20).to_string()
    );
    let before = memory_kib(pid, "VmRSS");
    const CLIENTS: u64 = 200;
    let stalled: Vec<TcpStream> = (0..CLIENTS as u32)
        .map(|i| {
            let mut s = connect_from(source(25, i), port, Some(4096));
            s.write_all(b"GET /h/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let mut read = 0;
            while read < first {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "the download ended after {read} bytes");
                read += n;
            }
            s
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let after = memory_kib(pid, "VmRSS");
    let each = after.saturating_sub(before) / CLIENTS;
    eprintln!(
        "{CLIENTS} stalled HTTP/1.1 downloads ({args:?}, {first} bytes read first): RSS {before} -> {after} KiB, {each} KiB each"
    );
    if let Some(at) = args.iter().position(|a| *a == "--metrics") {
        let page = run("curl", &["-s", &format!("http://{}/metrics", args[at + 1])]);
        let page = String::from_utf8_lossy(&page.stdout).into_owned();
        let buffered: u64 = page
            .lines()
            .find_map(|l| l.strip_prefix("bcs_read_buffer_bytes "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{page}"));
        eprintln!("file bytes in memory for them: {buffered}");
        assert!(buffered > 0, "nothing held: not the copying path");
        assert!(
            buffered <= CLIENTS * (256 << 10),
            "{buffered} bytes held: more than one chunk per stalled download"
        );
    }
    drop(stalled);
    each
}

/// Opens `streams` streams on each of `conns` HTTP/2 connections (each from its own loopback address) with
/// an initial window of 0, keeps them alive with PINGs for `hold` seconds, and prints the streams opened,
/// answered 200 or 503, reset by the server, and DATA bytes.
const H2_STALL: &str = r#"
import json, select, socket, ssl, sys, time
import h2.connection, h2.config, h2.events, h2.settings
port, path, conns, streams, hold = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
opened, data, peers, status = 0, 0, [], {}
# Per connection: streams answered 200, of those reset, and whether the server closed the connection.
ok, reset, closed = {}, {}, set()
def pump(k, sock, conn, wait):
    global data
    if k in closed:
        return []
    r, _, _ = select.select([sock], [], [], wait)
    if not r:
        return []
    try:
        chunk = sock.recv(65536)
        # TLS may hold decrypted bytes that select() cannot see: take them all now.
        while chunk and sock.pending():
            chunk += sock.recv(sock.pending())
    except (ssl.SSLError, OSError):
        chunk = b""
    if not chunk:
        closed.add(k)
        return None
    events = conn.receive_data(chunk)
    for e in events:
        if isinstance(e, h2.events.StreamReset):
            reset[k] = reset.get(k, 0) + 1
        if isinstance(e, h2.events.ConnectionTerminated):
            closed.add(k)
        if isinstance(e, h2.events.DataReceived):
            data += len(e.data)
        if isinstance(e, h2.events.ResponseReceived):
            code = dict(e.headers).get(b":status", b"?").decode()
            status[code] = status.get(code, 0) + 1
            if code == "200":
                ok[k] = ok.get(k, 0) + 1
    sock.sendall(conn.data_to_send())
    return events
for i in range(conns):
    # Each connection from its own loopback address: ten clients, each with its share of transfers.
    raw = socket.create_connection(("127.0.0.1", port), source_address=("127.66.0.%d" % (i + 1), 0))
    sock = ctx.wrap_socket(raw, server_hostname="localhost")
    assert sock.selected_alpn_protocol() == "h2"
    conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    sock.sendall(conn.data_to_send())
    deadline = time.time() + 10
    while not any(isinstance(e, h2.events.RemoteSettingsChanged) for e in (pump(i, sock, conn, 1) or [])):
        assert time.time() < deadline, "no SETTINGS from the server"
    n = min(streams, conn.remote_settings.max_concurrent_streams)
    for _ in range(n):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "https"), (":authority", "localhost")], end_stream=True)
        opened += 1
    sock.sendall(conn.data_to_send())
    peers.append((sock, conn))
end = time.time() + hold
while time.time() < end:
    for k, (sock, conn) in enumerate(peers):
        if k not in closed:
            conn.ping(b"12345678")
            sock.sendall(conn.data_to_send())
    stop = time.time() + 2
    while time.time() < min(stop, end):
        for k, (sock, conn) in enumerate(peers):
            pump(k, sock, conn, 0.05)
# A stream the server reset, or whose connection it closed, holds nothing there any more.
ended = sum(reset.get(k, 0) if k not in closed else ok.get(k, 0) for k in range(len(peers)))
print(json.dumps({"opened": opened, "reset": sum(reset.values()), "ended": ended, "closed": len(closed),
                  "data": data, "ok": status.get("200", 0), "busy": status.get("503", 0),
                  "per_conn": [[ok.get(k, 0), reset.get(k, 0)] for k in range(len(peers))]}))
sys.stdout.flush()
"#;

#[test]
fn http2_streams_without_window_are_reset_and_hold_little_memory() {
    if !have("curl") || !have_module("h2") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = big_file(dir.path());
    let (bcs, port) = bcs_host("https", &["--max-downloads-per-client", "32"], &[&file]);
    let pid = bcs.child.id();
    let script = dir.path().join("h2_stall.py");
    std::fs::write(&script, H2_STALL).unwrap();
    let attack = std::process::Command::new("python3")
        .args([
            script.to_str().unwrap(),
            &port.to_string(),
            "/h/big.bin",
            "10",
            "100",
            "50",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(5));
    let during = memory_kib(pid, "VmRSS");
    // A normal download alongside gets every byte, in reasonable time.
    let started = Instant::now();
    let out = run(
        "curl",
        &[
            "-sk",
            "--interface",
            "127.0.0.9",
            "--max-time",
            "60",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{http_version}",
            &format!("https://127.0.0.1:{port}/h/big.bin"),
        ],
    );
    let took = started.elapsed();
    let result = attack.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&result.stdout).into_owned();
    let v: serde_json::Value =
        serde_json::from_str(printed.trim()).unwrap_or_else(|_| panic!("{printed}"));
    let count = |k: &str| v[k].as_u64().unwrap();
    let (opened, ended, ok, busy) = (count("opened"), count("ended"), count("ok"), count("busy"));
    eprintln!(
        "HTTP/2 zero-window stall: {opened} streams, {ok} answered 200 and {ended} of them ended, {busy} answered 503; RSS {during} KiB; a download alongside: {} in {took:?} ({printed})",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{} 2", 64u64 << 20)
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert!(opened >= 1000, "{printed}");
    // Before: about 1 MiB per stream, 1.05 GB for 1,000 streams, held as long as the client liked.
    assert!(during < 64 * 1024, "RSS {during} KiB under the attack");
    // Each source gets its share of transfers (here 32); its other streams are told to come back later
    // (503), so no client can hold every file descriptor of the server.
    assert!(ok <= 10 * 32 && ok + busy == opened, "{printed}");
    // The stalled ones are reset 10 to 12.5 s after their body last moved (the minimum send rate's
    // window, checked every quarter window), or their connection is closed; the script holds them 50 s,
    // which leaves room for a loaded machine (34 s was once too short while the whole suite ran on two
    // cores: one connection had 13 of its 32 resets by then).
    assert_eq!(ended, ok, "{printed}");
    drop(bcs);
}

#[test]
fn an_everyone_rule_serves_callers_without_a_certificate_and_logs_those_with_one() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("CA");
    let ca_file = ca.write(d, "ca.pem");
    let leaf = ca.server(d, "server", &["127.0.0.1"]);
    let alice = ca.client(d, "alice", "Alice", Some("alice@corp.example"));
    let file = write_file(d, "f.txt", b"for everyone");
    let (cert, key, ca_path) = (
        leaf.cert.to_str().unwrap(),
        leaf.key.to_str().unwrap(),
        ca_file.to_str().unwrap(),
    );
    let args = [
        "--cert",
        cert,
        "--key",
        key,
        "--client-ca",
        ca_path,
        "--client-cert",
        "optional",
        "--sddl",
        "D:(A;;GR;;;WD)",
    ];
    let (bcs, port) = bcs_host("https", &args, &[&file]);
    let url = format!("https://127.0.0.1:{port}/h/f.txt");
    // Before: --client-cert optional behaved like required, 403 without a certificate.
    let r = curl(&["--cacert", ca_path, &url]);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"for everyone"[..]));
    let (c, k) = (alice.cert.to_str().unwrap(), alice.key.to_str().unwrap());
    let r = curl(&["--cacert", ca_path, "--cert", c, "--key", k, &url]);
    assert_eq!(r.status, 200);
    let (code, log) = bcs.stop("-TERM");
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("/h/f.txt")).collect();
    assert_eq!(lines.len(), 2, "{log}");
    // Each access-log line names the peer once (not again in a connection span).
    assert!(
        lines.iter().all(|l| l.matches("peer=").count() == 1),
        "{log}"
    );
    assert!(lines.iter().any(|l| l.contains("identity=\"-\"")), "{log}");
    assert!(
        lines.iter().any(|l| l.contains("alice@corp.example")),
        "{log}"
    );
}

/// Opens `per` HTTPS connections (HTTP/1.1) from each of the loopback addresses given, each with a 4 KiB
/// receive buffer, asks each for `path` and never reads; reopens each connection every `every` seconds
/// (before the minimum send rate would cut it) until `hold` seconds have passed. Prints "ready" once all
/// are open.
const TLS_STALL: &str = r#"
import concurrent.futures, socket, ssl, sys, time
port, path, per, every, hold = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
sources = sys.argv[6:]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
def stalled(source):
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.bind((source, 0))
    raw.connect(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())
    return [s, time.time(), source]
# Opened at once (threads), and their reopening counted from when all are open: so that every one of
# them holds its budget from the start to the first reopening.
with concurrent.futures.ThreadPoolExecutor(32) as pool:
    conns = list(pool.map(stalled, [src for src in sources for _ in range(per)]))
for c in conns:
    c[1] = time.time()
print("ready", flush=True)
end = time.time() + hold
while time.time() < end:
    for c in conns:
        if time.time() - c[1] > every:
            c[0].close()
            c[:] = stalled(c[2])
    time.sleep(0.2)
"#;

/// Issue 22.1: 256 HTTPS clients from two addresses that never read (reopened every 9 s, within the
/// minimum send rate's window) held the server's whole read budget, and a normal 1 MiB download from a
/// third address took 7.9 s. Each source now has a bounded share of the budget, so the download is fast.
#[test]
fn tls_downloads_that_never_read_cannot_starve_another_source() {
    if !have("curl") || !have("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let big = big_file(dir.path());
    let small = write_file(dir.path(), "one.bin", &crate::support::pattern(1 << 20, 4));
    let (bcs, port) = bcs_host("https", &[], &[&big, &small]);
    let script = dir.path().join("tls_stall.py");
    std::fs::write(&script, TLS_STALL).unwrap();
    let mut attack = std::process::Command::new("python3")
        .args([script.to_str().unwrap(), &port.to_string(), "/h/big.bin"])
        .args(["128", "9", "40", "127.0.0.2", "127.0.0.3"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(attack.stdout.as_mut().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready.trim(), "ready");
    // Let the stalled downloads fill their socket buffers and take their budget.
    std::thread::sleep(Duration::from_secs(1));
    let url = format!("https://127.0.0.1:{port}/h/one.bin");
    let mut took = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let out = run(
            "curl",
            &[
                "-sk",
                "--max-time",
                "60",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download}",
                &url,
            ],
        );
        took.push(started.elapsed());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            (1u64 << 20).to_string()
        );
    }
    let _ = attack.kill();
    let _ = attack.wait();
    eprintln!("a 1 MiB download beside 256 stalled TLS downloads from two addresses: {took:?}");
    // Before: 7.9 s (up to the 12.5 s it takes to cut a stalled client). At rest: 0.01 s; the aim under
    // the attack is under 0.5 s; generous for a loaded machine.
    for t in &took {
        assert!(*t < Duration::from_secs(3), "{took:?}");
    }
    drop(bcs);
}

/// One HTTP/2 connection with an initial window of 0 opens `streams` GETs of `path`, then reads for
/// `wait` seconds; prints, per status, how many streams got it and how many of those ended (the server
/// closed or reset them).
const H2_REFUSED: &str = r#"
import json, select, socket, ssl, sys, time
import h2.connection, h2.config, h2.events, h2.settings
port, path, streams, wait = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["h2"])
sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
assert sock.selected_alpn_protocol() == "h2"
conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
conn.initiate_connection()
conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
for _ in range(streams):
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(":method", "GET"), (":path", path), (":scheme", "https"), (":authority", "localhost")], end_stream=True)
sock.sendall(conn.data_to_send())
status, ended = {}, set()
end = time.time() + wait
while time.time() < end:
    if not select.select([sock], [], [], 0.1)[0] and not sock.pending():
        continue
    chunk = sock.recv(65536)
    if not chunk:
        break
    for e in conn.receive_data(chunk):
        if isinstance(e, h2.events.ResponseReceived):
            status[e.stream_id] = dict(e.headers)[b":status"].decode()
        if isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
            ended.add(e.stream_id)
    sock.sendall(conn.data_to_send())
out = {}
for sid, code in status.items():
    got = out.setdefault(code, [0, 0])
    got[0] += 1
    got[1] += sid in ended
print(json.dumps(out))
"#;

/// Issue 22.10: an HTTP/2 stream over the per-client cap was answered 503 with a body that a client
/// granting no window never let out, so the refused stream stayed open. Now its HEADERS end it.
#[test]
fn http2_streams_over_the_per_client_cap_are_refused_and_end() {
    if !have("python3") || !have_module("h2") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "f.bin", &crate::support::pattern(1 << 20, 5));
    let (bcs, port) = bcs_host("https", &["--max-downloads-per-client", "2"], &[&file]);
    let script = dir.path().join("h2_refused.py");
    std::fs::write(&script, H2_REFUSED).unwrap();
    let out = run(
        "python3",
        &[
            script.to_str().unwrap(),
            &port.to_string(),
            "/h/f.bin",
            "10",
            "3",
        ],
    );
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(printed.trim())
        .unwrap_or_else(|_| panic!("{printed} {}", String::from_utf8_lossy(&out.stderr)));
    // Two streams are served (and wait for a window); the other eight are refused, and end at once.
    assert_eq!(v["200"], serde_json::json!([2, 0]), "{printed}");
    assert_eq!(v["503"], serde_json::json!([8, 8]), "{printed}");
    drop(bcs);
}
