//! `bcs group`: URL groups on the service.

use bits_compact::service::{GroupSettings, GroupView, NewGroup};
use bits_compact::{ByteRate, ConnectionLimit};
use clap::{Args, Subcommand};
use http::Method;

use super::connect::segment;
use super::{call, done, list_or_none, send, show, ApiArgs, PrefixArgs, EXIT_CODES};
use crate::CliError;

#[derive(Subcommand)]
pub(crate) enum GroupCommand {
    /// Create a URL group.
    #[command(after_help = EXIT_CODES)]
    Create(CreateArgs),
    /// Delete a URL group and its URLs.
    #[command(after_help = EXIT_CODES)]
    Delete(PrefixArgs),
    /// List the URL groups: prefix, URL count, schemes.
    #[command(after_help = EXIT_CODES)]
    List(ApiArgs),
    /// Show one URL group.
    #[command(after_help = EXIT_CODES)]
    Show(PrefixArgs),
}

#[derive(Args)]
pub(crate) struct CreateArgs {
    /// The prefix, in HTTP.sys syntax (http://+:8080/app/).
    prefix: String,
    /// An authentication scheme to turn on (repeatable): negotiate, ntlm, basic or client-cert.
    #[arg(long = "auth", value_name = "SCHEME")]
    auth: Vec<String>,
    /// The SDDL for URLs added without one.
    #[arg(long, value_name = "SDDL")]
    default_sddl: Option<String>,
    /// Transfers at once.
    #[arg(long, value_name = "N|unlimited")]
    connection_limit: Option<ConnectionLimit>,
    /// Bytes per second the group's transfers share (4MiB/s, 500KB/s).
    #[arg(long, value_name = "RATE|unlimited")]
    bandwidth_limit: Option<ByteRate>,
    /// Answer a GET of a directory-like URL with an index of the URLs the caller may read.
    #[arg(long)]
    index: bool,
    #[command(flatten)]
    api: ApiArgs,
}

pub(crate) async fn run(command: GroupCommand) -> Result<(), CliError> {
    match command {
        GroupCommand::Create(args) => create(&args).await,
        GroupCommand::Delete(args) => {
            let path = format!("/v1/groups/{}", segment(&args.prefix));
            call(&args.api, Method::DELETE, &path, None).await?;
            done(&args.api, || {
                note_safe!("bcs: deleted group {}", args.prefix)
            });
            Ok(())
        }
        GroupCommand::List(api) => {
            let groups = call(&api, Method::GET, "/v1/groups", None).await?;
            show(&api, &groups, |groups: Vec<GroupView>| {
                if groups.is_empty() {
                    note!("bcs: no URL groups (create one with `bcs group create PREFIX`)");
                }
                for group in &groups {
                    say_safe!("{}", summary(group));
                }
            })?;
            Ok(())
        }
        GroupCommand::Show(args) => {
            let path = format!("/v1/groups/{}", segment(&args.prefix));
            let group = call(&args.api, Method::GET, &path, None).await?;
            show(&args.api, &group, |group: GroupView| print_group(&group))?;
            Ok(())
        }
    }
}

async fn create(args: &CreateArgs) -> Result<(), CliError> {
    let group = send(&args.api, Method::POST, "/v1/groups", &create_body(args)).await?;
    show(&args.api, &group, |group: GroupView| {
        note_safe!("bcs: created group {}", group.prefix)
    })?;
    Ok(())
}

/// `POST /v1/groups`'s body (a `NewGroup`): the prefix, and only the options given (the service's
/// defaults otherwise).
fn create_body(args: &CreateArgs) -> NewGroup {
    NewGroup {
        prefix: args.prefix.clone(),
        settings: GroupSettings {
            auth: (!args.auth.is_empty()).then(|| args.auth.clone()),
            default_sddl: args.default_sddl.clone(),
            connection_limit: args.connection_limit.map(|limit| limit.to_string()),
            bandwidth_limit: args.bandwidth_limit.map(|rate| rate.to_string()),
            index: args.index.then_some(true),
            ..GroupSettings::default()
        },
    }
}

/// `http://+:8080/app/  3 URLs  auth: ntlm, basic`.
fn summary(group: &GroupView) -> String {
    let urls = group.urls.len();
    let urls = format!("{urls} URL{}", if urls == 1 { "" } else { "s" });
    format!(
        "{}  {urls}  auth: {}",
        group.prefix,
        list_or_none(&group.auth)
    )
}

fn print_group(group: &GroupView) {
    say_safe!("{}", summary(group));
    if group.allow_basic_over_http {
        say!("  Basic over plain HTTP allowed");
    }
    if let Some(sddl) = group.default_sddl.as_deref().filter(|s| !s.is_empty()) {
        say_safe!("  default SDDL: {sddl}");
    }
    say_safe!(
        "  connection limit: {}, bandwidth limit: {}",
        group.connection_limit,
        group.bandwidth_limit
    );
    if let Some(max_age) = group.cache_max_age_secs {
        say!("  cache max-age: {max_age} s");
    }
    if group.index {
        say!("  index: on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::{json, Value};

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CreateArgs,
    }

    fn body(line: &[&str]) -> Value {
        let cli =
            Cli::try_parse_from(std::iter::once("create").chain(line.iter().copied())).unwrap();
        serde_json::to_value(create_body(&cli.args)).unwrap()
    }

    #[test]
    fn create_sends_only_what_is_given() {
        assert_eq!(
            body(&["http://+:8080/app/"]),
            json!({"prefix": "http://+:8080/app/"})
        );
        assert_eq!(
            body(&[
                "http://+:8080/app/",
                "--auth=ntlm",
                "--auth",
                "basic",
                "--default-sddl=D:(A;;GA;;;WD)",
                "--connection-limit=10",
                "--bandwidth-limit=1MiB/s",
                "--index"
            ]),
            json!({
                "prefix": "http://+:8080/app/",
                "auth": ["ntlm", "basic"],
                "default_sddl": "D:(A;;GA;;;WD)",
                "connection_limit": "10",
                "bandwidth_limit": "1MiB/s",
                "index": true,
            })
        );
        assert_eq!(
            body(&[
                "p",
                "--connection-limit=unlimited",
                "--bandwidth-limit=unlimited"
            ]),
            json!({"prefix": "p", "connection_limit": "unlimited", "bandwidth_limit": "unlimited"})
        );
    }

    /// What the CLI sends is the library's `NewGroup`: a field renamed there fails here.
    #[test]
    fn create_bodies_are_new_groups() {
        let body = body(&[
            "http://+:8080/app/",
            "--auth=ntlm",
            "--connection-limit=3",
            "--index",
        ]);
        let new: bits_compact::service::NewGroup = serde_json::from_value(body).unwrap();
        assert_eq!(new.settings.connection_limit.as_deref(), Some("3"));
        assert_eq!(new.settings.index, Some(true));
    }

    #[test]
    fn summaries_count_urls() {
        let group: GroupView = serde_json::from_value(
            json!({"prefix": "http://+:80/a/", "urls": [{"suffix": "x", "file": "/x"}]}),
        )
        .unwrap();
        assert_eq!(summary(&group), "http://+:80/a/  1 URL  auth: none");
    }
}
