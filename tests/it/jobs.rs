//! Download jobs against real servers on 127.0.0.1: our own in-process server, nginx, and Python's
//! `http.server` (no ranges). Between the job client and each server sits a small relay that slows the
//! answers down (so that a transfer can be interrupted half-way), counts the bytes it passes on (so that a
//! test can show resumed bytes are not fetched twice) and records the requests.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bits_compact::jobs::{
    part_path, Action, DirStore, ErrorContext, JobError, JobId, JobManager, JobState, NewJob,
    TransitionError,
};

use crate::support::{free_port, have, pattern, write_file, TestServer};

const SIZE: usize = 2 * 1024 * 1024;
/// The relay's pace: a 2 MiB file takes about 2 s.
const RATE: u64 = 1024 * 1024;
/// How long any wait in these tests may take.
const PATIENCE: Duration = Duration::from_secs(60);

/// A relay from a port of its own to `upstream`, at most `RATE` bytes per second towards the client.
struct Relay {
    port: u16,
    down: Arc<AtomicU64>,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    /// Bumped to cut every connection open now.
    cuts: Arc<AtomicU64>,
}

impl Relay {
    fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let relay = Relay {
            port: listener.local_addr().unwrap().port(),
            down: Arc::default(),
            requests: Arc::default(),
            stop: Arc::default(),
            cuts: Arc::default(),
        };
        let (down, requests, stop) = (
            relay.down.clone(),
            relay.requests.clone(),
            relay.stop.clone(),
        );
        let cuts = relay.cuts.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let (down, requests, cuts) = (down.clone(), requests.clone(), cuts.clone());
                        std::thread::spawn(move || {
                            relay_one(client, upstream, &down, &requests, &cuts)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        relay
    }

    fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    /// Drops every open connection, and with it what the kernel still buffered for it: what a client
    /// sees when the server's machine goes away (a killed process's socket would otherwise still deliver
    /// its send buffer, which can hold the whole test file).
    fn cut(&self) {
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }

    /// The request heads seen so far (method, target and headers).
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn relay_one(
    client: TcpStream,
    upstream: u16,
    down: &AtomicU64,
    requests: &Mutex<Vec<String>>,
    cuts: &AtomicU64,
) {
    let generation = cuts.load(Ordering::SeqCst);
    // A small receive buffer, so that a killed server cannot have handed over the whole file already.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let _ = socket.set_recv_buffer_size(16 * 1024);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, upstream));
    if socket
        .connect_timeout(&addr.into(), Duration::from_secs(5))
        .is_err()
    {
        return;
    }
    let server: TcpStream = socket.into();
    for s in [&client, &server] {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    }
    let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut buf = [0u8; 8192];
            let mut pending = Vec::new();
            // The job client keeps its connection alive and sends bodiless requests: every blank line
            // ends one request's head.
            while let Ok(n @ 1..) = c_in.read(&mut buf) {
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                    let text = String::from_utf8_lossy(&pending[..end + 4]).into_owned();
                    requests.lock().unwrap().push(text);
                    pending.drain(..end + 4);
                }
                if s_out.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = s_out.shutdown(Shutdown::Write);
        });
        let (mut s_in, mut c_out) = (server, client);
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = s_in.read(&mut buf) {
            if cuts.load(Ordering::SeqCst) != generation || c_out.write_all(&buf[..n]).is_err() {
                break;
            }
            down.fetch_add(n as u64, Ordering::Relaxed);
            std::thread::sleep(Duration::from_secs_f64(n as f64 / RATE as f64));
        }
        let _ = c_out.shutdown(Shutdown::Both);
    });
}

/// Which server a test runs against.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Kind {
    Ours,
    Nginx,
    Python,
}

/// A server over a directory, on a fixed port so that it can be killed and started again.
pub(crate) struct Origin {
    kind: Kind,
    dir: PathBuf,
    pub(crate) port: u16,
    work: tempfile::TempDir,
    running: Option<Running>,
}

enum Running {
    Ours(TestServer),
    Child(Child),
}

