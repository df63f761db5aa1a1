//! `bcs limit`: a group's ConnectionLimit and BandwidthLimit, as the original's properties (u32 values,
//! 4294967295 for unlimited).

use std::str::FromStr;

use bits_compact::{ByteRate, ConnectionLimit};
use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};

use super::connect::segment;
use super::{call, show, ApiArgs, ManageError, PrefixArgs, EXIT_CODES};
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
            let path = format!(
                "/v1/groups/{}/properties/{}",
                segment(&args.prefix),
                args.name.name()
            );
            let body = json!({ "value": value });
            let limits = call(&args.api, Method::PUT, &path, Some(&body)).await?;
            show(&args.api, &limits, |limits| {
                let now = describe(args.name, limits.get(args.name.name()));
                note!("bcs: {} {} now {now}", args.prefix, args.name.name())
            });
            Ok(())
        }
        LimitCommand::Show(args) => {
            let path = format!("/v1/groups/{}/properties", segment(&args.prefix));
            let limits = call(&args.api, Method::GET, &path, None).await?;
            show(&args.api, &limits, |limits| {
                for property in [Property::ConnectionLimit, Property::BandwidthLimit] {
                    let value = describe(property, limits.get(property.name()));
                    say!("{}: {value}", property.name());
                }
            });
            Ok(())
        }
    }
}

/// A property's value in words: `unlimited`, `10`, `1MiB/s (1048576)`.
fn describe(property: Property, value: Option<&Value>) -> String {
    let Some(n) = value.and_then(Value::as_u64) else {
        return value.map_or_else(|| "?".to_owned(), Value::to_string);
    };
    if n == u64::from(UNLIMITED) {
        return "unlimited".to_owned();
    }
    match property {
        Property::ConnectionLimit => u32::try_from(n)
            .ok()
            .and_then(|n| ConnectionLimit::new(n).ok())
            .map_or_else(|| n.to_string(), |l| l.to_string()),
        Property::BandwidthLimit => match ByteRate::per_second(n) {
            Ok(rate) => format!("{rate} ({n})"),
            Err(_) => n.to_string(),
        },
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
        assert_eq!(describe(bw, Some(&json!(1048576))), "1MiB/s (1048576)");
        assert_eq!(describe(bw, Some(&json!(4294967295_u64))), "unlimited");
        assert_eq!(describe(Property::ConnectionLimit, Some(&json!(10))), "10");
        assert_eq!(describe(Property::ConnectionLimit, None), "?");
    }
}
