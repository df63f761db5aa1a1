//! The management commands (`bcs group`, `url`, `auth`, `limit`, `cert`, `job`, `user` without
//! `--users`, `export`, `apply`): each is a request to `bcs serve`'s management API (`apply` first reads
//! the configuration to say what it changes) whose body is the library's own request type (`send`), its
//! answer read as the library's own type for it (`bits_compact::service`) and printed as text, or with `--json` as the API's JSON (`limit` prints the
//! group's two limit fields; `apply` its changes). What the service sent is escaped for the terminal
//! either way. The service is found by `--server`, else by its state directory (`--state`, else as
//! `bcs serve` finds it).
//!
//! Exit status (also in each command's `--help`): 0 success; 1 any other error, the service's 5xx
//! included; 2 invalid (usage errors, and HTTP 400, 409, 413, 422); 3 not found (HTTP 404); 4 refused
//! (HTTP 401, 403); 5 unreachable (no socket, connection refused, TLS handshake failed, timed out; and a
//! fleet's etcd below quorum, HTTP 503 `fleet_unavailable`).
//!
//! Requests, for the record (`{p}`, `{s}`, `{n}`: percent-encoded path segments):
//!
//! | command                               | request                                              |
//! |---------------------------------------|------------------------------------------------------|
//! | `group create P [opts]`               | `POST /v1/groups` `{"prefix", "auth"?, ...}`         |
//! | `group delete P` / `show P` / `list`  | `DELETE`/`GET /v1/groups/{p}`, `GET /v1/groups`      |
//! | `url add P S FILE [--sddl]`           | `POST /v1/groups/{p}/urls` `{"suffix","file","sddl"?}` |
//! | `url remove` / `check P S`            | `DELETE` / `GET /v1/groups/{p}/urls/{s}`             |
//! | `url list P`                          | `GET /v1/groups/{p}/urls`                            |
//! | `auth set P SCHEME on\|off`           | `PUT /v1/groups/{p}/auth/{scheme}` `{"enabled"}`     |
//! | `auth show P`                         | `GET /v1/groups/{p}/auth`                            |
//! | `limit set P NAME VALUE`              | `PATCH /v1/groups/{p}` `{"connection_limit"}` (or bandwidth) |
//! | `limit show P`                        | `GET /v1/groups/{p}`                                 |
//! | `cert set PORT [--sni N] source`      | `PUT /v1/certificates/{port}[/sni/{n}]` `{"source"}` |
//! | `cert show [PORT]`                    | `GET /v1/certificates[/{port}]`                      |
//! | `cert remove PORT [--sni N]`          | `DELETE /v1/certificates/{port}[/sni/{n}]`           |
//! | `user add N [--group G]...`           | `PUT /v1/users/{n}` `{"password","groups"?}`         |
//! | `user remove N` / `user list`         | `DELETE /v1/users/{n}` / `GET /v1/users`             |
//! | `export`                              | `GET /v1/config`                                     |
//! | `apply FILE [--prune] [--dry-run]`    | `GET /v1/config`, then `PUT /v1/config?prune=false\|true` |
//! | `job create N URL DEST [opts]`        | `POST /v1/jobs` `{"display_name","files",...}`       |
//! | `job add-file ID URL DEST`            | `POST /v1/jobs/{id}/files` `{"remote_url","local_file"}` |
//! | `job list` / `show ID` / `error ID`   | `GET /v1/jobs`, `/v1/jobs/{id}`, `/v1/jobs/{id}/error` |
//! | `job resume\|suspend\|complete\|cancel ID` | `PUT /v1/jobs/{id}/state` `{"action"}`         |
//! | `job set ID [opts]` / `delete ID`     | `PATCH` / `DELETE /v1/jobs/{id}`                     |
//! | `job watch ID`                        | `GET /v1/jobs/{id}/events` (server-sent events)      |
//! | `status [--watch] [--max N]`          | `GET /v1/status[?max=N]` (again every --interval)    |
//! | `fleet status`                        | `GET /v1/fleet`                                      |

mod auth;
mod cert;
mod changes;
mod connect;
mod export_apply;
mod fleet;
mod group;
mod job;
mod job_watch;
mod limit;
mod status;
mod toml_file;
mod url;
pub(crate) mod user;

