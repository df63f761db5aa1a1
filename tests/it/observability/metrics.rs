//! Prometheus metrics as an operator uses them: a real Prometheus scraping `bcs serve`'s admin listener
//! (TLS, Basic) and finding the bytes and requests curl caused, by group; anonymous and non-admin scrapes
//! refused; `bcs host --metrics` and its bounds; labels that stay bounded as groups come and go.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cli::spawn_host;
use crate::service::{api_over, text, Admin};
use crate::support::{free_port, have, pattern, run, wait_for_port, write_file, TestServer};

/// A Prometheus the test started on loopback, killed when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` every second with `job` (a YAML fragment: scheme, TLS, credentials).
    fn start(target: &str, job: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: bcs\n{job}    static_configs:\n      - targets: ['{target}']\n"
        );
        let file = write_file(dir.path(), "prometheus.yml", config.as_bytes());
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts");
        wait_for_port(port, "prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The instant vector of `query`: (labels, value) per series.
    fn query(&self, query: &str) -> Vec<(Value, f64)> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let out = run(
            "curl",
            &[
                "-s",
                "-G",
                &url,
                "--data-urlencode",
                &format!("query={query}"),
            ],
        );
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        answer["data"]["result"]
            .as_array()
            .map(|series| {
                series
                    .iter()
                    .map(|s| {
                        let value = s["value"][1].as_str().unwrap_or("NaN");
                        (s["metric"].clone(), value.parse().unwrap_or(f64::NAN))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of the series of `metric` whose labels include `labels`, once it equals `want`; panics
    /// with what was seen when the deadline passes.
    fn wait_for(&self, metric: &str, labels: &[(&str, &str)], want: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen: Vec<f64> = self
                .query(metric)
                .into_iter()
                .filter(|(l, _)| labels.iter().all(|(k, v)| l[*k] == *v))
                .map(|(_, v)| v)
                .collect();
            if seen == [want] {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{metric}{labels:?}: wanted {want}, Prometheus has {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Downloads `url` with curl; the body bytes it received and the status.
fn fetch(url: &str) -> (u64, u16) {
    super::fetch(&[url])
}

/// The acceptance test: a real Prometheus scrapes the admin listener (TLS with the test CA, Basic as an
/// administrator) and finds, by group, the requests and bytes curl caused.
#[test]
fn prometheus_scrapes_bytes_and_requests_by_group() {
    if !have("curl") || !have("prometheus") {
        return;
    }
    let admin = Admin::start(false, &[]);
    let svc = &admin.svc;
    let body = json!({"password": "scrape-pw-1", "groups": ["BA"]});
    assert_eq!(svc.api("PUT", "/v1/users/scraper", Some(&body)).0, 200);
    let files = tempfile::tempdir().unwrap();
    let big = write_file(files.path(), "big.bin", &pattern(100_000, 1));
    let small = write_file(files.path(), "small.bin", &pattern(5_000, 2));
    let port = free_port();
    let (a, b) = (
        format!("http://127.0.0.1:{port}/A/"),
        format!("http://127.0.0.1:{port}/B/"),
    );
    for (prefix, file) in [(&a, &big), (&b, &small)] {
        svc.bcs_json(&["group", "create", prefix]);
        let name = file.file_name().unwrap().to_str().unwrap();
        svc.bcs_json(&["url", "add", prefix, name, file.to_str().unwrap()]);
    }
    let (mut bytes_a, mut bytes_b) = (0, 0);
    for _ in 0..3 {
        let (size, code) = fetch(&format!("{a}big.bin"));
        assert_eq!((size, code), (100_000, 200));
        bytes_a += size;
    }
    for _ in 0..2 {
        let (size, code) = fetch(&format!("{b}small.bin"));
        assert_eq!((size, code), (5_000, 200));
        bytes_b += size;
    }
    // A 404 in B counts in B, with its body's bytes.
    let (size, code) = fetch(&format!("{b}missing.bin"));
    assert_eq!(code, 404);
    bytes_b += size;

    let prometheus = Prometheus::start(
        &admin.base()["https://".len()..],
        &format!(
            "    scheme: https\n    tls_config:\n      ca_file: {}\n    basic_auth:\n      username: scraper\n      password: scrape-pw-1\n",
            admin.ca_file.display()
        ),
    );
    prometheus.wait_for("up", &[("job", "bcs")], 1.0);
    let by = |group: &str, class: &str| {
        prometheus.wait_for(
            "bcs_http_requests_total",
            &[("group", group), ("class", class)],
            match (group == a, class) {
                (true, "2xx") => 3.0,
                (false, "2xx") => 2.0,
                (false, "4xx") => 1.0,
                _ => 0.0,
            },
        )
    };
    by(&a, "2xx");
    by(&a, "4xx");
    by(&b, "2xx");
    by(&b, "4xx");
    prometheus.wait_for(
        "bcs_http_response_bytes_total",
        &[("group", &a)],
        bytes_a as f64,
    );
    prometheus.wait_for(
        "bcs_http_response_bytes_total",
        &[("group", &b)],
        bytes_b as f64,
    );
    prometheus.wait_for("bcs_downloads_completed_total", &[("group", &a)], 3.0);
    prometheus.wait_for("bcs_downloads_in_progress", &[("group", &a)], 0.0);
    // The store commits of the changes above were timed.
    let commits = prometheus.query("bcs_store_commit_seconds_count");
    assert!(
        commits.iter().any(|(_, v)| *v >= 4.0),
        "commits: {commits:?}"
    );
}

/// SECURITY: the metrics name the groups and what they serve: only administrators may read them. Without
/// credentials the admin listener answers 401, with a wrong password 401, a non-administrator 403; the
/// socket (its owner is an administrator) answers.
#[test]
fn an_anonymous_scrape_is_refused() {
    if !have("curl") {
        return;
    }
    let admin = Admin::start(false, &[]);
    let svc = &admin.svc;
    for (name, groups) in [("boss", json!(["BA"])), ("bob", json!([]))] {
        let body = json!({"password": format!("{name}-pw-1"), "groups": groups});
        assert_eq!(
            svc.api("PUT", &format!("/v1/users/{name}"), Some(&body)).0,
            200
        );
    }
    let ca = admin.ca_file.to_str().unwrap();
    let remote = |extra: &[&str]| {
        let how = [&["--cacert", ca][..], extra].concat();
        api_over(&how, &admin.base(), "GET", "/metrics", None)
    };
    let (code, body) = remote(&[]);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("bcs_"), "{body}");
    assert_eq!(remote(&["-u", "boss:wrong"]).0, 401);
    assert_eq!(remote(&["-u", "bob:bob-pw-1"]).0, 403);
    let (code, body) = remote(&["-u", "boss:boss-pw-1"]);
    assert_eq!(code, 200);
    assert!(
        body.contains("# TYPE bcs_http_requests_total counter"),
        "{body}"
    );
    assert!(
        body.contains("bcs_open_connections"),
        "the file server's gauges are there: {body}"
    );
    let (code, body) = svc.api("GET", "/metrics", None);
    assert_eq!(code, 200);
    assert!(body.contains("bcs_store_commit_seconds_bucket"), "{body}");
    // The OpenAPI document lists it as text.
    let (_, doc) = svc.api("GET", "/v1/openapi.json", None);
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert!(
        doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["text/plain"].is_object(),
        "{}",
        doc["paths"]["/metrics"]
    );
}

/// `bcs host --no-sendfile`: plain HTTP/1.1 files are read and written out (nothing goes by `sendfile`,
/// so the server has no `sendfile_bytes` counter to export), and curl and wget get every byte, whole and
/// by range.
#[test]
fn bcs_host_without_sendfile_reads_and_writes_every_byte() {
    if !have("curl") || !have("wget") {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let data = pattern((3 << 20) + 12_345, 5);
    let file = write_file(files.path(), "big.bin", &data);
    let metrics_port = free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    let args = ["--no-sendfile", "--metrics", &addr];
    let (bcs, port) = spawn_host("http", "N", &args, &[file.as_path()]);
    wait_for_port(metrics_port, "the metrics listener");
    let url = format!("http://127.0.0.1:{port}/N/big.bin");
    for (tool, args) in [("curl", ["-sfo"]), ("wget", ["-qO"])] {
        let out = files.path().join(format!("{tool}.bin"));
        let done = run(tool, &[args[0], out.to_str().unwrap(), &url]);
        assert!(done.status.success(), "{tool}: {done:?}");
        assert!(
            std::fs::read(&out).unwrap() == data,
            "{tool}'s copy differs"
        );
    }
    let range = run("curl", &["-sf", "-r", "1000000-2999999", &url]).stdout;
    assert!(range == data[1_000_000..3_000_000], "the range differs");
    let page = text(&run("curl", &["-s", &format!("http://{addr}/metrics")]).stdout);
    assert!(page.contains("bcs_http_response_bytes_total"), "{page}");
    assert!(!page.contains("bcs_sendfile_bytes"), "{page}");
    drop(bcs);
}

/// `bcs host --metrics ADDR`: a listener of its own answering GET /metrics only, counting what curl
/// downloaded, and bounded against a flood of idle connections.
#[test]
fn bcs_host_serves_metrics_on_its_own_listener() {
    if !have("curl") {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    // Larger than the memory cache's per-file limit (256 KiB), so that it goes by sendfile.
    let file = write_file(files.path(), "one.bin", &pattern(300_000, 3));
    let metrics_port = free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    let (bcs, port) = spawn_host("http", "M", &["--metrics", &addr], &[file.as_path()]);
    wait_for_port(metrics_port, "the metrics listener");
    let url = format!("http://127.0.0.1:{port}/M/one.bin");
    for _ in 0..2 {
        assert_eq!(fetch(&url), (300_000, 200));
    }
    let group = format!("http://+:{port}/M/");
    let scrape = format!("http://{addr}/metrics");
    let page = text(&run("curl", &["-s", "-i", &scrape]).stdout);
    assert!(page.contains("text/plain; version=0.0.4"), "{page}");
    assert!(
        page.contains(&format!(
            "bcs_http_requests_total{{group=\"{group}\",class=\"2xx\"}} 2"
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "bcs_http_response_bytes_total{{group=\"{group}\"}} 600000"
        )),
        "{page}"
    );
    // Plain HTTP/1.1 downloads go (mostly) by sendfile: the server's own counter, exported.
    let sendfile: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("bcs_sendfile_bytes_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{page}"));
    assert!(sendfile > 0 && sendfile <= 600_000, "{sendfile}");
    // Nothing but GET /metrics.
    let code = |args: &[&str]| {
        text(
            &run(
                "curl",
                &[&["-s", "-o", "/dev/null", "-w", "%{http_code}"], args].concat(),
            )
            .stdout,
        )
    };
    assert_eq!(code(&["-X", "POST", &scrape]), "405");
    assert_eq!(code(&[&format!("http://{addr}/M/one.bin")]), "404");
    assert_eq!(code(&[&format!("http://{addr}/")]), "404");

    // SECURITY: a flood of idle connections holds at most the listener's cap; the file server does not
    // notice, and once the flood goes the metrics answer again.
    let flood: Vec<TcpStream> = (0..64)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", metrics_port)).ok())
        .collect();
    assert_eq!(fetch(&url), (300_000, 200));
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = text(&run("curl", &["-s", "--max-time", "5", &scrape]).stdout);
        if page.contains("class=\"2xx\"} 3") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no metrics after the flood: {page}"
        );
    }
    // SECURITY: a client that sends half a request is cut at the header deadline (10 s).
    let mut slow = TcpStream::connect(("127.0.0.1", metrics_port)).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    assert!(
        started.elapsed() < Duration::from_secs(19),
        "the half request held its connection"
    );
    bcs.stop("-TERM");
}

/// SECURITY: the threat is a series per group ever created (a deployment script that creates a group
/// per rollout): deleted groups leave the scrape, and a label never holds a URL path or a client
/// address.
#[test]
fn labels_stay_bounded_as_groups_come_and_go() {
    let files = tempfile::tempdir().unwrap();
    let file = write_file(files.path(), "f.bin", b"0123456789");
    let server = TestServer::start();
    // Kept from the start, so that the port stays open while the others come and go.
    let kept = server.prefix("Kept");
    let group = server.server.create_url_group(&kept).unwrap();
    group.add_url("f.bin", &file, None).unwrap();
    for i in 0..300 {
        let prefix = server.prefix(&format!("G{i}"));
        let group = server.server.create_url_group(&prefix).unwrap();
        group.add_url("f.bin", &file, None).unwrap();
        if i % 50 == 0 {
            assert_eq!(fetch(&server.url(&format!("/G{i}/f.bin"))), (10, 200));
        }
        server.server.delete_url_group(&prefix).unwrap();
    }
    assert_eq!(fetch(&server.url("/Kept/f.bin")), (10, 200));
    // Paths no group serves count as `none`, whatever the path.
    for path in ["/nothing/x", "/%22%0a/evil", "/G1/f.bin"] {
        let (_, status) = fetch(&server.url(path));
        assert!(status == 404 || status == 400, "{path}: {status}");
    }
    let text = server.server.metrics().render();
    let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        samples.iter().all(|l| !l.contains("/G")),
        "a deleted group left series: {samples:?}"
    );
    // Two groups (Kept and `none`), ten series each.
    let grouped = samples.iter().filter(|l| l.contains("group=")).count();
    assert_eq!(grouped, 20, "{samples:?}");
    assert!(text.contains(&format!(
        "bcs_http_requests_total{{group=\"{kept}\",class=\"2xx\"}} 1"
    )));
    assert!(text.contains("bcs_http_requests_total{group=\"none\",class=\"4xx\"} 3"));
    assert!(
        !text.contains("evil") && !text.contains("127.0.0.1"),
        "{text}"
    );
}

/// Authentication failures count by the scheme offered, a bounded label whatever a client writes; the
/// guessing limit's 429s count apart; a request that offers nothing and is challenged is no failure.
#[test]
fn authentication_failures_count_by_scheme() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "f.bin", b"secret");
    let mut principals = bits_compact::Principals::default();
    principals
        .set_user("alice", &bits_compact::Password::from("alice-RIGHT"), &[])
        .unwrap();
    let server = TestServer::start();
    server.server.set_principals(principals);
    let group = server
        .server
        .create_url_group(server.prefix("Auth"))
        .unwrap();
    group
        .set_authentication(bits_compact::AuthScheme::Basic, true)
        .unwrap();
    group.allow_basic_over_http(true).unwrap();
    group.add_url("f.bin", &file, None).unwrap();
    let url = server.url("/Auth/f.bin");
    let status = |extra: &[&str]| fetch_with(extra, &url).1;
    assert_eq!(status(&[]), 401);
    assert_eq!(status(&["-u", "alice:alice-RIGHT"]), 200);
    // Right credentials on a URL the user may not read: authorization, not an authentication failure.
    group
        .add_url("admins.bin", &file, Some("D:(A;;GR;;;BA)"))
        .unwrap();
    let admins = server.url("/Auth/admins.bin");
    assert_eq!(fetch_with(&["-u", "alice:alice-RIGHT"], &admins).1, 403);
    for _ in 0..3 {
        assert_eq!(status(&["-u", "alice:wrong"]), 401);
    }
    let hostile = "Authorization: Evil\"} {group=\"x\"} 1";
    assert!(matches!(status(&["-H", hostile]), 400 | 401));
    let mut limited = 0;
    for _ in 0..40 {
        if status(&["-u", "alice:guess"]) == 429 {
            limited += 1;
        }
    }
    assert!(limited > 0, "the guessing limit answered 429");
    let text = server.server.metrics().render();
    let value = |sample: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {sample} in {text}"))
    };
    assert_eq!(
        value("bcs_auth_failures_total{scheme=\"basic\"}"),
        3 + 40 - limited
    );
    assert_eq!(value("bcs_auth_failures_total{scheme=\"other\"}"), 1);
    assert_eq!(value("bcs_auth_rate_limited_total"), limited);
    assert!(!text.contains("Evil"), "{text}");
}

fn fetch_with(extra: &[&str], url: &str) -> (u64, u16) {
    let out = run(
        "curl",
        &[
            &[
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download} %{http_code}",
            ],
            extra,
            &[url],
        ]
        .concat(),
    );
    let answer = text(&out.stdout);
    let (size, code) = answer.split_once(' ').unwrap();
    (size.parse().unwrap(), code.parse().unwrap())
}

/// The limits' metrics: a download paced by the group's bandwidth limit counts its waiting time and is
/// in progress while it runs; a second download past the ConnectionLimit is refused (503) and counted.
#[test]
fn limits_count_refusals_and_paced_time() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "slow.bin", &pattern(60_000, 5));
    let server = TestServer::start();
    let group = server
        .server
        .create_url_group(server.prefix("Slow"))
        .unwrap();
    group
        .set_connection_limit(bits_compact::ConnectionLimit::new(1).unwrap())
        .unwrap();
    group
        .set_bandwidth_limit("30KiB/s".parse().unwrap())
        .unwrap();
    group.add_url("slow.bin", &file, None).unwrap();
    let url = server.url("/Slow/slow.bin");
    let prefix = server.prefix("Slow");
    let metrics = server.server.metrics();
    let value = move |sample: &str| -> f64 {
        let text = metrics.render();
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {sample} in {text}"))
    };
    let slow = {
        let url = url.clone();
        std::thread::spawn(move || fetch(&url))
    };
    let in_progress = format!("bcs_downloads_in_progress{{group=\"{prefix}\"}}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while value(&in_progress) < 1.0 {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fetch(&url), (fetch_refusal_size(&url), 503));
    assert_eq!(slow.join().unwrap(), (60_000, 200));
    // curl returns on the last byte; the server counts the download done when hyper drops the body,
    // a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    while value(&in_progress) != 0.0 {
        assert!(Instant::now() < deadline, "the download never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        value(&format!(
            "bcs_connection_limit_refusals_total{{group=\"{prefix}\"}}"
        )),
        2.0
    );
    assert_eq!(
        value(&format!(
            "bcs_downloads_completed_total{{group=\"{prefix}\"}}"
        )),
        1.0
    );
    // 60 000 bytes at 30 KiB/s: most of two seconds spent waiting for the budget.
    let paced = value(&format!(
        "bcs_bandwidth_limited_seconds_total{{group=\"{prefix}\"}}"
    ));
    assert!((1.0..4.0).contains(&paced), "{paced}");
}

