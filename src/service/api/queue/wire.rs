//! The wire types of `/v1/jobs`: a job as the API shows it (every BITS job property), what a caller sends
//! to make or change one, and the conversions between them and the job manager's types. Credentials are
//! accepted here and never returned: a job shows its scheme, user and whether a password is set.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Password;
use crate::client::{Credentials, ProxySetting};
use crate::jobs::{Job, JobFailure};
use crate::service::api::fields::{self, DESCRIPTION, NAME, PATH, SECRET, URL};
use crate::service::error::MgmtError;

/// The most files a job takes: BITS's MaxFilesPerJob, which the job manager enforces too. Checked before
/// anything else, so that a request with more costs no work.
pub(super) const MAX_FILES: usize = 200;

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
    /// When it ended (RFC 3339), once ACKNOWLEDGED or CANCELLED: it stays listed, across restarts, until
    /// deleted or until the service's job retention (`bcs serve --job-retention`, default 7 days) has
    /// passed since.
    #[serde(default)]
    pub end_time: Option<String>,
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

/// Credentials to set (SetCredentials). Its `Debug` never shows the password.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
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

/// SECURITY: the threat is a password reaching a log through `{:?}` of a request (or of a `CreateJob`
/// holding it); it is redacted.
impl std::fmt::Debug for SetCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetCredentials")
            .field("scheme", &self.scheme)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("allow_basic_over_http", &self.allow_basic_over_http)
            .finish()
    }
}

/// A file to add: a remote URL and where it goes (relative to the download root, or an absolute path in
/// it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFile {
    /// `http://` or `https://` URL.
    pub remote_url: String,
    /// Where the file goes, inside the download root.
    pub local_file: String,
}

/// A priority or an action, by name or by number.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum NameOrNumber {
    /// The number.
    Number(u32),
    /// The name (any case).
    Name(String),
}

impl NameOrNumber {
    pub(super) fn parse<T: std::str::FromStr<Err = crate::jobs::UnknownValue>>(
        &self,
    ) -> Result<T, MgmtError> {
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// DisplayName.
    pub display_name: String,
    /// Description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Its files.
    #[serde(default)]
    pub files: Vec<NewFile>,
    /// Priority (name or number). Default NORMAL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<NameOrNumber>,
    /// Stay SUSPENDED until resumed. Default: the job starts at once.
    #[serde(default)]
    pub suspended: bool,
    /// Credentials for the servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<SetCredentials>,
    /// Proxy usage. Default `preconfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxyView>,
    /// Public keys to accept for https servers (`sha256//BASE64`), instead of the system's roots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<String>,
    /// MinimumRetryDelay, seconds (at least 5). Default 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_retry_delay_secs: Option<u64>,
    /// NoProgressTimeout, seconds. Default 1209600 (14 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_progress_timeout_secs: Option<u64>,
}

impl CreateJob {
    /// Every field within its bound and free of control characters (see `fields`), at most
    /// [`MAX_FILES`] files: checked before anything is made of the request.
    pub(super) fn check(&self) -> Result<(), MgmtError> {
        fields::few("files", &self.files, MAX_FILES)?;
        fields::printable("display_name", &self.display_name, NAME)?;
        fields::printable("description", &self.description, DESCRIPTION)?;
        for (i, file) in self.files.iter().enumerate() {
            file.check(&format!("files[{i}]."))?;
        }
        if let Some(p) = &self.priority {
            p.check("priority")?;
        }
        if let Some(c) = &self.credentials {
            c.check()?;
        }
        if let Some(p) = &self.proxy {
            p.check()?;
        }
        fields::each("pins", &self.pins, |f, v| fields::printable(f, v, NAME))
    }
}

impl NewFile {
    /// Its URL and file name within their bounds and free of control characters; `field` prefixes the
    /// names in an error (`files[3].`).
    pub(super) fn check(&self, field: &str) -> Result<(), MgmtError> {
        fields::printable(&format!("{field}remote_url"), &self.remote_url, URL)?;
        fields::printable(&format!("{field}local_file"), &self.local_file, PATH)
    }
}

impl NameOrNumber {
    /// A name within its bound and free of control characters (an unknown one is echoed in the error).
    pub(super) fn check(&self, field: &str) -> Result<(), MgmtError> {
        match self {
            NameOrNumber::Number(_) => Ok(()),
            NameOrNumber::Name(name) => fields::printable(field, name, NAME),
        }
    }
}

impl SetCredentials {
    /// The user within its bound and free of control characters (it is shown); the password bounded.
    pub(super) fn check(&self) -> Result<(), MgmtError> {
        fields::printable("credentials.scheme", &self.scheme, NAME)?;
        fields::printable("credentials.user", &self.user, NAME)?;
        fields::bounded("credentials.password", &self.password, SECRET)
    }
}

impl ProxyView {
    /// Its fields within their bounds and free of control characters (they are shown).
    pub(super) fn check(&self) -> Result<(), MgmtError> {
        fields::printable("proxy.usage", &self.usage, NAME)?;
        if let Some(proxy) = &self.proxy {
            fields::printable("proxy.proxy", proxy, URL)?;
        }
        fields::each("proxy.bypass", &self.bypass, |f, v| {
            fields::printable(f, v, NAME)
        })
    }
}

impl ChangeJob {
    /// Its priority's name, when given by name, within its bound.
    pub(super) fn check(&self) -> Result<(), MgmtError> {
        match &self.priority {
            Some(p) => p.check("priority"),
            None => Ok(()),
        }
    }
}

/// A state change (SetJobState).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetState {
    /// 0 CANCEL, 1 COMPLETE, 2 RESUME, 3 SUSPEND (number or name).
    pub action: NameOrNumber,
}

