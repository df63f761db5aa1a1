//! Test support: an in-process server on 127.0.0.1, real external clients, raw sockets.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use bits_compact::{Server, ServerBuilder};

/// A server serving on its own runtime thread until dropped.
pub struct TestServer {
    pub server: Server,
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1 with an adopted listener on a free port.
    pub fn start() -> Self {
        Self::start_with(|b| b)
    }

    pub fn start_with(configure: impl FnOnce(ServerBuilder) -> ServerBuilder) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let builder = Server::builder()
            .bind_addresses([Ipv4Addr::LOCALHOST.into()])
            .listener(listener);
        let server = configure(builder).build().unwrap();
        Self::serving(server, port)
    }

    /// Serves an already built server (its groups' ports bound) until dropped; `port` is the one `url`
    /// and `prefix` name.
    pub fn serving(server: Server, port: u16) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, is_ready) = mpsc::channel();
        let serving = server.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let _ = ready.send(());
                serving
                    .serve(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        is_ready.recv().unwrap();
        TestServer {
            server,
            port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn prefix(&self, segment: &str) -> String {
        format!("http://+:{}/{segment}/", self.port)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether an external tool is installed. Outside CI a missing tool skips the test with a printed reason;
/// under `CI=true` it fails the test.
pub fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is required under CI but is not installed"
        );
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

/// Deterministic bytes that do not repeat with a short period.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub fn write_file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, content).unwrap();
    path
}

/// A parsed HTTP response as curl printed it with `-i`.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses `HTTP/1.1 200 OK\r\nName: value\r\n...\r\n\r\nbody`.
    pub fn parse(raw: &[u8]) -> Option<Reply> {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&raw[..end]).ok()?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Some(Reply {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        })
    }
}

/// Runs curl with `-s -S -i` and the given arguments.
pub fn curl(args: &[&str]) -> Reply {
    let out = run(
        "curl",
        &[&["-s", "-S", "-i", "--max-time", "60"], args].concat(),
    );
    assert!(
        out.status.success(),
        "curl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Reply::parse(&out.stdout).unwrap_or_else(|| panic!("curl {args:?}: unparsable output"))
}

pub fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Sends raw bytes on a new connection and reads until the server closes it (or 10 s pass).
pub fn raw_request(port: u16, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// A free port on 127.0.0.1 (bound then released; fine for tests that bind it right after).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on 127.0.0.1:`port` (a server the test started), at most 10 s.
pub fn wait_for_port(port: u16, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(feature = "cli")]
/// The directory where cargo put this test's binaries and the examples.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_owned()
}

/// Whether a Python module imports (skip with a reason outside CI, fail under CI).
pub fn have_module(module: &str) -> bool {
    have_module_in("python3", module)
}

/// Whether a Python module imports in the given interpreter, e.g. `/usr/bin/python3` for modules that come
/// from Debian packages (skip with a reason outside CI, fail under CI).
pub fn have_module_in(python: &str, module: &str) -> bool {
    let found = Command::new(python)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the Python module {module} is required under CI (in {python})"
        );
        eprintln!("skipping: the Python module {module} is not installed (in {python})");
    }
    found
}

#[cfg(feature = "cli")]
/// Runs a command with one line on its standard input; returns its output.
pub fn with_stdin(cmd: &mut Command, line: &str) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{line}").unwrap();
    child.wait_with_output().unwrap()
}

/// The HTTP version curl negotiated for a URL (`1.1`, `2`).
pub fn curl_http_version(args: &[&str]) -> String {
    let out = run(
        "curl",
        &[&["-s", "-o", "/dev/null", "-w", "%{http_version}"], args].concat(),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a Python script and returns what it printed; a failing script fails the test with its stderr.
pub fn python(script: &str) -> String {
    let out = run("python3", &["-c", script]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status code curl gets for a URL with one extra request header (and extra curl arguments).
pub fn status_with_header(url: &str, header: &str, extra: &[&str]) -> String {
    let args = [
        &["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", header],
        extra,
        &[url],
    ]
    .concat();
    let out = run("curl", &args);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Request heads kept by [`scripted_server`].
pub type Heads = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// A raw HTTP server on 127.0.0.1 that answers its n-th connection's request with `answers[n]` (the last
/// one for every later connection), then closes, and keeps each request head; it stops after 30 s or 20
/// connections.
pub fn scripted_server(answers: Vec<String>) -> (u16, Heads) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let heads = Heads::default();
    let kept = heads.clone();
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut served = 0;
        while std::time::Instant::now() < deadline && served < 20 {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            let answer = &answers[served.min(answers.len() - 1)];
            served += 1;
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut head = Vec::new();
            let mut b = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&b[..n]),
                }
            }
            kept.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let _ = s.write_all(answer.as_bytes());
        }
    });
    (port, heads)
}

/// A connection to 127.0.0.1:`port` from the loopback address `source`, with a small receive buffer if asked.
pub fn connect_from(source: Ipv4Addr, port: u16, rcvbuf: Option<usize>) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    if let Some(n) = rcvbuf {
        socket.set_recv_buffer_size(n).unwrap();
    }
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket
        .connect(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)).into())
        .unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    stream
}
