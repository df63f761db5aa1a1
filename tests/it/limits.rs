//! Per-group ConnectionLimit and BandwidthLimit, and the minimum send rate, over real sockets.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bits_compact::{ByteRate, ConnectionLimit, GroupProperty, LimitError, UrlError};

use crate::support::{curl, have, pattern, write_file, TestServer};

/// Starts a GET on a raw socket and returns the stream positioned at the body.
fn start_download(port: u16, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Reads for `time` and returns the bytes per second seen.
fn rate_over(stream: &mut TcpStream, time: Duration) -> f64 {
    let start = Instant::now();
    let mut total = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    while start.elapsed() < time {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    total as f64 / start.elapsed().as_secs_f64()
}

fn sparse_file(dir: &std::path::Path, len: u64) -> std::path::PathBuf {
    let path = dir.join("sparse.bin");
    std::fs::File::create(&path).unwrap().set_len(len).unwrap();
    path
}

#[test]
fn connection_limit_turns_the_fourth_download_away_with_503() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(3 << 20, 11);
    let path = write_file(dir.path(), "big.bin", &data);
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    group.add_url("big.bin", &path, None).unwrap();
    group
        .set_connection_limit(ConnectionLimit::new(3).unwrap())
        .unwrap();
    // Paced by the server so that the transfers stay in flight (a client-side limit would not: loopback
    // socket buffers swallow a few MB at once).
    group
        .set_bandwidth_limit("3MiB/s".parse().unwrap())
        .unwrap();
    let url = srv.url("/G/big.bin");

    let downloads: Vec<_> = (0..3)
        .map(|i| {
            let out = dir.path().join(format!("out{i}.bin"));
            let child = Command::new("curl")
                .args(["-s", "-f", "-o", out.to_str().unwrap(), &url])
                .spawn()
                .unwrap();
            (child, out)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while group.active_transfers() < 3 {
        assert!(
            Instant::now() < deadline,
            "the three downloads did not start: {}",
            group.active_transfers()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let fourth = curl(&[&url]);
    assert_eq!(fourth.status, 503);
    assert_eq!(fourth.header("retry-after"), Some("5"));
    // HEAD is not a transfer and still answers.
    assert_eq!(curl(&["-I", &url]).status, 200);

    for (mut child, out) in downloads {
        assert!(child.wait().unwrap().success());
        assert!(std::fs::read(out).unwrap() == data);
    }
    assert_eq!(group.active_transfers(), 0);
    assert_eq!(curl(&[&url]).status, 200);
}

#[test]
fn lowering_the_bandwidth_limit_slows_a_transfer_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let path = sparse_file(dir.path(), 1 << 30);
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    group.add_url("sparse.bin", &path, None).unwrap();
    group
        .set_bandwidth_limit("4MiB/s".parse().unwrap())
        .unwrap();

    let mut stream = start_download(srv.port, "/G/sparse.bin");
    let fast = rate_over(&mut stream, Duration::from_millis(1500));
    assert!((2.0e6..7.0e6).contains(&fast), "at 4 MiB/s: {fast:.0} B/s");

    group
        .set_bandwidth_limit("256KiB/s".parse().unwrap())
        .unwrap();
    // Within a second the new rate holds (generous bounds for a noisy machine).
    let _ = rate_over(&mut stream, Duration::from_secs(1));
    let slow = rate_over(&mut stream, Duration::from_secs(2));
    assert!(
        (100e3..600e3).contains(&slow),
        "at 256 KiB/s: {slow:.0} B/s"
    );

    group.set_bandwidth_limit(ByteRate::UNLIMITED).unwrap();
    // No warm-up here: unlimited, sendfile sends the rest of the file in under a second, and once it ended
    // within a warm-up, which left nothing to measure (0 B/s). Until the end of the file counts too.
    let free = rate_over(&mut stream, Duration::from_secs(1));
    assert!(free > 20e6, "unlimited again: {free:.0} B/s");
}

#[test]
fn a_client_that_stops_reading_is_cut_at_the_minimum_send_rate() {
    let dir = tempfile::tempdir().unwrap();
    let len = 1u64 << 30;
    let path = sparse_file(dir.path(), len);
    let srv = TestServer::start_with(|b| {
        b.min_send_rate(150, Duration::from_secs(1))
            .idle_timeout(Duration::from_secs(120))
    });
    srv.server
        .create_url(srv.prefix("G"), "sparse.bin", &path, None)
        .unwrap();
    let mut stream = start_download(srv.port, "/G/sparse.bin");
    std::thread::sleep(Duration::from_secs(4));
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
        assert!(start.elapsed() < Duration::from_secs(60), "never cut");
    }
    assert!(
        total < len,
        "the whole file arrived: the slow client was not cut"
    );
    // The body went by sendfile (a plain connection, no bandwidth limit): the cut holds on that path.
    assert!(srv.server.zero_copy_bytes() > 0, "not sent by sendfile");
}

#[test]
fn a_paced_group_does_not_trip_the_minimum_send_rate() {
    // 25 transfers sharing 2 KiB/s get ~80 B/s each, below 150 B/s: our own pacing must not count
    // against them. One transfer at 1 KiB/s for 3 windows stands in for that here.
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(3000, 12);
    let path = write_file(dir.path(), "a.bin", &data);
    let srv = TestServer::start_with(|b| b.min_send_rate(5000, Duration::from_millis(500)));
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    group.add_url("a.bin", &path, None).unwrap();
    group
        .set_bandwidth_limit(ByteRate::per_second(1024).unwrap())
        .unwrap();
    let mut stream = start_download(srv.port, "/G/a.bin");
    let mut body = Vec::new();
    stream.read_to_end(&mut body).unwrap_or_default();
    assert!(body == data, "got {} of {} bytes", body.len(), data.len());
}

#[test]
fn twenty_five_groups_of_three_downloads_complete() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let srv = TestServer::start();
    let mut args: Vec<String> = vec![
        "-s".into(),
        "-f".into(),
        "-Z".into(),
        "--parallel-max".into(),
        "75".into(),
    ];
    let mut expected = Vec::new();
    for g in 0..25 {
        let data = pattern(512 * 1024 + g * 1000, g as u64 + 100);
        let path = write_file(dir.path(), &format!("src/f{g}.bin"), &data);
        let group = srv
            .server
            .create_url_group(srv.prefix(&format!("g{g}")))
            .unwrap();
        group.add_url("f.bin", &path, None).unwrap();
        group
            .set_connection_limit(ConnectionLimit::new(3).unwrap())
            .unwrap();
        group
            .set_bandwidth_limit("2MiB/s".parse().unwrap())
            .unwrap();
        for c in 0..3 {
            let out = dir.path().join(format!("out/{g}-{c}.bin"));
            args.extend([
                "-o".into(),
                out.to_str().unwrap().to_owned(),
                srv.url(&format!("/g{g}/f.bin")),
            ]);
            expected.push((out, data.clone()));
        }
    }
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let status = Command::new("curl")
        .args(&args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "curl: {status}");
    for (out, data) in expected {
        assert!(std::fs::read(&out).unwrap() == data, "{}", out.display());
    }
}

#[test]
fn the_original_property_api() {
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    assert_eq!(group.property(GroupProperty::ConnectionLimit), u32::MAX);
    assert_eq!(group.property(GroupProperty::BandwidthLimit), u32::MAX);
    group
        .set_property(GroupProperty::ConnectionLimit, 3)
        .unwrap();
    group
        .set_property(GroupProperty::BandwidthLimit, 4096)
        .unwrap();
    assert_eq!(group.connection_limit().get(), Some(3));
    assert_eq!(group.bandwidth_limit().get(), Some(4096));
    assert_eq!(group.property(GroupProperty::BandwidthLimit), 4096);
    assert!(matches!(
        group.set_property(GroupProperty::BandwidthLimit, 1023),
        Err(UrlError::Limit(LimitError::TooLow(1023)))
    ));
    assert!(matches!(
        group.set_property(GroupProperty::ConnectionLimit, 0),
        Err(UrlError::Limit(LimitError::ZeroConnections))
    ));
    // A refused value leaves the old one in place.
    assert_eq!(group.property(GroupProperty::ConnectionLimit), 3);
    group
        .set_property(GroupProperty::ConnectionLimit, u32::MAX)
        .unwrap();
    assert_eq!(group.connection_limit(), ConnectionLimit::UNLIMITED);
}
