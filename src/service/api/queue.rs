//! `/v1/jobs`: download jobs run by the service (the original's BitsClientJob through WMI: CreateJob,
//! AddFile, SetJobState, SetPriority, SetCredentials, RemoveCredentials, GetError), and a server-sent
//! event stream of a job's progress and state changes.
//!
//! SECURITY: two threats. (1) A caller reaching jobs that are not theirs: every job records its owner (the
//! caller's identity when it was created); an administrator sees and manages every job, anyone else only
//! their own, and another's job answers 404 exactly as a missing one does, so its existence is not
//! revealed. (2) A job writing where the service must not: every local file must resolve inside the
//! download root. `..` components are refused, absolute paths outside the root are refused, and no
//! existing component below the root (directories, the file, its `.bcs-part` temporary) may be a symbolic
//! link; the root itself is canonical, so the stored path has no link in it anywhere. Credentials are
//! accepted here and never returned (a job shows its scheme, user and whether a password is set).
//!
//! Callers who are not administrators each get an area of their own below the root,
//! `users/<hash of the owner>/`, where their relative and absolute paths resolve: one such caller cannot
//! name (or learn of) another's files, nor overwrite a download another job verified. Across all jobs, no
//! two unfinished ones may write one file, and no destination may be named like a temporary (the job
//! manager refuses both). An administrator's paths may go anywhere in the root.
//!
//! Not defended here, by design (BITS lets any user own download jobs): a caller who may create jobs can
//! make the service fetch any URL it can reach and fill the download root's file system. A service that
//! must not do that for remote callers who are not administrators gives them no account.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use super::{Body, Param, Principal};
use crate::auth::Password;
use crate::client::{ClientSettings, Credentials, ProxySetting, SpkiPin};
use crate::jobs::{Action, Job, JobEvent, JobFailure, JobId, JobManager, NewJob, Priority};
use crate::service::error::{ErrorBody, MgmtError};
use crate::service::Managed;

/// The most jobs a caller who is not an administrator may have (BITS's MaxJobsPerUser default).
pub(crate) const MAX_JOBS_PER_OWNER: usize = 60;

/// The jobs of a service and where their files may go.
#[derive(Debug)]
pub struct ServiceJobs {
    manager: JobManager,
    root: PathBuf,
}

impl ServiceJobs {
    /// Jobs run by `manager`, whose files must be inside `root` (created mode 0700 if missing; made
    /// canonical here). `state` is the service's state directory.
    ///
    /// SECURITY: a root that holds the state directory would let a job's Complete rename a download over
    /// `config.db` or `jobs.key` (a caller making itself administrator); a root others may write to would
    /// let local users plant links or temporaries in it. Both are refused.
    pub fn new(manager: JobManager, root: &Path, state: &Path) -> std::io::Result<ServiceJobs> {
        crate::jobs::make_private_dir(root).map_err(std::io::Error::other)?;
        let root = root.canonicalize()?;
        let state = state.canonicalize()?;
        if state.starts_with(&root) {
            return Err(std::io::Error::other(format!(
                "it holds the state directory {}; give a directory of its own",
                state.display()
            )));
        }
        Ok(ServiceJobs { manager, root })
    }

    /// Where `who`'s paths resolve, relative to the root: the root itself for administrators, else the
    /// caller's own area below it.
    fn area(who: &Principal) -> PathBuf {
        if who.admin {
            return PathBuf::new();
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, who.name.as_bytes());
        let hex: String = digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Path::new("users").join(hex)
    }

    /// The manager.
    pub fn manager(&self) -> &JobManager {
        &self.manager
    }

