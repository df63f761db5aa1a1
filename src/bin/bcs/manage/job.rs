//! `bcs job`: download jobs run by the service (BITS jobs through the management API): create, add files,
//! list, show, watch, resume, suspend, complete, cancel, set, error, delete.

use bits_compact::service::{
    ChangeJob, CreateJob, JobErrorView, JobProgressEvent, JobStateEvent, JobView, NameOrNumber,
    NewFile, SetState,
};
use clap::{Args, Subcommand, ValueEnum};
use http::Method;
use serde_json::{json, Value};

use super::connect::{segment, Client};
use super::job_watch::{bytes, Watcher};
use super::{call, done, read, send, show, ApiArgs, ManageError, EXIT_CODES};
use crate::CliError;

#[derive(Subcommand)]
pub(crate) enum JobCommand {
    /// Create a job for one file (more with add-file); it starts at once unless --suspended.
    #[command(after_help = EXIT_CODES)]
    Create(CreateArgs),
    /// Add a file to a job.
    #[command(after_help = EXIT_CODES)]
    AddFile(AddFileArgs),
    /// List the jobs you may see (an administrator: all).
    #[command(after_help = EXIT_CODES)]
    List(ApiArgs),
    /// Show a job: state, priority, progress, files, times.
    #[command(after_help = EXIT_CODES)]
    Show(IdArgs),
    /// Follow a job's progress (a bar per file on a terminal, lines otherwise) until it is TRANSFERRED
    /// (exit 0), or ends in ERROR or CANCELLED (exit 1).
    #[command(after_help = EXIT_CODES)]
    Watch(IdArgs),
    /// Start a suspended job, or retry one in error at once.
    #[command(after_help = EXIT_CODES)]
    Resume(IdArgs),
    /// Stop a job until resumed.
    #[command(after_help = EXIT_CODES)]
    Suspend(IdArgs),
    /// Put a TRANSFERRED job's files under their names (ACKNOWLEDGED).
    #[command(after_help = EXIT_CODES)]
    Complete(IdArgs),
    /// Cancel a job and delete its temporary files (CANCELLED).
    #[command(after_help = EXIT_CODES)]
    Cancel(IdArgs),
    /// Change a job's priority, retry delay or no-progress timeout.
    #[command(after_help = EXIT_CODES)]
    Set(SetArgs),
    /// Show a job's last error.
    #[command(after_help = EXIT_CODES)]
    Error(IdArgs),
    /// Forget a job that is ACKNOWLEDGED or CANCELLED.
    #[command(after_help = EXIT_CODES)]
    Delete(IdArgs),
}

/// A job priority, first served first.
#[derive(Clone, Copy, ValueEnum)]
enum PriorityArg {
    Foreground,
    High,
    Normal,
    Low,
}

impl PriorityArg {
    fn name(self) -> &'static str {
        match self {
            PriorityArg::Foreground => "FOREGROUND",
            PriorityArg::High => "HIGH",
            PriorityArg::Normal => "NORMAL",
            PriorityArg::Low => "LOW",
        }
    }
}

#[derive(Args)]
pub(crate) struct CreateArgs {
    /// The job's display name.
    name: String,
    /// The remote file (http:// or https://).
    url: String,
    /// Where it goes on the service: relative to its download root, or an absolute path inside it.
    dest: String,
    /// Keep the job SUSPENDED until `bcs job resume`.
    #[arg(long)]
    suspended: bool,
    /// A description.
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    api: ApiArgs,
}

/// What `create` and `set` may set.
#[derive(Args)]
struct SettingsArgs {
    /// Its priority.
    #[arg(long, value_enum)]
    priority: Option<PriorityArg>,
    /// Seconds to wait after a transient error before retrying (at least 5; default 600).
    #[arg(long, value_name = "SECS")]
    retry_delay: Option<u64>,
    /// Seconds without progress after which a failing job is an ERROR (default 14 days).
    #[arg(long, value_name = "SECS")]
    no_progress_timeout: Option<u64>,
}

impl SettingsArgs {
    /// The settings given, as `PATCH /v1/jobs/{id}`'s body (a `ChangeJob`); `create` sends the same.
    fn change(&self) -> ChangeJob {
        ChangeJob {
            priority: self
                .priority
                .map(|p| NameOrNumber::Name(p.name().to_owned())),
            minimum_retry_delay_secs: self.retry_delay,
            no_progress_timeout_secs: self.no_progress_timeout,
        }
    }
}

