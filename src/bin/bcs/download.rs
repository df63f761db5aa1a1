//! `bcs download URL... [-o FILE | -d DIR]`: one FOREGROUND job, run in the foreground with a progress
//! bar, kept in the user's state directory so that running the same command again after it was killed or
//! interrupted resumes it from the bytes on disk.
//!
//! The job lives in a `DirStore` of its own, `STATE/download-jobs/KEY/` (see `kept`), where KEY is a hash
//! of the URLs and destinations: the same command finds the same job, another command another. On
//! success the job is completed (the files appear under their names) and its directory removed; on a
//! failure it stays when it holds bytes, so that a rerun resumes it (`--list` shows such downloads,
//! `--forget` discards one), and is discarded, temporaries and all, when it failed before its first byte.
//!
//! Here: the arguments, the run and its end, the hints on a failure. `kept` owns the kept downloads'
//! directories, locks, `--list` and `--forget`; `progress` the bar and the progress lines.

mod display;
mod kept;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use bits_compact::client::{ClientSettings, Credentials, ProxySetting, TlsSettings};
use bits_compact::jobs::{
    Action, DirStore, Job, JobEvent, JobFailure, JobId, JobManager, JobState, LowSpeedLimit,
    NewJob, Priority,
};
use bits_compact::{ByteRate, Password};
use clap::Args;
use serde_json::json;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::broadcast::error::RecvError;

use self::display::Show;
use crate::print::{human_bytes, terminal_safe};
use crate::CliError;

/// The exit statuses, for `--help`.
pub(crate) const EXIT_CODES: &str = "\
Transient failures (connection refused or lost, 5xx, 503, a stalled body) are retried every 5 s; after \
60 s without progress the download fails. Exit status: 0 downloaded (or listed, or forgotten); 1 failed \
(the job's error is printed; a download holding bytes is kept, and the same command resumes it; one \
that failed before its first byte leaves nothing), --forget found nothing to forget, or any other error; \
2 usage; 130 interrupted (Ctrl-C or SIGTERM: the job is suspended and kept; the same command resumes it).";

/// How long after a transient failure (connection lost, 5xx, 503) the job tries again.
const RETRY_DELAY: Duration = Duration::from_secs(5);
/// How long the job may keep failing transiently without progress before it gives up.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// How often plain and JSON progress lines are written.
const LINE_EVERY: Duration = Duration::from_secs(1);

#[derive(Args)]
pub(crate) struct DownloadArgs {
    /// The files to fetch (http:// or https:// URLs; https servers are checked against the system CAs), in
    /// order.
    #[arg(required_unless_present_any = ["list", "forget"], value_name = "URL")]
    urls: Vec<String>,
    /// List the downloads kept to be resumed (id, state, bytes held, URLs and destinations), then exit.
    #[arg(long, conflicts_with_all = ["urls", "forget", "output", "dir"])]
    list: bool,
    /// Discard a kept download, its temporary files too: the one writing the destination DEST, or the
    /// one with this id (as --list shows it).
    #[arg(long, value_name = "DEST|ID", conflicts_with_all = ["urls", "output", "dir"])]
    forget: Option<String>,
    /// A body that brings under 1 KiB in this many seconds has stalled: the transfer stops and is tried
    /// again from the bytes held. Default: 60.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=86_400))]
    stall_time: Option<u64>,
    /// Where to put the file (one URL only).
    #[arg(short, long, value_name = "FILE", conflicts_with = "dir")]
    output: Option<PathBuf>,
    /// The directory to put the files in, each under the last segment of its URL. Default: the current
    /// directory.
    #[arg(short = 'd', long = "dir", value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print progress and the outcome as JSON lines on stdout instead of a progress bar.
    #[arg(long)]
    json: bool,
    /// This download's bandwidth, e.g. 4MiB/s, 500KB/s (units as for `bcs host --rate`: bytes, never bits;
    /// K, M, G powers of 1000, KiB, MiB, GiB powers of 1024). Default: unlimited.
    #[arg(long, value_name = "RATE")]
    rate: Option<ByteRate>,
    /// Authenticate as this user: Basic (over https only), or NTLM with --ntlm. The password comes from
    /// BCS_PASSWORD, else a prompt; it is never stored, so a resumed download asks again.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Use NTLM for --user rather than Basic.
    #[arg(long, requires = "user")]
    ntlm: bool,
    /// Authenticate with Kerberos (Negotiate, SPNEGO) from the default credential cache (KRB5CCNAME; get
    /// a ticket with kinit), like `curl --negotiate -u :`, to the URL's own server only. Needs a bcs built
    /// with the negotiate feature.
    #[arg(long, conflicts_with = "user")]
    negotiate: bool,
    /// Trust the CA certificates in this PEM file instead of the system's.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Accept a server whose key has this pin (sha256//BASE64, as `bcs host` prints it), whatever its
    /// chain (repeatable; with --ca, the chain must verify too).
    #[arg(long, value_name = "PIN")]
    pin: Vec<bits_compact::client::SpkiPin>,
    /// A client certificate (PEM chain) for servers that ask for one.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// A proxy (http://host:port) for every URL, or `none` for direct connections. Default: the
    /// environment's http_proxy, https_proxy and no_proxy.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
}