    /// The download root (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `given` puts a file of `who`'s: a relative path under the caller's area (the root, for
    /// administrators), an absolute one only inside it; parent directories below the root are created
    /// (0700) as needed. See the module's SECURITY note.
    pub fn local_path(&self, who: &Principal, given: &str) -> Result<PathBuf, MgmtError> {
        let below = Self::area(who);
        let area = self.root.join(&below);
        let refuse = |why: &str| MgmtError::Invalid {
            code: "path_outside_download_root",
            message: format!(
                "{given:?}: {why}; job files must be inside {}",
                area.display()
            ),
        };
        let path = Path::new(given);
        if given.is_empty() || given.contains('\0') {
            return Err(refuse("not a file path"));
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(refuse("`..` is not allowed"));
        }
        let relative = match path.strip_prefix(&area) {
            Ok(rest) => below.join(rest),
            Err(_) if path.is_absolute() => return Err(refuse("outside the download root")),
            Err(_) => below.join(path),
        };
        let parts: Vec<&std::ffi::OsStr> = relative
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name),
                _ => None,
            })
            .collect();
        let Some((name, dirs)) = parts.split_last() else {
            return Err(refuse("names no file"));
        };
        let mut at = self.root.clone();
        for dir in dirs {
            at.push(dir);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refuse("a directory on the path is a symbolic link"))
                }
                Ok(m) if !m.is_dir() => {
                    return Err(refuse("a component of the path is not a directory"))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&at)
                        .map_err(|e| refuse(&format!("cannot create its directory: {e}")))?;
                }
                Err(e) => return Err(refuse(&e.to_string())),
            }
        }
        at.push(name);
        let part = crate::jobs::part_path(&at).ok_or_else(|| refuse("names no file"))?;
        for p in [&at, &part] {
            if let Ok(m) = std::fs::symlink_metadata(p) {
                if m.file_type().is_symlink() {
                    return Err(refuse("the file is a symbolic link"));
                }
                if !m.is_file() {
                    return Err(refuse("something other than a file is there"));
                }
            }
        }
        Ok(at)
    }
}

/// A job, as the API shows it: every BITS job property; never a password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// JobId.
    pub id: String,
    /// DisplayName.
    pub display_name: String,
    /// Description.
    pub description: String,
    /// Owner: who created it.
    pub owner: String,
    /// State, by name (`QUEUED` ... `CANCELLED`).
    pub state: String,
    /// State, by number (BG_JOB_STATE: 0 QUEUED ... 6 TRANSFERRED, 7 ACKNOWLEDGED, 8 CANCELLED).
    pub state_number: u32,
    /// Priority, by name (`FOREGROUND`, `HIGH`, `NORMAL`, `LOW`).
    pub priority: String,
    /// Priority, by number (0 FOREGROUND ... 3 LOW).
    pub priority_number: u32,
    /// CreationTime (RFC 3339).
    pub creation_time: String,
    /// ModificationTime (RFC 3339).
    pub modification_time: String,
    /// TransferCompletionTime (RFC 3339), once every file was transferred.
    pub transfer_completion_time: Option<String>,
    /// BytesTotal; null while a file's size is unknown.
    pub bytes_total: Option<u64>,
    /// BytesTransferred.
    pub bytes_transferred: u64,
    /// FilesTotal.
    pub files_total: usize,
    /// FilesTransferred.
    pub files_transferred: usize,
    /// ErrorCount: transient errors so far.
    pub error_count: u32,
    /// Whether GetError has an error to show.
    pub has_error: bool,
    /// MinimumRetryDelay, seconds.
    pub minimum_retry_delay_secs: u64,
    /// NoProgressTimeout, seconds.
    pub no_progress_timeout_secs: u64,
    /// Proxy usage.
    pub proxy: ProxyView,
    /// Credentials, without the password.
    pub credentials: Option<CredentialsView>,
    /// Its files.
    pub files: Vec<FileView>,
}

/// One file of a job.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FileView {
    /// RemoteName.
    pub remote_url: String,
    /// LocalName.
    pub local_file: String,
    /// BytesTotal; null while unknown.
    pub bytes_total: Option<u64>,
    /// BytesTransferred.
    pub bytes_transferred: u64,
    /// Whether all of it is on disk.
    pub completed: bool,
}

/// Proxy usage: `preconfig` (the service's environment), `no_proxy`, or `override` with a proxy.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyView {
    /// `preconfig`, `no_proxy` or `override`.
    pub usage: String,
    /// The proxy (`http://host:port`) for `override`.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Hosts reached directly with `override` (no_proxy syntax).
    #[serde(default)]
    pub bypass: Vec<String>,
}

