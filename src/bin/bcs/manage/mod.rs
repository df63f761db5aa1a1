//! The management commands (`bcs group`, `url`, `auth`, `limit`, `cert`, `user` without `--users`,
//! `export`, `apply`): each is one request to `bcs serve`'s management API, its answer printed as text
//! or, with `--json`, as the API's JSON.
//!
//! Exit status (also in each command's `--help`): 0 success; 1 any other error, the service's 5xx
//! included; 2 invalid (usage errors, and HTTP 400, 409, 413, 422); 3 not found (HTTP 404); 4 refused
//! (HTTP 401, 403); 5 unreachable (no socket, connection refused, TLS handshake failed, timed out).
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
//! | `limit set P NAME VALUE`              | `PUT /v1/groups/{p}/properties/{NAME}` `{"value"}`   |
//! | `limit show P`                        | `GET /v1/groups/{p}/properties`                      |
//! | `cert set PORT [--sni N] source`      | `PUT /v1/certificates/{port}[/sni/{n}]` `{"source"}` |
//! | `cert show [PORT]`                    | `GET /v1/certificates[/{port}]`                      |
//! | `cert remove PORT [--sni N]`          | `DELETE /v1/certificates/{port}[/sni/{n}]`           |
//! | `user add N [--group G]...`           | `PUT /v1/users/{n}` `{"password","groups"?}`         |
//! | `user remove N` / `user list`         | `DELETE /v1/users/{n}` / `GET /v1/users`             |
//! | `export`                              | `GET /v1/config`                                     |
//! | `apply FILE [--prune]`                | `PUT /v1/config?prune=false\|true`                   |
//! | `job create N URL DEST [opts]`        | `POST /v1/jobs` `{"display_name","files",...}`       |
//! | `job add-file ID URL DEST`            | `POST /v1/jobs/{id}/files` `{"remote_url","local_file"}` |
//! | `job list` / `show ID` / `error ID`   | `GET /v1/jobs`, `/v1/jobs/{id}`, `/v1/jobs/{id}/error` |
//! | `job resume\|suspend\|complete\|cancel ID` | `PUT /v1/jobs/{id}/state` `{"action"}`         |
//! | `job set ID [opts]` / `delete ID`     | `PATCH` / `DELETE /v1/jobs/{id}`                     |
//! | `job watch ID`                        | `GET /v1/jobs/{id}/events` (server-sent events)      |

mod apply;
mod auth;
mod cert;
mod connect;
mod group;
mod job;
mod limit;
mod url;
pub(crate) mod user;

use std::path::PathBuf;

use bits_compact::ErrorKind;
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use serde_json::Value;

use crate::CliError;
use connect::{Client, Server};

/// The exit statuses, for the management commands' `--help`.
pub(crate) const EXIT_CODES: &str = "\
Exit status: 0 done; 1 other error (incl. the service's 5xx); 2 invalid (usage, HTTP 400/409/413/422); \
3 not found (HTTP 404); 4 refused (HTTP 401/403); 5 unreachable (no socket, refused, TLS failed, timeout).";

/// How to reach the service and how to print its answer; in every management command.
#[derive(Args, Debug)]
pub(crate) struct ApiArgs {
    /// Print the API's JSON answer instead of text (a 204 prints {}).
    #[arg(long)]
    pub(crate) json: bool,
    /// The service: its Unix socket, or https://HOST:PORT/ for a remote one. Default: bcs.sock in the
    /// state directory ($BCS_STATE, else /var/lib/bcs for root, else $XDG_STATE_HOME/bcs or ~/.local/state/bcs).
    #[arg(long, value_name = "SOCKET|URL")]
    server: Option<Server>,
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
    /// Make the service's configuration match a TOML file (as `bcs export` writes it).
    #[command(after_help = EXIT_CODES)]
    Apply(apply::ApplyArgs),
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
        ManageCommand::Export(api) => apply::export(&api).await,
        ManageCommand::Apply(args) => apply::apply(&args).await,
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
    #[error("cannot reach bcs serve at {server}")]
    Unreachable {
        server: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("bcs serve at {server} did not answer within {secs} s (a change may still be made: check before retrying)")]
    Timeout { server: String, secs: u64 },
    #[error("unexpected answer from {server}: {reason}")]
    BadAnswer { server: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("invalid TOML in {path:?}")]
    Toml {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
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
    #[error("no --server, and neither XDG_STATE_HOME nor HOME is set to find the local socket")]
    NoStateDir,
    #[error("--user needs its password: set BCS_PASSWORD (there is no terminal to ask on: {0})")]
    NoPassword(std::io::Error),
    #[error("--pkcs12 needs its password: set BCS_PKCS12_PASSWORD (there is no terminal to ask on: {0})")]
    NoPkcs12Password(std::io::Error),
    /// `bcs job watch` saw the job end other than TRANSFERRED.
    #[error("{0}")]
    Ended(String),
    #[error("cannot print the configuration as TOML")]
    ToToml(#[source] toml::ser::Error),
}

impl ManageError {
    /// The process's exit status for this error (see the module's documentation): the kind's, for the
    /// service's answers and for what the kinds name (unreachable, invalid); 1 for the rest.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            ManageError::Api { status, .. } => status_exit_code(*status),
            ManageError::Unreachable { .. } | ManageError::Timeout { .. } => {
                ErrorKind::Unreachable.exit_code()
            }
            ManageError::Invalid(_) | ManageError::Toml { .. } => ErrorKind::Invalid.exit_code(),
            _ => 1,
        }
    }
}

/// The exit status for an error status from the service: the exit status of the kind it stands for.
fn status_exit_code(status: StatusCode) -> u8 {
    ErrorKind::from_http_status(status).map_or(1, ErrorKind::exit_code)
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

/// The answer as JSON on stdout, pretty; a body-less answer as `{}` so that the output always parses,
/// and an error without a JSON body as the `{"code","message"}` it stands for.
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
    say!("{text}");
}

/// Prints a success: its JSON with `--json`, else what `text` makes of it.
fn show(api: &ApiArgs, body: &Value, text: impl FnOnce(&Value)) {
    match api.json {
        true => print_json(body, StatusCode::OK),
        false => text(body),
    }
}

/// A string field of a JSON object, or the field's JSON when it is not a string; empty when missing.
fn field(value: &Value, name: &str) -> String {
    match value.get(name) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The strings of an array field, joined with ", ", or `none`.
fn names(value: &Value, name: &str) -> String {
    let list: Vec<String> = value
        .get(name)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .collect();
    match list.is_empty() {
        true => "none".to_owned(),
        false => list.join(", "),
    }
}

/// A local file the service should use: its canonical absolute path when it exists here, else the text as
/// given (the service may be on another machine, or the file may come later).
fn service_path(file: &std::path::Path) -> String {
    std::fs::canonicalize(file)
        .unwrap_or_else(|_| file.to_owned())
        .display()
        .to_string()
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
            assert_eq!(status_exit_code(status), code, "{status}");
        }
        let gone = ManageError::Unreachable {
            server: "/x.sock".into(),
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
    }

    #[test]
    fn fields_print_plainly() {
        let group = serde_json::json!({"prefix": "http://+:80/a/", "auth": ["ntlm", "basic"], "index": false, "x": null});
        assert_eq!(field(&group, "prefix"), "http://+:80/a/");
        assert_eq!(field(&group, "index"), "false");
        assert_eq!(field(&group, "x"), "");
        assert_eq!(names(&group, "auth"), "ntlm, basic");
        assert_eq!(names(&group, "missing"), "none");
    }
}
