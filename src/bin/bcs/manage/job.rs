//! `bcs job`: download jobs run by the service (BITS jobs through the management API): create, add files,
//! list, show, watch, resume, suspend, complete, cancel, set, error, delete.

use std::collections::HashMap;
use std::io::IsTerminal;

use clap::{Args, Subcommand, ValueEnum};
use http::Method;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use super::connect::{segment, Client};
use super::{call, field, show, ApiArgs, ManageError, EXIT_CODES};
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
    /// Adds the settings given to a request body.
    fn add_to(&self, body: &mut Value) {
        if let Some(p) = self.priority {
            body["priority"] = json!(p.name());
        }
        if let Some(s) = self.retry_delay {
            body["minimum_retry_delay_secs"] = json!(s);
        }
        if let Some(s) = self.no_progress_timeout {
            body["no_progress_timeout_secs"] = json!(s);
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
            let body = json!({"remote_url": args.url, "local_file": args.dest});
            let path = format!("/v1/jobs/{}/files", segment(&args.id));
            let job = call(&args.api, Method::POST, &path, Some(&body)).await?;
            show(&args.api, &job, print_job);
            Ok(())
        }
        JobCommand::List(api) => {
            let jobs = call(&api, Method::GET, "/v1/jobs", None).await?;
            show(&api, &jobs, |jobs| {
                for job in jobs.as_array().into_iter().flatten() {
                    say!("{}", summary(job));
                }
            });
            Ok(())
        }
        JobCommand::Show(args) => {
            let path = format!("/v1/jobs/{}", segment(&args.id));
            let job = call(&args.api, Method::GET, &path, None).await?;
            show(&args.api, &job, print_job);
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
            show(&args.api, &error, |e| {
                if e.get("has_error") != Some(&Value::Bool(true)) {
                    say!("no error");
                    return;
                }
                say!(
                    "{} {}: {}",
                    field(e, "context"),
                    field(e, "code"),
                    field(e, "message")
                );
                let url = field(e, "remote_url");
                if !url.is_empty() {
                    say!("  file: {url}");
                }
            });
            Ok(())
        }
        JobCommand::Delete(args) => {
            let path = format!("/v1/jobs/{}", segment(&args.id));
            let body = call(&args.api, Method::DELETE, &path, None).await?;
            show(&args.api, &body, |_| note!("bcs: deleted job {}", args.id));
            Ok(())
        }
    }
}

async fn create(args: &CreateArgs) -> Result<(), CliError> {
    let mut body = json!({
        "display_name": args.name,
        "files": [{"remote_url": args.url, "local_file": args.dest}],
        "suspended": args.suspended,
    });
    if let Some(d) = &args.description {
        body["description"] = json!(d);
    }
    args.settings.add_to(&mut body);
    let job = call(&args.api, Method::POST, "/v1/jobs", Some(&body)).await?;
    show(&args.api, &job, |job| {
        say!("{}", field(job, "id"));
        note!(
            "bcs: created job {} ({})",
            field(job, "display_name"),
            field(job, "state")
        );
    });
    Ok(())
}

async fn action(args: &IdArgs, name: &str) -> Result<(), CliError> {
    let path = format!("/v1/jobs/{}/state", segment(&args.id));
    let job = call(
        &args.api,
        Method::PUT,
        &path,
        Some(&json!({"action": name})),
    )
    .await?;
    show(&args.api, &job, |job| {
        note!("bcs: job {} is {}", field(job, "id"), field(job, "state"))
    });
    Ok(())
}

async fn set(args: &SetArgs) -> Result<(), CliError> {
    let mut body = json!({});
    args.settings.add_to(&mut body);
    if body.as_object().is_some_and(|o| o.is_empty()) {
        return Err(ManageError::Invalid(
            "nothing to set: give --priority, --retry-delay or --no-progress-timeout".into(),
        )
        .into());
    }
    let path = format!("/v1/jobs/{}", segment(&args.id));
    let job = call(&args.api, Method::PATCH, &path, Some(&body)).await?;
    show(&args.api, &job, print_job);
    Ok(())
}

/// `ID  STATE  PRIORITY  bytes  files  NAME (owner)`.
fn summary(job: &Value) -> String {
    format!(
        "{}  {:<15} {:<10} {}  {}/{} files  {} ({})",
        field(job, "id"),
        field(job, "state"),
        field(job, "priority"),
        bytes(job),
        field(job, "files_transferred"),
        field(job, "files_total"),
        field(job, "display_name"),
        field(job, "owner"),
    )
}

/// `transferred/total bytes`, the total `?` while unknown.
fn bytes(v: &Value) -> String {
    let total = match field(v, "bytes_total") {
        t if t.is_empty() => "?".to_owned(),
        t => t,
    };
    format!("{}/{} bytes", field(v, "bytes_transferred"), total)
}