/// Credentials as shown: never the password.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CredentialsView {
    /// `basic` or `ntlm`.
    pub scheme: String,
    /// The user.
    pub user: String,
    /// Whether a password is set.
    pub password: bool,
}

/// Credentials to set (SetCredentials).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCredentials {
    /// `basic` (sent over https only unless allowed) or `ntlm`.
    pub scheme: String,
    /// The user: `name`, or for NTLM `DOMAIN\name`.
    pub user: String,
    /// The password; kept encrypted at rest and never shown.
    pub password: String,
    /// Lets Basic travel over plain http.
    #[serde(default)]
    pub allow_basic_over_http: bool,
}

/// A file to add: a remote URL and where it goes (relative to the download root, or an absolute path in
/// it).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFile {
    /// `http://` or `https://` URL.
    pub remote_url: String,
    /// Where the file goes, inside the download root.
    pub local_file: String,
}

/// A priority or an action, by name or by number.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum NameOrNumber {
    /// The number.
    Number(u32),
    /// The name (any case).
    Name(String),
}

impl NameOrNumber {
    fn parse<T: std::str::FromStr<Err = crate::jobs::UnknownValue>>(&self) -> Result<T, MgmtError> {
        let text = match self {
            NameOrNumber::Number(n) => n.to_string(),
            NameOrNumber::Name(s) => s.clone(),
        };
        text.parse::<T>().map_err(|e| MgmtError::Invalid {
            code: "invalid_job_setting",
            message: e.to_string(),
        })
    }
}

/// A new job (CreateJob).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// DisplayName.
    pub display_name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Its files.
    #[serde(default)]
    pub files: Vec<NewFile>,
    /// Priority (name or number). Default NORMAL.
    #[serde(default)]
    pub priority: Option<NameOrNumber>,
    /// Stay SUSPENDED until resumed. Default: the job starts at once.
    #[serde(default)]
    pub suspended: bool,
    /// Credentials for the servers.
    #[serde(default)]
    pub credentials: Option<SetCredentials>,
    /// Proxy usage. Default `preconfig`.
    #[serde(default)]
    pub proxy: Option<ProxyView>,
    /// Public keys to accept for https servers (`sha256//BASE64`), instead of the system's roots.
    #[serde(default)]
    pub pins: Vec<String>,
    /// MinimumRetryDelay, seconds (at least 5). Default 600.
    #[serde(default)]
    pub minimum_retry_delay_secs: Option<u64>,
    /// NoProgressTimeout, seconds. Default 1209600 (14 days).
    #[serde(default)]
    pub no_progress_timeout_secs: Option<u64>,
}

/// A state change (SetJobState).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetState {
    /// 0 CANCEL, 1 COMPLETE, 2 RESUME, 3 SUSPEND (number or name).
    pub action: NameOrNumber,
}

/// Settings to change; those not given stay.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeJob {
    /// Priority (name or number).
    #[serde(default)]
    pub priority: Option<NameOrNumber>,
    /// MinimumRetryDelay, seconds (at least 5).
    #[serde(default)]
    pub minimum_retry_delay_secs: Option<u64>,
    /// NoProgressTimeout, seconds.
    #[serde(default)]
    pub no_progress_timeout_secs: Option<u64>,
}

/// GetError's answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobErrorView {
    /// Whether there is an error (the other fields are null when not).
    pub has_error: bool,
    /// BG_ERROR_CONTEXT: `LOCAL_FILE`, `REMOTE_FILE`, `TRANSPORT`, `SERVER_RESPONSE`.
    pub context: Option<String>,
    /// A stable code (`http_404`, `connection_refused`, ...).
    pub code: Option<String>,
    /// For people.
    pub message: Option<String>,
    /// The file it happened to (an index into `files`).
    pub file: Option<usize>,
    /// The remote URL of that file.
    pub remote_url: Option<String>,
    /// The HTTP status, when the server's answer was the failure.
    pub http_status: Option<u16>,
}

