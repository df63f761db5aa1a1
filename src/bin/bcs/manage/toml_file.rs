//! A configuration file as `bcs export` writes it and `bcs apply` reads it: TOML for people, the API's
//! [`ConfigDocument`] on the wire.
//!
//! Reading forgives what people write by hand and is strict about the rest, here, before anything is
//! sent: `connection_limit = 5` and `bandwidth_limit = 2097152` are taken as numbers (the document
//! holds them as text, as `export` writes them), and every part the library can check without the
//! service's files (prefixes, schemes, limits, SDDL, TLS bindings, principals) is checked against the
//! library's own types. An error names the file, line and column it is about, on one line.

use std::ops::Range;
use std::path::Path;

use bits_compact::authz::SecurityDescriptor;
use bits_compact::config::{GroupConfig, TlsBinding};
use bits_compact::service::ConfigDocument;
use bits_compact::Principals;
use serde::Deserialize;
use serde_json::Value;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use super::ManageError;

/// The settings a person may write as a number; the document holds them as text.
const NUMBER_AS_TEXT: [&str; 2] = ["connection_limit", "bandwidth_limit"];

/// Reads and checks the configuration file at `path`.
pub(crate) fn read(path: &Path) -> Result<ConfigDocument, ManageError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManageError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|(span, message)| at(path, &text, span, &message))
}

/// What went wrong, and where in the text (a byte range; none when the parser cannot say).
type Failure = (Option<Range<usize>>, String);

/// The document in `text`, checked.
fn parse(text: &str) -> Result<ConfigDocument, Failure> {
    let failure = |e: toml::de::Error| (e.span(), e.message().to_owned());
    let mut root = DeTable::parse(text).map_err(failure)?;
    numbers_as_text(root.get_mut());
    let checked = root.clone();
    let document =
        ConfigDocument::deserialize(toml::de::Deserializer::from(root)).map_err(failure)?;
    check(checked.get_ref())?;
    Ok(document)
}

/// `connection_limit = 5` as `"5"` in each group (the API's form); anything else as it is.
fn numbers_as_text(root: &mut DeTable<'_>) {
    let Some(DeValue::Array(groups)) = root.get_mut("groups").map(Spanned::get_mut) else {
        return;
    };
    for group in groups.iter_mut() {
        let DeValue::Table(group) = group.get_mut() else {
            continue;
        };
        for name in NUMBER_AS_TEXT {
            let Some(value) = group.get_mut(name) else {
                continue;
            };
            let DeValue::Integer(n) = value.get_ref() else {
                continue;
            };
            // Left as it is when it is no u64 (negative, too large): the error then says it is no text.
            if let Ok(n) = u64::from_str_radix(n.as_str(), n.radix()) {
                *value.get_mut() = DeValue::String(n.to_string().into());
            }
        }
    }
}

/// Each part the library can check here, as its own types read it: each group as a `GroupConfig` and its
/// SDDL, each TLS binding as a `TlsBinding`, the principals as `Principals`.
fn check(root: &DeTable<'_>) -> Result<(), Failure> {
    for group in items(root, "groups") {
        as_type::<GroupConfig>(group)?;
        if let DeValue::Table(table) = group.get_ref() {
            sddl(table.get("default_sddl"))?;
            for url in items(table, "urls") {
                if let DeValue::Table(url) = url.get_ref() {
                    sddl(url.get("sddl"))?;
                }
            }
        }
    }
    for binding in items(root, "tls") {
        as_type::<TlsBinding>(binding)?;
    }
    if let Some(principals) = root.get("principals") {
        as_type::<Principals>(principals)?;
    }
    Ok(())
}

/// The items of an array `name` in `table` (none when it is missing or not an array: the document's
/// own reading reports that).
fn items<'a, 'i>(table: &'a DeTable<'i>, name: &str) -> &'a [Spanned<DeValue<'i>>] {
    match table.get(name).map(Spanned::get_ref) {
        Some(DeValue::Array(items)) => items,
        _ => &[],
    }
}

/// `value` read as a `T`; the error where it is.
fn as_type<'i, T: Deserialize<'i>>(value: &Spanned<DeValue<'i>>) -> Result<(), Failure> {
    let span = value.span();
    T::deserialize(ValueDeserializer::from(value.clone()))
        .map(drop)
        .map_err(|e| (e.span().or(Some(span)), e.message().to_owned()))
}

/// An SDDL string, parsed; the error at its place (the parser's offset counted inside the quotes).
fn sddl(value: Option<&Spanned<DeValue<'_>>>) -> Result<(), Failure> {
    let Some(value) = value else {
        return Ok(());
    };
    let DeValue::String(text) = value.get_ref() else {
        return Ok(());
    };
    if text.is_empty() {
        return Ok(());
    }
    SecurityDescriptor::parse(text, None)
        .map(drop)
        .map_err(|e| (Some(value.span()), format!("invalid SDDL: {e}")))
}

