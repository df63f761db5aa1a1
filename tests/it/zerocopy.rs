//! Zero-copy (`sendfile`) file bodies on plain HTTP/1.1, over real sockets: every byte compared with the
//! file, through whole files, ranges, multi-ranges, keep-alive sequences and clients slow enough to force
//! partial writes; files that shrink or grow mid-transfer; and `Server::zero_copy_bytes` proving that the
//! bytes went by `sendfile` (a silent fall back to reading fails these tests).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use bits_compact::ByteRate;

use crate::support::{connect_from, pattern, write_file, TestServer};

/// What the first response on a connection may read before `sendfile` is armed (one HTTP/1.1 chunk,
/// `limits::memory::H1_CHUNK`): zero-copy starts once hyper has been seen writing vectored.
const FIRST_CHUNK: u64 = 256 * 1024;

/// A small deterministic generator (xorshift64*), so that a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A client connection reading at most `piece` bytes per read (a slow reader when small).
struct Client {
    stream: TcpStream,
    piece: usize,
    buf: Vec<u8>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl Client {
    fn connect(port: u16, rcvbuf: Option<usize>, piece: usize) -> Self {
        Client {
            stream: connect_from(Ipv4Addr::LOCALHOST, port, rcvbuf),
            piece,
            buf: Vec::new(),
        }
    }

    fn send(&mut self, method: &str, path: &str, range: Option<&str>) {
        let range = range.map_or(String::new(), |r| format!("Range: bytes={r}\r\n"));
        let request = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{range}\r\n");
        self.stream.write_all(request.as_bytes()).unwrap();
    }

    /// Reads more into `buf`; false at the end of the stream or on an error (the server cut it).
    fn fill(&mut self) -> bool {
        let mut chunk = vec![0u8; self.piece];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn head(&mut self) -> (u16, Vec<(String, String)>) {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            assert!(self.fill(), "the connection ended before a response head");
        };
        let text = String::from_utf8(self.buf[..end].to_vec()).unwrap();
        self.buf.drain(..end + 4);
        let mut lines = text.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        (status, headers)
    }

    /// One whole response (the head of a HEAD request).
    fn response(&mut self, head_only: bool) -> Response {
        let (status, headers) = self.head();
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len: usize = r.header("content-length").unwrap().parse().unwrap();
        if !head_only {
            while self.buf.len() < len {
                assert!(
                    self.fill(),
                    "cut after {} of {len} body bytes",
                    self.buf.len()
                );
            }
            r.body = self.buf.drain(..len).collect();
        }
        r
    }
}

/// The `multipart/byteranges` body bcs sends for `ranges` (inclusive) of `data` (`files::Multipart`).
fn multipart(data: &[u8], ranges: &[(u64, u64)], boundary: &str, part_type: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &(s, e)) in ranges.iter().enumerate() {
        let lead = if i == 0 { "" } else { "\r\n" };
        out.extend_from_slice(
            format!(
                "{lead}--{boundary}\r\nContent-Type: {part_type}\r\nContent-Range: bytes {s}-{e}/{}\r\n\r\n",
                data.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&data[s as usize..=e as usize]);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// A server whose files all come from disk (no memory cache), with `files` published under `/z/`.
fn disk_server(dir: &std::path::Path, files: &[(&str, &[u8])]) -> TestServer {
    let srv = TestServer::start_with(|b| b.memory_cache_file_limit(0));
    let group = srv.server.create_url_group(srv.prefix("z")).unwrap();
    for (name, data) in files {
        let path = write_file(dir, name, data);
        group.add_url(name, &path, None).unwrap();
    }
    srv
}

#[test]
fn randomized_ranges_multiranges_keep_alive_and_slow_readers_are_byte_identical() {
    const SEED: u64 = 0x5eed_2026_1130;
    eprintln!("seed {SEED:#x}");
    let dir = tempfile::tempdir().unwrap();
    let sizes = [1usize, 4096, 100_003, 1_500_000, (5 << 20) + 7];
    let datas: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| pattern(n, 40 + i as u64))
        .collect();
    let names: Vec<String> = (0..sizes.len()).map(|i| format!("f{i}.bin")).collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .zip(&datas)
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    let srv = disk_server(dir.path(), &files);
    let mut rng = Rng(SEED);
    let started = Instant::now();
    // File bytes in bodies, and connections (each may read its first chunk).
    let (mut file_bytes, mut connections) = (0u64, 0u64);
    for c in 0..14 {
        assert!(started.elapsed() < Duration::from_secs(120), "too slow");
        // Every third connection reads slowly through a small receive buffer: sendfile writes partially.
        let slow = c % 3 == 2;
        let mut client = if slow {
            Client::connect(srv.port, Some(4096), 1 + rng.below(3000) as usize)
        } else {
            Client::connect(srv.port, None, 64 * 1024)
        };
        connections += 1;
        let requests = 1 + rng.below(5);
        for _ in 0..requests {
            let f = rng.below(sizes.len() as u64) as usize;
            let data = &datas[f];
            let len = data.len() as u64;
            let path = format!("/z/{}", names[f]);
            let kind = rng.below(10);
            if kind == 0 {
                client.send("HEAD", &path, None);
                let r = client.response(true);
                assert_eq!(r.status, 200);
                assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
                continue;
            }
            let ranges: Vec<(u64, u64)> = match kind {
                1..=3 => Vec::new(),
                4..=6 => {
                    let s = rng.below(len);
                    vec![(s, s + rng.below(len - s))]
                }
                _ => (0..2 + rng.below(4))
                    .map(|_| {
                        let s = rng.below(len);
                        (s, s + rng.below((len - s).min(len / 4 + 1)))
                    })
                    .collect(),
            };
            let header = (!ranges.is_empty()).then(|| {
                ranges
                    .iter()
                    .map(|(s, e)| format!("{s}-{e}"))
                    .collect::<Vec<_>>()
                    .join(",")
            });
            client.send("GET", &path, header.as_deref());
            let r = client.response(false);
            let what = format!("conn {c} {path} ranges {header:?} status {}", r.status);
            let total: u64 = ranges.iter().map(|(s, e)| e - s + 1).sum();
            let want = match (r.status, ranges.len()) {
                (200, _) => {
                    // A full answer to a range request only when the ranges add up to more than the file.
                    assert!(ranges.is_empty() || total > len, "{what}");
                    file_bytes += len;
                    data.clone()
                }
                (206, 1) => {
                    let (s, e) = ranges[0];
                    assert_eq!(
                        r.header("content-range"),
                        Some(format!("bytes {s}-{e}/{len}").as_str()),
                        "{what}"
                    );
                    file_bytes += total;
                    data[s as usize..=e as usize].to_vec()
                }
                (206, _) => {
                    let ct = r.header("content-type").unwrap();
                    let boundary = ct.split("boundary=").nth(1).unwrap();
                    file_bytes += total;
                    multipart(data, &ranges, boundary, "application/octet-stream")
                }
                _ => panic!("{what}"),
            };
            assert_eq!(r.body.len(), want.len(), "{what}");
            assert!(r.body == want, "{what}: bytes differ");
        }
    }
    let sent = srv.server.zero_copy_bytes();
    eprintln!("{file_bytes} file bytes in bodies, {sent} by sendfile, {connections} connections");
    assert!(
        sent + connections * FIRST_CHUNK >= file_bytes,
        "only {sent} of {file_bytes} file bytes went by sendfile"
    );
}

/// Starts a download of `path` with a small receive buffer and reads its head and `first` body bytes.
fn start(port: u16, path: &str, first: usize) -> (Client, u64) {
    let mut client = Client::connect(port, Some(64 * 1024), 64 * 1024);
    client.send("GET", path, None);
    let (status, headers) = client.head();
    assert_eq!(status, 200);
    let len = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .unwrap()
        .1
        .parse()
        .unwrap();
    while client.buf.len() < first {
        assert!(client.fill());
    }
    (client, len)
}

#[test]
fn a_file_that_shrinks_mid_transfer_cuts_the_connection_after_a_true_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(32 << 20, 7);
    let srv = disk_server(dir.path(), &[("s.bin", &data)]);
    let (mut client, len) = start(srv.port, "/z/s.bin", 2 << 20);
    assert_eq!(len, data.len() as u64);
    std::fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("s.bin"))
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let started = Instant::now();
    while client.fill() {
        assert!(started.elapsed() < Duration::from_secs(30), "never cut");
    }
    let got = &client.buf;
    eprintln!("{} of {len} bytes before the cut", got.len());
    assert!((got.len() as u64) < len, "all of Content-Length arrived");
    assert!(
        got[..] == data[..got.len()],
        "the bytes are not a prefix of the file"
    );
    assert!(srv.server.zero_copy_bytes() > 0, "not sent by sendfile");
}

