//! The names a fleet and its nodes go by: they become etcd key segments (`/bcs/<fleet>/nodes/<node>`), so
//! they are parsed once, here, into types that cannot hold a `/` or anything unprintable.

use std::fmt;
use std::str::FromStr;

/// The longest fleet or node name.
pub const MAX_NAME: usize = 64;

/// Why a fleet or node name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} name {input:?}: {reason}")]
pub struct NameError {
    /// `fleet` or `node`.
    pub what: &'static str,
    /// The name as given.
    pub input: String,
    /// Which rule it broke.
    pub reason: &'static str,
}

/// SECURITY: the threat is a name that escapes its place in etcd's key space (`a/../b`, `a/config`), or
/// that carries terminal escapes into `bcs fleet status`. Only ASCII letters, digits, `-`, `_` and `.`
/// are taken, at most [`MAX_NAME`] of them, not starting with `.` or `-`.
fn check(what: &'static str, input: &str) -> Result<(), NameError> {
    let refuse = |reason| {
        Err(NameError {
            what,
            input: input.chars().take(MAX_NAME * 2).collect(),
            reason,
        })
    };
    if input.is_empty() {
        return refuse("it is empty");
    }
    if input.len() > MAX_NAME {
        return refuse("it is longer than 64 characters");
    }
    if input.contains('/') {
        return refuse("it contains '/'");
    }
    if !input
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return refuse("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    if input.starts_with(['.', '-']) {
        return refuse("it starts with '.' or '-'");
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl FromStr for $name {
            type Err = NameError;

            fn from_str(input: &str) -> Result<Self, NameError> {
                check($what, input).map(|()| $name(input.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl $name {
            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A fleet's name (`--fleet`): its keys are under `/bcs/<fleet>/`.
    FleetName,
    "fleet"
);
name_type!(
    /// A node's name in its fleet (`--node`): one process at a time holds it.
    NodeName,
    "node"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_key_segments_and_nothing_else() {
        for good in ["prod", "eu-west_1", "a", "n.1", &"x".repeat(64)] {
            assert_eq!(good.parse::<FleetName>().unwrap().as_str(), good);
            assert_eq!(good.parse::<NodeName>().unwrap().to_string(), good);
        }
        for (bad, reason) in [
            ("", "empty"),
            ("a/b", "'/'"),
            ("../config", "'/'"),
            ("a b", "only ASCII"),
            ("a\u{1b}[31m", "only ASCII"),
            ("é", "only ASCII"),
            (".hidden", "starts with"),
            ("-x", "starts with"),
            (&"x".repeat(65), "longer"),
        ] {
            let e = bad.parse::<FleetName>().unwrap_err();
            assert!(e.reason.contains(reason), "{bad:?}: {e}");
            assert!(e.to_string().starts_with("fleet name"), "{e}");
            let e = bad.parse::<NodeName>().unwrap_err();
            assert!(e.to_string().starts_with("node name"), "{e}");
        }
        // A huge name is not echoed whole.
        let e = "y".repeat(10_000).parse::<NodeName>().unwrap_err();
        assert!(e.to_string().len() < 300);
    }
}
