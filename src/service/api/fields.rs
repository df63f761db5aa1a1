//! The rules every string the management API takes passes before a call changes anything: a bound on its
//! length for each kind of field ([`NAME`], [`DESCRIPTION`], [`URL`], [`PATH`], [`SDDL`], [`SECRET`]; a
//! longer one is `field_too_long`, naming the field), a bound on the entries of a list ([`LIST`]), and for
//! what people read in a terminal — names, descriptions, file names, URLs — no control character
//! (`control_character`).
//!
//! SECURITY: the threats are a caller who makes the service hold, store, rewrite and return megabytes per
//! field (ten 7.5 MB job names took 80 MB of memory, and `GET /v1/jobs` returned 77 MB), and one who plants
//! terminal escapes (a screen clear, a fake prompt, a window title, an OSC 52 clipboard write) or
//! bidirectional overrides (text that reads other than it is) in what an administrator's `bcs job list`
//! prints. Both are refused at the API before anything is kept, and the refusal names the field and the
//! character's code point, never the character itself.

use crate::service::error::MgmtError;

/// How long one kind of field may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bound {
    /// At most this many characters: what people read (names, descriptions).
    Chars(usize),
    /// At most this many bytes: what programs read (URLs, paths, SDDL, secrets).
    Bytes(usize),
}

/// A name: a job's, a user's, a group's, a scheme's, a setting's value.
pub(crate) const NAME: Bound = Bound::Chars(256);
/// A job's description.
pub(crate) const DESCRIPTION: Bound = Bound::Chars(1024);
/// A URL: a job's remote file, a proxy, a group's prefix.
pub(crate) const URL: Bound = Bound::Bytes(8 << 10);
/// A path: a job's local file, a published file, a URL's suffix, a certificate file (Linux's PATH_MAX).
pub(crate) const PATH: Bound = Bound::Bytes(4 << 10);
/// An SDDL string: a group's default, a URL's.
pub(crate) const SDDL: Bound = Bound::Bytes(64 << 10);
/// PEM text: a certificate chain or a private key.
pub(crate) const PEM: Bound = Bound::Bytes(256 << 10);
/// A password.
pub(crate) const SECRET: Bound = Bound::Bytes(1 << 10);
/// The most entries of a list of strings (a job's pins or proxy bypass, a user's groups, a group's
/// schemes); a job's files have their own bound, BITS's MaxFilesPerJob.
pub(crate) const LIST: usize = 256;

/// `value` fits `bound`, or `field_too_long` naming `field`.
pub(crate) fn bounded(field: &str, value: &str, bound: Bound) -> Result<(), MgmtError> {
    let (length, max, unit) = match bound {
        Bound::Chars(max) => (value.chars().count(), max, "characters"),
        Bound::Bytes(max) => (value.len(), max, "bytes"),
    };
    if length > max {
        return Err(MgmtError::Invalid {
            code: "field_too_long",
            message: format!("{field} is {length} {unit} long; at most {max}"),
        });
    }
    Ok(())
}

/// `value` fits `bound` and holds nothing a terminal would act on ([`is_unprintable`]), or
/// `control_character` naming `field`, the character's code point and its place.
pub(crate) fn printable(field: &str, value: &str, bound: Bound) -> Result<(), MgmtError> {
    bounded(field, value, bound)?;
    match value.chars().enumerate().find(|(_, c)| is_unprintable(*c)) {
        None => Ok(()),
        Some((at, c)) => Err(MgmtError::Invalid {
            code: "control_character",
            message: format!(
                "{field} holds U+{:04X} at character {}; names, descriptions, file names and URLs may not hold control characters or bidirectional overrides",
                u32::from(c),
                at + 1
            ),
        }),
    }
}

/// At most `max` entries in `items`, or `field_too_long` naming `field`.
pub(crate) fn few<T>(field: &str, items: &[T], max: usize) -> Result<(), MgmtError> {
    if items.len() > max {
        return Err(MgmtError::Invalid {
            code: "field_too_long",
            message: format!("{field} has {} entries; at most {max}", items.len()),
        });
    }
    Ok(())
}

/// Every entry of `items` passes `check` (given the entry's field name, `field[i]`), and there are at
/// most [`LIST`].
pub(crate) fn each(
    field: &str,
    items: &[String],
    check: impl Fn(&str, &str) -> Result<(), MgmtError>,
) -> Result<(), MgmtError> {
    few(field, items, LIST)?;
    items
        .iter()
        .enumerate()
        .try_for_each(|(i, item)| check(&format!("{field}[{i}]"), item))
}