/// Settings to change; those not given stay.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeJob {
    /// Priority (name or number).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<NameOrNumber>,
    /// MinimumRetryDelay, seconds (at least 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_retry_delay_secs: Option<u64>,
    /// NoProgressTimeout, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// The `state` event of `/v1/jobs/{id}/events`: the job went from `previous` to `state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobStateEvent {
    /// JobId.
    pub id: String,
    /// The state it left, by name.
    pub previous: String,
    /// The state it is in now, by name (`QUEUED` ... `CANCELLED`).
    pub state: String,
    /// The state it is in now, by number (BG_JOB_STATE).
    pub state_number: u32,
}

/// The `progress` event of `/v1/jobs/{id}/events`: the job's and each file's bytes. The fields are in the
/// order the stream has always sent them (alphabetical).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobProgressEvent {
    /// BytesTotal; null while a file's size is unknown.
    pub bytes_total: Option<u64>,
    /// BytesTransferred.
    pub bytes_transferred: u64,
    /// Each file's numbers, in the job's order.
    pub files: Vec<JobFileProgress>,
    /// FilesTransferred.
    pub files_transferred: usize,
    /// JobId.
    pub id: String,
}

/// One file's numbers in a [`JobProgressEvent`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobFileProgress {
    /// BytesTotal; null while unknown.
    pub bytes_total: Option<u64>,
    /// BytesTransferred.
    pub bytes_transferred: u64,
    /// Whether all of it is on disk.
    pub completed: bool,
}

/// RFC 3339 in UTC, to the second.
pub(super) fn rfc3339(t: SystemTime) -> String {
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

/// A job as the API shows it.
pub(super) fn view(job: &Job) -> JobView {
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
        end_time: job.state.is_final().then(|| rfc3339(job.modified)),
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

/// A job's last error as GetError shows it.
pub(super) fn error_view(job: &Job, error: Option<&JobFailure>) -> JobErrorView {
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

/// Credentials as the job manager keeps them; an empty password or an unknown scheme is refused.
pub(super) fn credentials(c: SetCredentials) -> Result<Credentials, MgmtError> {
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

/// Proxy usage as the job manager takes it.
pub(super) fn proxy(p: ProxyView) -> Result<ProxySetting, MgmtError> {
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
