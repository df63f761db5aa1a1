//! `bcs limit`: a group's ConnectionLimit and BandwidthLimit, set by the original's property names and
//! values (u32, 4294967295 for unlimited, or `unlimited` and rates), and shown as every other command
//! shows them: with `--json`, `{"connection_limit", "bandwidth_limit"}` as strings (`"10"`,
//! `"unlimited"`, `"8MiB/s"`), the group's own fields, as `bcs group show --json` and `bcs export` print
//! them.

use std::str::FromStr;

use bits_compact::service::{GroupSettings, GroupView};
use bits_compact::ByteRate;
use clap::{Args, Subcommand};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use super::connect::segment;
use super::{call, print_json, read, send, ApiArgs, ManageError, PrefixArgs, EXIT_CODES};
use crate::CliError;

/// The original's "no limit" value, 0xFFFFFFFF.
const UNLIMITED: u32 = u32::MAX;

#[derive(Subcommand)]
pub(crate) enum LimitCommand {
    /// Set a group's ConnectionLimit or BandwidthLimit.
    #[command(after_help = EXIT_CODES)]
    Set(SetArgs),
    /// Show a group's limits.
    #[command(after_help = EXIT_CODES)]
    Show(PrefixArgs),
}

#[derive(Args)]
pub(crate) struct SetArgs {
    /// The group's prefix (http://+:8080/app/).
    prefix: String,
    /// ConnectionLimit or BandwidthLimit (any case; connection-limit, bandwidth-limit too).
    name: Property,
    /// A number, unlimited, or for BandwidthLimit a rate (1MiB/s, 500KB/s).
    value: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// The two properties, as the service names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Property {
    ConnectionLimit,
    BandwidthLimit,
}

impl Property {
    fn name(self) -> &'static str {
        match self {
            Property::ConnectionLimit => "ConnectionLimit",
            Property::BandwidthLimit => "BandwidthLimit",
        }
    }

    /// The property's value in the setting's form: `unlimited`, or the number (bytes per second).
    fn text(value: u32) -> String {
        match value {
            UNLIMITED => "unlimited".to_owned(),
            n => n.to_string(),
        }
    }

    /// `PATCH /v1/groups/{p}`'s body (a `GroupSettings`) that sets the property to `value`.
    fn body(self, value: u32) -> GroupSettings {
        let text = Some(Property::text(value));
        match self {
            Property::ConnectionLimit => GroupSettings {
                connection_limit: text,
                ..GroupSettings::default()
            },
            Property::BandwidthLimit => GroupSettings {
                bandwidth_limit: text,
                ..GroupSettings::default()
            },
        }
    }

    /// The property's value in a group, as the service shows it.
    fn of(self, group: &GroupView) -> &str {
        match self {
            Property::ConnectionLimit => &group.connection_limit,
            Property::BandwidthLimit => &group.bandwidth_limit,
        }
    }

    /// The property's value from `text`: a u32, `unlimited`, or for BandwidthLimit a rate.
    fn value(self, text: &str) -> Result<u32, ManageError> {
        let text = text.trim();
        if let Ok(n) = text.parse::<u32>() {
            return Ok(n);
        }
        if text.eq_ignore_ascii_case("unlimited") {
            return Ok(UNLIMITED);
        }
        let invalid = |reason: String| ManageError::Invalid(format!("{}: {reason}", self.name()));
        match self {
            Property::ConnectionLimit => Err(invalid(format!(
                "expected a number or unlimited, not {text:?}"
            ))),
            Property::BandwidthLimit => {
                let rate: ByteRate = text.parse().map_err(|e| invalid(format!("{e}")))?;
                match rate.get().map(u32::try_from) {
                    None => Ok(UNLIMITED),
                    Some(Ok(n)) if n != UNLIMITED => Ok(n),
                    Some(_) => Err(invalid(format!(
                        "{text} is more than the property holds (4294967294 bytes per second)"
                    ))),
                }
            }
        }
    }
}

impl FromStr for Property {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let plain: String = text
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        match plain.as_str() {
            "connectionlimit" => Ok(Property::ConnectionLimit),
            "bandwidthlimit" => Ok(Property::BandwidthLimit),
            _ => Err(format!(
                "{text:?}: expected ConnectionLimit or BandwidthLimit"
            )),
        }
    }
}

