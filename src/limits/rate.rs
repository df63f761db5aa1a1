//! `ByteRate` and `ConnectionLimit`: the values of the original's BandwidthLimit and ConnectionLimit
//! properties, parsed once.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::str::FromStr;

/// Why a limit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// The text is not a rate such as `4MiB/s`, `500KB/s`, `1G/s` or `65536`.
    #[error("invalid rate {input:?}: {reason}")]
    Rate {
        /// The text as given.
        input: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// A bandwidth limit below the original's minimum of 1024 bytes per second.
    #[error("a bandwidth limit must be at least 1024 bytes per second, not {0}")]
    TooLow(u64),
    /// A connection limit of zero, which would refuse every download.
    #[error("a connection limit must be at least 1")]
    ZeroConnections,
    /// Not a whole number of connections.
    #[error("invalid connection limit {0:?}")]
    Connections(String),
}

/// A bandwidth limit in bytes per second (at least 1024), or unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ByteRate(Option<NonZeroU64>);

impl ByteRate {
    /// No limit (the original's 0xFFFFFFFF).
    pub const UNLIMITED: ByteRate = ByteRate(None);
    /// The original's minimum.
    pub const MIN: u64 = 1024;

    /// A limit of `n` bytes per second; `n` must be at least 1024.
    pub fn per_second(n: u64) -> Result<Self, LimitError> {
        if n < Self::MIN {
            return Err(LimitError::TooLow(n));
        }
        Ok(ByteRate(NonZeroU64::new(n)))
    }

    /// Bytes per second, or `None` when unlimited.
    pub fn get(self) -> Option<u64> {
        self.0.map(NonZeroU64::get)
    }

    /// Whether there is no limit.
    pub fn is_unlimited(self) -> bool {
        self.0.is_none()
    }
}

impl fmt::Display for ByteRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(n) = self.get() else {
            return f.write_str("unlimited");
        };
        for (unit, size) in [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n % size == 0 {
                return write!(f, "{}{unit}/s", n / size);
            }
        }
        write!(f, "{n}B/s")
    }
}

impl FromStr for ByteRate {
    type Err = LimitError;

    /// `unlimited`, or a number (decimals allowed) with an optional unit and `/s`: B, K/KB/M/MB/G/GB
    /// (powers of 1000), KiB/MiB/GiB (powers of 1024); a bare number is bytes per second.
    fn from_str(input: &str) -> Result<Self, LimitError> {
        let err = |reason| LimitError::Rate {
            input: input.to_owned(),
            reason,
        };
        let text = input.trim();
        if text.eq_ignore_ascii_case("unlimited") {
            return Ok(ByteRate::UNLIMITED);
        }
        let text = text.strip_suffix("/s").unwrap_or(text).trim_end();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = (&text[..split], text[split..].trim());
        if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
            return Err(err("expected a number, as in 4MiB/s"));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| err("expected a number, as in 4MiB/s"))?;
        let multiplier: f64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            _ => return Err(err("unknown unit; use B, KB, MB, GB, KiB, MiB or GiB")),
        };
        let bytes = (value * multiplier).round();
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(err("too large"));
        }
        ByteRate::per_second(bytes as u64)
    }
}

/// The most simultaneous transfers in a group, or unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ConnectionLimit(Option<NonZeroU32>);

impl ConnectionLimit {
    /// No limit (the original's 0xFFFFFFFF).
    pub const UNLIMITED: ConnectionLimit = ConnectionLimit(None);

    /// At most `n` transfers at once; `n` must be at least 1.
    pub fn new(n: u32) -> Result<Self, LimitError> {
        NonZeroU32::new(n)
            .map(|n| ConnectionLimit(Some(n)))
            .ok_or(LimitError::ZeroConnections)
    }

    /// The limit, or `None` when unlimited.
    pub fn get(self) -> Option<u32> {
        self.0.map(NonZeroU32::get)
    }
}

impl fmt::Display for ConnectionLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Some(n) => write!(f, "{n}"),
            None => f.write_str("unlimited"),
        }
    }
}

impl FromStr for ConnectionLimit {
    type Err = LimitError;

    fn from_str(input: &str) -> Result<Self, LimitError> {
        let text = input.trim();
        if text.eq_ignore_ascii_case("unlimited") {
            return Ok(ConnectionLimit::UNLIMITED);
        }
        let n: u32 = text
            .parse()
            .map_err(|_| LimitError::Connections(input.to_owned()))?;
        ConnectionLimit::new(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(s: &str) -> Option<u64> {
        s.parse::<ByteRate>()
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .get()
    }

    #[test]
    fn human_rates() {
        assert_eq!(rate("4MiB/s"), Some(4 << 20));
        assert_eq!(rate("500KB/s"), Some(500_000));
        assert_eq!(rate("1G/s"), Some(1_000_000_000));
        assert_eq!(rate("1.5 MiB/s"), Some(1_572_864));
        assert_eq!(rate("65536"), Some(65536));
        assert_eq!(rate("2048B/s"), Some(2048));
        assert_eq!(rate("8kib"), Some(8192));
        assert_eq!(rate("unlimited"), None);
    }

    #[test]
    fn bad_rates() {
        for s in [
            "",
            "/s",
            "fast",
            "4 MiBs",
            "4XB/s",
            "-1",
            "1..2",
            ".5M",
            "5.M",
            "1e9",
            "99999999999999G",
        ] {
            assert!(
                matches!(s.parse::<ByteRate>(), Err(LimitError::Rate { .. })),
                "{s:?}"
            );
        }
        assert_eq!("1023".parse::<ByteRate>(), Err(LimitError::TooLow(1023)));
        assert_eq!("1KB/s".parse::<ByteRate>(), Err(LimitError::TooLow(1000)));
        assert_eq!("0".parse::<ByteRate>(), Err(LimitError::TooLow(0)));
        assert_eq!(
            "1023".parse::<ByteRate>().unwrap_err().to_string(),
            "a bandwidth limit must be at least 1024 bytes per second, not 1023"
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["4MiB/s", "1GiB/s", "3KiB/s", "1500B/s", "unlimited"] {
            let r: ByteRate = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
            assert_eq!(r.to_string().parse::<ByteRate>().unwrap(), r);
        }
    }

    #[test]
    fn connection_limits() {
        assert_eq!("3".parse::<ConnectionLimit>().unwrap().get(), Some(3));
        assert_eq!("unlimited".parse::<ConnectionLimit>().unwrap().get(), None);
        assert_eq!(
            "0".parse::<ConnectionLimit>(),
            Err(LimitError::ZeroConnections)
        );
        assert!(matches!(
            "-1".parse::<ConnectionLimit>(),
            Err(LimitError::Connections(_))
        ));
        assert!(matches!(
            "x".parse::<ConnectionLimit>(),
            Err(LimitError::Connections(_))
        ));
    }
}
