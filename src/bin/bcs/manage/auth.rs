//! `bcs auth`: a group's authentication schemes, one at a time as the original's WMI methods set them.

use bits_compact::service::{AuthSettings, Enable};
use clap::{Args, Subcommand, ValueEnum};
use http::Method;

use super::connect::segment;
use super::{call, send, show, ApiArgs, PrefixArgs, EXIT_CODES};
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
    #[arg(value_name = "STATE")]
    switch: State,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum State {
    On,
    Off,
}

pub(crate) async fn run(command: AuthCommand) -> Result<(), CliError> {
    match command {
        AuthCommand::Set(args) => {
            let path = format!(
                "/v1/groups/{}/auth/{}",
                segment(&args.prefix),
                segment(&args.scheme)
            );
            let body = enable_body(matches!(args.switch, State::On));
            let schemes = send(&args.api, Method::PUT, &path, &body).await?;
            show(&args.api, &schemes, |schemes: AuthSettings| {
                note_safe!("bcs: {}: {}", args.prefix, on_list(&schemes))
            })?;
            Ok(())
        }
        AuthCommand::Show(args) => {
            let path = format!("/v1/groups/{}/auth", segment(&args.prefix));
            let schemes = call(&args.api, Method::GET, &path, None).await?;
            show(&args.api, &schemes, |schemes: AuthSettings| {
                for (name, on) in states(&schemes) {
                    say!("{name:<18} {}", if on { "on" } else { "off" });
                }
            })?;
            Ok(())
        }
    }
}

/// `PUT /v1/groups/{p}/auth/{scheme}`'s body (an `Enable`).
fn enable_body(on: bool) -> Enable {
    Enable { enabled: on }
}

/// Each scheme, as the service names it, and whether it is on; in a fixed order.
fn states(s: &AuthSettings) -> [(&'static str, bool); 4] {
    [
        ("negotiate", s.negotiate),
        ("ntlm", s.ntlm),
        ("basic", s.basic),
        ("client_certificate", s.client_certificate),
    ]
}

/// `auth now: ntlm, basic` (or `no authentication scheme on`).
fn on_list(schemes: &AuthSettings) -> String {
    let on: Vec<&str> = states(schemes)
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
    use serde_json::json;

    fn settings(value: serde_json::Value) -> AuthSettings {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn schemes_print_in_a_fixed_order() {
        let answer = settings(
            json!({"ntlm": true, "basic": false, "client_certificate": true,
            "negotiate": false, "allow_basic_over_http": false}),
        );
        let names: Vec<&str> = states(&answer).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["negotiate", "ntlm", "basic", "client_certificate"]);
        assert_eq!(on_list(&answer), "auth now ntlm, client_certificate");
        let none = settings(
            json!({"ntlm": false, "basic": false, "client_certificate": false,
            "negotiate": false, "allow_basic_over_http": true}),
        );
        assert_eq!(on_list(&none), "no authentication scheme on");
    }

    /// What the CLI sends is the library's `Enable`.
    #[test]
    fn set_bodies_are_enables() {
        let body = serde_json::to_value(enable_body(true)).unwrap();
        assert_eq!(body, json!({"enabled": true}));
        let enable: bits_compact::service::Enable = serde_json::from_value(body).unwrap();
        assert!(enable.enabled);
    }
}
