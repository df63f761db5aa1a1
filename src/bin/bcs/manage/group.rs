//! `bcs group`: URL groups on the service.

use bits_compact::{ByteRate, ConnectionLimit};
use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};

use super::connect::segment;
use super::{call, field, names, show, ApiArgs, PrefixArgs, EXIT_CODES};
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
            let body = call(&args.api, Method::DELETE, &path, None).await?;
            show(&args.api, &body, |_| {
                note!("bcs: deleted group {}", args.prefix)
            });
            Ok(())
        }
        GroupCommand::List(api) => {
            let groups = call(&api, Method::GET, "/v1/groups", None).await?;
            show(&api, &groups, |groups| {
                for group in groups.as_array().into_iter().flatten() {
                    say!("{}", summary(group));
                }
            });
            Ok(())
        }
        GroupCommand::Show(args) => {
            let path = format!("/v1/groups/{}", segment(&args.prefix));
            let group = call(&args.api, Method::GET, &path, None).await?;
            show(&args.api, &group, print_group);
            Ok(())
        }
    }
}

async fn create(args: &CreateArgs) -> Result<(), CliError> {
    let body = create_body(args);
    let group = call(&args.api, Method::POST, "/v1/groups", Some(&body)).await?;
    show(&args.api, &group, |group| {
        note!("bcs: created group {}", field(group, "prefix"))
    });
    Ok(())
}

/// `POST /v1/groups`'s body: the prefix, and only the options given (the service's defaults otherwise).
fn create_body(args: &CreateArgs) -> Value {
    let mut body = json!({ "prefix": args.prefix });
    if !args.auth.is_empty() {
        body["auth"] = json!(args.auth);
    }
    if let Some(sddl) = &args.default_sddl {
        body["default_sddl"] = json!(sddl);
    }
    if let Some(limit) = args.connection_limit {
        body["connection_limit"] = json!(limit.to_string());
    }
    if let Some(rate) = args.bandwidth_limit {
        body["bandwidth_limit"] = json!(rate.to_string());
    }
    if args.index {
        body["index"] = json!(true);
    }
    body
}

/// `http://+:8080/app/  3 URLs  auth: ntlm, basic`.
fn summary(group: &Value) -> String {
    let urls = group
        .get("urls")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let urls = format!("{urls} URL{}", if urls == 1 { "" } else { "s" });
    format!(
        "{}  {urls}  auth: {}",
        field(group, "prefix"),
        names(group, "auth")
    )
}

fn print_group(group: &Value) {
    say!("{}", summary(group));
    if group.get("allow_basic_over_http") == Some(&Value::Bool(true)) {
        say!("  Basic over plain HTTP allowed");
    }
    let sddl = field(group, "default_sddl");
    if !sddl.is_empty() {
        say!("  default SDDL: {sddl}");
    }
    say!(
        "  connection limit: {}, bandwidth limit: {}",
        field(group, "connection_limit"),
        field(group, "bandwidth_limit")
    );
    let max_age = field(group, "cache_max_age_secs");
    if !max_age.is_empty() {
        say!("  cache max-age: {max_age} s");
    }
    if group.get("index") == Some(&Value::Bool(true)) {
        say!("  index: on");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CreateArgs,
    }

    fn body(line: &[&str]) -> Value {
        let cli =
            Cli::try_parse_from(std::iter::once("create").chain(line.iter().copied())).unwrap();
        create_body(&cli.args)
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

    #[test]
    fn summaries_count_urls() {
        let group = json!({"prefix": "http://+:80/a/", "auth": [], "urls": [{"suffix": "x"}]});
        assert_eq!(summary(&group), "http://+:80/a/  1 URL  auth: none");
    }
}
