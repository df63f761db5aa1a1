//! Download jobs through the client stack against our own server on 127.0.0.1: https with a test CA and
//! with a pin (a wrong pin is an ERROR before any byte), a group requiring client certificates, Basic over
//! TLS, NTLM with a principals file, and tinyproxy in between (absolute-form for http, CONNECT for https).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bits_compact::client::{ClientSettings, Credentials, ProxySetting, SpkiPin, TlsSettings};
use bits_compact::jobs::{part_path, Action, JobId, JobManager, JobState, NewJob};
use bits_compact::{
    AuthScheme, ClientCertMode, ClientCertificates, Password, Principals, ServerCertificate,
};

use crate::pki::Ca;
use crate::support::{free_port, have, pattern, write_file, TestServer};

const PATIENCE: Duration = Duration::from_secs(60);

/// An https server (certificate from a test CA) and a plain http one, both with an anonymous group `S`,
/// a Basic group `B` (https) and an NTLM group `N` (http), alice/alice-RIGHT in the principals.
struct Site {
    https: TestServer,
    http: TestServer,
    dir: tempfile::TempDir,
    ca: Ca,
    pin: String,
    data: Vec<u8>,
}

fn principals() -> Principals {
    let mut p = Principals::default();
    p.set_user("alice", &Password::from("alice-RIGHT"), &[])
        .unwrap();
    p
}

fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("Client CA");
    ca.write(d, "ca.pem");
    let leaf = ca.server(d, "server", &["127.0.0.1", "localhost"]);
    let data = pattern(512 * 1024, 13);
    let file = write_file(d, "data.bin", &data);
    let https = TestServer::start();
    https.server.set_principals(principals());
    let cert = ServerCertificate::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    let pin = cert.info().spki_pin.clone();
    https.server.set_ssl_certificate(https.port, cert).unwrap();
    let s = https
        .server
        .create_url_group(format!("https://+:{}/S/", https.port))
        .unwrap();
    s.add_url("data.bin", file.clone(), None).unwrap();
    let b = https
        .server
        .create_url_group(format!("https://+:{}/B/", https.port))
        .unwrap();
    b.set_authentication(AuthScheme::Basic, true).unwrap();
    b.add_url("data.bin", file.clone(), Some("D:(A;;GR;;;AU)"))
        .unwrap();
    let http = TestServer::start();
    http.server.set_principals(principals());
    let s = http.server.create_url_group(http.prefix("S")).unwrap();
    s.add_url("data.bin", file.clone(), None).unwrap();
    let n = http.server.create_url_group(http.prefix("N")).unwrap();
    n.set_authentication(AuthScheme::Ntlm, true).unwrap();
    n.add_url("data.bin", file.clone(), Some("D:(A;;GR;;;AU)"))
        .unwrap();
    Site {
        https,
        http,
        dir,
        ca,
        pin,
        data,
    }
}

impl Site {
    fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https.port)
    }

    fn ca_trust(&self) -> TlsSettings {
        TlsSettings {
            ca_file: Some(self.dir.path().join("ca.pem")),
            ..TlsSettings::default()
        }
    }

    fn dest(&self, name: &str) -> PathBuf {
        self.dir.path().join("out").join(name)
    }
}

fn direct(tls: TlsSettings) -> ClientSettings {
    ClientSettings {
        tls,
        proxy: ProxySetting::NoProxy,
        credentials: None,
    }
}

async fn start(m: &JobManager, url: &str, dest: &Path, settings: ClientSettings) -> JobId {
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    let new = NewJob::new("client")
        .file(url, dest)
        .minimum_retry_delay(Duration::from_secs(5))
        .client(settings);
    m.create_job(new).await.unwrap().id
}