use std::path::PathBuf;

use bits_compact::ErrorKind;
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::CliError;
use connect::{Client, Server};

/// The exit statuses, for the management commands' `--help`.
pub(crate) const EXIT_CODES: &str = "\
Exit status: 0 done; 1 other error (incl. the service's 5xx); 2 invalid (usage, HTTP 400/409/413/422); \
3 not found (HTTP 404); 4 refused (HTTP 401/403); 5 unreachable (no socket, refused, TLS failed, timeout; \
a fleet's etcd below quorum).";

/// How to reach the service and how to print its answer; in every management command.
#[derive(Args, Debug)]
pub(crate) struct ApiArgs {
    /// Print the API's JSON answer instead of text (a 204 prints {}).
    #[arg(long)]
    pub(crate) json: bool,
    /// The service: its Unix socket, or https://HOST:PORT/ for a remote one. Default: bcs.sock in the
    /// state directory (--state, else $BCS_STATE, else /var/lib/bcs for root, else $XDG_STATE_HOME/bcs or
    /// ~/.local/state/bcs).
    #[arg(long, value_name = "SOCKET|URL")]
    server: Option<Server>,
    /// The state directory of the local service to manage, as given to `bcs serve --state` (its socket
    /// is bcs.sock there). Default: $BCS_STATE, else as `bcs serve` chooses it.
    #[arg(long, value_name = "DIR", conflicts_with = "server")]
    state: Option<PathBuf>,
    /// Authenticate with Basic as NAME; the password is BCS_PASSWORD, else asked on the terminal.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// A client certificate (PEM) to authenticate with over TLS.
    #[arg(long, value_name = "FILE", requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// The CA certificates (PEM) to check a remote service against; default: BCS_CA, else the system's.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
}