/// RFC 3339 in UTC, to the second.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn view(job: &Job) -> JobView {
    let proxy = match &job.client.proxy {
        ProxySetting::NoProxy => ProxyView {
            usage: "no_proxy".into(),
            proxy: None,
            bypass: Vec::new(),
        },
        ProxySetting::Override { proxy, bypass } => ProxyView {
            usage: "override".into(),
            proxy: Some(proxy.clone()),
            bypass: bypass.clone(),
        },
        _ => ProxyView {
            usage: "preconfig".into(),
            proxy: None,
            bypass: Vec::new(),
        },
    };
    JobView {
        id: job.id.to_string(),
        display_name: job.display_name.clone(),
        description: job.description.clone(),
        owner: job.owner.clone(),
        state: job.state.to_string(),
        state_number: job.state.into(),
        priority: job.priority.to_string(),
        priority_number: job.priority.into(),
        creation_time: rfc3339(job.created),
        modification_time: rfc3339(job.modified),
        transfer_completion_time: job.completed.map(rfc3339),
        bytes_total: job.bytes_total(),
        bytes_transferred: job.bytes_transferred(),
        files_total: job.files_total(),
        files_transferred: job.files_transferred(),
        error_count: job.transient_error_count,
        has_error: job.error.is_some(),
        minimum_retry_delay_secs: job.minimum_retry_delay.as_secs(),
        no_progress_timeout_secs: job.no_progress_timeout.as_secs(),
        proxy,
        credentials: job.client.credentials.as_ref().map(|c| CredentialsView {
            scheme: serde_json::to_value(c.scheme)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            user: c.user.clone(),
            password: c.has_password(),
        }),
        files: job
            .files
            .iter()
            .map(|f| FileView {
                remote_url: f.remote_url.clone(),
                local_file: f.local_file.display().to_string(),
                bytes_total: f.bytes_total,
                bytes_transferred: f.bytes_transferred,
                completed: f.completed,
            })
            .collect(),
    }
}

fn error_view(job: &Job, error: Option<&JobFailure>) -> JobErrorView {
    let Some(e) = error else {
        return JobErrorView {
            has_error: false,
            context: None,
            code: None,
            message: None,
            file: None,
            remote_url: None,
            http_status: None,
        };
    };
    JobErrorView {
        has_error: true,
        context: serde_json::to_value(e.context)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned)),
        code: Some(e.code.clone()),
        message: Some(e.message.clone()),
        file: e.file,
        remote_url: e
            .file
            .and_then(|i| job.files.get(i))
            .map(|f| f.remote_url.clone()),
        http_status: e.http_status,
    }
}

fn credentials(c: SetCredentials) -> Result<Credentials, MgmtError> {
    if c.password.is_empty() {
        return Err(MgmtError::Invalid {
            code: "invalid_password",
            message: "the password is empty".into(),
        });
    }
    let password = Password::from(c.password);
    let creds = match c.scheme.to_ascii_lowercase().as_str() {
        "basic" => Credentials::basic(c.user, password),
        "ntlm" => Credentials::ntlm(c.user, password),
        other => {
            return Err(MgmtError::Invalid {
                code: "invalid_job_setting",
                message: format!("{other:?} is not a credential scheme (basic, ntlm)"),
            })
        }
    };
    Ok(creds.allow_basic_over_http(c.allow_basic_over_http))
}

fn proxy(p: ProxyView) -> Result<ProxySetting, MgmtError> {
    let bad = |why: &str| MgmtError::Invalid {
        code: "invalid_job_setting",
        message: why.to_owned(),
    };
    match (p.usage.as_str(), p.proxy) {
        ("preconfig", None) => Ok(ProxySetting::Preconfig),
        ("no_proxy", None) => Ok(ProxySetting::NoProxy),
        ("override", Some(proxy)) => Ok(ProxySetting::Override {
            proxy,
            bypass: p.bypass,
        }),
        ("override", None) => Err(bad("proxy usage `override` needs a proxy")),
        ("preconfig" | "no_proxy", Some(_)) => Err(bad("a proxy is only given with `override`")),
        _ => Err(bad("proxy usage is `preconfig`, `no_proxy` or `override`")),
    }
}

fn not_found(id: &str) -> MgmtError {
    MgmtError::NotFound {
        code: "job_not_found",
        message: format!("no job {id}"),
    }
}