impl Origin {
    /// `None` (with the reason printed) when the server is not installed outside CI.
    pub(crate) fn start(kind: Kind, dir: &Path) -> Option<Origin> {
        let tool = match kind {
            Kind::Ours => None,
            Kind::Nginx => Some("/usr/sbin/nginx"),
            Kind::Python => Some("python3"),
        };
        if tool.is_some_and(|t| !have(t)) {
            return None;
        }
        let mut origin = Origin {
            kind,
            dir: dir.to_owned(),
            port: free_port(),
            work: tempfile::tempdir().unwrap(),
            running: None,
        };
        origin.restart();
        Some(origin)
    }

    fn restart(&mut self) {
        assert!(self.running.is_none());
        self.running = Some(match self.kind {
            Kind::Ours => Running::Ours(self.ours()),
            Kind::Nginx => Running::Child(self.nginx()),
            Kind::Python => Running::Child(
                Command::new("python3")
                    .args([
                        "-m",
                        "http.server",
                        &self.port.to_string(),
                        "--bind",
                        "127.0.0.1",
                    ])
                    .arg("--directory")
                    .arg(&self.dir)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            ),
        });
        wait_until("the server listens", || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_ok()
        });
    }

    fn ours(&self) -> TestServer {
        let deadline = Instant::now() + PATIENCE;
        let listener = loop {
            match TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)) {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "cannot bind again: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let server = bits_compact::Server::builder()
            .bind_addresses([Ipv4Addr::LOCALHOST.into()])
            .listener(listener)
            .drain_timeout(Duration::ZERO)
            .revalidate_interval(Duration::ZERO)
            .build()
            .unwrap();
        let group = server
            .create_url_group(format!("http://+:{}/f/", self.port).as_str())
            .unwrap();
        for entry in std::fs::read_dir(&self.dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            group.add_url(&name, entry.path(), None).unwrap();
        }
        TestServer::serving(server, self.port)
    }

    fn nginx(&self) -> Child {
        let w = self.work.path();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {w}/nginx.pid;\nerror_log {w}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {w}/access.log;\n  client_body_temp_path {w}/body;\n\
               proxy_temp_path {w}/proxy;\n  fastcgi_temp_path {w}/fastcgi;\n  uwsgi_temp_path {w}/uwsgi;\n\
               scgi_temp_path {w}/scgi;\n  server {{\n    listen 127.0.0.1:{port};\n\
                 location /f/ {{ alias {dir}/; }}\n  }}\n}}\n",
            w = w.display(),
            port = self.port,
            dir = self.dir.display(),
        );
        std::fs::write(w.join("nginx.conf"), conf).unwrap();
        Command::new("/usr/sbin/nginx")
            .arg("-p")
            .arg(w)
            .arg("-c")
            .arg(w.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Kills the server at once (in-process: no drain).
    fn kill(&mut self) {
        match self.running.take() {
            Some(Running::Ours(server)) => drop(server),
            Some(Running::Child(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            None => {}
        }
        wait_until("the port is closed", || {
            TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).is_err()
        });
    }

    /// The path part of a file's URL.
    pub(crate) fn path(&self, name: &str) -> String {
        match self.kind {
            Kind::Python => name.to_owned(),
            _ => format!("f/{name}"),
        }
    }

    fn has_ranges(&self) -> bool {
        self.kind != Kind::Python
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        if let Some(Running::Child(mut child)) = self.running.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for the job to reach `state` (or fails the test naming where it is).
async fn wait_state(m: &JobManager, id: JobId, state: JobState) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let job = m.job(id).unwrap();
        if job.state == state {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "job is {} (error {:?}), expected {state}",
            job.state,
            job.error
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until at least `bytes` of the job are on disk.
async fn wait_bytes(m: &JobManager, id: JobId, bytes: u64) -> u64 {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let job = m.job(id).unwrap();
        if job.bytes_transferred() >= bytes {
            return job.bytes_transferred();
        }
        assert!(Instant::now() < deadline, "no progress: {job:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

struct Setup {
    content: Vec<u8>,
    out: tempfile::TempDir,
    origin: Origin,
    relay: Relay,
    src: tempfile::TempDir,
}

impl Setup {
    fn new(kind: Kind, seed: u64) -> Option<Setup> {
        let src = tempfile::tempdir().unwrap();
        let content = pattern(SIZE, seed);
        write_file(src.path(), "big.bin", &content);
        let origin = Origin::start(kind, src.path())?;
        let relay = Relay::start(origin.port);
        Some(Setup {
            content,
            out: tempfile::tempdir().unwrap(),
            origin,
            relay,
            src,
        })
    }

    fn url(&self, name: &str) -> String {
        self.relay.url(&self.origin.path(name))
    }

    fn dest(&self) -> PathBuf {
        self.out.path().join("big.bin")
    }

    fn job(&self) -> NewJob {
        NewJob::new("it")
            .file(self.url("big.bin"), self.dest())
            .minimum_retry_delay(Duration::from_secs(5))
    }
}

async fn manager() -> JobManager {
    JobManager::builder().start().await.unwrap()
}

/// The file arrives byte for byte, only under its final name and only on Complete.
async fn completes(m: &JobManager, id: JobId, dest: &Path, content: &[u8]) {
    wait_state(m, id, JobState::Transferred).await;
    assert!(!dest.exists(), "visible before Complete");
    assert!(part_path(dest).unwrap().exists());
    m.set_state(id, Action::Complete).await.unwrap();
    assert_eq!(m.job(id).unwrap().state, JobState::Acknowledged);
    assert!(
        std::fs::read(dest).unwrap() == content,
        "not byte-identical"
    );
    assert!(!part_path(dest).unwrap().exists(), "temporary left behind");
}

/// Killed mid-transfer: TRANSIENT_ERROR; started again: resumed (where ranges work, from the bytes on
/// disk, which are not fetched again), TRANSFERRED, byte-identical.
async fn resume_after_kill(kind: Kind) {
    let Some(mut s) = Setup::new(kind, 1) else {
        return;
    };
    let m = manager().await;
    let job = m.create_job(s.job()).await.unwrap();
    let had = wait_bytes(&m, job.id, 256 * 1024).await;
    assert!(had < SIZE as u64 / 2, "too fast to interrupt: {had}");
    s.relay.cut();
    s.origin.kill();
    wait_state(&m, job.id, JobState::TransientError).await;
    let error = m.error(job.id).unwrap().unwrap();
    assert_eq!(error.context, ErrorContext::Transport, "{error}");
    let on_disk = std::fs::metadata(part_path(&s.dest()).unwrap())
        .unwrap()
        .len();
    assert!(on_disk >= had, "{on_disk} < {had}");
    eprintln!(
        "killed at {had}, {on_disk} on disk, {} relayed: {error}",
        s.relay.down.load(Ordering::Relaxed)
    );
    s.origin.restart();
    completes(&m, job.id, &s.dest(), &s.content).await;
    let job = m.job(job.id).unwrap();
    assert!(job.transient_error_count >= 1);
    let requests = s.relay.requests();
    let resumed = requests
        .iter()
        .filter(|r| r.starts_with("GET "))
        .find_map(|r| {
            let line = r
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("range: bytes="))?;
            line[13..].trim_end_matches('-').parse::<u64>().ok()
        })
        .unwrap_or_else(|| panic!("no ranged GET in {requests:#?}"));
    assert!(resumed >= had, "resumed from {resumed}, had {had}");
    let relayed = s.relay.down.load(Ordering::Relaxed);
    if s.origin.has_ranges() {
        // The whole file once, plus headers: nothing fetched twice.
        assert!(relayed < SIZE as u64 + 32 * 1024, "{relayed} bytes relayed");
        assert!(requests
            .iter()
            .any(|r| r.contains("If-Range") || r.contains("if-range")));
    } else {
        assert!(relayed >= SIZE as u64 + had, "{relayed} bytes relayed");
    }
}

/// Replaced by a file of the same size with a new mtime while its first bytes arrive: the result is the
/// new file, never a mix.
async fn replaced_mid_transfer(kind: Kind) {
    let Some(s) = Setup::new(kind, 2) else { return };
    let m = manager().await;
    let job = m.create_job(s.job()).await.unwrap();
    wait_bytes(&m, job.id, 256 * 1024).await;
    let new = pattern(SIZE, 3);
    let path = s.src.path().join("big.bin");
    let temp = write_file(s.src.path(), "big.bin.new", &new);
    let later = SystemTime::now() + Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(&temp)
        .unwrap()
        .set_modified(later)
        .unwrap();
    std::fs::rename(&temp, &path).unwrap();
    completes(&m, job.id, &s.dest(), &new).await;
}

/// 404: ERROR with the remote-file context, at once.
async fn not_found(kind: Kind) {
    let Some(s) = Setup::new(kind, 4) else { return };
    let m = manager().await;
    let dest = s.out.path().join("missing.bin");
    let job = m
        .create_job(NewJob::new("404").file(s.url("missing.bin"), &dest))
        .await
        .unwrap();
    wait_state(&m, job.id, JobState::Error).await;
    let error = m.error(job.id).unwrap().unwrap();
    assert_eq!(error.context, ErrorContext::RemoteFile, "{error}");
    assert_eq!(
        (error.code.as_str(), error.http_status),
        ("http_404", Some(404))
    );
    assert_eq!(error.file, Some(0));
    assert_eq!(m.job(job.id).unwrap().transient_error_count, 0);
}

/// Cancel mid-transfer removes the temporary; Complete after Cancel is an error.
async fn cancel(kind: Kind) {
    let Some(s) = Setup::new(kind, 5) else { return };
    let m = manager().await;
    let job = m.create_job(s.job()).await.unwrap();
    wait_bytes(&m, job.id, 64 * 1024).await;
    m.set_state(job.id, Action::Cancel).await.unwrap();
    assert!(
        !part_path(&s.dest()).unwrap().exists(),
        "temporary left behind"
    );
    assert!(!s.dest().exists());
    let err = m.set_state(job.id, Action::Complete).await.unwrap_err();
    assert!(
        matches!(
            err,
            JobError::Transition {
                source: TransitionError::Final(JobState::Cancelled),
                ..
            }
        ),
        "{err}"
    );
    // Nothing writes the file again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!part_path(&s.dest()).unwrap().exists());
}

/// A process that dies mid-transfer (its runtime dropped, nothing saved on the way out): the next one
/// loads the job from the DirStore, QUEUED, and resumes from the bytes on disk.
async fn reload_after_crash(kind: Kind) {
    let Some(s) = Setup::new(kind, 6) else { return };
    let state = tempfile::tempdir().unwrap();
    let (dir, job) = (state.path().join("jobs"), s.job());
    let (had, id) = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                let result = runtime.block_on(async {
                    let m = JobManager::builder()
                        .store(DirStore::open(&dir).unwrap())
                        .save_interval(Duration::from_millis(100))
                        .start()
                        .await
                        .unwrap();
                    let job = m.create_job(job).await.unwrap();
                    let had = wait_bytes(&m, job.id, 512 * 1024).await;
                    // Let a progress save land, as one would in a process that ran for a while.
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    (had, job.id)
                });
                runtime.shutdown_background();
                result
            })
            .join()
            .unwrap()
    });
    let on_disk = std::fs::metadata(part_path(&s.dest()).unwrap())
        .unwrap()
        .len();
    assert!(on_disk >= had);
    let before = s.relay.down.load(Ordering::Relaxed);
    let m = JobManager::builder()
        .store(DirStore::open(&dir).unwrap())
        .start()
        .await
        .unwrap();
    let job = m.job(id).unwrap();
    assert!(
        matches!(
            job.state,
            JobState::Queued | JobState::Connecting | JobState::Transferring
        ),
        "{}",
        job.state
    );
    completes(&m, id, &s.dest(), &s.content).await;
    let after = s.relay.down.load(Ordering::Relaxed) - before;
    if s.origin.has_ranges() {
        assert!(
            after < SIZE as u64 - on_disk + 32 * 1024,
            "fetched {after} after the restart"
        );
    }
    // Final jobs leave the store.
    assert!(DirStore::open(&dir)
        .map(|d| bits_compact::JobStore::load_all(&d).unwrap().is_empty())
        .unwrap());
}

macro_rules! against {
    ($kind:ident, $module:ident) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn resume_after_kill() {
                super::resume_after_kill(Kind::$kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn replaced_mid_transfer() {
                super::replaced_mid_transfer(Kind::$kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn not_found() {
                super::not_found(Kind::$kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cancel() {
                super::cancel(Kind::$kind).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reload_after_crash() {
                super::reload_after_crash(Kind::$kind).await;
            }
        }
    };
}

against!(Ours, ours);
against!(Nginx, nginx);
against!(Python, python);