/// Waits for one of `states`; returns the one reached.
async fn wait_for(m: &JobManager, id: JobId, states: &[JobState]) -> JobState {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let job = m.job(id).unwrap();
        if states.contains(&job.state) {
            return job.state;
        }
        assert!(
            Instant::now() < deadline,
            "job is {} ({:?}), expected {states:?}",
            job.state,
            job.error
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Downloads `url` to a new file and checks it is byte-identical.
async fn downloads(m: &JobManager, url: &str, dest: &Path, settings: ClientSettings, data: &[u8]) {
    let id = start(m, url, dest, settings).await;
    wait_for(m, id, &[JobState::Transferred]).await;
    m.set_state(id, Action::Complete).await.unwrap();
    assert!(std::fs::read(dest).unwrap() == data, "not byte-identical");
}

/// Expects ERROR with `code`, and no byte of the file on disk.
async fn fails(m: &JobManager, url: &str, dest: &Path, settings: ClientSettings, code: &str) {
    let id = start(m, url, dest, settings).await;
    wait_for(m, id, &[JobState::Error]).await;
    let error = m.error(id).unwrap().unwrap();
    assert_eq!(error.code, code, "{error}");
    let written = std::fs::metadata(part_path(dest).unwrap()).map_or(0, |m| m.len());
    assert_eq!(written, 0, "bytes written despite {error}");
    assert!(!dest.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_ca_with_a_pin_and_not_with_a_wrong_pin() {
    let s = site();
    let m = JobManager::builder().start().await.unwrap();
    let url = s.https_url("/S/data.bin");
    downloads(&m, &url, &s.dest("ca.bin"), direct(s.ca_trust()), &s.data).await;
    let pinned = TlsSettings {
        pins: vec![s.pin.parse().unwrap()],
        ..TlsSettings::default()
    };
    downloads(&m, &url, &s.dest("pin.bin"), direct(pinned), &s.data).await;
    let both = TlsSettings {
        pins: vec![s.pin.parse().unwrap()],
        ..s.ca_trust()
    };
    downloads(&m, &url, &s.dest("both.bin"), direct(both), &s.data).await;

    // SECURITY: a pin of another key refuses the server, and so does a CA that did not sign it.
    let other = Ca::new("Other CA");
    let other_leaf = other.server(s.dir.path(), "other", &["127.0.0.1"]);
    let other_cert = ServerCertificate::from_pem_files(&other_leaf.cert, &other_leaf.key).unwrap();
    let wrong: SpkiPin = other_cert.info().spki_pin.parse().unwrap();
    let wrong_pin = TlsSettings {
        pins: vec![wrong],
        ..TlsSettings::default()
    };
    fails(
        &m,
        &url,
        &s.dest("wrong-pin.bin"),
        direct(wrong_pin),
        "tls_handshake",
    )
    .await;
    let other_ca = TlsSettings {
        ca_file: Some(other.write(s.dir.path(), "other-ca.pem")),
        ..TlsSettings::default()
    };
    fails(
        &m,
        &url,
        &s.dest("wrong-ca.bin"),
        direct(other_ca),
        "tls_handshake",
    )
    .await;
    // The system roots do not know the test CA.
    fails(
        &m,
        &url,
        &s.dest("system.bin"),
        direct(TlsSettings::default()),
        "tls_handshake",
    )
    .await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_requiring_client_certificates() {
    let s = site();
    let d = s.dir.path();
    let required =
        ClientCertificates::from_pem_files(ClientCertMode::Required, d.join("ca.pem"), &[])
            .unwrap();
    s.https
        .server
        .set_client_certificates(s.https.port, required)
        .unwrap();
    let alice = s.ca.client(d, "alice", "Alice", None);
    let m = JobManager::builder().start().await.unwrap();
    let url = s.https_url("/S/data.bin");
    let with_cert = TlsSettings {
        client_certificate: Some((alice.cert.clone(), alice.key.clone())),
        ..s.ca_trust()
    };
    downloads(&m, &url, &s.dest("cert.bin"), direct(with_cert), &s.data).await;
    let id = start(&m, &url, &s.dest("nocert.bin"), direct(s.ca_trust())).await;
    let state = wait_for(&m, id, &[JobState::Error, JobState::TransientError]).await;
    let error = m.error(id).unwrap().unwrap();
    assert_eq!(
        (state, error.code.as_str()),
        (JobState::Error, "tls_handshake"),
        "{error}"
    );
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_over_tls_right_and_wrong_passwords() {
    let s = site();
    let m = JobManager::builder().start().await.unwrap();
    let url = s.https_url("/B/data.bin");
    let with = |password: &str| ClientSettings {
        credentials: Some(Credentials::basic("alice", Password::from(password))),
        ..direct(s.ca_trust())
    };
    downloads(&m, &url, &s.dest("right.bin"), with("alice-RIGHT"), &s.data).await;
    fails(&m, &url, &s.dest("wrong.bin"), with("WRONG"), "http_401").await;
    fails(
        &m,
        &url,
        &s.dest("none.bin"),
        direct(s.ca_trust()),
        "http_401",
    )
    .await;
    // SECURITY: never in the clear unless allowed.
    let http = s.http.url("/S/data.bin");
    fails(
        &m,
        &http,
        &s.dest("clear.bin"),
        with("alice-RIGHT"),
        "basic_over_http",
    )
    .await;
    m.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntlm_right_and_wrong_passwords() {
    let s = site();
    let m = JobManager::builder().start().await.unwrap();
    let url = s.http.url("/N/data.bin");
    let with = |user: &str, password: &str| ClientSettings {
        credentials: Some(Credentials::ntlm(user, Password::from(password))),
        ..direct(TlsSettings::default())
    };
    downloads(
        &m,
        &url,
        &s.dest("right.bin"),
        with("alice", "alice-RIGHT"),
        &s.data,
    )
    .await;
    downloads(
        &m,
        &url,
        &s.dest("domain.bin"),
        with("CORP\\alice", "alice-RIGHT"),
        &s.data,
    )
    .await;
    fails(
        &m,
        &url,
        &s.dest("wrong.bin"),
        with("alice", "WRONG"),
        "http_401",
    )
    .await;
    fails(
        &m,
        &url,
        &s.dest("none.bin"),
        direct(TlsSettings::default()),
        "http_401",
    )
    .await;
    m.shutdown().await;
}

/// tinyproxy on a free port with a temporary configuration, logging to a file.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    fn start() -> Option<Tinyproxy> {
        if !have("tinyproxy") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // tinyproxy started as root drops to nobody, who must be able to write its log.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        let conf = write_file(
            dir.path(),
            "tinyproxy.conf",
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 20\nLogLevel Info\n\
                 LogFile \"{}\"\nAllow 127.0.0.1\n",
                log.display()
            )
            .as_bytes(),
        );
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        crate::support::wait_for_port(port, "tinyproxy");
        Some(Tinyproxy {
            child,
            port,
            log,
            _dir: dir,
        })
    }

    fn setting(&self) -> ProxySetting {
        ProxySetting::Override {
            proxy: format!("http://127.0.0.1:{}", self.port),
            bypass: Vec::new(),
        }
    }

    /// Whether the proxy opened a connection to `port`.
    fn reached(&self, port: u16) -> bool {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(&format!("opening connection to 127.0.0.1:{port}"))
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_tinyproxy_for_http_and_https() {
    let Some(proxy) = Tinyproxy::start() else {
        return;
    };
    let s = site();
    let m = JobManager::builder().start().await.unwrap();
    let http = ClientSettings {
        proxy: proxy.setting(),
        ..direct(TlsSettings::default())
    };
    downloads(
        &m,
        &s.http.url("/S/data.bin"),
        &s.dest("http.bin"),
        http,
        &s.data,
    )
    .await;
    assert!(
        proxy.reached(s.http.port),
        "http did not go through the proxy"
    );
    let https = ClientSettings {
        proxy: proxy.setting(),
        ..direct(s.ca_trust())
    };
    downloads(
        &m,
        &s.https_url("/S/data.bin"),
        &s.dest("https.bin"),
        https,
        &s.data,
    )
    .await;
    assert!(
        proxy.reached(s.https.port),
        "https did not go through the proxy"
    );
    // A bypassed host is reached directly.
    let bypass = ClientSettings {
        proxy: ProxySetting::Override {
            proxy: format!("http://127.0.0.1:{}", proxy.port),
            bypass: vec![format!("127.0.0.1:{}", s.http.port)],
        },
        ..direct(TlsSettings::default())
    };
    let url = s.http.url("/S/data.bin");
    downloads(&m, &url, &s.dest("direct.bin"), bypass, &s.data).await;
    m.shutdown().await;
}

/// A raw HTTP server that answers every request with `answer` (then closes) and keeps each request head.
fn recorder(answer: String) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    crate::support::scripted_server(vec![answer])
}

/// SECURITY: credentials go to the job's own origin only: a redirect to another server gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_not_sent_where_a_redirect_leads() {
    let (other, other_heads) =
        recorder("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into());
    let (origin, origin_heads) = recorder(format!(
        "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{other}/x.bin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ));
    let dir = tempfile::tempdir().unwrap();
    let m = JobManager::builder().start().await.unwrap();
    let settings = ClientSettings {
        credentials: Some(
            Credentials::basic("alice", Password::from("alice-RIGHT")).allow_basic_over_http(true),
        ),
        ..direct(TlsSettings::default())
    };
    let url = format!("http://127.0.0.1:{origin}/x.bin");
    let dest = dir.path().join("x.bin");
    fails(&m, &url, &dest, settings, "http_404").await;
    m.shutdown().await;
    let sent = |heads: &std::sync::Mutex<Vec<String>>| {
        let heads = heads.lock().unwrap();
        assert!(!heads.is_empty(), "no request arrived");
        heads
            .iter()
            .any(|h| h.to_ascii_lowercase().contains("\nauthorization:"))
    };
    assert!(
        sent(&origin_heads),
        "the job's own origin got no credentials"
    );
    assert!(
        !sent(&other_heads),
        "credentials followed the redirect to another origin"
    );
}

/// BITS's retry model against `bcs host --max-downloads 1`: while another client holds the only slot, the job gets
/// 503 (TRANSIENT_ERROR, `http_503`), then retries after its MinimumRetryDelay and completes.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_is_a_transient_error_then_a_retry() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(200_000, 21);
    let file = write_file(dir.path(), "busy.bin", &data);
    let (host, port) = crate::cli::spawn_host(
        "http",
        "q",
        &["--max-downloads", "1", "--rate", "64KiB/s"],
        &[&file],
    );
    let url = format!("http://127.0.0.1:{port}/q/busy.bin");
    // Another client takes the only slot for about three seconds.
    let holder = {
        let url = url.clone();
        std::thread::spawn(move || {
            crate::support::run(
                "curl",
                &["-s", "-o", "/dev/null", "-w", "%{http_code}", &url],
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = JobManager::builder().start().await.unwrap();
    let dest = dir.path().join("out/busy.bin");
    let id = start(&m, &url, &dest, direct(TlsSettings::default())).await;
    wait_for(&m, id, &[JobState::TransientError]).await;
    assert_eq!(m.error(id).unwrap().unwrap().code, "http_503");
    wait_for(&m, id, &[JobState::Transferred]).await;
    m.set_state(id, Action::Complete).await.unwrap();
    assert!(std::fs::read(&dest).unwrap() == data, "not byte-identical");
    let held = holder.join().unwrap();
    assert_eq!(String::from_utf8_lossy(&held.stdout), "200");
    m.shutdown().await;
    drop(host);
}

/// A server that sends Repr-Digest only on its GET (not on HEAD): the digest is still checked, and a
/// mismatch is still refused (before: the GET's digest was never read, and the wrong bytes were kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_sent_only_with_the_get_is_checked() {
    use base64::Engine as _;
    let body = b"digest-only-on-get";
    let sum = ring::digest::digest(&ring::digest::SHA256, body);
    let right = base64::engine::general_purpose::STANDARD.encode(sum.as_ref());
    let wrong = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v1\"\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let server = |digest: &str| {
        let get = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v1\"\r\nRepr-Digest: sha-256=:{digest}:\r\nConnection: close\r\n\r\n{}",
            body.len(),
            String::from_utf8_lossy(body)
        );
        crate::support::scripted_server(vec![head.clone(), get, head.clone()])
    };
    let dir = tempfile::tempdir().unwrap();
    let m = JobManager::builder().start().await.unwrap();
    let (good, good_heads) = server(&right);
    let url = format!("http://127.0.0.1:{good}/f.bin");
    let dest = dir.path().join("good/f.bin");
    downloads(&m, &url, &dest, direct(TlsSettings::default()), body).await;
    let methods: Vec<String> = good_heads
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.split(' ').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(methods, ["HEAD", "GET", "HEAD"]);
    let (bad, _) = server(&wrong);
    let url = format!("http://127.0.0.1:{bad}/f.bin");
    let dest = dir.path().join("bad/f.bin");
    fails(
        &m,
        &url,
        &dest,
        direct(TlsSettings::default()),
        "digest_mismatch",
    )
    .await;
    m.shutdown().await;
}

/// A server that answers HEAD with `size` bytes, and GET with its headers and 10 bytes, then either
/// nothing more (`drip` None) or one byte every `drip`; each GET is held at most 20 s. It stops
/// after 30 s or 20 connections.
fn stalling_server(size: usize, drip: Option<Duration>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let started = Instant::now();
        for stream in listener.incoming().take(20) {
            if started.elapsed() > Duration::from_secs(30) {
                break;
            }
            let Ok(mut s) = stream else { continue };
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nETag: \"s\"\r\n\r\n");
                // HEADs on the kept connection until a GET.
                loop {
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut b) {
                            Ok(0) | Err(_) => return,
                            Ok(_) => head.push(b[0]),
                        }
                    }
                    let _ = s.write_all(answer.as_bytes());
                    if !head.starts_with(b"HEAD") {
                        break;
                    }
                }
                let _ = s.write_all(&[b'x'; 10]);
                let held = Instant::now();
                while held.elapsed() < Duration::from_secs(20) {
                    match drip {
                        Some(every) => {
                            std::thread::sleep(every);
                            if s.write_all(b"x").is_err() {
                                return;
                            }
                        }
                        None => std::thread::sleep(Duration::from_millis(100)),
                    }
                }
            });
        }
    });
    port
}