fn jobs_of(m: &Managed) -> Result<&ServiceJobs, MgmtError> {
    m.jobs().ok_or_else(|| MgmtError::NotFound {
        code: "jobs_disabled",
        message: "this service runs no jobs".into(),
    })
}

/// The job `id` if the caller may see it; another's job is "not found", exactly like a missing one.
fn visible(m: &Managed, who: &Principal, id: &str) -> Result<(JobId, Job), MgmtError> {
    let jobs = jobs_of(m)?;
    let job_id: JobId = id.parse().map_err(|_| not_found(id))?;
    let job = jobs.manager.job(job_id).map_err(|_| not_found(id))?;
    if !who.may_manage(&job.owner) {
        return Err(not_found(id));
    }
    Ok((job_id, job))
}

/// Every job the caller may see (an administrator: all).
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    responses((status = 200, body = Vec<JobView>), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(m): State<Arc<Managed>>,
    who: Principal,
) -> Result<Json<Vec<JobView>>, MgmtError> {
    let jobs = jobs_of(&m)?;
    Ok(Json(
        jobs.manager
            .jobs()
            .iter()
            .filter(|j| who.may_manage(&j.owner))
            .map(view)
            .collect(),
    ))
}

/// Creates a job (CreateJob), owned by the caller: QUEUED at once unless `suspended` (or without files).
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs", request_body = CreateJob,
    responses((status = 201, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn create(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Body(body): Body<CreateJob>,
) -> Result<(StatusCode, Json<JobView>), MgmtError> {
    let jobs = jobs_of(&m)?;
    // SECURITY: a caller who is not an administrator must not grow the service's jobs (each one memory,
    // store rows and event work) without bound: BITS's MaxJobsPerUser, whose default this is.
    let owned = || {
        jobs.manager
            .jobs()
            .iter()
            .filter(|j| j.owner == who.name)
            .count()
    };
    if !who.admin && owned() >= MAX_JOBS_PER_OWNER {
        return Err(MgmtError::Invalid {
            code: "too_many_jobs",
            message: format!(
                "a caller who is not an administrator has at most {MAX_JOBS_PER_OWNER} jobs; delete finished ones first"
            ),
        });
    }
    let mut new = NewJob::new(body.display_name)
        .description(body.description)
        .owner(who.name.clone())
        .suspended(body.suspended);
    if let Some(p) = &body.priority {
        new = new.priority(p.parse::<Priority>()?);
    }
    for f in &body.files {
        new = new.file(f.remote_url.clone(), jobs.local_path(&who, &f.local_file)?);
    }
    if let Some(s) = body.minimum_retry_delay_secs {
        new = new.minimum_retry_delay(Duration::from_secs(s));
    }
    if let Some(s) = body.no_progress_timeout_secs {
        new = new.no_progress_timeout(Duration::from_secs(s.min(u64::from(u32::MAX))));
    }
    let mut client = ClientSettings::default();
    if let Some(c) = body.credentials {
        client.credentials = Some(credentials(c)?);
    }
    if let Some(p) = body.proxy {
        client.proxy = proxy(p)?;
    }
    for pin in &body.pins {
        client
            .tls
            .pins
            .push(pin.parse::<SpkiPin>().map_err(|e| MgmtError::Invalid {
                code: "invalid_job_setting",
                message: e.to_string(),
            })?);
    }
    let job = jobs.manager.create_job(new.client(client)).await?;
    tracing::info!(target: "bits_compact::service", who = %who.name, job = %job.id, "created a job");
    Ok((StatusCode::CREATED, Json(view(&job))))
}

/// A job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
) -> Result<Json<JobView>, MgmtError> {
    let (_, job) = visible(&m, &who, &id)?;
    Ok(Json(view(&job)))
}

/// Changes a job's priority (SetPriority), MinimumRetryDelay or NoProgressTimeout.
#[utoipa::path(patch, path = "/v1/jobs/{id}", tag = "jobs", request_body = ChangeJob,
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn change(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
    Body(body): Body<ChangeJob>,
) -> Result<Json<JobView>, MgmtError> {
    let (job_id, mut job) = visible(&m, &who, &id)?;
    let manager = &jobs_of(&m)?.manager;
    let priority = body
        .priority
        .as_ref()
        .map(NameOrNumber::parse::<Priority>)
        .transpose()?;
    let delay = body.minimum_retry_delay_secs.map(Duration::from_secs);
    let timeout = body
        .no_progress_timeout_secs
        .map(|s| Duration::from_secs(s.min(u64::from(u32::MAX))));
    if delay.is_some() || timeout.is_some() {
        job = manager.set_retry_timing(job_id, delay, timeout).await?;
    }
    if let Some(p) = priority {
        job = manager.set_priority(job_id, p).await?;
    }
    Ok(Json(view(&job)))
}

/// Forgets a job that is ACKNOWLEDGED or CANCELLED.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub(crate) async fn delete(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
) -> Result<StatusCode, MgmtError> {
    let (job_id, job) = visible(&m, &who, &id)?;
    match jobs_of(&m)?.manager.forget(job_id)? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(MgmtError::Conflict {
            code: "job_not_final",
            message: format!("job {id} is {}; complete or cancel it first", job.state),
        }),
    }
}

