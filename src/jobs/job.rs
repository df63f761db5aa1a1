//! A job's data (the properties of BITS's BitsClientJob), as the manager keeps it, the store writes it and callers read it.
//!
//! Plain serde data without behaviour beyond sums: the state machine is in `state`, the transfer in
//! `transfer`. Times are wall-clock [`SystemTime`]s (they are shown to people and survive restarts);
//! durations are whole seconds on the wire.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::state::{JobState, Priority};
use crate::client::ClientSettings;

/// The default MinimumRetryDelay: 600 s.
pub const DEFAULT_MINIMUM_RETRY_DELAY: Duration = Duration::from_secs(600);
/// The smallest MinimumRetryDelay accepted: 5 s.
pub const MINIMUM_RETRY_DELAY_FLOOR: Duration = Duration::from_secs(5);
/// The default NoProgressTimeout: 14 days.
pub const DEFAULT_NO_PROGRESS_TIMEOUT: Duration = Duration::from_secs(14 * 24 * 3600);
/// The longest MinimumRetryDelay and NoProgressTimeout accepted: `u32::MAX` seconds (about 136 years),
/// BITS's own range (both are a ULONG of seconds in its interface).
pub const LONGEST_JOB_TIMING: Duration = Duration::from_secs(u32::MAX as u64);

/// A job's identity: 128 random bits, printed like a UUID (version 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId([u8; 16]);

/// Text that is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a job id (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")]
pub struct JobIdError(pub String);

impl JobId {
    /// A new random id (UUID version 4 layout) from the system's secure generator.
    pub fn random() -> JobId {
        use ring::rand::SecureRandom;
        let mut b = [0u8; 16];
        // SECURITY: ids name jobs in the management API and in file names; the system generator makes them
        // unguessable. It only fails where the OS has no randomness at all, which no job can survive.
        ring::rand::SystemRandom::new()
            .fill(&mut b)
            .expect("the system random generator failed");
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        JobId(b)
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for JobId {
    type Err = JobIdError;

    /// The printed form, hex digits in either case (braces as Windows prints GUIDs are accepted).
    fn from_str(s: &str) -> Result<JobId, JobIdError> {
        let bad = || JobIdError(s.chars().take(64).collect());
        let inner = s
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(s);
        let dashes: Vec<usize> = inner.match_indices('-').map(|(i, _)| i).collect();
        let digits_only = inner.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit());
        if inner.len() != 36 || dashes != [8, 13, 18, 23] || !digits_only {
            return Err(bad());
        }
        let hex: Vec<u8> = inner.bytes().filter(|b| *b != b'-').collect();
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            let digits = std::str::from_utf8(pair).map_err(|_| bad())?;
            out[i] = u8::from_str_radix(digits, 16).map_err(|_| bad())?;
        }
        Ok(JobId(out))
    }
}

impl Serialize for JobId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<JobId, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What identified the remote file when its first bytes were fetched: a resumed transfer must find the
/// same, or the file restarts from zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// The file's size (Content-Length of a full answer, the total of a Content-Range).
    pub size: u64,
    /// The ETag as sent, quotes and any `W/` included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The Last-Modified value as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// One file of a job (`BitsClientFile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFile {
    /// Where it comes from (`http://...`).
    pub remote_url: String,
    /// Where it goes: an absolute path; the file appears there when the job is completed.
    pub local_file: PathBuf,
    /// Its size, once the server told it.
    pub bytes_total: Option<u64>,
    /// Bytes on disk so far (in the temporary file).
    pub bytes_transferred: u64,
    /// Whether all of it is on disk.
    pub completed: bool,
    /// The validators seen first; `None` before the first answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validators: Option<Validators>,
}

impl JobFile {
    /// A file not yet started.
    pub fn new(remote_url: impl Into<String>, local_file: impl Into<PathBuf>) -> JobFile {
        JobFile {
            remote_url: remote_url.into(),
            local_file: local_file.into(),
            bytes_total: None,
            bytes_transferred: 0,
            completed: false,
            validators: None,
        }
    }
}

