//! Access logs in the formats log tools read: the combined log format and JSON lines, to standard
//! output or a file ([`AccessLog`], given to [`ServerBuilder::access_log`](crate::ServerBuilder::access_log)).
//!
//! Invariants: the request path never waits on the log. A finished request hands its entry to a bounded
//! queue ([`QUEUE`] entries and [`QUEUE_BYTES`] bytes) without blocking; a writer thread formats and
//! writes it. When the queue is full the entry is dropped and counted (`bcs_access_log_dropped_total`).
//!
//! SECURITY: a stuck writer (a full disk, a pipe nobody reads) must not let clients fill memory through
//! the queue: an entry holds only copies of the client's fields cut at the line's limit (taken when the
//! request starts), and the queue holds at most [`QUEUE_BYTES`] of them. A file is opened for appending
//! with mode 0640 and reopened when asked ([`Server::reopen_access_log`](crate::Server::reopen_access_log),
//! on SIGHUP in `bcs`), so logrotate can rename it: lines queued before the reopen go to the old file,
//! none are lost.

mod line;

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

pub(crate) use line::{clip_bytes, clip_string, Entry};
use prometheus_client::metrics::counter::Counter;

/// Entries waiting for the writer at most; past that they are dropped (and counted).
pub const QUEUE: usize = 8192;

/// Bytes of entries waiting for the writer at most (see `Entry::size`): ordinary entries (a few
/// hundred bytes) reach [`QUEUE`] first; entries with the longest fields allowed stop here.
pub const QUEUE_BYTES: usize = 4 << 20;

/// How often an idle writer looks for a reopen request.
const POLL: Duration = Duration::from_millis(200);

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AccessLogFormat {
    /// Apache's and nginx's combined log format (`%h - %u [%d/%b/%Y:%H:%M:%S %z] "%r" %>s %b
    /// "%{Referer}i" "%{User-agent}i"`), in UTC.
    #[default]
    Combined,
    /// One JSON object per line: time, client, user, method, target, protocol, status, bytes, complete,
    /// referer, user_agent, group, duration_ms.
    Json,
}

/// An access-log format name that is neither `combined` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown access-log format {0:?}: expected combined or json")]
pub struct AccessLogFormatError(String);

impl FromStr for AccessLogFormat {
    type Err = AccessLogFormatError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "combined" => Ok(AccessLogFormat::Combined),
            "json" => Ok(AccessLogFormat::Json),
            _ => Err(AccessLogFormatError(s.to_owned())),
        }
    }
}

impl fmt::Display for AccessLogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AccessLogFormat::Combined => "combined",
            AccessLogFormat::Json => "json",
        })
    }
}

/// Where lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessLogTarget {
    /// Standard output (`-`): the journal under systemd.
    Stdout,
    /// A file, appended to, reopened on request.
    File(PathBuf),
}

impl FromStr for AccessLogTarget {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "-" => AccessLogTarget::Stdout,
            path => AccessLogTarget::File(PathBuf::from(path)),
        })
    }
}

/// An access log: where and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    /// Where lines go.
    pub target: AccessLogTarget,
    /// How they are written.
    pub format: AccessLogFormat,
}

/// The request path's end of the log: a bounded queue to the writer thread, which ends when this is
/// dropped.
#[derive(Debug)]
pub(crate) struct AccessLogSink {
    queue: SyncSender<Entry>,
    /// The bytes of the entries in the queue.
    queued: Arc<AtomicUsize>,
    reopen: Arc<AtomicBool>,
    dropped: Counter,
}

impl AccessLogSink {
    /// Opens the log (so that a bad path is an error now) and starts its writer.
    pub(crate) fn start(log: &AccessLog, dropped: Counter) -> io::Result<Self> {
        let out = open(&log.target)?;
        let (queue, entries) = mpsc::sync_channel(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            queued: queued.clone(),
            target: log.target.clone(),
            format: log.format,
            reopen: reopen.clone(),
            out,
        };
        std::thread::Builder::new()
            .name("bcs-access-log".into())
            .spawn(move || writer.run(&entries))?;
        Ok(AccessLogSink {
            queue,
            queued,
            reopen,
            dropped,
        })
    }

    /// Queues an entry, or drops it (counted) when the writer is behind: never waits.
    pub(crate) fn log(&self, entry: Entry) {
        let size = entry.size();
        let before = self.queued.fetch_add(size, Ordering::AcqRel);
        let sent = before + size <= QUEUE_BYTES
            && !matches!(
                self.queue.try_send(entry),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_))
            );
        if !sent {
            self.queued.fetch_sub(size, Ordering::AcqRel);
            self.dropped.inc();
        }
    }

    /// The bytes of the entries waiting for the writer.
    #[cfg(test)]
    fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Asks the writer to reopen the file (after logrotate renamed it); lines queued before go to the
    /// old one.
    pub(crate) fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
    }
}

struct Writer {
    queued: Arc<AtomicUsize>,
    target: AccessLogTarget,
    format: AccessLogFormat,
    reopen: Arc<AtomicBool>,
    out: BufWriter<Output>,
}

enum Output {
    Stdout(io::Stdout),
    File(File),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Output::Stdout(s) => s.write(buf),
            Output::File(f) => f.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Output::Stdout(s) => s.flush(),
            Output::File(f) => f.flush(),
        }
    }
}

fn open(target: &AccessLogTarget) -> io::Result<BufWriter<Output>> {
    let out = match target {
        AccessLogTarget::Stdout => Output::Stdout(io::stdout()),
        AccessLogTarget::File(path) => Output::File(open_file(path)?),
    };
    Ok(BufWriter::with_capacity(64 << 10, out))
}