/// Adds a file (AddFile).
#[utoipa::path(post, path = "/v1/jobs/{id}/files", tag = "jobs", request_body = NewFile,
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn add_file(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
    Body(body): Body<NewFile>,
) -> Result<Json<JobView>, MgmtError> {
    let (job_id, _) = visible(&m, &who, &id)?;
    let jobs = jobs_of(&m)?;
    let local = jobs.local_path(&who, &body.local_file)?;
    let job = jobs
        .manager
        .add_file(job_id, body.remote_url, local)
        .await?;
    Ok(Json(view(&job)))
}

/// Changes a job's state (SetJobState): 0 CANCEL, 1 COMPLETE, 2 RESUME, 3 SUSPEND.
#[utoipa::path(put, path = "/v1/jobs/{id}/state", tag = "jobs", request_body = SetState,
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn set_state(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
    Body(body): Body<SetState>,
) -> Result<Json<JobView>, MgmtError> {
    let (job_id, _) = visible(&m, &who, &id)?;
    let action = body.action.parse::<Action>()?;
    let job = jobs_of(&m)?.manager.set_state(job_id, action).await?;
    tracing::info!(target: "bits_compact::service", who = %who.name, job = %job_id, %action, "job state set");
    Ok(Json(view(&job)))
}

/// Sets a job's credentials (SetCredentials); the password is never shown again.
#[utoipa::path(put, path = "/v1/jobs/{id}/credentials", tag = "jobs", request_body = SetCredentials,
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn set_credentials(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
    Body(body): Body<SetCredentials>,
) -> Result<Json<JobView>, MgmtError> {
    replace_credentials(&m, &who, &id, Some(body)).await
}

/// Sets (or with `None` removes) a job's credentials, keeping its other client settings.
async fn replace_credentials(
    m: &Managed,
    who: &Principal,
    id: &str,
    credentials: Option<SetCredentials>,
) -> Result<Json<JobView>, MgmtError> {
    let (job_id, job) = visible(m, who, id)?;
    let mut settings = job.client.clone();
    settings.credentials = credentials.map(self::credentials).transpose()?;
    let job = jobs_of(m)?
        .manager
        .set_client_settings(job_id, settings)
        .await?;
    Ok(Json(view(&job)))
}

/// Removes a job's credentials (RemoveCredentials).
#[utoipa::path(delete, path = "/v1/jobs/{id}/credentials", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn remove_credentials(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
) -> Result<Json<JobView>, MgmtError> {
    replace_credentials(&m, &who, &id, None).await
}

/// The job's last error (GetError).
#[utoipa::path(get, path = "/v1/jobs/{id}/error", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, body = JobErrorView), (status = 404, body = ErrorBody)))]
pub(crate) async fn error(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
) -> Result<Json<JobErrorView>, MgmtError> {
    let (_, job) = visible(&m, &who, &id)?;
    Ok(Json(error_view(&job, job.error.as_ref())))
}