/// Where a failure happened (`BG_ERROR_CONTEXT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ErrorContext {
    /// The local file: creating, writing, syncing or renaming it.
    LocalFile,
    /// The remote file: the server answered that it cannot be had (404, 403, 401, a bad URL).
    RemoteFile,
    /// The network: connecting, a lost connection, a timeout.
    Transport,
    /// The server's answer broke the protocol, or the server is failing (5xx, 503).
    ServerResponse,
}

/// What went wrong with a job, as GetError reports it. Kept until the job runs again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFailure {
    /// Where.
    pub context: ErrorContext,
    /// A stable, machine-readable name (`http_404`, `connection_refused`, `local_io`, ...).
    pub code: String,
    /// For people.
    pub message: String,
    /// The file it happened to (an index into `files`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<usize>,
    /// The HTTP status the server answered, if that was the failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// With a 401: the authentication schemes the server offered (`Basic`, `NTLM`, `Negotiate`, ...), as
    /// it named them (at most 8, each a plain token), so that a caller can say which credentials to give.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_schemes: Vec<String>,
}

impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {}: {}", self.context, self.code, self.message)
    }
}

/// A job (`BitsClientJob`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// JobId.
    pub id: JobId,
    /// DisplayName.
    pub display_name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Owner: who created it, as the caller was identified.
    #[serde(default)]
    pub owner: String,
    /// Priority.
    #[serde(default)]
    pub priority: Priority,
    /// State.
    pub state: JobState,
    /// MinimumRetryDelay: how long after a transient error the job is retried (at least 5 s).
    #[serde(with = "seconds")]
    pub minimum_retry_delay: Duration,
    /// NoProgressTimeout: how long a job in TRANSIENT_ERROR may go without progress before it is an ERROR.
    #[serde(with = "seconds")]
    pub no_progress_timeout: Duration,
    /// TransientErrorCount.
    #[serde(default)]
    pub transient_error_count: u32,
    /// When it was created.
    pub created: SystemTime,
    /// When it last changed.
    pub modified: SystemTime,
    /// When its last file was transferred.
    #[serde(default)]
    pub completed: Option<SystemTime>,
    /// Its files, transferred in order.
    pub files: Vec<JobFile>,
    /// The last failure (GetError), cleared when the job runs again.
    #[serde(default)]
    pub error: Option<JobFailure>,
    /// TLS trust, proxy usage and credentials (stored without the password).
    #[serde(default)]
    pub client: ClientSettings,
    /// Whether every connection it makes is checked by the manager's peer guard (see
    /// [`JobManagerBuilder::peer_guard`](crate::jobs::JobManagerBuilder::peer_guard)): a job of a caller
    /// who may not reach everything the process can. Kept with the job, so it holds after a restart.
    #[serde(default)]
    pub restricted: bool,
}

impl Job {
    /// A new job in `state` with the documented defaults: NORMAL priority, a 600 s retry delay, a 14 day
    /// no-progress timeout, no files.
    pub fn new(display_name: impl Into<String>, state: JobState) -> Job {
        let now = SystemTime::now();
        Job {
            id: JobId::random(),
            display_name: display_name.into(),
            description: String::new(),
            owner: String::new(),
            priority: Priority::Normal,
            state,
            minimum_retry_delay: DEFAULT_MINIMUM_RETRY_DELAY,
            no_progress_timeout: DEFAULT_NO_PROGRESS_TIMEOUT,
            transient_error_count: 0,
            created: now,
            modified: now,
            completed: None,
            files: Vec::new(),
            error: None,
            client: ClientSettings::default(),
            restricted: false,
        }
    }

