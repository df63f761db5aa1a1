//! How many transfers one client source may run at once ([`PerSource`]), and the whole server.
//!
//! SECURITY: the threat is one client taking what all clients share. Each transfer (a GET being answered)
//! holds an open file and part of the server's read budget for as long as its client keeps it open, and a
//! client that never reads keeps it open for a minimum-send-rate window at a time, then opens another.
//! Without a share per client, a few hundred stalled HTTP/2 streams from one address took every file
//! descriptor of the process, and a few dozen connections the whole read budget, so that every other
//! download stalled. So a source (an IPv4 address or an IPv6 /64, as for password guessing) may run a
//! bounded number of transfers at once (the builder's `max_transfers_per_source`, default
//! [`PER_SOURCE`]), and the server [`SERVER_TRANSFERS`]; one more is answered 503 with Retry-After, which
//! BITS and download managers take as "come back later".

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Source;
use crate::lock::Recover;

/// Transfers one source may run at once by default: far above what one machine's BITS jobs (one each) or
/// download managers (up to 16) use, and the original's whole design envelope (25 groups of 3) from one
/// address, yet a small share of the server's.
pub(crate) const PER_SOURCE: u32 = 128;
/// Transfers the server runs at once: each may hold a file descriptor.
pub(crate) const SERVER_TRANSFERS: usize = 4096;

/// What each source holds at once (transfers, connections), at most `limit` each.
#[derive(Debug)]
pub(crate) struct PerSource {
    limit: u32,
    counts: Arc<Mutex<HashMap<Source, u32>>>,
}

impl PerSource {
    /// At most `limit` at once per source (at least 1).
    pub(crate) fn new(limit: u32) -> Self {
        PerSource {
            limit: limit.max(1),
            counts: Arc::default(),
        }
    }

    /// One more for the source of `ip`, or `None` when it holds its limit already.
    pub(crate) fn try_take(&self, ip: IpAddr) -> Option<SourceSlot> {
        let source = Source::from(ip);
        let mut counts = self.counts.lock().recover();
        let n = counts.entry(source).or_insert(0);
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            source,
            counts: self.counts.clone(),
        })
    }
}

/// One of what a source holds; dropping it gives the slot back (a source at zero is forgotten).
#[derive(Debug)]
pub(crate) struct SourceSlot {
    source: Source,
    counts: Arc<Mutex<HashMap<Source, u32>>>,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().recover();
        if let Some(n) = counts.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.source);
            }
        }
    }
}

/// The server's count of transfers, per source and in all.
#[derive(Debug)]
pub(crate) struct SourceTransfers {
    server: Arc<Semaphore>,
    per_source: PerSource,
}

impl SourceTransfers {
    /// At most `per_source` transfers per source (at least 1).
    pub(crate) fn new(per_source: u32) -> Self {
        SourceTransfers {
            server: Arc::new(Semaphore::new(SERVER_TRANSFERS)),
            per_source: PerSource::new(per_source),
        }
    }

    /// A ticket for one more transfer from `ip`, or `None` when the source or the server is at its limit.
    pub(crate) fn try_start(&self, ip: IpAddr) -> Option<SourceTicket> {
        let server = self.server.clone().try_acquire_owned().ok()?;
        let slot = self.per_source.try_take(ip)?;
        Some(SourceTicket {
            _server: server,
            _slot: slot,
        })
    }

    /// Transfers running now, and the most the server runs at once.
    pub(crate) fn in_use(&self) -> (usize, usize) {
        (
            SERVER_TRANSFERS.saturating_sub(self.server.available_permits()),
            SERVER_TRANSFERS,
        )
    }

    /// The most transfers one source may run at once.
    pub(crate) fn per_source(&self) -> u32 {
        self.per_source.limit
    }
}

impl Default for SourceTransfers {
    fn default() -> Self {
        Self::new(PER_SOURCE)
    }
}

/// One transfer of one source; dropping it ends the transfer.
#[derive(Debug)]
pub(crate) struct SourceTicket {
    _server: OwnedSemaphorePermit,
    _slot: SourceSlot,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_gets_its_share_and_others_are_unaffected() {
        let t = SourceTransfers::new(PER_SOURCE);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        let held: Vec<_> = (0..PER_SOURCE).map(|_| t.try_start(a).unwrap()).collect();
        assert!(t.try_start(same_64).is_none(), "one /64 is one source");
        assert!(t.try_start("192.0.2.1".parse().unwrap()).is_some());
        drop(held);
        assert!(t.try_start(a).is_some());
        assert!(
            t.per_source.counts.lock().unwrap().len() <= 1,
            "counts are forgotten at zero"
        );
    }
}