/// How many events may wait for a slow reader; beyond that the stream falls behind and catches up with
/// the job's current state.
const EVENTS_BUFFERED: usize = 16;
/// The least time between two `progress` events of one stream.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// A comment line this often, so that a reader that left is noticed while the job is idle.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// A job's progress and state changes as server-sent events (`state`, `progress`), starting with its
/// current state (`job`, the whole job); ends when the job reaches a final state. A reader too slow for
/// the events loses the oldest and gets the job's current state instead.
#[utoipa::path(get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = String, Path, description = "The job's id")),
    responses((status = 200, description = "A stream of events (`text/event-stream`)", content_type = "text/event-stream", body = JobStreamEvent),
        (status = 404, body = ErrorBody)))]
pub(crate) async fn events(
    State(m): State<Arc<Managed>>,
    who: Principal,
    Param(id): Param<String>,
) -> Result<Response, MgmtError> {
    let (job_id, _) = visible(&m, &who, &id)?;
    let rx = event_stream(jobs_of(&m)?.manager.clone(), job_id);
    let body = axum::body::Body::new(EventBody(rx));
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

/// The events of one job, as SSE chunks on a bounded channel: a task follows the manager's events until
/// the job is final, is gone, or the receiver is dropped.
///
/// SECURITY: the threat is a reader that never reads, holding memory. The task holds at most
/// `EVENTS_BUFFERED` chunks for it; while it waits, the manager's broadcast drops the oldest events for
/// this subscriber alone (transfers never wait), and once it can send again the reader gets the job as it
/// is now in place of what it missed.
fn event_stream(manager: JobManager, job_id: JobId) -> tokio::sync::mpsc::Receiver<bytes::Bytes> {
    // Subscribed before the first snapshot, so that nothing between them is missed.
    let mut events = manager.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(EVENTS_BUFFERED);
    tokio::spawn(async move {
        let snapshot = |manager: &JobManager| -> Option<(bytes::Bytes, bool)> {
            let job = manager.job(job_id).ok()?;
            let text = serde_json::to_string(&view(&job)).ok()?;
            Some((sse("job", &text), job.state.is_final()))
        };
        let Some((first, done)) = snapshot(&manager) else {
            return;
        };
        if tx.send(first).await.is_err() || done {
            return;
        }
        let mut last_progress: Option<tokio::time::Instant> = None;
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                () = tokio::time::sleep(KEEPALIVE) => {
                    if tx.send(bytes::Bytes::from_static(b": keepalive\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
                () = tx.closed() => return,
            };
            let (chunk, done) = match event {
                Ok(JobEvent::State {
                    id,
                    previous,
                    state,
                }) if id == job_id => {
                    let body = serde_json::json!({
                        "id": id.to_string(),
                        "previous": previous.to_string(),
                        "state": state.to_string(),
                        "state_number": u32::from(state),
                    });
                    (sse("state", &body.to_string()), state.is_final())
                }
                Ok(JobEvent::Progress { id, .. }) if id == job_id => {
                    // At most one progress event per interval; the state change that ends a transfer
                    // follows with the whole job's numbers anyway.
                    if last_progress.is_some_and(|at| at.elapsed() < PROGRESS_INTERVAL) {
                        continue;
                    }
                    last_progress = Some(tokio::time::Instant::now());
                    let Ok(job) = manager.job(job_id) else { return };
                    (sse("progress", &progress(&job).to_string()), false)
                }
                Ok(_) => continue,
                // Fell behind: what was missed is summed up by the job as it is now.
                Err(RecvError::Lagged(_)) => match snapshot(&manager) {
                    Some(s) => s,
                    None => return,
                },
                Err(RecvError::Closed) => return,
            };
            if tx.send(chunk).await.is_err() || done {
                return;
            }
        }
    });
    rx
}

/// The `progress` event's data: the job's and each file's bytes.
fn progress(job: &Job) -> serde_json::Value {
    let files: Vec<serde_json::Value> = job
        .files
        .iter()
        .map(|f| {
            serde_json::json!({
                "bytes_transferred": f.bytes_transferred,
                "bytes_total": f.bytes_total,
                "completed": f.completed,
            })
        })
        .collect();
    serde_json::json!({
        "id": job.id.to_string(),
        "bytes_transferred": job.bytes_transferred(),
        "bytes_total": job.bytes_total(),
        "files_transferred": job.files_transferred(),
        "files": files,
    })
}

/// One server-sent event of `/v1/jobs/{id}/events`, as its fields.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobStreamEvent {
    /// `job` (data: the whole job, a JobView), `state` (data: {id, previous, state, state_number}) or
    /// `progress` (data: {id, bytes_transferred, bytes_total, files_transferred, files: [{bytes_transferred,
    /// bytes_total, completed}]}, at most every 200 ms).
    pub event: String,
    /// One line of JSON.
    pub data: String,
}

/// One server-sent event (the data is one line of JSON).
fn sse(event: &str, data: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// A response body fed by a bounded channel; the stream's task ends when the reader goes.
struct EventBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl http_body::Body for EventBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that stops reading holds at most `EVENTS_BUFFERED` chunks, however many events the
    /// manager sends meanwhile; when it reads again it gets the job as it is now, and the stream ends
    /// with the job.
    #[tokio::test]
    async fn a_slow_reader_holds_a_bounded_buffer_and_catches_up_with_a_snapshot() {
        let manager = JobManager::builder().start().await.unwrap();
        let job = manager
            .create_job(NewJob::new("watched").suspended(true))
            .await
            .unwrap();
        let mut rx = event_stream(manager.clone(), job.id);
        // Each AddFile is a state event of this job: more than the buffer holds.
        for i in 0..(EVENTS_BUFFERED * 2) {
            manager
                .add_file(job.id, "http://127.0.0.1:9/f", format!("/nonexistent/{i}"))
                .await
                .unwrap();
        }
        // Then far more events than the broadcast keeps, while nobody reads.
        for i in 0..1500 {
            manager
                .create_job(NewJob::new(format!("other {i}")).suspended(true))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rx.len(), EVENTS_BUFFERED, "the buffer is full, not larger");
        let mut chunks = Vec::new();
        while let Ok(Some(chunk)) =
            tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
        {
            chunks.push(String::from_utf8(chunk.to_vec()).unwrap());
        }
        assert!(chunks[0].starts_with("event: job\n"), "{}", chunks[0]);
        let snapshots = chunks
            .iter()
            .filter(|c| c.starts_with("event: job\n"))
            .count();
        assert_eq!(
            snapshots, 2,
            "the first, and one for what was missed: {chunks:?}"
        );
        let last = chunks.last().unwrap();
        assert!(
            last.contains(&format!("\"files_total\":{}", EVENTS_BUFFERED * 2)),
            "{last}"
        );
        assert!(chunks.len() <= EVENTS_BUFFERED + 2, "{}", chunks.len());
        // The stream ends once the job is final.
        manager.set_state(job.id, Action::Cancel).await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            let mut tail = Vec::new();
            while let Some(chunk) = rx.recv().await {
                tail.push(chunk);
            }
            tail
        })
        .await
        .expect("the stream ends with the job");
        assert!(String::from_utf8_lossy(end.last().unwrap()).contains("CANCELLED"));
    }

    /// SECURITY (see `ServiceJobs::new`): a root holding the state directory, or one others may write
    /// to, is refused; the default, `downloads/` inside the state directory, is fine.
    #[tokio::test]
    async fn a_root_holding_the_state_or_open_to_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let top = tempfile::tempdir().unwrap();
        let state = top.path().join("state");
        std::fs::create_dir(&state).unwrap();
        let manager = || async { JobManager::builder().start().await.unwrap() };
        for root in [top.path().to_owned(), state.clone()] {
            let refused = ServiceJobs::new(manager().await, &root, &state);
            assert!(refused.is_err(), "{root:?} holds the state");
        }
        let open = top.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ServiceJobs::new(manager().await, &open, &state).is_err());
        let jobs = ServiceJobs::new(manager().await, &state.join("downloads"), &state).unwrap();
        assert!(jobs.root().ends_with("state/downloads"));
    }
}