/// Every string of a JSON document the API takes whole (a configuration's principals or TLS bindings):
/// object keys (user, group and SNI names) printable within [`NAME`]; values printable within
/// `values`, or only bounded by it where `multiline` (PEM text holds newlines); lists within [`LIST`]
/// entries. `field` names the document's part in an error, with the path below it (`principals.users.x`).
pub(crate) fn document(
    field: &str,
    value: &serde_json::Value,
    values: Bound,
    multiline: bool,
) -> Result<(), MgmtError> {
    use serde_json::Value;
    match value {
        Value::String(text) if multiline => bounded(field, text, values),
        Value::String(text) => printable(field, text, values),
        Value::Array(items) => {
            if items.len() > LIST {
                return Err(MgmtError::Invalid {
                    code: "field_too_long",
                    message: format!("{field} has {} entries; at most {LIST}", items.len()),
                });
            }
            (items.iter().enumerate()).try_for_each(|(i, item)| {
                document(&format!("{field}[{i}]"), item, values, multiline)
            })
        }
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            printable(&format!("{field} key"), key, NAME)?;
            document(&format!("{field}.{key}"), item, values, multiline)
        }),
        _ => Ok(()),
    }
}

/// The C0 and C1 controls and DEL (Unicode's `Cc`), and the bidirectional embeddings, overrides and
/// isolates (U+202A–U+202E, U+2066–U+2069): what the API refuses in names and what `bcs` escapes in
/// everything it prints (one rule for both).
pub fn is_unprintable(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidirectional_overrides_are_refused_and_never_echoed() {
        for c in [
            '\0', '\u{7}', '\n', '\r', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}', '\u{202a}',
            '\u{202e}', '\u{2066}', '\u{2069}',
        ] {
            let err = printable("display_name", &format!("ab{c}"), NAME).unwrap_err();
            assert_eq!(err.code(), "control_character");
            let message = err.message();
            assert!(message.contains("display_name") && message.contains("at character 3"));
            assert!(
                message.contains(&format!("U+{:04X}", u32::from(c))),
                "{message}"
            );
            assert!(!message.contains(c), "{message:?}");
        }
        for fine in ["setup.exe", "Zürich 日本 €", "tab-free", "\u{200f}x"] {
            printable("display_name", fine, NAME).unwrap();
        }
    }

    #[test]
    fn bounds_count_characters_or_bytes_and_name_the_field() {
        bounded("display_name", &"é".repeat(256), NAME).unwrap();
        let err = bounded("display_name", &"é".repeat(257), NAME).unwrap_err();
        assert_eq!(err.code(), "field_too_long");
        assert_eq!(
            err.message(),
            "display_name is 257 characters long; at most 256"
        );
        bounded("local_file", &"a".repeat(4096), PATH).unwrap();
        let err = bounded("local_file", &"é".repeat(2049), PATH).unwrap_err();
        assert_eq!(err.message(), "local_file is 4098 bytes long; at most 4096");
        let many = vec![String::new(); LIST + 1];
        let err = each("pins", &many, |_, _| Ok(())).unwrap_err();
        assert_eq!(err.message(), "pins has 257 entries; at most 256");
        let err = each("groups", &["a".into(), "b\u{1b}".into()], |f, v| {
            printable(f, v, NAME)
        })
        .unwrap_err();
        assert!(
            err.message().starts_with("groups[1] holds U+001B"),
            "{}",
            err.message()
        );
    }

    #[test]
    fn documents_taken_whole_have_their_keys_values_and_lists_checked() {
        let ok = serde_json::json!({"users": {"alice": {"groups": ["staff"], "sid": "S-1-5-21-1-2-3-1001"}}});
        assert!(document("principals", &ok, DESCRIPTION, false).is_ok());
        let key = serde_json::json!({"users": {"al\u{1b}]0;x\u{7}ice": {}}});
        let err = document("principals", &key, DESCRIPTION, false).unwrap_err();
        assert_eq!(err.code(), "control_character");
        let long = serde_json::json!({"users": {"bob": {"groups": ["g".repeat(2000)]}}});
        let err = document("principals", &long, DESCRIPTION, false).unwrap_err();
        assert_eq!(err.code(), "field_too_long");
        assert!(
            err.to_string().contains("principals.users.bob.groups[0]"),
            "{err}"
        );
        let many = serde_json::json!({"groups": vec!["g"; LIST + 1]});
        assert_eq!(
            document("principals", &many, NAME, false)
                .unwrap_err()
                .code(),
            "field_too_long"
        );
        // PEM keeps its newlines, within its bound.
        let pem = serde_json::json!({"certificate": {"cert": "-----BEGIN\nAAAA\n-----END\n"}});
        assert!(document("tls[0]", &pem, PEM, true).is_ok());
        let huge = serde_json::json!({"certificate": {"cert": "A".repeat((256 << 10) + 1)}});
        assert_eq!(
            document("tls[0]", &huge, PEM, true).unwrap_err().code(),
            "field_too_long"
        );
    }
}