impl DownloadArgs {
    /// The job's client settings: TLS trust, proxy, credentials (the password read now).
    fn client(&self) -> Result<ClientSettings, CliError> {
        let tls = TlsSettings {
            ca_file: self.ca.clone(),
            pins: self.pin.clone(),
            client_certificate: self.client_cert.clone().zip(self.client_key.clone()),
        };
        let proxy = match self.proxy.as_deref() {
            None => ProxySetting::Preconfig,
            Some("none") => ProxySetting::NoProxy,
            Some(proxy) => ProxySetting::Override {
                proxy: proxy.to_owned(),
                bypass: Vec::new(),
            },
        };
        let credentials = match &self.user {
            None if self.negotiate => Some(Credentials::negotiate()),
            None => None,
            Some(user) => {
                let password = read_password(user)?;
                Some(match self.ntlm {
                    true => Credentials::ntlm(user.clone(), password),
                    false => Credentials::basic(user.clone(), password),
                })
            }
        };
        let settings = ClientSettings {
            tls,
            proxy,
            credentials,
        };
        settings.check().map_err(DownloadError::from)?;
        Ok(settings)
    }
}

/// Why a download did not finish.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DownloadError {
    #[error("{0}")]
    Usage(String),
    #[error("download failed: {failure}{}{}", file.as_ref().map(|f| format!(" ({f})")).unwrap_or_default(),
        hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default())]
    Failed {
        failure: Box<JobFailure>,
        file: Option<String>,
        /// What to do about it (credentials for a 401).
        hint: Option<String>,
    },
    #[error("no download is kept for {0:?} (bcs download --list shows those that are)")]
    NotKept(String),
    #[error("interrupted: the download is suspended; run the same command again to resume it")]
    Interrupted,
    #[error("the same download is already running (lock {0:?})")]
    Busy(PathBuf),
    #[error("cannot keep the download's state in {path:?}")]
    State {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no state directory: neither XDG_STATE_HOME nor HOME is set")]
    NoStateDir,
    #[error("cannot catch Ctrl-C")]
    Signals(#[source] std::io::Error),
    #[error("--user needs its password: set BCS_PASSWORD (there is no terminal to ask on: {0})")]
    NoPassword(std::io::Error),
    #[error(transparent)]
    Job(#[from] bits_compact::JobError),
    #[error(transparent)]
    Client(#[from] bits_compact::client::ClientError),
}

impl DownloadError {
    pub(crate) fn exit_code(&self) -> ExitCode {
        match self {
            DownloadError::Usage(_) => ExitCode::from(2),
            DownloadError::Interrupted => ExitCode::from(130),
            _ => ExitCode::FAILURE,
        }
    }
}

pub(crate) async fn run(args: DownloadArgs) -> Result<(), CliError> {
    if args.list {
        return Ok(kept::list(args.json)?);
    }
    if let Some(what) = &args.forget {
        return Ok(kept::forget(what, resolve(Path::new(what)).ok())?);
    }
    download(&args).await
}

/// Runs the command line's job (resumed, or new) in the foreground, until it is saved, fails, or is
/// interrupted.
async fn download(args: &DownloadArgs) -> Result<(), CliError> {
    let files = destinations(args)?;
    // The settings (and the password prompt) before any state is touched.
    let client = args.client()?;
    // Installed first: from now on Ctrl-C suspends the job rather than killing the process.
    let mut signals = (
        signal(SignalKind::interrupt()).map_err(DownloadError::Signals)?,
        signal(SignalKind::terminate()).map_err(DownloadError::Signals)?,
    );
    // A file size limit (RLIMIT_FSIZE) must fail the write (EFBIG: ERROR, local file) like a full disk,
    // not kill the process with SIGXFSZ's default action; a handler of our own replaces that action.
    let xfsz = SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw());
    let _xfsz = signal(xfsz).map_err(DownloadError::Signals)?;
    let dir = kept::root()?.join(kept::key(&files));
    let lock = kept::lock(&dir)?;
    let manager = start(args, &dir).await?;
    let mut events = manager.subscribe();
    let id = find_or_create(&manager, &files, client).await?;
    let show = Show::new(args.json);
    let outcome = follow(&manager, id, &mut events, show, &mut signals)
        .await
        .map_err(|e| with_hint(e, args));
    let discarded = settle(&manager, id, &outcome, args.json).await?;
    if let Err(e) = outcome {
        if discarded {
            kept::release(&dir, lock);
        }
        return Err(e.into());
    }
    report_done(&manager.job(id)?, args.json);
    kept::release(&dir, lock);
    Ok(())
}

/// The job manager of one command line: its store in `dir`, one transfer at a time.
async fn start(args: &DownloadArgs, dir: &Path) -> Result<JobManager, DownloadError> {
    let mut low_speed = LowSpeedLimit::default();
    if let Some(seconds) = args.stall_time {
        low_speed.window = Duration::from_secs(seconds);
    }
    Ok(JobManager::builder()
        .store(DirStore::open(dir)?)
        .job_bandwidth(args.rate.unwrap_or(ByteRate::UNLIMITED))
        .low_speed_limit(low_speed)
        .max_transfers(1)
        .start()
        .await?)
}

/// Ends the job as the outcome says — completed, suspended (interrupted), kept (failed holding bytes) or
/// cancelled (failed before its first byte: nothing to resume, no temporary left) — stops the manager
/// and, with --json, says how the job ended. Returns whether the job was discarded.
async fn settle(
    manager: &JobManager,
    id: JobId,
    outcome: &Result<(), DownloadError>,
    json: bool,
) -> Result<bool, DownloadError> {
    let ended = manager.job(id);
    let failed = matches!(outcome, Err(DownloadError::Failed { .. }));
    let discard = failed && ended.as_ref().is_ok_and(|j| j.bytes_transferred() == 0);
    let done = match outcome {
        Ok(()) => manager.set_state(id, Action::Complete).await.map(drop),
        Err(DownloadError::Interrupted) => manager.set_state(id, Action::Suspend).await.map(drop),
        Err(_) if discard => manager.set_state(id, Action::Cancel).await.map(drop),
        Err(_) => Ok(()),
    };
    manager.shutdown().await;
    done?;
    if json {
        // How the job ended (ERROR, even when it is then discarded), or ACKNOWLEDGED once completed.
        let shown = if discard { ended } else { manager.job(id) };
        if let Ok(job) = shown {
            say!(
                "{}",
                json!({"event": "end", "state": job.state, "error": job.error})
            );
        }
    }
    Ok(discard)
}

/// A destination as an absolute path with its directory resolved (`x/../out` is `out`, a link to a
/// directory is where it leads): two spellings of one file must be one job, with one lock, never two
/// writing one file.
fn resolve(p: &Path) -> Result<PathBuf, DownloadError> {
    let whole = std::path::absolute(p)
        .map_err(|e| DownloadError::Usage(format!("{}: {e}", p.display())))?;
    let (Some(dir), Some(name)) = (whole.parent(), whole.file_name()) else {
        return Ok(whole);
    };
    Ok(match dir.canonicalize() {
        Ok(dir) => dir.join(name),
        Err(_) => whole,
    })
}

/// (URL, absolute destination) pairs.
fn destinations(args: &DownloadArgs) -> Result<Vec<(String, PathBuf)>, DownloadError> {
    if let Some(output) = &args.output {
        if args.urls.len() != 1 {
            return Err(DownloadError::Usage(
                "-o names one file: give one URL, or use -d DIR".into(),
            ));
        }
        if output.is_dir() {
            return Err(DownloadError::Usage(format!(
                "-o {}: a directory (use -d DIR)",
                output.display()
            )));
        }
        return Ok(vec![(args.urls[0].clone(), resolve(output)?)]);
    }
    let dir = resolve(args.dir.as_deref().unwrap_or(Path::new(".")))?;
    args.urls
        .iter()
        .map(|url| {
            let name = file_name(url).ok_or_else(|| {
                DownloadError::Usage(format!("{url:?} names no file: give -o FILE"))
            })?;
            Ok((url.clone(), dir.join(name)))
        })
        .collect()
}

/// The last segment of the URL's path, percent-decoded; `None` for one that names no plain file.
fn file_name(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let segment = uri.path().rsplit('/').next()?;
    let mut bytes = Vec::with_capacity(segment.len());
    let mut rest = segment.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let name = String::from_utf8(bytes).ok()?;
    // SECURITY: the name comes from the URL; it must stay a single name inside the chosen directory.
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0']);
    plain.then_some(name)
}

/// SECURITY: the password from BCS_PASSWORD or a prompt, never an argument (arguments are visible to
/// every user in /proc).
fn read_password(user: &str) -> Result<Password, DownloadError> {
    match std::env::var("BCS_PASSWORD") {
        Ok(password) if !password.is_empty() => Ok(Password::from(password)),
        _ => rpassword::prompt_password(format!("Password for {user}: "))
            .map(Password::from)
            .map_err(DownloadError::NoPassword),
    }
}

/// The stored job of this command, resumed; or a new one.
async fn find_or_create(
    manager: &JobManager,
    files: &[(String, PathBuf)],
    client: ClientSettings,
) -> Result<JobId, CliError> {
    if let Some(job) = manager.jobs().into_iter().find(|j| !j.state.is_final()) {
        // This run's settings (a password is never stored: it comes from this run).
        manager.set_client_settings(job.id, client).await?;
        match job.state {
            JobState::Suspended | JobState::Error | JobState::TransientError => {
                manager.set_state(job.id, Action::Resume).await?;
            }
            _ => {}
        }
        return Ok(job.id);
    }
    let mut new = NewJob::new("bcs download")
        .priority(Priority::Foreground)
        .minimum_retry_delay(RETRY_DELAY)
        .no_progress_timeout(GIVE_UP_AFTER)
        .client(client);
    for (url, local) in files {
        new = new.file(url.clone(), local.clone());
    }
    Ok(manager.create_job(new).await?.id)
}

/// Shows the job's progress until it is TRANSFERRED (`Ok`), fails (ERROR), or a signal interrupts.
async fn follow(
    manager: &JobManager,
    id: JobId,
    events: &mut tokio::sync::broadcast::Receiver<JobEvent>,
    mut show: Show,
    (interrupt, terminate): &mut (Signal, Signal),
) -> Result<(), DownloadError> {
    let mut tick = tokio::time::interval(LINE_EVERY);
    let mut last = None;
    loop {
        let job = manager.job(id)?;
        if last != Some(job.state) {
            show.state(&job);
            last = Some(job.state);
        }
        match job.state {
            JobState::Transferred => {
                show.finish(&job);
                return Ok(());
            }
            JobState::Error | JobState::Cancelled | JobState::Acknowledged => {
                show.abandon();
                return Err(failed(&job));
            }
            _ => show.progress(&job),
        }
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = tick.tick() => show.line(&job),
            e = events.recv() => if let Err(RecvError::Closed) = e { return Err(bits_compact::JobError::Stopped.into()) },
        }
    }
    show.abandon();
    Err(DownloadError::Interrupted)
}

/// GetError of a job that stopped, with the file it happened to.
fn failed(job: &Job) -> DownloadError {
    let failure = job.error.clone().unwrap_or_else(|| JobFailure {
        context: bits_compact::jobs::ErrorContext::LocalFile,
        code: "stopped".into(),
        message: format!("the job is {}", job.state),
        file: None,
        http_status: None,
        auth_schemes: Vec::new(),
    });
    let file = failure
        .file
        .and_then(|i| job.files.get(i))
        .map(|f| format!("{} → {}", f.remote_url, f.local_file.display()));
    DownloadError::Failed {
        failure: Box::new(failure),
        file,
        hint: None,
    }
}

/// A failure with what to do about it, when there is something to say.
fn with_hint(e: DownloadError, args: &DownloadArgs) -> DownloadError {
    match e {
        DownloadError::Failed { failure, file, .. } => {
            let hint = auth_hint(&failure, args);
            DownloadError::Failed {
                failure,
                file,
                hint,
            }
        }
        other => other,
    }
}

/// What to do about a 401: the option that gives the credentials the server asks for, or — when those
/// given were of a scheme it offered — that it rejected them.
fn auth_hint(failure: &JobFailure, args: &DownloadArgs) -> Option<String> {
    if failure.http_status != Some(401) {
        return None;
    }
    let offered = &failure.auth_schemes;
    let given = match (&args.user, args.negotiate, args.ntlm) {
        (Some(_), _, true) => Some("NTLM"),
        (Some(_), _, false) => Some("Basic"),
        (None, true, _) => Some("Negotiate"),
        (None, false, _) => None,
    };
    let was_offered = |scheme: &str| offered.iter().any(|o| o.eq_ignore_ascii_case(scheme));
    match given {
        Some("Negotiate") if offered.is_empty() || was_offered("Negotiate") => {
            return Some("check the Kerberos ticket with klist (kinit gets a new one)".into())
        }
        Some(scheme) if offered.is_empty() || was_offered(scheme) => {
            return Some("check the user name and the password".into())
        }
        _ => {}
    }
    let flags: Vec<&str> = offered
        .iter()
        .filter_map(|o| match o.to_ascii_lowercase().as_str() {
            "basic" => Some("--user NAME (over https)"),
            "ntlm" => Some("--user NAME --ntlm"),
            "negotiate" => Some("--negotiate"),
            _ => None,
        })
        .collect();
    let asks = offered.join(" or ");
    Some(match (flags.is_empty(), offered.is_empty()) {
        (_, true) => "the server names no authentication scheme bcs could use".into(),
        (true, false) => format!("the server asks for {asks}, which bcs does not support"),
        (false, false) => format!("the server asks for {asks}: use {}", flags.join(", or ")),
    })
}

fn report_done(job: &Job, json: bool) {
    for f in &job.files {
        if json {
            say!(
                "{}",
                json!({"event": "saved", "url": f.remote_url, "file": f.local_file, "bytes": f.bytes_total})
            );
        } else {
            let size = human_bytes(f.bytes_total.unwrap_or(0));
            say!("Saved {} ({size})", terminal_safe(f.local_file.display()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_last_segment_and_stay_names() {
        assert_eq!(file_name("http://h/a/b.iso").as_deref(), Some("b.iso"));
        assert_eq!(file_name("http://h/a/b%20c?x=1").as_deref(), Some("b c"));
        for bad in [
            "http://h/",
            "http://h/a/..",
            "http://h/%2e%2e",
            "http://h/a%2fb",
            "http://h/%zz",
            "http://h/%00",
        ] {
            assert_eq!(file_name(bad), None, "{bad}");
        }
    }
}
