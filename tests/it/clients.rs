//! Real download clients (curl, wget, aria2c) against the in-process server over loopback.

use crate::support::{curl, have, pattern, run, write_file, Reply, TestServer};

const BIG: usize = 3 * 1024 * 1024 + 12345; // past the memory cache: read from disk in chunks
const SMALL: usize = 10_000; // served from memory

struct Fixture {
    srv: TestServer,
    _dir: tempfile::TempDir,
    big: Vec<u8>,
    small: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let big = pattern(BIG, 1);
    let small = pattern(SMALL, 2);
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("Files")).unwrap();
    group
        .add_url("big.bin", write_file(dir.path(), "big.bin", &big), None)
        .unwrap();
    group
        .add_url(
            "docs/small.txt",
            write_file(dir.path(), "small.txt", &small),
            None,
        )
        .unwrap();
    Fixture {
        srv,
        _dir: dir,
        big,
        small,
    }
}

#[test]
fn curl_full_get_is_byte_identical_for_memory_and_disk_files() {
    if !have("curl") {
        return;
    }
    let f = fixture();
    for (path, want) in [
        ("/Files/big.bin", &f.big),
        ("/files/DOCS/small.txt", &f.small),
    ] {
        let r = curl(&[&f.srv.url(path)]);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.body.len(), want.len(), "{path}");
        assert!(r.body == *want, "{path}: body differs");
        assert_eq!(
            r.header("content-length"),
            Some(want.len().to_string().as_str())
        );
    }
    // The big file went by sendfile (all but what one response reads before zero-copy is armed).
    assert!(f.srv.server.zero_copy_bytes() >= (BIG - 256 * 1024) as u64);
}

#[test]
fn curl_head_has_what_bits_needs() {
    if !have("curl") {
        return;
    }
    let f = fixture();
    for (path, len, ctype) in [
        ("/Files/big.bin", BIG, "application/octet-stream"),
        ("/Files/docs/small.txt", SMALL, "text/plain"),
    ] {
        let r = curl(&["-I", &f.srv.url(path)]);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some(len.to_string().as_str()));
        assert_eq!(r.header("accept-ranges"), Some("bytes"));
        assert_eq!(r.header("content-type"), Some(ctype));
        assert!(r
            .header("last-modified")
            .is_some_and(|v| v.ends_with("GMT")));
        let etag = r.header("etag").unwrap();
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "strong ETag: {etag}"
        );
        assert!(r.header("content-encoding").is_none());
        assert!(r.body.is_empty());
        // Stable while the file is unchanged.
        let again = curl(&["-I", &f.srv.url(path)]);
        assert_eq!(again.header("etag"), Some(etag));
        assert_eq!(again.header("last-modified"), r.header("last-modified"));
    }
}

#[test]
fn curl_single_and_suffix_ranges() {
    if !have("curl") {
        return;
    }
    let f = fixture();
    let url = f.srv.url("/Files/big.bin");
    let cases: [(&str, usize, usize); 4] = [
        ("0-99", 0, 99),
        ("1000000-2999999", 1_000_000, 2_999_999),
        ("-500", BIG - 500, BIG - 1),
        ("3000000-", 3_000_000, BIG - 1),
    ];
    for (range, start, end) in cases {
        let r = curl(&["-r", range, &url]);
        assert_eq!(r.status, 206, "{range}");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/{BIG}").as_str()),
            "{range}"
        );
        assert_eq!(
            r.header("content-length"),
            Some((end - start + 1).to_string().as_str())
        );
        assert!(r.body == f.big[start..=end], "{range}: body differs");
    }
    let r = curl(&["-r", "5-9", &f.srv.url("/Files/docs/small.txt")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, f.small[5..=9]);
}

#[test]
fn curl_multi_range_is_multipart_byteranges_part_by_part() {
    if !have("curl") {
        return;
    }
    let f = fixture();
    for (path, data) in [
        ("/Files/big.bin", &f.big),
        ("/Files/docs/small.txt", &f.small),
    ] {
        let len = data.len();
        let r = curl(&["-r", "0-9,5-14,-3,4000-4099", &f.srv.url(path)]);
        assert_eq!(r.status, 206);
        let ctype = r.header("content-type").unwrap();
        let boundary = ctype
            .strip_prefix("multipart/byteranges; boundary=")
            .unwrap_or_else(|| panic!("{ctype}"));
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let parts = multipart_parts(&r.body, boundary);
        // Not merged, in request order.
        let want = [(0, 9), (5, 14), (len - 3, len - 1), (4000, 4099)];
        assert_eq!(parts.len(), want.len());
        for (part, (start, end)) in parts.iter().zip(want) {
            assert_eq!(
                part.header("content-range"),
                Some(format!("bytes {start}-{end}/{len}").as_str())
            );
            assert!(part.header("content-type").is_some());
            assert_eq!(part.headers.len(), 2, "minimal part headers");
            assert!(part.body == data[start..=end]);
        }
    }
}

