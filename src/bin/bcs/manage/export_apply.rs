//! `bcs export` and `bcs apply`: the service's whole configuration, as TOML for people and files (see
//! `toml_file`), as JSON on the wire; `apply` says what it changes (see `changes`), and `--dry-run`
//! only says it.

use std::io::IsTerminal;
use std::path::PathBuf;

use bits_compact::service::{Applied, ConfigDocument, GroupView};
use clap::Args;
use http::{Method, StatusCode};
use serde_json::json;

use super::changes::{changes, Change, UnderWay};
use super::{call, print_json, read, send, toml_file, ApiArgs, ManageError};
use crate::CliError;

#[derive(Args)]
pub(crate) struct ApplyArgs {
    /// The configuration, in TOML (as `bcs export` prints it).
    file: PathBuf,
    /// Also remove what the file does not name: groups, TLS bindings, and, when it has a [principals]
    /// section, users and principal groups.
    #[arg(long)]
    prune: bool,
    /// Print what would change, and change nothing.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// `GET /v1/config`, printed as TOML (JSON with `--json`).
pub(crate) async fn export(api: &ApiArgs) -> Result<(), CliError> {
    let config = call(api, Method::GET, "/v1/config", None).await?;
    if api.json {
        print_json(&config, StatusCode::OK);
        return Ok(());
    }
    // TOML from toml ends in a newline already.
    let text = toml_file::write(&config)?;
    let text = text.trim_end();
    // On a terminal, what the service holds is escaped; into a file or a pipe, the TOML is exact.
    match std::io::stdout().is_terminal() {
        true => say_safe!("{text}"),
        false => say!("{text}"),
    }
    Ok(())
}

/// Reads and checks the file, compares it with `GET /v1/config`, prints what changes (a URL it removes
/// with the downloads of it under way, from `GET /v1/groups`), and (unless `--dry-run`)
/// `PUT /v1/config?prune=…`.
pub(crate) async fn apply(args: &ApplyArgs) -> Result<(), CliError> {
    let wanted = toml_file::read(&args.file)?;
    let file = args.file.display();
    let wanted_stored = wanted
        .clone()
        .into_stored()
        .map_err(|e| ManageError::Invalid(format!("{file}: {}", e.message())))?;
    let now: ConfigDocument = read(&call(&args.api, Method::GET, "/v1/config", None).await?)?;
    let now = now.into_stored().map_err(|e| {
        ManageError::Invalid(format!("the service's configuration: {}", e.message()))
    })?;
    let groups: Vec<GroupView> = read(&call(&args.api, Method::GET, "/v1/groups", None).await?)?;
    let planned = changes(&now, &wanted_stored, args.prune, &UnderWay::of(&groups));
    if args.dry_run {
        report(args, &planned, false);
        let what = match planned.len() {
            0 => "nothing to change".to_owned(),
            n => format!("{n} change(s) not made"),
        };
        if !args.api.json {
            note_safe!("bcs: --dry-run of {file}: {what}");
        }
        return Ok(());
    }
    let path = format!("/v1/config?prune={}", args.prune);
    let answer = send(&args.api, Method::PUT, &path, &wanted).await?;
    let applied: Applied = read(&answer)?;
    report(args, &planned, applied.changed);
    if !args.api.json {
        match applied.changed {
            true => note_safe!("bcs: applied {file}: the service changed"),
            false => note_safe!("bcs: applied {file}: nothing to change"),
        }
    }
    Ok(())
}

/// The changes, one a line (with `--json`, `{"changed", "dry_run", "changes": [...]}`).
fn report(args: &ApplyArgs, planned: &[Change], changed: bool) {
    if args.api.json {
        let body = json!({"changed": changed, "dry_run": args.dry_run, "changes": planned});
        print_json(&body, StatusCode::OK);
        return;
    }
    for change in planned {
        say_safe!("{change}");
    }
}
