//! `bcs url`: the URLs of a group on the service.

use std::path::PathBuf;

use bits_compact::service::UrlView;
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use serde_json::Value;

use super::connect::{segment, Client};
use super::{call, done, print_json, send, service_path, show, ApiArgs, PrefixArgs, EXIT_CODES};
use crate::CliError;

#[derive(Subcommand)]
pub(crate) enum UrlCommand {
    /// Publish a file under the group's prefix.
    #[command(after_help = EXIT_CODES)]
    Add(AddArgs),
    /// Publish a URL again: its file, re-read now (on a fleet's node, hashed and copied again, so that
    /// every node moves to the new bytes at once), and its SDDL when --sddl is given (else it keeps its
    /// own).
    #[command(after_help = EXIT_CODES)]
    Set(AddArgs),
    /// Stop publishing a URL.
    #[command(after_help = EXIT_CODES)]
    Remove(UrlArgs),
    /// Print true when the URL exists (exit 0), else false (exit 3).
    #[command(after_help = EXIT_CODES)]
    Check(UrlArgs),
    /// List a group's URLs: suffix → file.
    #[command(after_help = EXIT_CODES)]
    List(PrefixArgs),
}

#[derive(Args)]
pub(crate) struct AddArgs {
    /// The group's prefix (http://+:8080/app/).
    prefix: String,
    /// The URL's path under the prefix (tools/a.exe).
    suffix: String,
    /// The file: a path here (sent as its absolute path), or an absolute path on the service's machine.
    file: PathBuf,
    /// Who may read it, in SDDL; default: the group's default SDDL (`url set`: the URL's own).
    #[arg(long, value_name = "SDDL")]
    sddl: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub(crate) struct UrlArgs {
    /// The group's prefix (http://+:8080/app/).
    prefix: String,
    /// The URL's path under the prefix.
    suffix: String,
    #[command(flatten)]
    api: ApiArgs,
}

impl UrlArgs {
    fn path(&self) -> String {
        url_path(&self.prefix, &self.suffix)
    }
}

fn url_path(prefix: &str, suffix: &str) -> String {
    format!("/v1/groups/{}/urls/{}", segment(prefix), segment(suffix))
}

pub(crate) async fn run(command: UrlCommand) -> Result<(), CliError> {
    match command {
        UrlCommand::Add(args) => add(&args, false).await,
        UrlCommand::Set(args) => add(&args, true).await,
        UrlCommand::Remove(args) => {
            call(&args.api, Method::DELETE, &args.path(), None).await?;
            done(&args.api, || {
                note_safe!("bcs: removed {}{}", args.prefix, args.suffix)
            });
            Ok(())
        }
        UrlCommand::Check(args) => check(&args).await,
        UrlCommand::List(args) => {
            let path = format!("/v1/groups/{}/urls", segment(&args.prefix));
            let urls = call(&args.api, Method::GET, &path, None).await?;
            show(&args.api, &urls, |urls: Vec<UrlView>| {
                if urls.is_empty() {
                    note_safe!("bcs: no URLs in {}", args.prefix);
                }
                for url in &urls {
                    match &url.content {
                        Some(c) => say_safe!(
                            "{} → {} (content sha256 {}, {} bytes, from node {})",
                            url.suffix,
                            url.file,
                            c.sha256,
                            c.size,
                            c.origin
                        ),
                        None => say_safe!("{} → {}", url.suffix, url.file),
                    }
                }
            })?;
            Ok(())
        }
    }
}

/// `bcs url add` (POST), or with `again` `bcs url set` (PUT on the URL).
async fn add(args: &AddArgs, again: bool) -> Result<(), CliError> {
    let body = UrlView {
        suffix: args.suffix.clone(),
        file: service_path(&args.file)?,
        sddl: args.sddl.clone(),
        downloads_under_way: 0,
        content: None,
    };
    let (method, path, verb) = match again {
        false => (
            Method::POST,
            format!("/v1/groups/{}/urls", segment(&args.prefix)),
            "added",
        ),
        true => (
            Method::PUT,
            url_path(&args.prefix, &args.suffix),
            "published again",
        ),
    };
    let url = send(&args.api, method, &path, &body).await?;
    show(&args.api, &url, |url: UrlView| match &url.content {
        Some(c) => note_safe!(
            "bcs: {verb} {}{} → {} (sha256 {})",
            args.prefix,
            url.suffix,
            url.file,
            c.sha256
        ),
        None => note_safe!("bcs: {verb} {}{} → {}", args.prefix, url.suffix, url.file),
    })?;
    Ok(())
}

/// `true` and exit 0 when the URL exists; `false` and exit 3 when the service says `url_not_found`
/// (`--json` prints the same words, which are JSON). Any other error is an error, a missing group too.
async fn check(args: &UrlArgs) -> Result<(), CliError> {
    let answer = Client::new(&args.api)?
        .fetch(Method::GET, &args.path(), None)
        .await?;
    if answer.status.is_success() {
        say!("true");
        return Ok(());
    }
    let absent = answer.status == StatusCode::NOT_FOUND
        && answer.body.get("code").and_then(Value::as_str) == Some("url_not_found");
    if absent {
        say!("false");
    } else if args.api.json {
        print_json(&answer.body, answer.status);
    }
    Err(answer.into_error().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_are_two_segments() {
        assert_eq!(
            url_path("http://+:8080/app/", "tools/a.exe"),
            "/v1/groups/http%3A%2F%2F%2B%3A8080%2Fapp%2F/urls/tools%2Fa.exe"
        );
    }
}
