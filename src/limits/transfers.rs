//! The ConnectionLimit of a group: how many transfers (GET requests being answered) run at once.
//!
//! Counted per request, not per TCP connection, so multiplexing cannot get around it. A permit lives in the
//! response body and is returned when the body is dropped, whether it finished or the client went away.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::ConnectionLimit;

/// The transfers of one group and their limit.
#[derive(Debug)]
pub(crate) struct Transfers {
    /// `u32::MAX` means unlimited.
    limit: AtomicU32,
    active: AtomicU32,
}

impl Default for Transfers {
    fn default() -> Self {
        Transfers {
            limit: AtomicU32::new(u32::MAX),
            active: AtomicU32::new(0),
        }
    }
}

impl Transfers {
    pub(crate) fn limit(&self) -> ConnectionLimit {
        match self.limit.load(Ordering::Acquire) {
            u32::MAX => ConnectionLimit::UNLIMITED,
            n => ConnectionLimit::new(n).unwrap_or(ConnectionLimit::UNLIMITED),
        }
    }

    /// Takes effect for the next transfer; transfers already running finish.
    pub(crate) fn set_limit(&self, limit: ConnectionLimit) {
        self.limit
            .store(limit.get().unwrap_or(u32::MAX), Ordering::Release);
    }

    pub(crate) fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// A permit for one more transfer, or `None` when the group is at its limit.
    pub(crate) fn try_start(self: &Arc<Self>) -> Option<TransferPermit> {
        let limit = self.limit.load(Ordering::Acquire);
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| TransferPermit(self.clone()))
    }
}

/// One running transfer; dropping it ends the transfer.
#[derive(Debug)]
pub(crate) struct TransferPermit(Arc<Transfers>);

impl Drop for TransferPermit {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_up_to_the_limit_and_back() {
        let t = Arc::new(Transfers::default());
        t.set_limit(ConnectionLimit::new(2).unwrap());
        let a = t.try_start().unwrap();
        let b = t.try_start().unwrap();
        assert!(t.try_start().is_none());
        assert_eq!(t.active(), 2);
        drop(a);
        let c = t.try_start().unwrap();
        // Lowering the limit below the running count refuses new transfers until enough end.
        t.set_limit(ConnectionLimit::new(1).unwrap());
        drop(b);
        assert!(t.try_start().is_none());
        drop(c);
        assert!(t.try_start().is_some());
        t.set_limit(ConnectionLimit::UNLIMITED);
        let many: Vec<_> = (0..1000).map(|_| t.try_start().unwrap()).collect();
        assert_eq!(t.active(), 1000);
        drop(many);
        assert_eq!(t.active(), 0);
    }
}