#[test]
fn a_file_that_grows_mid_transfer_sends_exactly_content_length_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(16 << 20, 8);
    let srv = disk_server(dir.path(), &[("g.bin", &data)]);
    let (mut client, len) = start(srv.port, "/z/g.bin", 1 << 20);
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("g.bin"))
        .unwrap()
        .write_all(&pattern(4 << 20, 9))
        .unwrap();
    while (client.buf.len() as u64) < len {
        assert!(client.fill(), "cut after {} of {len}", client.buf.len());
    }
    assert!(client.buf == data, "the body is not the file as it was");
    // The connection is still good for another request.
    client.buf.clear();
    client.send("GET", "/z/g.bin", Some("100-199"));
    let r = client.response(false);
    assert_eq!(r.status, 206);
    assert!(r.body == data[100..200]);
    assert!(srv.server.zero_copy_bytes() >= len - FIRST_CHUNK);
}

#[test]
fn bandwidth_limited_groups_and_servers_without_zero_copy_read_and_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(2 << 20, 10);
    let srv = disk_server(dir.path(), &[("p.bin", &data)]);
    srv.server
        .url_group(srv.prefix("z"))
        .unwrap()
        .set_bandwidth_limit(ByteRate::per_second(16 << 20).unwrap())
        .unwrap();
    let mut client = Client::connect(srv.port, None, 64 * 1024);
    for _ in 0..2 {
        client.send("GET", "/z/p.bin", None);
        assert!(client.response(false).body == data);
    }
    assert_eq!(
        srv.server.zero_copy_bytes(),
        0,
        "a paced body went by sendfile"
    );

    let srv = TestServer::start_with(|b| b.memory_cache_file_limit(0).zero_copy(false));
    let path = write_file(dir.path(), "q.bin", &data);
    srv.server
        .create_url(srv.prefix("z"), "q.bin", &path, None)
        .unwrap();
    let mut client = Client::connect(srv.port, None, 64 * 1024);
    for _ in 0..2 {
        client.send("GET", "/z/q.bin", None);
        assert!(client.response(false).body == data);
    }
    assert_eq!(srv.server.zero_copy_bytes(), 0);
}