/// A server that sends its headers then stalls, or drips a few bytes a second, no longer holds a
/// transfer: under the low-speed limit (here 1 KiB in 1 s) the job is TRANSIENT_ERROR `stalled`, in the
/// transport context, within a few windows (before: a stall took 60 s, and a drip held it for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_dripping_body_is_a_transient_error() {
    let limit = bits_compact::jobs::LowSpeedLimit {
        min_bytes: 1024,
        window: Duration::from_secs(1),
    };
    let m = JobManager::builder()
        .low_speed_limit(limit)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, drip) in [("stall", None), ("drip", Some(Duration::from_millis(200)))] {
        let port = stalling_server(1 << 20, drip);
        let url = format!("http://127.0.0.1:{port}/{name}.bin");
        let started = Instant::now();
        let id = start(
            &m,
            &url,
            &dir.path().join(name),
            direct(TlsSettings::default()),
        )
        .await;
        wait_for(&m, id, &[JobState::TransientError]).await;
        let took = started.elapsed();
        let error = m.error(id).unwrap().unwrap();
        assert_eq!(
            (error.code.as_str(), error.context),
            ("stalled", bits_compact::jobs::ErrorContext::Transport),
            "{name}: {error}"
        );
        assert!(took < Duration::from_secs(10), "{name}: {took:?}");
        m.set_state(id, Action::Cancel).await.unwrap();
    }
    m.shutdown().await;
}

