//! `bcs auth`: a group's authentication schemes, one at a time as the original's WMI methods set them.

use clap::{Args, Subcommand, ValueEnum};
use http::Method;
use serde_json::{json, Value};

use super::connect::segment;
use super::{call, show, ApiArgs, PrefixArgs, EXIT_CODES};
use crate::CliError;

#[derive(Subcommand)]
pub(crate) enum AuthCommand {
    /// Turn one scheme on or off for a group.
    #[command(after_help = EXIT_CODES)]
    Set(SetArgs),
    /// Show which schemes a group has on.
    #[command(after_help = EXIT_CODES)]
    Show(PrefixArgs),
}

#[derive(Args)]
pub(crate) struct SetArgs {
    /// The group's prefix (http://+:8080/app/).
    prefix: String,
    /// negotiate, ntlm, basic or client-cert, or the original's WMI number (0, 1); the service checks it.
    scheme: String,
    /// on or off.
    state: State,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum State {
    On,
    Off,
}

/// The schemes as the service names them, in the order they are printed.
const SCHEMES: [&str; 4] = ["negotiate", "ntlm", "basic", "client_certificate"];

pub(crate) async fn run(command: AuthCommand) -> Result<(), CliError> {
    match command {
        AuthCommand::Set(args) => {
            let path = format!(
                "/v1/groups/{}/auth/{}",
                segment(&args.prefix),
                segment(&args.scheme)
            );
            let body = json!({ "enabled": matches!(args.state, State::On) });
            let schemes = call(&args.api, Method::PUT, &path, Some(&body)).await?;
            show(&args.api, &schemes, |schemes| {
                note!("bcs: {}: {}", args.prefix, on_list(schemes))
            });
            Ok(())
        }
        AuthCommand::Show(args) => {
            let path = format!("/v1/groups/{}/auth", segment(&args.prefix));
            let schemes = call(&args.api, Method::GET, &path, None).await?;
            show(&args.api, &schemes, |schemes| {
                for (name, on) in states(schemes) {
                    say!("{name:<18} {}", if on { "on" } else { "off" });
                }
            });
            Ok(())
        }
    }
}

/// Each scheme the answer names and whether it is on: the known ones first, in their order.
fn states(schemes: &Value) -> Vec<(String, bool)> {
    let Some(map) = schemes.as_object() else {
        return Vec::new();
    };
    let known = SCHEMES
        .iter()
        .filter_map(|name| Some((*name, map.get(*name)?)));
    let others = map
        .iter()
        .filter(|(name, _)| !SCHEMES.contains(&name.as_str()))
        .map(|(name, on)| (name.as_str(), on));
    known
        .chain(others)
        .map(|(name, on)| (name.to_owned(), on.as_bool().unwrap_or(false)))
        .collect()
}

/// `auth now: ntlm, basic` (or `no authentication scheme on`).
fn on_list(schemes: &Value) -> String {
    let on: Vec<String> = states(schemes)
        .into_iter()
        .filter_map(|(name, on)| on.then_some(name))
        .collect();
    match on.is_empty() {
        true => "no authentication scheme on".to_owned(),
        false => format!("auth now {}", on.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_print_in_a_fixed_order() {
        let answer =
            json!({"ntlm": true, "basic": false, "client_certificate": true, "negotiate": false});
        let names: Vec<String> = states(&answer).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, SCHEMES);
        assert_eq!(on_list(&answer), "auth now ntlm, client_certificate");
        assert_eq!(
            on_list(&json!({"ntlm": false})),
            "no authentication scheme on"
        );
    }
}