#[derive(Args)]
pub(crate) struct AddFileArgs {
    /// The job's id.
    id: String,
    /// The remote file (http:// or https://).
    url: String,
    /// Where it goes on the service: relative to its download root, or an absolute path inside it.
    dest: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub(crate) struct IdArgs {
    /// The job's id.
    id: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub(crate) struct SetArgs {
    /// The job's id.
    id: String,
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    api: ApiArgs,
}

pub(crate) async fn run(command: JobCommand) -> Result<(), CliError> {
    match command {
        JobCommand::Create(args) => create(&args).await,
        JobCommand::AddFile(args) => {
            let body = file_body(&args.url, &args.dest);
            let path = format!("/v1/jobs/{}/files", segment(&args.id));
            let job = send(&args.api, Method::POST, &path, &body).await?;
            show(&args.api, &job, |job: JobView| print_job(&job))?;
            Ok(())
        }
        JobCommand::List(api) => {
            let jobs = call(&api, Method::GET, "/v1/jobs", None).await?;
            show(&api, &jobs, |jobs: Vec<JobView>| {
                if jobs.is_empty() {
                    note!("bcs: no jobs");
                }
                for job in &jobs {
                    say_safe!("{}", summary(job));
                }
            })?;
            Ok(())
        }
        JobCommand::Show(args) => {
            let path = format!("/v1/jobs/{}", segment(&args.id));
            let job = call(&args.api, Method::GET, &path, None).await?;
            show(&args.api, &job, |job: JobView| print_job(&job))?;
            Ok(())
        }
        JobCommand::Watch(args) => watch(&args).await,
        JobCommand::Resume(args) => action(&args, "RESUME").await,
        JobCommand::Suspend(args) => action(&args, "SUSPEND").await,
        JobCommand::Complete(args) => action(&args, "COMPLETE").await,
        JobCommand::Cancel(args) => action(&args, "CANCEL").await,
        JobCommand::Set(args) => set(&args).await,
        JobCommand::Error(args) => {
            let path = format!("/v1/jobs/{}/error", segment(&args.id));
            let error = call(&args.api, Method::GET, &path, None).await?;
            show(&args.api, &error, |e: JobErrorView| {
                match describe_error(&e) {
                    None => say!("no error"),
                    Some(text) => say_safe!("{text}"),
                }
            })?;
            Ok(())
        }
        JobCommand::Delete(args) => {
            let path = format!("/v1/jobs/{}", segment(&args.id));
            call(&args.api, Method::DELETE, &path, None).await?;
            done(&args.api, || note_safe!("bcs: deleted job {}", args.id));
            Ok(())
        }
    }
}

/// `POST /v1/jobs`'s body (a `CreateJob`).
fn create_body(args: &CreateArgs) -> CreateJob {
    let settings = args.settings.change();
    CreateJob {
        display_name: args.name.clone(),
        description: args.description.clone().unwrap_or_default(),
        files: vec![file_body(&args.url, &args.dest)],
        priority: settings.priority,
        suspended: args.suspended,
        credentials: None,
        proxy: None,
        pins: Vec::new(),
        minimum_retry_delay_secs: settings.minimum_retry_delay_secs,
        no_progress_timeout_secs: settings.no_progress_timeout_secs,
    }
}

/// A file of a job (`POST /v1/jobs/{id}/files`'s body).
fn file_body(url: &str, dest: &str) -> NewFile {
    NewFile {
        remote_url: url.to_owned(),
        local_file: dest.to_owned(),
    }
}

/// `PUT /v1/jobs/{id}/state`'s body.
fn state_body(action: &str) -> SetState {
    SetState {
        action: NameOrNumber::Name(action.to_owned()),
    }
}

async fn create(args: &CreateArgs) -> Result<(), CliError> {
    let job = send(&args.api, Method::POST, "/v1/jobs", &create_body(args)).await?;
    show(&args.api, &job, |job: JobView| {
        say_safe!("{}", job.id);
        note_safe!("bcs: created job {} ({})", job.display_name, job.state);
    })?;
    Ok(())
}

async fn action(args: &IdArgs, name: &str) -> Result<(), CliError> {
    let path = format!("/v1/jobs/{}/state", segment(&args.id));
    let job = send(&args.api, Method::PUT, &path, &state_body(name)).await?;
    show(&args.api, &job, |job: JobView| {
        note_safe!("bcs: job {} is {}", job.id, job.state)
    })?;
    Ok(())
}

async fn set(args: &SetArgs) -> Result<(), CliError> {
    let body = args.settings.change();
    let nothing = body.priority.is_none()
        && body.minimum_retry_delay_secs.is_none()
        && body.no_progress_timeout_secs.is_none();
    if nothing {
        return Err(ManageError::Invalid(
            "nothing to set: give --priority, --retry-delay or --no-progress-timeout".into(),
        )
        .into());
    }
    let path = format!("/v1/jobs/{}", segment(&args.id));
    let job = send(&args.api, Method::PATCH, &path, &body).await?;
    show(&args.api, &job, |job: JobView| print_job(&job))?;
    Ok(())
}

/// `REMOTE_FILE http_404: not found` with the file's URL, or `None` when the job has no error.
fn describe_error(e: &JobErrorView) -> Option<String> {
    if !e.has_error {
        return None;
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut line = format!(
        "{} {}: {}",
        text(&e.context),
        text(&e.code),
        text(&e.message)
    );
    if let Some(url) = &e.remote_url {
        line.push_str(&format!(" (file {url})"));
    }
    Some(line)
}

/// `ID  STATE  PRIORITY  bytes  files  NAME (owner)`.
fn summary(job: &JobView) -> String {
    format!(
        "{}  {:<15} {:<10} {}  {}/{} files  {} ({})",
        job.id,
        job.state,
        job.priority,
        bytes(job.bytes_transferred, job.bytes_total),
        job.files_transferred,
        job.files_total,
        job.display_name,
        job.owner,
    )
}

fn print_job(job: &JobView) {
    say_safe!("{}  {}", job.id, job.display_name);
    if !job.description.is_empty() {
        say_safe!("  description: {}", job.description);
    }
    say_safe!(
        "  state: {} ({}), priority: {} ({}), owner: {}",
        job.state,
        job.state_number,
        job.priority,
        job.priority_number,
        job.owner
    );
    say!(
        "  progress: {}, {}/{} files, {} transient errors",
        bytes(job.bytes_transferred, job.bytes_total),
        job.files_transferred,
        job.files_total,
        job.error_count
    );
    let transferred = job
        .transfer_completion_time
        .as_ref()
        .map_or_else(String::new, |t| format!(", transferred {t}"));
    say_safe!(
        "  created {}, modified {}{transferred}",
        job.creation_time,
        job.modification_time
    );
    say!(
        "  retry delay {} s, no-progress timeout {} s",
        job.minimum_retry_delay_secs,
        job.no_progress_timeout_secs
    );
    if let Some(c) = &job.credentials {
        say_safe!("  credentials: {} {}", c.scheme, c.user);
    }
    for f in &job.files {
        say_safe!(
            "  {} -> {}  {}{}",
            f.remote_url,
            f.local_file,
            bytes(f.bytes_transferred, f.bytes_total),
            if f.completed { " done" } else { "" }
        );
    }
    if job.has_error {
        say_safe!("  has an error: see `bcs job error {}`", job.id);
    }
}

/// Whether a state ends `watch`.
fn is_end(state: &str) -> bool {
    matches!(
        state,
        "TRANSFERRED" | "ACKNOWLEDGED" | "ERROR" | "CANCELLED"
    )
}

/// Follows `/v1/jobs/{id}/events` until the job is TRANSFERRED or ends.
async fn watch(args: &IdArgs) -> Result<(), CliError> {
    let client = Client::new(&args.api)?;
    let path = format!("/v1/jobs/{}/events", segment(&args.id));
    let mut watcher = Watcher::new(args.api.json);
    let mut end: Option<String> = None;
    client
        .events(&path, |event, data| {
            let Ok(value) = serde_json::from_str::<Value>(data) else {
                return true;
            };
            if args.api.json {
                let line = json!({"event": event, "data": value}).to_string();
                say!("{}", crate::print::json_safe(line));
            }
            let state = match event {
                "job" => match read::<JobView>(&value) {
                    Ok(job) => {
                        watcher.job(&job);
                        job.state
                    }
                    Err(_) => return true,
                },
                "progress" => {
                    if let Ok(progress) = read::<JobProgressEvent>(&value) {
                        watcher.files(&progress.files);
                    }
                    return true;
                }
                "state" => match read::<JobStateEvent>(&value) {
                    Ok(change) => change.state,
                    Err(_) => return true,
                },
                _ => return true,
            };
            watcher.line(&format!("state: {state}"));
            match is_end(&state) {
                true => {
                    end = Some(state);
                    false
                }
                false => true,
            }
        })
        .await?;
    // The last numbers, whole (progress events are thinned out by the service).
    let job_path = format!("/v1/jobs/{}", segment(&args.id));
    if let Ok(answer) = client.fetch(Method::GET, &job_path, None).await {
        if let Ok(job) = read::<JobView>(&answer.body) {
            watcher.job(&job);
        }
    }
    watcher.finish();
    match end.as_deref() {
        Some("TRANSFERRED" | "ACKNOWLEDGED") => Ok(()),
        Some("ERROR") => {
            let why = job_error(&client, &args.id).await;
            let why = why.map_or_else(String::new, |e| format!(": {e}"));
            Err(ManageError::Ended(format!("job {} is ERROR{why}", args.id)).into())
        }
        Some(state) => Err(ManageError::Ended(format!("job {} is {state}", args.id)).into()),
        None => Err(
            ManageError::Ended(format!("the event stream of job {} ended early", args.id)).into(),
        ),
    }
}

/// A job's error in one line, when the service gives it.
async fn job_error(client: &Client, id: &str) -> Option<String> {
    let path = format!("/v1/jobs/{}/error", segment(id));
    let answer = client.fetch(Method::GET, &path, None).await.ok()?;
    describe_error(&read::<JobErrorView>(&answer.body).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Create {
        #[command(flatten)]
        args: CreateArgs,
    }

    /// What the CLI sends is the library's request types: a field renamed there fails here.
    #[test]
    fn bodies_are_the_librarys_requests() {
        let cli = Create::try_parse_from([
            "create",
            "nightly",
            "http://h/a",
            "a/a",
            "--suspended",
            "--description",
            "d",
            "--priority",
            "high",
            "--retry-delay",
            "30",
            "--no-progress-timeout",
            "90",
        ])
        .unwrap();
        let body = serde_json::to_value(create_body(&cli.args)).unwrap();
        assert_eq!(
            body,
            json!({
                "display_name": "nightly", "description": "d",
                "files": [{"remote_url": "http://h/a", "local_file": "a/a"}],
                "priority": "HIGH", "suspended": true,
                "minimum_retry_delay_secs": 30, "no_progress_timeout_secs": 90,
            })
        );
        let job: CreateJob = serde_json::from_value(body).unwrap();
        assert_eq!(job.display_name, "nightly");
        assert_eq!(job.files.len(), 1);
        assert!(job.suspended);
        assert_eq!(job.minimum_retry_delay_secs, Some(30));
        let file = serde_json::to_value(file_body("http://h/b", "b")).unwrap();
        let file: NewFile = serde_json::from_value(file).unwrap();
        assert_eq!(file.local_file, "b");
        let state = serde_json::to_value(state_body("CANCEL")).unwrap();
        assert_eq!(state, json!({"action": "CANCEL"}));
        let _: SetState = serde_json::from_value(state).unwrap();
        let change = serde_json::to_value(cli.args.settings.change()).unwrap();
        let change: ChangeJob = serde_json::from_value(change).unwrap();
        assert_eq!(change.no_progress_timeout_secs, Some(90));
        // What is not given is not sent: the service's defaults apply.
        let plain = Create::try_parse_from(["create", "n", "http://h/a", "a"]).unwrap();
        assert_eq!(
            serde_json::to_value(create_body(&plain.args)).unwrap(),
            json!({"display_name": "n", "files": [{"remote_url": "http://h/a", "local_file": "a"}], "suspended": false})
        );
    }

    #[test]
    fn errors_read_in_one_line() {
        let e: JobErrorView = serde_json::from_value(json!({
            "has_error": true, "context": "REMOTE_FILE", "code": "http_404", "message": "not found",
            "file": 0, "remote_url": "http://h/a", "http_status": 404,
        }))
        .unwrap();
        assert_eq!(
            describe_error(&e).unwrap(),
            "REMOTE_FILE http_404: not found (file http://h/a)"
        );
    }

    /// What the service's event stream sends reads as the library's event types, every field known: read
    /// and written again, each is the same JSON.
    #[test]
    fn events_are_the_librarys_event_types() {
        let state = r#"{"id":"j1","previous":"QUEUED","state":"TRANSFERRING","state_number":4}"#;
        let read: JobStateEvent = serde_json::from_str(state).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), state);
        let progress = r#"{"bytes_total":10,"bytes_transferred":4,"files":[{"bytes_total":10,"bytes_transferred":4,"completed":false}],"files_transferred":0,"id":"j1"}"#;
        let read: JobProgressEvent = serde_json::from_str(progress).unwrap();
        assert_eq!(serde_json::to_string(&read).unwrap(), progress);
    }
}