/// A URL group's prefix, for the commands that only need it.
#[derive(Args)]
pub(crate) struct PrefixArgs {
    /// The group's prefix, as created (http://+:8080/app/).
    prefix: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// The management commands, flattened into bcs's own.
#[derive(Subcommand)]
pub(crate) enum ManageCommand {
    /// Create, delete, list and show URL groups on the service.
    #[command(subcommand, after_help = EXIT_CODES)]
    Group(group::GroupCommand),
    /// Add, remove, check and list a group's URLs.
    #[command(subcommand, after_help = EXIT_CODES)]
    Url(url::UrlCommand),
    /// Turn a group's authentication schemes on and off.
    #[command(subcommand, after_help = EXIT_CODES)]
    Auth(auth::AuthCommand),
    /// Set and show a group's ConnectionLimit and BandwidthLimit.
    #[command(subcommand, after_help = EXIT_CODES)]
    Limit(limit::LimitCommand),
    /// Bind, show and remove the service's TLS certificates per port.
    #[command(subcommand, after_help = EXIT_CODES)]
    Cert(cert::CertCommand),
    /// Create, watch, complete and cancel download jobs run by the service.
    #[command(subcommand, after_help = EXIT_CODES)]
    Job(job::JobCommand),
    /// Print the service's whole configuration, as TOML (or JSON with --json).
    #[command(after_help = EXIT_CODES)]
    Export(ApiArgs),
    /// Make the service's configuration match a TOML file (as `bcs export` writes it), printing each
    /// change (added, changed, removed).
    ///
    /// What the file replaces: each URL group it names, whole: its settings, and exactly its URLs (a URL
    /// the file's group does not list is removed, with or without --prune); each TLS binding it names,
    /// whole (an empty password or key keeps the service's); each user and principal group its
    /// [principals] names (a user without a password keeps its own). What it does not name stays, unless
    /// --prune. All or nothing: one bad part and nothing changes.
    #[command(after_help = EXIT_CODES)]
    Apply(export_apply::ApplyArgs),
    /// Show what the service is doing now: each group's downloads in progress (client, file, bytes,
    /// rate) and how full its limits are, and the jobs in progress; --watch to follow it.
    #[command(after_help = EXIT_CODES)]
    Status(status::StatusArgs),
    /// Show the fleet the service is a node of (bcs serve --etcd).
    #[command(subcommand, after_help = EXIT_CODES)]
    Fleet(fleet::FleetCommand),
}

/// Runs one management command.
pub(crate) async fn run(command: ManageCommand) -> Result<(), CliError> {
    match command {
        ManageCommand::Group(command) => group::run(command).await,
        ManageCommand::Url(command) => url::run(command).await,
        ManageCommand::Auth(command) => auth::run(command).await,
        ManageCommand::Limit(command) => limit::run(command).await,
        ManageCommand::Cert(command) => cert::run(command).await,
        ManageCommand::Job(command) => job::run(command).await,
        ManageCommand::Export(api) => export_apply::export(&api).await,
        ManageCommand::Apply(args) => export_apply::apply(&args).await,
        ManageCommand::Status(args) => status::run(args).await,
        ManageCommand::Fleet(command) => fleet::run(command).await,
    }
}

/// Why a management command failed; each kind has its exit status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManageError {
    /// The service answered with an error status.
    #[error("{message} ({code})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// `tried` says where the address came from and how to give another.
    #[error("cannot reach bcs serve at {server} ({tried})")]
    Unreachable {
        server: String,
        tried: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("bcs serve at {server} did not answer within {secs} s (a change may still be made: check before retrying)")]
    Timeout { server: String, secs: u64 },
    #[error("unexpected answer from {server}: {reason}")]
    BadAnswer { server: String, reason: String },
    /// A success whose JSON is not the library's type for it: another version of the service.
    #[error("the service's answer is not what this bcs {} reads (is the service another version?)", env!("CARGO_PKG_VERSION"))]
    Shape(#[source] serde_json::Error),
    #[error("{0}")]
    Invalid(String),
    /// A configuration file that cannot be applied, at a place in it (1-based line and column).
    #[error("{}:{line}:{column}: {message}", path.display())]
    File {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("cannot read {path:?}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up TLS")]
    Trust(#[source] bits_compact::client::ClientError),
    #[error("no CA certificates to check the service against: give --ca FILE (or set BCS_CA)")]
    NoAnchors,
    #[error("{0} needs an https --server")]
    NeedsHttps(&'static str),
    #[error("no --server or --state, and neither XDG_STATE_HOME nor HOME is set to find the local socket")]
    NoStateDir,
    #[error("--user needs its password: set BCS_PASSWORD (there is no terminal to ask on: {0})")]
    NoPassword(std::io::Error),
    #[error("--pkcs12 needs its password: set BCS_PKCS12_PASSWORD (there is no terminal to ask on: {0})")]
    NoPkcs12Password(std::io::Error),
    /// `bcs job watch` saw the job end other than TRANSFERRED.
    #[error("{0}")]
    Ended(String),
    #[error("cannot write the request as JSON")]
    Request(#[source] serde_json::Error),
    #[error("cannot print the configuration as TOML")]
    ToToml(#[source] toml::ser::Error),
}

impl ManageError {
    /// The process's exit status for this error (see the module's documentation): the kind's, for the
    /// service's answers and for what the kinds name (unreachable, invalid); 1 for the rest.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ManageError::Api { status, code, .. } => {
                ErrorKind::from_answer(*status, code).map_or(1, ErrorKind::exit_code)
            }
            ManageError::Unreachable { .. } | ManageError::Timeout { .. } => {
                ErrorKind::Unreachable.exit_code()
            }
            ManageError::Invalid(_) | ManageError::File { .. } => ErrorKind::Invalid.exit_code(),
            _ => 1,
        }
    }
}

/// One call through a client made from `api`: the success's JSON, or the error (whose body `--json` also
/// prints on stdout).
async fn call(
    api: &ApiArgs,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, ManageError> {
    let answer = Client::new(api)?.fetch(method, path, body).await?;
    if api.json && !answer.status.is_success() {
        print_json(&answer.body, answer.status);
    }
    answer.into_result()
}

/// One call whose request body is `body`, one of the library's request types (`bits_compact::service`),
/// so that what the CLI sends is what the service reads.
async fn send<B: Serialize>(
    api: &ApiArgs,
    method: Method,
    path: &str,
    body: &B,
) -> Result<Value, ManageError> {
    let body = serde_json::to_value(body).map_err(ManageError::Request)?;
    call(api, method, path, Some(&body)).await
}

/// The answer as JSON on stdout, pretty; a body-less answer as `{}` so that the output always parses,
/// and an error without a JSON body as the `{"code","message"}` it stands for. What the service sent is
/// escaped for the terminal, and stays the same JSON.
fn print_json(body: &Value, status: StatusCode) {
    let body = match body {
        Value::Null if status.is_success() => serde_json::json!({}),
        Value::Null => serde_json::json!({
            "code": status.as_u16().to_string(),
            "message": status.canonical_reason().unwrap_or("error").to_lowercase(),
        }),
        body => body.clone(),
    };
    let text = serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string());
    say!("{}", crate::print::json_safe(text));
}

/// Prints a success: its JSON with `--json`, as the service sent it; else what `text` makes of it, read
/// as the library's type for that answer (so that a field the service renamed is an error here, not
/// a blank).
fn show<T: DeserializeOwned>(
    api: &ApiArgs,
    body: &Value,
    text: impl FnOnce(T),
) -> Result<(), ManageError> {
    if api.json {
        print_json(body, StatusCode::OK);
        return Ok(());
    }
    text(read(body)?);
    Ok(())
}

/// An answer as the library's type for it.
fn read<T: DeserializeOwned>(body: &Value) -> Result<T, ManageError> {
    T::deserialize(body).map_err(ManageError::Shape)
}

/// Prints a body-less success (204): `{}` with `--json`, else what `text` says.
fn done(api: &ApiArgs, text: impl FnOnce()) {
    match api.json {
        true => print_json(&Value::Null, StatusCode::NO_CONTENT),
        false => text(),
    }
}

/// Names joined with ", ", or `none`.
fn list_or_none(names: &[String]) -> String {
    match names.is_empty() {
        true => "none".to_owned(),
        false => names.join(", "),
    }
}

/// A local file the service should use: its canonical absolute path when it exists here, else an
/// absolute path as given (the service may be on another machine, or the file may come later). A
/// relative path that names nothing here is an error: the service cannot tell what it is relative to.
fn service_path(file: &std::path::Path) -> Result<String, ManageError> {
    match std::fs::canonicalize(file) {
        Ok(path) => Ok(path.display().to_string()),
        Err(_) if file.is_absolute() => Ok(file.display().to_string()),
        Err(e) => Err(ManageError::Invalid(format!(
            "{}: {} here (a relative path is taken from this directory; a file on the service's machine is named by its absolute path)",
            file.display(),
            match e.kind() {
                std::io::ErrorKind::NotFound => "does not exist".to_owned(),
                _ => format!("cannot be read ({e})"),
            }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_exit_codes() {
        for (status, code) in [
            (400, 2),
            (409, 2),
            (413, 2),
            (422, 2),
            (404, 3),
            (401, 4),
            (403, 4),
            (405, 1),
            (500, 1),
            (503, 1),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            let exit = ErrorKind::from_answer(status, "some_code").map_or(1, ErrorKind::exit_code);
            assert_eq!(exit, code, "{status}");
        }
        let gone = ManageError::Unreachable {
            server: "/x.sock".into(),
            tried: "--server".into(),
            source: "refused".into(),
        };
        assert_eq!(gone.exit_code(), 5);
        let slow = ManageError::Timeout {
            server: "/x.sock".into(),
            secs: 30,
        };
        assert_eq!(slow.exit_code(), 5);
        assert_eq!(ManageError::Invalid("x".into()).exit_code(), 2);
        assert_eq!(ManageError::NoAnchors.exit_code(), 1);
        // A fleet whose etcd is below quorum: 503 like a busy service, but the exit status of what
        // cannot be reached.
        let api = |code: &str| ManageError::Api {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: code.into(),
            message: "x".into(),
        };
        assert_eq!(api(bits_compact::FLEET_UNAVAILABLE).exit_code(), 5);
        assert_eq!(api("busy").exit_code(), 1);
    }

    #[test]
    fn relative_paths_must_name_a_file_here() {
        let e = service_path(std::path::Path::new("./no-such-file.exe")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert_eq!(e.exit_code(), 2);
        let remote = service_path(std::path::Path::new("/srv/not-here/a.exe")).unwrap();
        assert_eq!(remote, "/srv/not-here/a.exe");
    }
}
