//! `bcs export` and `bcs apply`: the service's whole configuration, as TOML for people and files, as JSON
//! on the wire.

use std::path::PathBuf;

use clap::Args;
use http::Method;
use serde_json::Value;

use super::{call, show, ApiArgs, ManageError};
use crate::CliError;

#[derive(Args)]
pub(crate) struct ApplyArgs {
    /// The configuration, in TOML (as `bcs export` prints it).
    file: PathBuf,
    /// Also delete what the file does not list (groups, URLs, bindings); without it, only add and change.
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    api: ApiArgs,
}

/// `GET /v1/config`, printed as TOML (JSON with `--json`).
pub(crate) async fn export(api: &ApiArgs) -> Result<(), CliError> {
    let config = call(api, Method::GET, "/v1/config", None).await?;
    if api.json {
        show(api, &config, |_| {});
        return Ok(());
    }
    let text = to_toml(&config)?;
    // TOML from toml ends in a newline already.
    say!("{}", text.trim_end());
    Ok(())
}

/// `PUT /v1/config?prune=…` with the file's TOML as JSON; prints whether anything changed.
pub(crate) async fn apply(args: &ApplyArgs) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&args.file).map_err(|source| ManageError::Read {
        path: args.file.clone(),
        source,
    })?;
    let config = from_toml(&text).map_err(|source| ManageError::Toml {
        path: args.file.clone(),
        source,
    })?;
    let path = format!("/v1/config?prune={}", args.prune);
    let answer = call(&args.api, Method::PUT, &path, Some(&config)).await?;
    show(&args.api, &answer, |answer| {
        let file = args.file.display();
        match answer.get("changed") {
            Some(Value::Bool(true)) => note!("bcs: applied {file}: the service changed"),
            Some(Value::Bool(false)) => note!("bcs: applied {file}: nothing to change"),
            _ => note!("bcs: applied {file}"),
        }
    });
    Ok(())
}

/// The configuration as TOML. JSON's nulls, which TOML has no word for, are left out: the service writes
/// them for "none", and leaves a missing optional field as none when the file is applied.
fn to_toml(config: &Value) -> Result<String, ManageError> {
    toml::to_string_pretty(&NamesFirst(&without_nulls(config.clone()))).map_err(ManageError::ToToml)
}

/// The fields that say which thing a table is, first in its table; the rest in alphabetical order (as
/// serde_json keeps them).
const NAMING_FIELDS: [&str; 5] = ["prefix", "port", "name", "suffix", "kind"];

/// A JSON value serialised with each object's naming field first, so that an exported group starts
/// with its prefix rather than with `allow_basic_over_http`.
struct NamesFirst<'a>(&'a Value);

impl serde::Serialize for NamesFirst<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(map) => {
                let naming = NAMING_FIELDS.iter().filter_map(|k| map.get_key_value(*k));
                let rest = map
                    .iter()
                    .filter(|(k, _)| !NAMING_FIELDS.contains(&k.as_str()));
                let mut out = s.serialize_map(Some(map.len()))?;
                for (key, value) in naming.chain(rest) {
                    out.serialize_entry(key, &NamesFirst(value))?;
                }
                out.end()
            }
            Value::Array(items) => {
                let mut out = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    out.serialize_element(&NamesFirst(item))?;
                }
                out.end()
            }
            other => other.serialize(s),
        }
    }
}

fn from_toml(text: &str) -> Result<Value, toml::de::Error> {
    toml::from_str(text)
}

fn without_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(without_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A configuration as `GET /v1/config` answers it (per the API contract).
    fn exported() -> Value {
        json!({
            "groups": [{
                "prefix": "http://+:8080/app/",
                "auth": ["ntlm", "basic"],
                "allow_basic_over_http": false,
                "default_sddl": "D:(A;;GA;;;WD)",
                "connection_limit": "10",
                "bandwidth_limit": "1MiB/s",
                "cache_max_age_secs": 60,
                "index": false,
                "urls": [
                    {"suffix": "a.bin", "file": "/srv/a.bin"},
                    {"suffix": "tools/a.exe", "file": "/srv/tools/a.exe", "sddl": "D:(A;;GR;;;AU)"},
                ],
            }, {
                "prefix": "https://files.example:8443/",
                "auth": [],
                "allow_basic_over_http": false,
                "default_sddl": null,
                "connection_limit": "unlimited",
                "bandwidth_limit": "unlimited",
                "index": true,
                "urls": [],
            }],
            "tls": [{
                "port": 8443,
                "certificate": {"kind": "pem_files", "cert": "/etc/bcs/c.pem", "key": "/etc/bcs/k.pem"},
                "sni": {},
                "client_certificates": null,
                "http2": true,
            }],
        })
    }

    #[test]
    fn export_then_apply_gives_the_same_json_less_nulls() {
        let config = exported();
        let text = to_toml(&config).unwrap();
        assert!(text.contains("[[groups]]"), "{text}");
        assert!(text.contains("[[groups.urls]]"), "{text}");
        assert!(!text.contains("null"), "{text}");
        let first_field = text.lines().nth(1).unwrap_or_default();
        assert_eq!(first_field, r#"prefix = "http://+:8080/app/""#, "{text}");
        assert_eq!(from_toml(&text).unwrap(), without_nulls(config));
    }

    #[test]
    fn hand_written_toml_becomes_the_apis_json() {
        let text = r#"
            [[groups]]
            prefix = "http://+:8080/app/"
            auth = ["ntlm"]
            connection_limit = "unlimited"
            bandwidth_limit = "1MiB/s"
            cache_max_age_secs = 60

            [[groups.urls]]
            suffix = "a.bin"
            file = "/srv/a.bin"

            [[tls]]
            port = 8443
            http2 = false
            [tls.certificate]
            kind = "pkcs12_file"
            file = "/etc/bcs/c.p12"
            password = "secret"
        "#;
        assert_eq!(
            from_toml(text).unwrap(),
            json!({
                "groups": [{
                    "prefix": "http://+:8080/app/",
                    "auth": ["ntlm"],
                    "connection_limit": "unlimited",
                    "bandwidth_limit": "1MiB/s",
                    "cache_max_age_secs": 60,
                    "urls": [{"suffix": "a.bin", "file": "/srv/a.bin"}],
                }],
                "tls": [{
                    "port": 8443,
                    "http2": false,
                    "certificate": {"kind": "pkcs12_file", "file": "/etc/bcs/c.p12", "password": "secret"},
                }],
            })
        );
    }

    #[test]
    fn bad_toml_is_invalid() {
        let e = from_toml("groups = [").unwrap_err();
        let e = ManageError::Toml {
            path: "c.toml".into(),
            source: e,
        };
        assert_eq!(e.exit_code(), 2);
    }
}