    /// BytesTotal: the sum of the files' sizes, `None` while any size is unknown.
    pub fn bytes_total(&self) -> Option<u64> {
        self.files
            .iter()
            .try_fold(0u64, |sum, f| Some(sum.saturating_add(f.bytes_total?)))
    }

    /// BytesTransferred.
    pub fn bytes_transferred(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |sum, f| sum.saturating_add(f.bytes_transferred))
    }

    /// FilesTotal.
    pub fn files_total(&self) -> usize {
        self.files.len()
    }

    /// FilesTransferred.
    pub fn files_transferred(&self) -> usize {
        self.files.iter().filter(|f| f.completed).count()
    }
}

/// Durations as whole seconds.
mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A restricted job stays restricted when read back (after a restart); a job stored before the
    /// field existed reads back unrestricted.
    #[test]
    fn restriction_is_kept_with_the_job() {
        let mut job = Job::new("r", JobState::Suspended);
        job.restricted = true;
        let text = serde_json::to_string(&job).unwrap();
        assert!(serde_json::from_str::<Job>(&text).unwrap().restricted);
        let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
        old.as_object_mut().unwrap().remove("restricted");
        assert!(!serde_json::from_value::<Job>(old).unwrap().restricted);
    }

    #[test]
    fn ids_print_like_uuids_and_parse_back() {
        let id = JobId::random();
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(&text[14..15], "4");
        assert_eq!(text.parse::<JobId>(), Ok(id));
        assert_eq!(
            format!("{{{}}}", text.to_uppercase()).parse::<JobId>(),
            Ok(id)
        );
        assert_ne!(JobId::random(), id);
    }

    #[test]
    fn hostile_ids_are_refused() {
        for bad in [
            "",
            "../../etc/passwd",
            "0000000-00000-0000-0000-000000000000",
            "00000000-0000-0000-0000-00000000000g",
            "00000000-0000-0000-0000-0000000000000",
            "+0000000-0000-0000-0000-000000000000",
            "00000000-0000-0000-0000-00000000000é",
            "00000000_0000_0000_0000_000000000000",
        ] {
            assert!(bad.parse::<JobId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn sums_and_defaults() {
        let mut job = Job::new("j", JobState::Suspended);
        assert_eq!(job.minimum_retry_delay, Duration::from_secs(600));
        assert_eq!(job.no_progress_timeout, Duration::from_secs(1_209_600));
        assert_eq!(job.bytes_total(), Some(0));
        job.files.push(JobFile::new("http://h/a", "/tmp/a"));
        assert_eq!(job.bytes_total(), None);
        job.files[0].bytes_total = Some(10);
        job.files[0].bytes_transferred = 4;
        job.files.push(JobFile {
            bytes_total: Some(5),
            bytes_transferred: 5,
            completed: true,
            ..JobFile::new("http://h/b", "/tmp/b")
        });
        assert_eq!(job.bytes_total(), Some(15));
        assert_eq!(job.bytes_transferred(), 9);
        assert_eq!((job.files_total(), job.files_transferred()), (2, 1));
    }

    #[test]
    fn a_job_round_trips_through_json() {
        let mut job = Job::new("j", JobState::TransientError);
        job.files.push(JobFile::new("http://h/a", "/tmp/a"));
        job.files[0].validators = Some(Validators {
            size: 3,
            etag: Some("\"x\"".into()),
            last_modified: None,
        });
        job.error = Some(JobFailure {
            context: ErrorContext::ServerResponse,
            code: "http_503".into(),
            message: "busy".into(),
            file: Some(0),
            http_status: Some(503),
            auth_schemes: Vec::new(),
        });
        let json = serde_json::to_string(&job).unwrap();
        assert!(json.contains("\"minimum_retry_delay\":600"), "{json}");
        assert!(json.contains("\"state\":\"TRANSIENT_ERROR\""), "{json}");
        let back: Job = serde_json::from_str(&json).unwrap();
        assert_eq!(back, job);
    }
}