pub(crate) async fn run(command: LimitCommand) -> Result<(), CliError> {
    match command {
        LimitCommand::Set(args) => {
            let value = args.name.value(&args.value)?;
            let path = format!("/v1/groups/{}", segment(&args.prefix));
            let body = args.name.body(value);
            let group = send(&args.api, Method::PATCH, &path, &body).await?;
            print_limits(&args.api, &group, |group| {
                let now = describe(args.name, args.name.of(group));
                note_safe!("bcs: {} {} now {now}", args.prefix, args.name.name())
            })?;
            Ok(())
        }
        LimitCommand::Show(args) => {
            let path = format!("/v1/groups/{}", segment(&args.prefix));
            let group = call(&args.api, Method::GET, &path, None).await?;
            print_limits(&args.api, &group, |group| {
                for property in [Property::ConnectionLimit, Property::BandwidthLimit] {
                    let value = describe(property, property.of(group));
                    say_safe!("{}: {value}", property.name());
                }
            })?;
            Ok(())
        }
    }
}

/// A group's limits: with `--json` its two fields as they are, else what `text` makes of them.
fn print_limits(
    api: &ApiArgs,
    group: &Value,
    text: impl FnOnce(&GroupView),
) -> Result<(), ManageError> {
    let group: GroupView = read(group)?;
    match api.json {
        true => print_json(&limits_json(&group), StatusCode::OK),
        false => text(&group),
    }
    Ok(())
}

/// `{"connection_limit": "10", "bandwidth_limit": "8MiB/s"}`.
fn limits_json(group: &GroupView) -> Value {
    json!({
        "connection_limit": group.connection_limit,
        "bandwidth_limit": group.bandwidth_limit,
    })
}

/// A setting in words: `unlimited`, `10`, `1MiB/s (1048576)`.
fn describe(property: Property, value: &str) -> String {
    match (
        property,
        value.parse::<ByteRate>().ok().and_then(|r| r.get()),
    ) {
        (Property::BandwidthLimit, Some(n)) if n.to_string() != value => format!("{value} ({n})"),
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_names_ignore_case_and_dashes() {
        for text in [
            "ConnectionLimit",
            "connectionlimit",
            "CONNECTION-LIMIT",
            "connection_limit",
        ] {
            assert_eq!(text.parse(), Ok(Property::ConnectionLimit), "{text}");
        }
        for text in ["BandwidthLimit", "bandwidth-limit"] {
            assert_eq!(text.parse(), Ok(Property::BandwidthLimit), "{text}");
        }
        assert!("MaxConnections".parse::<Property>().is_err());
    }

    #[test]
    fn values_are_u32_unlimited_or_rates() {
        let connections = Property::ConnectionLimit;
        assert_eq!(connections.value("10").unwrap(), 10);
        assert_eq!(connections.value("unlimited").unwrap(), UNLIMITED);
        assert_eq!(connections.value("4294967295").unwrap(), UNLIMITED);
        assert_eq!(connections.value("Unlimited").unwrap(), UNLIMITED);
        for bad in ["1MiB/s", "-1", "4294967296", "ten"] {
            let e = connections.value(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
        let bandwidth = Property::BandwidthLimit;
        assert_eq!(bandwidth.value("1MiB/s").unwrap(), 1 << 20);
        assert_eq!(bandwidth.value("500KB/s").unwrap(), 500_000);
        assert_eq!(bandwidth.value("65536").unwrap(), 65536);
        assert_eq!(bandwidth.value("unlimited").unwrap(), UNLIMITED);
        // Numbers go as they are (the service judges 0 or 100); rates are checked here.
        assert_eq!(bandwidth.value("100").unwrap(), 100);
        for bad in ["100B/s", "4GiB/s", "fast"] {
            let e = bandwidth.value(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn values_read_back_in_words() {
        let bw = Property::BandwidthLimit;
        assert_eq!(describe(bw, "1MiB/s"), "1MiB/s (1048576)");
        assert_eq!(describe(bw, "65536"), "65536");
        assert_eq!(describe(bw, "unlimited"), "unlimited");
        assert_eq!(describe(Property::ConnectionLimit, "10"), "10");
    }

    /// What the CLI sends is the library's `GroupSettings`, with the setting in its text form.
    #[test]
    fn set_bodies_are_group_settings() {
        let body = serde_json::to_value(Property::ConnectionLimit.body(10)).unwrap();
        assert_eq!(body, json!({"connection_limit": "10"}));
        let settings: GroupSettings = serde_json::from_value(body).unwrap();
        assert_eq!(settings.connection_limit.as_deref(), Some("10"));
        let body = serde_json::to_value(Property::BandwidthLimit.body(UNLIMITED)).unwrap();
        let settings: GroupSettings = serde_json::from_value(body).unwrap();
        assert_eq!(settings.bandwidth_limit.as_deref(), Some("unlimited"));
    }
}