/// Issue 23.6 in the library, against our own Basic and NTLM groups: a 401 keeps the schemes the server
/// offered (`JobFailure::auth_schemes`) and says whether credentials were given ("none given") or
/// refused ("rejected"); the password never appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_names_what_the_server_asks_for_and_what_was_given() {
    let s = site();
    let m = JobManager::builder().start().await.unwrap();
    let with = |c: Credentials, tls: TlsSettings| ClientSettings {
        credentials: Some(c),
        ..direct(tls)
    };
    let wrong = || Password::from("WRONG-pw");
    let (basic, ntlm) = (s.https_url("/B/data.bin"), s.http.url("/N/data.bin"));
    let cases = [
        (
            &basic,
            "b-none",
            direct(s.ca_trust()),
            "Basic",
            "none given",
        ),
        (
            &basic,
            "b-wrong",
            with(Credentials::basic("alice", wrong()), s.ca_trust()),
            "Basic",
            "rejected the Basic credentials given for \"alice\"",
        ),
        (
            &ntlm,
            "n-none",
            direct(TlsSettings::default()),
            "NTLM",
            "none given",
        ),
        (
            &ntlm,
            "n-wrong",
            with(Credentials::ntlm("alice", wrong()), TlsSettings::default()),
            "NTLM",
            "rejected the NTLM credentials",
        ),
    ];
    for (url, name, settings, scheme, says) in cases {
        let id = start(&m, url, &s.dest(name), settings).await;
        wait_for(&m, id, &[JobState::Error]).await;
        let error = m.error(id).unwrap().unwrap();
        assert_eq!(error.code, "http_401", "{name}: {error}");
        assert!(
            error.auth_schemes.iter().any(|o| o == scheme),
            "{name}: {:?}",
            error.auth_schemes
        );
        assert!(error.message.contains(says), "{name}: {error}");
        assert!(!error.message.contains("WRONG-pw"), "{name}: {error}");
    }
    m.shutdown().await;
}