/// Splits a multipart body into parts (headers and data).
fn multipart_parts(body: &[u8], boundary: &str) -> Vec<Reply> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let start = find(rest, delimiter.as_bytes()).expect("first delimiter");
    rest = &rest[start + delimiter.len()..];
    loop {
        if rest.starts_with(b"--") {
            break;
        }
        let rest_after_crlf = rest.strip_prefix(b"\r\n").expect("CRLF after delimiter");
        let next = format!("\r\n--{boundary}");
        let end = find(rest_after_crlf, next.as_bytes()).expect("next delimiter");
        let mut part = b"HTTP/1.1 206 Part\r\n".to_vec();
        part.extend_from_slice(&rest_after_crlf[..end]);
        parts.push(Reply::parse(&part).expect("part headers"));
        rest = &rest_after_crlf[end + next.len()..];
    }
    assert_eq!(rest, b"--\r\n", "close delimiter");
    parts
}

#[test]
fn curl_unsatisfiable_range_is_416() {
    if !have("curl") {
        return;
    }
    let f = fixture();
    let r = curl(&["-r", &format!("{BIG}-"), &f.srv.url("/Files/big.bin")]);
    assert_eq!(r.status, 416);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes */{BIG}").as_str())
    );
}

#[test]
fn curl_conditionals() {
    if !have("curl") {
        return;
    }
    let f = fixture();
    let url = f.srv.url("/Files/big.bin");
    let head = curl(&["-I", &url]);
    let etag = head.header("etag").unwrap().to_owned();
    let modified = head.header("last-modified").unwrap().to_owned();

    // If-Range with a stale validator: the whole file, 200.
    let r = curl(&["-r", "0-9", "-H", "If-Range: \"stale\"", &url]);
    assert_eq!(r.status, 200);
    assert!(r.body == f.big);
    // If-Range with the current ETag or date: the range.
    for validator in [&etag, &modified] {
        let r = curl(&["-r", "0-9", "-H", &format!("If-Range: {validator}"), &url]);
        assert_eq!(r.status, 206, "If-Range: {validator}");
        assert_eq!(r.body, f.big[..10]);
    }
    // 304 with the validators and no body.
    for h in [
        format!("If-None-Match: {etag}"),
        format!("If-Modified-Since: {modified}"),
    ] {
        let r = curl(&["-H", &h, &url]);
        assert_eq!(r.status, 304, "{h}");
        assert_eq!(r.header("etag"), Some(etag.as_str()));
        assert!(r.body.is_empty());
    }
    // 412.
    for h in [
        "If-Match: \"other\"".to_owned(),
        "If-Unmodified-Since: Mon, 01 Jan 2001 00:00:00 GMT".to_owned(),
    ] {
        let r = curl(&["-H", &h, &url]);
        assert_eq!(r.status, 412, "{h}");
    }
    let r = curl(&["-H", &format!("If-Match: {etag}"), "-r", "0-0", &url]);
    assert_eq!(r.status, 206);
}

#[test]
fn curl_errors_405_400_404() {
    if !have("curl") {
        return;
    }
    let f = fixture();
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let r = curl(&["-X", method, &f.srv.url("/Files/big.bin")]);
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }
    // No group matches: 404 (no URL serves it; HTTP.sys says 400); unknown suffix in a group: 404.
    assert_eq!(curl(&[&f.srv.url("/Nope/big.bin")]).status, 404);
    assert_eq!(curl(&[&f.srv.url("/")]).status, 404);
    assert_eq!(curl(&[&f.srv.url("/Files/missing.bin")]).status, 404);
    assert_eq!(curl(&[&f.srv.url("/Files/")]).status, 404);
    assert_eq!(curl(&[&f.srv.url("/Files/docs")]).status, 404);
}

#[test]
fn wget_continues_a_truncated_download() {
    if !have("wget") {
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let url = f.srv.url("/Files/big.bin");

    // A real truncated download resumes to a byte-identical file.
    let local = write_file(dir.path(), "big.bin", &f.big[..1_234_567]);
    let out = run("wget", &["-q", "-c", "-O", local.to_str().unwrap(), &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&local).unwrap() == f.big);

    // It really resumed with a range: bytes already on disk were kept, not fetched again.
    let marker = vec![b'#'; 1000];
    let local = write_file(dir.path(), "marked.bin", &marker);
    let out = run("wget", &["-q", "-c", "-O", local.to_str().unwrap(), &url]);
    assert!(out.status.success());
    let got = std::fs::read(&local).unwrap();
    assert_eq!(got.len(), BIG);
    assert_eq!(got[..1000], marker[..]);
    assert!(got[1000..] == f.big[1000..]);
    assert!(f.srv.server.zero_copy_bytes() > 0, "not sent by sendfile");
}

#[test]
fn aria2c_segmented_download_is_byte_identical() {
    if !have("aria2c") {
        return;
    }
    let f = fixture();
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        "aria2c",
        &[
            "-q",
            "-x4",
            "-s4",
            "-k1M",
            "--min-split-size=1M",
            "--allow-overwrite=true",
            "--auto-file-renaming=false",
            "-d",
            dir.path().to_str().unwrap(),
            "-o",
            "big.bin",
            &f.srv.url("/Files/big.bin"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(std::fs::read(dir.path().join("big.bin")).unwrap() == f.big);
    assert!(f.srv.server.zero_copy_bytes() > 0, "not sent by sendfile");
}