/// The size of a refusal's body (the 503's text), asked once more: the limit is still full.
fn fetch_refusal_size(url: &str) -> u64 {
    let (size, status) = fetch(url);
    assert_eq!(status, 503);
    size
}

/// TLS handshakes on an https group count, and so do the ones that fail (a client that speaks plain
/// HTTP to the port).
#[test]
fn tls_handshakes_and_failures_count() {
    if !have("curl") {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let file = write_file(files.path(), "t.bin", b"tls");
    let metrics_port = free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    let (bcs, port) = spawn_host("https", "T", &["--metrics", &addr], &[file.as_path()]);
    wait_for_port(metrics_port, "the metrics listener");
    for _ in 0..2 {
        let (size, code) = fetch_with(&["-k"], &format!("https://127.0.0.1:{port}/T/t.bin"));
        assert_eq!((size, code), (3, 200));
    }
    let _ = fetch(&format!("http://127.0.0.1:{port}/T/t.bin"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = text(&run("curl", &["-s", &format!("http://{addr}/metrics")]).stdout);
        if page.contains("bcs_tls_handshakes_total 2")
            && page.contains("bcs_tls_handshake_failures_total 1")
        {
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        std::thread::sleep(Duration::from_millis(50));
    }
    bcs.stop("-TERM");
}
