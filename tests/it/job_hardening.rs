//! Download jobs against what an attacker controls: a malicious origin (raw HTTP/1.1 from a tokio listener
//! in the test, scripted per request) and hostile job settings given to `bcs serve`'s API. The origin is
//! used by the `bcs download` tests too (`download.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bits_compact::client::PeerGuard;
use bits_compact::jobs::{part_path, Action, ErrorContext, JobId, JobManager, JobState, NewJob};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::pattern;

/// How long any wait in these tests may take.
const PATIENCE: Duration = Duration::from_secs(60);
/// How long the origin serves, at most.
const ORIGIN_LIFE: Duration = Duration::from_secs(120);

/// A request as the origin saw it.
#[derive(Debug, Clone)]
pub(crate) struct Asked {
    pub(crate) method: String,
    /// `Range: bytes=FIRST-[LAST]`.
    pub(crate) range: Option<(u64, Option<u64>)>,
    /// How many GETs came before this one (on any connection).
    pub(crate) gets_before: usize,
}

/// What happens once a reply's body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// The next request on the connection.
    KeepAlive,
    /// The connection is closed (a body shorter than announced ends early).
    Close,
    /// Nothing more is sent; the connection is held until the client closes it (at most 20 s).
    Stall,
}

/// A reply: its head, a pause, its body, and what follows.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) head: String,
    pub(crate) pause: Duration,
    pub(crate) body: Vec<u8>,
    pub(crate) then: Then,
}

impl Reply {
    /// `status` with `headers` (Content-Length is the caller's) and `body`, kept alive.
    pub(crate) fn new(status: &str, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
        let mut head = format!("HTTP/1.1 {status}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        Reply {
            head,
            pause: Duration::ZERO,
            body,
            then: Then::KeepAlive,
        }
    }

    /// `version`'s bytes for what was asked: 206 for a range, else 200; `headers` in each (and in a
    /// HEAD's answer, which has no body).
    pub(crate) fn serve(asked: &Asked, version: &[u8], headers: &[(&str, String)]) -> Reply {
        let size = version.len() as u64;
        let mut all = headers.to_vec();
        if asked.method == "HEAD" {
            all.push(("Content-Length", size.to_string()));
            return Reply::new("200 OK", &all, Vec::new());
        }
        match asked.range {
            Some((first, last)) if first < size => {
                let last = last.unwrap_or(size - 1).min(size - 1);
                all.push(("Content-Length", (last - first + 1).to_string()));
                all.push(("Content-Range", format!("bytes {first}-{last}/{size}")));
                let body = version[first as usize..=last as usize].to_vec();
                Reply::new("206 Partial Content", &all, body)
            }
            _ => {
                all.push(("Content-Length", size.to_string()));
                Reply::new("200 OK", &all, version.to_vec())
            }
        }
    }
}

/// What decides each reply.
pub(crate) type Script = Arc<dyn Fn(&Asked) -> Reply + Send + Sync>;

/// The origin: a port on 127.0.0.1 and the requests seen. It serves for at most [`ORIGIN_LIFE`] and
/// 64 connections, in a thread of its own (so that both async and plain tests can use it).
pub(crate) struct HostileOrigin {
    pub(crate) port: u16,
    asked: Arc<Mutex<Vec<Asked>>>,
}

impl HostileOrigin {
    pub(crate) fn start(script: impl Fn(&Asked) -> Reply + Send + Sync + 'static) -> HostileOrigin {
        let script: Script = Arc::new(script);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let served = async {
                    for _ in 0..64 {
                        let Ok((socket, _)) = listener.accept().await else {
                            return;
                        };
                        tokio::spawn(connection(socket, script.clone(), seen.clone()));
                    }
                };
                let _ = tokio::time::timeout(ORIGIN_LIFE, served).await;
            });
        });
        HostileOrigin { port, asked }
    }

    pub(crate) fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// The requests seen so far.
    pub(crate) fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