fn print_job(job: &Value) {
    say!("{}  {}", field(job, "id"), field(job, "display_name"));
    let description = field(job, "description");
    if !description.is_empty() {
        say!("  description: {description}");
    }
    say!(
        "  state: {} ({}), priority: {} ({}), owner: {}",
        field(job, "state"),
        field(job, "state_number"),
        field(job, "priority"),
        field(job, "priority_number"),
        field(job, "owner")
    );
    say!(
        "  progress: {}, {}/{} files, {} transient errors",
        bytes(job),
        field(job, "files_transferred"),
        field(job, "files_total"),
        field(job, "error_count")
    );
    say!(
        "  created {}, modified {}{}",
        field(job, "creation_time"),
        field(job, "modification_time"),
        match field(job, "transfer_completion_time") {
            t if t.is_empty() => String::new(),
            t => format!(", transferred {t}"),
        }
    );
    say!(
        "  retry delay {} s, no-progress timeout {} s",
        field(job, "minimum_retry_delay_secs"),
        field(job, "no_progress_timeout_secs")
    );
    if let Some(c) = job.get("credentials").filter(|c| !c.is_null()) {
        say!("  credentials: {} {}", field(c, "scheme"), field(c, "user"));
    }
    for f in job
        .get("files")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        say!(
            "  {} -> {}  {}{}",
            field(f, "remote_url"),
            field(f, "local_file"),
            bytes(f),
            if f.get("completed") == Some(&Value::Bool(true)) {
                " done"
            } else {
                ""
            }
        );
    }
    if job.get("has_error") == Some(&Value::Bool(true)) {
        say!("  has an error: see `bcs job error {}`", field(job, "id"));
    }
}

/// How `watch` shows what happens: a bar per file on a terminal, lines otherwise, JSON lines with --json.
enum Watcher {
    Bars {
        multi: MultiProgress,
        bars: Vec<ProgressBar>,
    },
    Lines {
        shown: HashMap<usize, u64>,
    },
    Json,
}

impl Watcher {
    fn new(json: bool) -> Watcher {
        if json {
            Watcher::Json
        } else if std::io::stderr().is_terminal() {
            Watcher::Bars {
                multi: MultiProgress::new(),
                bars: Vec::new(),
            }
        } else {
            Watcher::Lines {
                shown: HashMap::new(),
            }
        }
    }

    /// The files' numbers (from a `job` or a `progress` event).
    fn files(&mut self, files: &[Value]) {
        match self {
            Watcher::Bars { multi, bars } => {
                let style = ProgressStyle::with_template(
                    "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar());
                for (i, f) in files.iter().enumerate() {
                    if bars.len() <= i {
                        let bar = multi.add(ProgressBar::new(0));
                        bar.set_style(style.clone());
                        let name = field(f, "local_file");
                        let name = name.rsplit('/').next().unwrap_or_default().to_owned();
                        bar.set_prefix(if name.is_empty() {
                            format!("#{i}")
                        } else {
                            name
                        });
                        bars.push(bar);
                    }
                    let bar = &bars[i];
                    if let Some(total) = f.get("bytes_total").and_then(Value::as_u64) {
                        bar.set_length(total);
                    }
                    if let Some(done) = f.get("bytes_transferred").and_then(Value::as_u64) {
                        bar.set_position(done);
                    }
                }
            }
            Watcher::Lines { shown } => {
                for (i, f) in files.iter().enumerate() {
                    let done = f
                        .get("bytes_transferred")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    if shown.insert(i, done) != Some(done) {
                        note!("file {i}: {}", bytes(f));
                    }
                }
            }
            Watcher::Json => {}
        }
    }

    fn line(&self, text: &str) {
        match self {
            Watcher::Bars { multi, .. } => {
                let _ = multi.println(text);
            }
            Watcher::Lines { .. } => note!("{text}"),
            Watcher::Json => {}
        }
    }

    fn finish(&self) {
        if let Watcher::Bars { bars, .. } = self {
            for bar in bars {
                bar.finish();
            }
        }
    }
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
                say!("{}", json!({"event": event, "data": value}));
            }
            let state = match event {
                "job" => {
                    let files = value.get("files").and_then(Value::as_array);
                    watcher.files(files.map(Vec::as_slice).unwrap_or_default());
                    watcher.line(&format!("state: {}", field(&value, "state")));
                    field(&value, "state")
                }
                "progress" => {
                    let files = value.get("files").and_then(Value::as_array);
                    watcher.files(files.map(Vec::as_slice).unwrap_or_default());
                    return true;
                }
                "state" => {
                    watcher.line(&format!("state: {}", field(&value, "state")));
                    field(&value, "state")
                }
                _ => return true,
            };
            match state.as_str() {
                "TRANSFERRED" | "ACKNOWLEDGED" | "ERROR" | "CANCELLED" => {
                    end = Some(state);
                    false
                }
                _ => true,
            }
        })
        .await?;
    // The last numbers, whole (progress events are thinned out by the service).
    if let Ok(job) = client
        .fetch(
            Method::GET,
            &format!("/v1/jobs/{}", segment(&args.id)),
            None,
        )
        .await
    {
        if let Some(files) = job.body.get("files").and_then(Value::as_array) {
            watcher.files(files);
        }
    }
    watcher.finish();
    match end.as_deref() {
        Some("TRANSFERRED" | "ACKNOWLEDGED") => Ok(()),
        Some(state) => Err(ManageError::Ended(format!("job {} is {state}", args.id)).into()),
        None => Err(
            ManageError::Ended(format!("the event stream of job {} ended early", args.id)).into(),
        ),
    }
}