/// Appending, created 0640 (the log names clients and users: not for everyone to read).
fn open_file(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
}

impl Writer {
    /// Writes entries until every sender is gone; flushes whenever the queue is empty, so a line is on
    /// disk soon after its request ends.
    fn run(mut self, entries: &Receiver<Entry>) {
        loop {
            self.reopen_if_asked();
            let entry = match entries.recv_timeout(POLL) {
                Ok(entry) => entry,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            self.write(&entry);
            while let Ok(entry) = entries.try_recv() {
                self.write(&entry);
            }
            self.flush();
        }
        self.flush();
    }

    fn write(&mut self, entry: &Entry) {
        self.queued.fetch_sub(entry.size(), Ordering::AcqRel);
        let line = match self.format {
            AccessLogFormat::Combined => entry.combined(),
            AccessLogFormat::Json => entry.json(),
        };
        if let Err(e) = self.out.write_all(line.as_bytes()) {
            tracing::warn!(error = %e, "cannot write the access log");
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::warn!(error = %e, "cannot write the access log");
        }
    }

    /// Reopens the file when asked; when that fails the old file is kept (and the failure logged).
    fn reopen_if_asked(&mut self) {
        if !self.reopen.swap(false, Ordering::AcqRel) {
            return;
        }
        self.flush();
        match open(&self.target) {
            Ok(out) => self.out = out,
            Err(e) => {
                tracing::error!(error = %e, "cannot reopen the access log; still writing the old file")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_targets_parse() {
        assert_eq!("json".parse(), Ok(AccessLogFormat::Json));
        assert_eq!("combined".parse(), Ok(AccessLogFormat::Combined));
        assert!("Combined\n".parse::<AccessLogFormat>().is_err());
        assert_eq!("-".parse(), Ok(AccessLogTarget::Stdout));
        assert_eq!(
            "/var/log/bcs.log".parse(),
            Ok(AccessLogTarget::File("/var/log/bcs.log".into()))
        );
    }

    /// A writer stuck on a full pipe (a disk that stopped, a reader that went away): logging never
    /// waits, and what does not fit in the queue is dropped and counted.
    #[test]
    fn a_stuck_writer_never_blocks_a_request() {
        use std::os::fd::AsRawFd;
        let (reader, writer) = std::io::pipe().unwrap();
        let path = format!("/proc/self/fd/{}", writer.as_raw_fd());
        let dropped = Counter::default();
        let log = AccessLog {
            target: AccessLogTarget::File(path.into()),
            format: AccessLogFormat::Combined,
        };
        let sink = AccessLogSink::start(&log, dropped.clone()).unwrap();
        let entry = || Entry {
            time: std::time::SystemTime::now(),
            client: std::net::Ipv4Addr::LOCALHOST.into(),
            user: None,
            method: http::Method::GET,
            target: "/G/".to_owned() + &"x".repeat(700),
            version: http::Version::HTTP_11,
            status: 200,
            bytes: 1,
            complete: true,
            referer: None,
            user_agent: None,
            group: None,
            duration: Duration::ZERO,
        };
        let started = std::time::Instant::now();
        let n = 3 * QUEUE as u64;
        for _ in 0..n {
            sink.log(entry());
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        // The pipe holds 64 KiB and the writer's buffer 64 KiB: most of the lines cannot have gone.
        assert!(
            dropped.get() >= n - QUEUE as u64 - 1000,
            "{}",
            dropped.get()
        );
        drop(reader);
    }

    /// SECURITY: clients sending the longest User-Agent and Referer hyper takes, while the writer is
    /// stuck: the queue holds at most QUEUE_BYTES, far below what the headers weighed, and never waits.
    #[test]
    fn a_stuck_writer_holds_a_bounded_number_of_bytes() {
        use std::os::fd::AsRawFd;
        let (reader, writer) = std::io::pipe().unwrap();
        let path = format!("/proc/self/fd/{}", writer.as_raw_fd());
        let dropped = Counter::default();
        let log = AccessLog {
            target: AccessLogTarget::File(path.into()),
            format: AccessLogFormat::Json,
        };
        let sink = AccessLogSink::start(&log, dropped.clone()).unwrap();
        let header = bytes::Bytes::from(vec![b'h'; 64 << 10]);
        let entry = || Entry {
            time: std::time::SystemTime::now(),
            client: std::net::Ipv4Addr::LOCALHOST.into(),
            user: Some(clip_string("u".repeat(64 << 10))),
            method: http::Method::GET,
            target: clip_string("/G/".to_owned() + &"x".repeat(64 << 10)),
            version: http::Version::HTTP_11,
            status: 200,
            bytes: 1,
            complete: true,
            referer: Some(clip_bytes(&header)),
            user_agent: Some(clip_bytes(&header)),
            group: None,
            duration: Duration::ZERO,
        };
        let size = entry().size();
        assert!(size < 6 * line::MAX_FIELD, "{size}");
        let n = QUEUE as u64;
        let started = std::time::Instant::now();
        for _ in 0..n {
            sink.log(entry());
            assert!(
                sink.queued_bytes() <= QUEUE_BYTES,
                "{}",
                sink.queued_bytes()
            );
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        // Full by bytes long before by entries: what did not fit was dropped, and counted.
        let held = (QUEUE_BYTES / size) as u64;
        assert!(held < n / 2, "{held}");
        assert!(dropped.get() >= n - held - 200, "{}", dropped.get());
        assert!(sink.queued_bytes() > QUEUE_BYTES - 2 * size);
        drop(reader);
    }

    #[test]
    fn the_file_is_created_0640() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        drop(open_file(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // The umask may take bits away, never add them.
        assert_eq!(mode & !0o640, 0);
    }
}