/// One connection: requests until the script closes it, the client goes, or 20 s of silence.
async fn connection(
    mut socket: tokio::net::TcpStream,
    script: Script,
    asked: Arc<Mutex<Vec<Asked>>>,
) {
    let mut pending = Vec::new();
    loop {
        let head = loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                pending.drain(..end + 4);
                break head;
            }
            let mut buf = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(20), socket.read(&mut buf)).await;
            match read {
                Ok(Ok(n @ 1..)) if pending.len() < 64 * 1024 => {
                    pending.extend_from_slice(&buf[..n])
                }
                _ => return,
            }
        };
        let request = {
            let mut all = asked.lock().unwrap();
            let request = Asked {
                method: head.split(' ').next().unwrap_or_default().to_owned(),
                range: range_of(&head),
                gets_before: all.iter().filter(|a| a.method == "GET").count(),
            };
            all.push(request.clone());
            request
        };
        let reply = script(&request);
        if socket.write_all(reply.head.as_bytes()).await.is_err() {
            return;
        }
        tokio::time::sleep(reply.pause).await;
        if socket.write_all(&reply.body).await.is_err() {
            return;
        }
        match reply.then {
            Then::KeepAlive => {}
            Then::Close => return,
            Then::Stall => {
                let mut buf = [0u8; 1024];
                let held = Duration::from_secs(20);
                let _ = tokio::time::timeout(held, async {
                    while let Ok(1..) = socket.read(&mut buf).await {}
                })
                .await;
                return;
            }
        }
    }
}

/// `Range: bytes=FIRST-[LAST]` of a request head.
fn range_of(head: &str) -> Option<(u64, Option<u64>)> {
    let line = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("range:"))?;
    let spec = line.split_once('=')?.1.trim();
    let (first, last) = spec.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()))
}

/// Waits for one of `states`; returns the job's state.
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

/// An origin that keeps a strong ETag but serves version A for the first GET (cut half-way) and version
/// Z for everything after, with no digest; and the two versions.
pub(crate) fn two_faced_origin(size: usize) -> (HostileOrigin, Vec<u8>) {
    let (a, z) = (pattern(size, 31), pattern(size, 32));
    let origin = HostileOrigin::start(move |asked| {
        let etag = [("ETag", "\"same\"".to_owned())];
        if asked.method == "GET" && asked.gets_before == 0 {
            let mut first = Reply::serve(asked, &a, &etag);
            first.body.truncate(a.len() / 2);
            first.then = Then::Close;
            return first;
        }
        Reply::serve(asked, &z, &etag)
    });
    let z = pattern(size, 32);
    (origin, z)
}

/// SECURITY (issue 22.7): an origin that keeps its strong ETag but serves other bytes (and sends no
/// digest) never gets a file made of two versions. The first GET brings half of A and breaks off; on the
/// retry, the last bytes held are asked for again, differ from Z's, and the file starts over: the result is
/// Z, whole (before: the first half of A and the rest of Z were kept as one file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_never_mixes_two_versions_under_one_etag() {
    const SIZE: usize = 256 * 1024;
    let (origin, z) = two_faced_origin(SIZE);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("mixed.bin");
    let m = JobManager::builder().start().await.unwrap();
    let new = NewJob::new("two faces")
        .file(origin.url("mixed.bin"), &dest)
        .minimum_retry_delay(Duration::from_secs(5));
    let id = m.create_job(new).await.unwrap().id;
    wait_for(&m, id, &[JobState::Transferred]).await;
    assert!(m.job(id).unwrap().transient_error_count >= 1, "no break");
    m.set_state(id, Action::Complete).await.unwrap();
    assert!(std::fs::read(&dest).unwrap() == z, "not version Z, whole");
    // The bytes held were checked before the resume: a closed range ending where they end.
    let asked = origin.asked();
    let overlap = asked
        .iter()
        .find(|a| matches!(a.range, Some((_, Some(_)))))
        .unwrap_or_else(|| panic!("no overlap asked for: {asked:?}"));
    let (first, last) = overlap.range.map(|(f, l)| (f, l.unwrap())).unwrap();
    assert_eq!(last + 1 - first, 16 * 1024, "{overlap:?}");
    m.shutdown().await;
}

