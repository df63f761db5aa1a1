//! Failed authentication attempts, counted per client source and per account.
//!
//! SECURITY: the threat is password guessing, from one address, from many addresses, and at many accounts.
//! - An attempt is counted as a failure when it *starts* and taken back only when it succeeds, so a burst
//!   of concurrent guesses cannot all be checked before the first failure is recorded.
//! - Sources are IPv4 addresses or IPv6 /64 networks (one host is routinely given a whole /64, so keying on
//!   the full IPv6 address would give an attacker billions of fresh sources); an IPv4-mapped IPv6 address is
//!   its IPv4 address. After [`SOURCE_LIMIT`] failures within [`SOURCE_WINDOW`] a source is refused (429)
//!   without its credentials being checked until the window ends.
//! - Accounts (the user name as sent, without domain, case-insensitive) are locked after [`ACCOUNT_LIMIT`]
//!   failures within [`ACCOUNT_WINDOW`] from any sources, as Windows' account lockout policy does. The
//!   same happens for names that exist and names that do not, so the answer reveals nothing about accounts.
//! - Both tables are bounded; when one is full the entry whose window started first is evicted. Limiting
//!   never turns itself off.

use crate::lock::Recover;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures allowed per source per window.
pub(crate) const SOURCE_LIMIT: u32 = 10;
/// The source window.
pub(crate) const SOURCE_WINDOW: Duration = Duration::from_secs(60);
/// Failures allowed per account per window, from all sources together.
pub(crate) const ACCOUNT_LIMIT: u32 = 30;
/// The account window (Windows' default lockout duration and counter reset).
pub(crate) const ACCOUNT_WINDOW: Duration = Duration::from_secs(600);
/// The most sources, and the most accounts, remembered.
const MAX_ENTRIES: usize = 10_000;

/// A client source: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Source(IpAddr);

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let network = u128::from(v6) & !u128::from(u64::MAX);
                    Source(IpAddr::V6(Ipv6Addr::from(network)))
                }
            },
        }
    }
}

/// The account key of a user name as sent: `DOMAIN\user` and `user@domain` are `user`, case-insensitively
/// (as the principals file looks users up).
fn account_key(name: &str) -> String {
    let plain = name.rsplit('\\').next().unwrap_or(name);
    let plain = plain.split('@').next().unwrap_or(plain);
    plain.to_lowercase()
}

/// Refused: retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limited {
    pub(crate) retry_after: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    count: u32,
    since: Instant,
}

#[derive(Debug)]
struct Table<K> {
    entries: HashMap<K, Window>,
    limit: u32,
    window: Duration,
}

impl<K: Hash + Eq + Clone> Table<K> {
    fn new(limit: u32, window: Duration) -> Self {
        Table {
            entries: HashMap::new(),
            limit,
            window,
        }
    }

    /// How long `key` must still wait, if it is over its limit now.
    fn refused(&self, key: &K, now: Instant) -> Option<Duration> {
        let w = self.entries.get(key)?;
        let elapsed = now.saturating_duration_since(w.since);
        (w.count >= self.limit && elapsed < self.window).then(|| self.window - elapsed)
    }

    fn count(&mut self, key: &K, now: Instant) {
        if !self.entries.contains_key(key) && self.entries.len() >= MAX_ENTRIES {
            let window = self.window;
            self.entries
                .retain(|_, w| now.saturating_duration_since(w.since) < window);
            if self.entries.len() >= MAX_ENTRIES {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, w)| w.since)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.entries.remove(&oldest);
                }
            }
        }
        let w = self.entries.entry(key.clone()).or_insert(Window {
            count: 0,
            since: now,
        });
        if now.saturating_duration_since(w.since) >= self.window {
            *w = Window {
                count: 0,
                since: now,
            };
        }
        w.count = w.count.saturating_add(1);
    }

    fn forgive(&mut self, key: &K) {
        if let Some(w) = self.entries.get_mut(key) {
            w.count = w.count.saturating_sub(1);
        }
    }
}

#[derive(Debug)]
struct Tables {
    sources: Table<Source>,
    accounts: Table<String>,
}

/// Failures per source and per account.
#[derive(Debug)]
pub(crate) struct FailureLimiter {
    tables: Mutex<Tables>,
}

impl Default for FailureLimiter {
    fn default() -> Self {
        FailureLimiter {
            tables: Mutex::new(Tables {
                sources: Table::new(SOURCE_LIMIT, SOURCE_WINDOW),
                accounts: Table::new(ACCOUNT_LIMIT, ACCOUNT_WINDOW),
            }),
        }
    }
}