/// The error as `FILE:LINE:COLUMN: message`, on one line.
fn at(path: &Path, text: &str, span: Option<Range<usize>>, message: &str) -> ManageError {
    let (line, column) = span.map_or((1, 1), |s| line_and_column(text, s.start));
    let message = message
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("; ");
    ManageError::File {
        path: path.to_owned(),
        line,
        column,
        message,
    }
}

/// The 1-based line and column (in characters) of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

/// The configuration as TOML. JSON's nulls, which TOML has no word for, are left out: the service writes
/// them for "none", and leaves a missing optional field as none when the file is applied.
pub(crate) fn write(config: &Value) -> Result<String, ManageError> {
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
                "prefix": "https://files.example:8443/files/",
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

    /// The document `text` holds, as JSON.
    fn parsed(text: &str) -> Result<Value, Failure> {
        parse(text).map(|d| serde_json::to_value(d).unwrap())
    }

    /// Where and why `text` is refused: (line, column, message).
    fn refused(text: &str) -> (usize, usize, String) {
        let ManageError::File {
            line,
            column,
            message,
            ..
        } = parse(text)
            .map_err(|(span, message)| at(Path::new("c.toml"), text, span, &message))
            .unwrap_err()
        else {
            panic!("not a file error")
        };
        (line, column, message)
    }

    #[test]
    fn export_then_apply_gives_the_same_document() {
        let config = exported();
        let text = write(&config).unwrap();
        assert!(text.contains("[[groups]]"), "{text}");
        assert!(text.contains("[[groups.urls]]"), "{text}");
        assert!(!text.contains("null"), "{text}");
        let first_field = text.lines().nth(1).unwrap_or_default();
        assert_eq!(first_field, r#"prefix = "http://+:8080/app/""#, "{text}");
        let expected: ConfigDocument = serde_json::from_value(without_nulls(config)).unwrap();
        assert_eq!(
            parsed(&text).unwrap(),
            serde_json::to_value(expected).unwrap()
        );
    }

    #[test]
    fn hand_written_numbers_are_numbers() {
        let text = r#"
            [[groups]]
            prefix = "http://+:8080/app/"
            auth = ["ntlm"]
            connection_limit = 5
            bandwidth_limit = 2097152
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
        let doc = parsed(text).unwrap();
        assert_eq!(doc["groups"][0]["connection_limit"], "5");
        assert_eq!(doc["groups"][0]["bandwidth_limit"], "2097152");
        assert_eq!(doc["groups"][0]["urls"][0]["file"], "/srv/a.bin");
        assert_eq!(doc["tls"][0]["certificate"]["password"], "secret");
        let rate = "[[groups]]\nprefix = \"http://+:8080/a/\"\nbandwidth_limit = \"2MiB/s\"\n";
        assert_eq!(
            parsed(rate).unwrap()["groups"][0]["bandwidth_limit"],
            "2MiB/s"
        );
    }

    #[test]
    fn errors_are_at_the_files_own_line_and_column() {
        let (line, column, message) =
            refused("[[groups]]\nprefix = \"http://+:8080/a/\"\nindex = [\n");
        assert_eq!((line, column), (3, 10), "{message}");
        assert!(!message.contains('\n'), "{message}");
        let (line, column, message) =
            refused("[[groups]]\nprefix = \"http://+:8080/a/\"\nconnection_limit = \"lots\"\n");
        assert_eq!((line, column), (3, 20), "{message}");
        let (line, _, message) = refused("[[groups]]\nprefix = \"ftp://x/\"\n");
        assert_eq!(line, 2, "{message}");
        let (line, _, message) =
            refused("[[groups]]\nprefix = \"http://+:80/a/\"\nconection_limit = 5\n");
        assert_eq!(line, 3, "{message}");
        assert!(message.contains("conection_limit"), "{message}");
        let (line, column, message) = refused(
            "[[groups]]\nprefix = \"http://+:80/a/\"\n[[groups.urls]]\nsuffix = \"a\"\nfile = \"/a\"\nsddl = \"D:(A;;GR;;;AU\"\n",
        );
        assert_eq!((line, column), (6, 8), "{message}");
        assert!(message.contains("SDDL"), "{message}");
        let (line, _, message) = refused("[[tls]]\nport = 8443\nhttp2 = \"yes\"\n");
        assert_eq!(line, 3, "{message}");
        let (line, _, message) =
            refused("[[groups]]\nprefix = \"http://+:80/a/\"\nconnection_limit = -1\n");
        assert_eq!(line, 3, "{message}");
    }

    #[test]
    fn bad_toml_is_invalid() {
        let e = at(Path::new("c.toml"), "x", None, "expected `=`");
        assert_eq!(e.to_string(), "c.toml:1:1: expected `=`");
        assert_eq!(e.exit_code(), 2);
    }
}