/// The same origin serving the same bytes throughout: the overlap matches and the resume keeps the bytes
/// held, asking for exactly the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_whose_overlap_matches_keeps_the_bytes_held() {
    const SIZE: usize = 256 * 1024;
    let a = pattern(SIZE, 33);
    let served = a.clone();
    let origin = HostileOrigin::start(move |asked| {
        let mut reply = Reply::serve(asked, &served, &[("ETag", "\"one\"".to_owned())]);
        if asked.method == "GET" && asked.gets_before == 0 {
            reply.body.truncate(SIZE / 2);
            reply.then = Then::Close;
        }
        reply
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("same.bin");
    let m = JobManager::builder().start().await.unwrap();
    let new = NewJob::new("one face")
        .file(origin.url("same.bin"), &dest)
        .minimum_retry_delay(Duration::from_secs(5));
    let id = m.create_job(new).await.unwrap().id;
    wait_for(&m, id, &[JobState::Transferred]).await;
    m.set_state(id, Action::Complete).await.unwrap();
    assert!(std::fs::read(&dest).unwrap() == a, "not byte-identical");
    let gets: Vec<_> = origin
        .asked()
        .into_iter()
        .filter(|a| a.method == "GET")
        .map(|a| a.range)
        .collect();
    let half = SIZE as u64 / 2;
    assert_eq!(
        gets,
        [
            None,
            Some((half - 16 * 1024, Some(half - 1))),
            Some((half, None))
        ]
    );
    m.shutdown().await;
}

/// Issue 22.8: a body sent with `Content-Encoding: gzip` in answer to `Accept-Encoding: identity` is an
/// ERROR (`content_encoding`, server response), never stored as the file (before: 331 compressed bytes
/// were TRANSFERRED); nothing is left on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encoded_body_is_an_error_and_never_the_file() {
    let compressed = pattern(331, 34);
    let origin = HostileOrigin::start(move |asked| {
        let mut headers = vec![("ETag", "\"gz\"".to_owned())];
        if asked.method == "GET" {
            headers.push(("Content-Encoding", "gzip".to_owned()));
        }
        Reply::serve(asked, &compressed, &headers)
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("page.html");
    let m = JobManager::builder().start().await.unwrap();
    let id = m
        .create_job(NewJob::new("gzip").file(origin.url("page.html"), &dest))
        .await
        .unwrap()
        .id;
    wait_for(&m, id, &[JobState::Error, JobState::Transferred]).await;
    let error = m.error(id).unwrap().expect("an error");
    assert_eq!(
        (error.code.as_str(), error.context),
        ("content_encoding", ErrorContext::ServerResponse),
        "{error}"
    );
    assert!(error.message.contains("gzip"), "{error}");
    assert!(!dest.exists());
    assert!(!part_path(&dest).unwrap().exists(), "a temporary is left");
    m.shutdown().await;
}

/// Issue 22.6 through `bcs serve`'s API: a MinimumRetryDelay of `u64::MAX` seconds (which panicked a
/// worker and hung the job in CONNECTING) is refused with 400 `invalid_job_setting`, on create and on
/// change, and the service goes on running jobs: a job to a closed port is retried (TRANSIENT_ERROR).
#[cfg(feature = "cli")]
#[test]
fn hostile_timings_are_refused_by_the_api_and_the_service_keeps_working() {
    use serde_json::json;
    let svc = crate::service::Service::start(&[]);
    let file = json!([{"remote_url": "http://127.0.0.1:9/f.bin", "local_file": "f.bin"}]);
    for body in [
        json!({"display_name": "h", "files": file, "minimum_retry_delay_secs": u64::MAX}),
        json!({"display_name": "h", "files": file, "minimum_retry_delay_secs": 4_294_967_296u64}),
        json!({"display_name": "h", "files": file, "priority": 4}),
    ] {
        let (status, answer) = svc.api("POST", "/v1/jobs", Some(&body));
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer.contains("invalid_job_setting"), "{answer}");
    }
    let ok = json!({"display_name": "ok", "files": file, "minimum_retry_delay_secs": 5});
    let (status, answer) = svc.api("POST", "/v1/jobs", Some(&ok));
    assert_eq!(status, 201, "{answer}");
    let job: serde_json::Value = serde_json::from_str(&answer).unwrap();
    let id = job["id"].as_str().unwrap();
    let change = json!({"minimum_retry_delay_secs": u64::MAX});
    let (status, answer) = svc.api("PATCH", &format!("/v1/jobs/{id}"), Some(&change));
    assert_eq!(status, 400, "{answer}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, answer) = svc.api("GET", &format!("/v1/jobs/{id}"), None);
        assert_eq!(status, 200, "{answer}");
        let job: serde_json::Value = serde_json::from_str(&answer).unwrap();
        if job["state"] == "TRANSIENT_ERROR" {
            assert_eq!(job["minimum_retry_delay_secs"], 5);
            break;
        }
        assert!(Instant::now() < deadline, "{job}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An origin on `ip` that answers every request with `302 Found` to `location`; its port. It serves for
/// at most [`ORIGIN_LIFE`] and 64 connections, in a thread of its own.
pub(crate) fn redirecting_origin(ip: [u8; 4], location: String) -> u16 {
    let listener = std::net::TcpListener::bind((std::net::Ipv4Addr::from(ip), 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let served = async {
                for _ in 0..64 {
                    let Ok((socket, _)) = listener.accept().await else {
                        return;
                    };
                    tokio::spawn(redirect(socket, location.clone()));
                }
            };
            let _ = tokio::time::timeout(ORIGIN_LIFE, served).await;
        });
    });
    port
}

/// One connection of [`redirecting_origin`]: a 302 for each request head, until 20 s of silence.
async fn redirect(mut socket: tokio::net::TcpStream, location: String) {
    let reply = format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n");
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(20), socket.read(&mut buf)).await
    {
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            head.drain(..end + 4);
            if socket.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// SECURITY (issue 22.9): a restricted job (a caller's who is not an administrator) whose allowed origin
/// (127.0.0.2, standing for a public address) redirects to a refused address (127.0.0.1, standing for
/// what only the service reaches) is an ERROR `refused_by_policy` saying no more, and the internal server
/// sees no connection (before: the redirect was followed). The same redirect is followed for a job that
/// is not restricted, with the same guard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_job_is_not_redirected_to_a_refused_address() {
    let secret = pattern(4096, 35);
    let served = secret.clone();
    let internal = HostileOrigin::start(move |asked| {
        Reply::serve(asked, &served, &[("ETag", "\"in\"".to_owned())])
    });
    let port = redirecting_origin([127, 0, 0, 2], internal.url("secret"));
    let url = format!("http://127.0.0.2:{port}/public");
    let refused = std::net::IpAddr::from([127, 0, 0, 1]);
    let guard = PeerGuard::new(move |_, ip| ip != refused);
    let m = JobManager::builder()
        .peer_guard(guard)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();

    let dest = dir.path().join("restricted.bin");
    let new = NewJob::new("restricted").restricted(true).file(&url, &dest);
    let id = m.create_job(new).await.unwrap().id;
    assert!(m.job(id).unwrap().restricted);
    let state = wait_for(&m, id, &[JobState::Error, JobState::Transferred]).await;
    let error = m.error(id).unwrap().expect("an error");
    assert_eq!(state, JobState::Error, "{error}");
    assert_eq!(
        (error.code.as_str(), error.message.as_str()),
        ("refused_by_policy", "refused by policy")
    );
    assert!(internal.asked().is_empty(), "{:?}", internal.asked());
    assert!(!dest.exists());

    let dest = dir.path().join("unrestricted.bin");
    let new = NewJob::new("unrestricted").file(&url, &dest);
    let id = m.create_job(new).await.unwrap().id;
    let state = wait_for(&m, id, &[JobState::Error, JobState::Transferred]).await;
    assert_eq!(state, JobState::Transferred, "{:?}", m.error(id));
    m.set_state(id, Action::Complete).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), secret);
    assert!(!internal.asked().is_empty());
    m.shutdown().await;
}