impl FailureLimiter {
    /// Starts an authentication attempt from `ip` as `account` (when the credentials name one): refused
    /// when the source or the account is over its limit; otherwise counted as a failure at once, until
    /// [`Attempt::succeeded`] takes it back.
    pub(crate) fn attempt(
        &self,
        ip: IpAddr,
        account: Option<&str>,
    ) -> Result<Attempt<'_>, Limited> {
        let source = Source::from(ip);
        let account = account.map(account_key);
        let now = Instant::now();
        let mut t = self.tables.lock().recover();
        let wait = [
            t.sources.refused(&source, now),
            account.as_ref().and_then(|a| t.accounts.refused(a, now)),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(retry_after) = wait {
            return Err(Limited { retry_after });
        }
        t.sources.count(&source, now);
        if let Some(a) = &account {
            t.accounts.count(a, now);
        }
        Ok(Attempt {
            limiter: self,
            source,
            account,
        })
    }
}

/// An attempt in progress, already counted as a failure.
#[derive(Debug)]
#[must_use = "an attempt is a failure unless it is marked as succeeded"]
pub(crate) struct Attempt<'a> {
    limiter: &'a FailureLimiter,
    source: Source,
    account: Option<String>,
}

impl Attempt<'_> {
    /// The credentials were not checked at all (the server was too busy): no guess was made, and the
    /// failure is taken back.
    pub(crate) fn not_checked(self) {
        self.succeeded();
    }

    /// The credentials were right (or the step was not a guess at all): the failure is taken back.
    pub(crate) fn succeeded(self) {
        let mut t = self.limiter.tables.lock().recover();
        t.sources.forgive(&self.source);
        if let Some(a) = &self.account {
            t.accounts.forgive(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_a_source_after_the_limit_and_forgives_successes() {
        let l = FailureLimiter::default();
        for _ in 0..50 {
            l.attempt(ip("192.0.2.1"), Some("alice"))
                .unwrap()
                .succeeded();
        }
        for _ in 0..SOURCE_LIMIT {
            let _failed = l.attempt(ip("192.0.2.1"), Some("alice")).unwrap();
        }
        let refused = l.attempt(ip("192.0.2.1"), Some("bob")).unwrap_err();
        assert!(refused.retry_after > SOURCE_WINDOW - Duration::from_secs(5));
        assert!(l.attempt(ip("192.0.2.2"), Some("bob")).is_ok());
    }

    #[test]
    fn concurrent_attempts_are_counted_before_they_are_checked() {
        // SECURITY: "check, verify, then count" let a burst through; attempts still in flight count.
        let l = FailureLimiter::default();
        let in_flight: Vec<_> = (0..SOURCE_LIMIT)
            .map(|_| l.attempt(ip("192.0.2.9"), None).unwrap())
            .collect();
        assert!(l.attempt(ip("192.0.2.9"), None).is_err());
        drop(in_flight);
    }

    #[test]
    fn ipv6_sources_are_slash_64_networks_and_mapped_v4_is_v4() {
        let l = FailureLimiter::default();
        for i in 0..SOURCE_LIMIT {
            let addr = format!("2001:db8:1:2:{i:x}:{i:x}:{i:x}:{i:x}");
            let _failed = l.attempt(ip(&addr), None).unwrap();
        }
        assert!(l.attempt(ip("2001:db8:1:2:ffff::1"), None).is_err());
        assert!(l.attempt(ip("2001:db8:1:3::1"), None).is_ok());
        for _ in 0..SOURCE_LIMIT {
            let _failed = l.attempt(ip("198.51.100.7"), None).unwrap();
        }
        assert!(l.attempt(ip("::ffff:198.51.100.7"), None).is_err());
    }

    #[test]
    fn accounts_lock_across_sources_whether_or_not_they_exist() {
        let l = FailureLimiter::default();
        for i in 0..ACCOUNT_LIMIT {
            let source = ip(&format!("203.0.113.{}", i % 200));
            let name = ["alice", "CORP\\Alice", "ALICE@corp.example"][i as usize % 3];
            let _failed = l.attempt(source, Some(name)).unwrap();
        }
        let refused = l.attempt(ip("198.51.100.1"), Some("alice")).unwrap_err();
        assert!(refused.retry_after > ACCOUNT_WINDOW - Duration::from_secs(5));
        assert!(l.attempt(ip("198.51.100.1"), Some("bob")).is_ok());
    }

    #[test]
    fn a_full_table_evicts_the_oldest_and_keeps_limiting() {
        let l = FailureLimiter::default();
        for _ in 0..SOURCE_LIMIT {
            let _failed = l.attempt(ip("192.0.2.77"), None).unwrap();
        }
        // Fill the table with other sources: the limited one is evicted (it is the oldest), but every new
        // source is still recorded and limited.
        for i in 0..MAX_ENTRIES as u32 {
            let _failed = l.attempt(IpAddr::from((0x0a00_0000 + i).to_be_bytes()), None);
        }
        let newcomer = ip("198.51.100.200");
        for _ in 0..SOURCE_LIMIT {
            let _failed = l.attempt(newcomer, None).unwrap();
        }
        assert!(l.attempt(newcomer, None).is_err(), "never fails open");
        let t = l.tables.lock().unwrap();
        assert!(t.sources.entries.len() <= MAX_ENTRIES);
    }
}
