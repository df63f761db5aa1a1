//! The server's read budget ([`ServerBudget`]): bytes of file data all response bodies may hold at
//! once, shared fairly between client sources.
//!
//! SECURITY: the threat is one address block taking the budget every client needs. A client that asks
//! for a file and never reads it pins what was read for it until the minimum send rate cuts it, and can
//! reopen before that: 256 such HTTPS clients from two addresses held the whole budget, and a normal
//! 1 MiB download from a third address waited 7.9 s for it (plain HTTP was spared: `sendfile` holds no
//! user memory). So each source (an IPv4 address or an IPv6 /64, as for transfers and password
//! guessing) may hold at most its share (a sixteenth of the budget, so that no fewer than sixteen
//! sources can spend it), and when the budget is short, what comes back goes first to the
//! waiting source that holds the least: a source under its share never waits behind one over it.
//!
//! Invariants: `free` plus everything held equals the total; a source holds nothing it was not
//! granted; a waiter is granted at most once, and a grant that is never claimed (its body was
//! dropped) is given back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::auth::Source;
use crate::lock::Recover;

/// Into how many shares the budget is cut: a source may hold one.
const SHARES: usize = 16;

/// Bytes all response bodies of a server may hold at once, and each source's part of them.
#[derive(Debug)]
pub(crate) struct ServerBudget {
    total: usize,
    /// What one source may hold at once.
    share: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    /// What each source holds now; a source at zero is forgotten.
    held: HashMap<Source, usize>,
    /// Takes waiting for budget, oldest first.
    waiting: Vec<Waiter>,
    next_id: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    source: Source,
    len: usize,
    waker: Waker,
    granted: bool,
}

impl ServerBudget {
    /// A budget of `total` bytes; each source may hold a sixteenth of it, and at least `least` (one
    /// chunk, so that every source can always read).
    pub(crate) fn new(total: usize, least: usize) -> Arc<Self> {
        let total = total.max(least);
        Arc::new(ServerBudget {
            total,
            share: (total / SHARES).max(least),
            state: Mutex::new(State {
                free: total,
                held: HashMap::new(),
                waiting: Vec::new(),
                next_id: 0,
            }),
        })
    }

    /// Bytes nobody holds now.
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.state.lock().recover().free
    }

    /// Bytes that chunks read for clients hold now.
    pub(crate) fn held(&self) -> usize {
        self.total - self.state.lock().recover().free
    }

    /// Gives back `len` bytes that `source` held, and hands them on.
    fn release(&self, source: Source, len: usize) {
        let wake = {
            let mut state = self.state.lock().recover();
            state.free += len;
            if let Some(n) = state.held.get_mut(&source) {
                *n = n.saturating_sub(len);
                if *n == 0 {
                    state.held.remove(&source);
                }
            }
            state.grant(self.share)
        };
        wake.into_iter().for_each(Waker::wake);
    }
}

impl State {
    fn held(&self, source: Source) -> usize {
        self.held.get(&source).copied().unwrap_or(0)
    }

    /// Whether `source` may take `len` more without going over its share (a source holding nothing
    /// always may).
    fn within_share(&self, source: Source, len: usize, share: usize) -> bool {
        let held = self.held(source);
        held == 0 || held + len <= share
    }

    /// Grants what is free to waiters, the one whose source holds the least first (the oldest among
    /// equals), and stops at the first that does not fit: nobody overtakes a source holding less.
    /// Returns the wakers to call once the lock is released.
    fn grant(&mut self, share: usize) -> Vec<Waker> {
        let mut wake = Vec::new();
        loop {
            let next = self
                .waiting
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.granted && self.within_share(w.source, w.len, share))
                .min_by_key(|(_, w)| (self.held(w.source), w.id))
                .map(|(i, _)| i);
            let Some(i) = next else {
                return wake;
            };
            let (source, len) = (self.waiting[i].source, self.waiting[i].len);
            if len > self.free {
                return wake;
            }
            self.free -= len;
            *self.held.entry(source).or_insert(0) += len;
            self.waiting[i].granted = true;
            wake.push(self.waiting[i].waker.clone());
        }
    }
}

/// One body's way of taking its source's part of the server's budget, one chunk at a time.
#[derive(Debug)]
pub(crate) struct ShareRequest {
    budget: Arc<ServerBudget>,
    source: Source,
    /// The id of this request's waiter, while it waits (or was granted and not yet claimed).
    waiting: Option<u64>,
    /// The last take waits because its own source holds its share (rather than because others hold the
    /// budget).
    over_share: bool,
}

impl ShareRequest {
    /// Takes from `budget` for the client at `ip`.
    pub(crate) fn new(budget: Arc<ServerBudget>, ip: IpAddr) -> Self {
        ShareRequest {
            budget,
            source: Source::from(ip),
            waiting: None,
            over_share: false,
        }
    }

    /// Whether the last take waits on other sources (the budget is spent), rather than on its own
    /// source, which holds its whole share.
    pub(crate) fn is_waiting_on_others(&self) -> bool {
        self.waiting.is_some() && !self.over_share
    }

    /// Takes `len` bytes; pending while the source holds its share or others hold the budget. Call
    /// again with the same `len` until ready.
    pub(crate) fn poll_take(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<SharePermit> {
        let budget = &self.budget;
        let (outcome, wake) = {
            let mut state = budget.state.lock().recover();
            let mut wake = Vec::new();
            let id = match self.waiting {
                Some(id) if state.waiting.iter().any(|w| w.id == id) => id,
                _ => {
                    let id = state.next_id;
                    state.next_id += 1;
                    state.waiting.push(Waiter {
                        id,
                        source: self.source,
                        len,
                        waker: cx.waker().clone(),
                        granted: false,
                    });
                    self.waiting = Some(id);
                    wake = state.grant(budget.share);
                    id
                }
            };
            let i = state.waiting.iter().position(|w| w.id == id);
            let outcome = match i {
                Some(i) if state.waiting[i].granted => {
                    // `remove`, not `swap_remove`: the list stays oldest first.
                    state.waiting.remove(i);
                    true
                }
                Some(i) => {
                    state.waiting[i].waker.clone_from(cx.waker());
                    self.over_share = !state.within_share(self.source, len, budget.share);
                    false
                }
                None => false,
            };
            (outcome, wake)
        };
        wake.into_iter().for_each(Waker::wake);
        if !outcome {
            return Poll::Pending;
        }
        self.waiting = None;
        self.over_share = false;
        Poll::Ready(SharePermit {
            budget: self.budget.clone(),
            source: self.source,
            len,
        })
    }
}

impl Drop for ShareRequest {
    fn drop(&mut self) {
        let Some(id) = self.waiting.take() else {
            return;
        };
        let granted = {
            let mut state = self.budget.state.lock().recover();
            let Some(i) = state.waiting.iter().position(|w| w.id == id) else {
                return;
            };
            let waiter = state.waiting.remove(i);
            waiter.granted.then_some(waiter.len)
        };
        match granted {
            // Granted but never claimed: give it back, to the next in line.
            Some(len) => self.budget.release(self.source, len),
            // Its place in line may have held others back (a source over its share does not).
            None => {
                let wake = self.budget.state.lock().recover().grant(self.budget.share);
                wake.into_iter().for_each(Waker::wake);
            }
        }
    }
}

/// Budget a source holds for one chunk; given back when dropped.
#[derive(Debug)]
pub(crate) struct SharePermit {
    budget: Arc<ServerBudget>,
    source: Source,
    len: usize,
}

impl Drop for SharePermit {
    fn drop(&mut self) {
        self.budget.release(self.source, self.len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    const CHUNK: usize = 256 * 1024;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn noop_cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[tokio::test]
    async fn a_source_holds_at_most_its_share() {
        let budget = ServerBudget::new(64 * CHUNK, CHUNK);
        assert_eq!(budget.share, 4 * CHUNK);
        let mut a = ShareRequest::new(budget.clone(), ip("192.0.2.1"));
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(poll_fn(|cx| a.poll_take(cx, CHUNK)).await);
        }
        let mut cx = noop_cx();
        assert!(a.poll_take(&mut cx, CHUNK).is_pending());
        assert!(!a.is_waiting_on_others(), "it waits on its own share");
        // Another source is not held back.
        let mut b = ShareRequest::new(budget.clone(), ip("192.0.2.2"));
        assert!(b.poll_take(&mut cx, CHUNK).is_ready());
        drop(held.pop());
        assert!(a.poll_take(&mut cx, CHUNK).is_ready());
    }

    #[tokio::test]
    async fn what_comes_back_goes_first_to_the_source_holding_least() {
        // Room for two chunks; each source may hold two.
        let budget = ServerBudget::new(2 * CHUNK, 2 * CHUNK);
        let mut greedy = ShareRequest::new(budget.clone(), ip("198.51.100.1"));
        let first = poll_fn(|cx| greedy.poll_take(cx, CHUNK)).await;
        let mut other = ShareRequest::new(budget.clone(), ip("198.51.100.2"));
        let second = poll_fn(|cx| other.poll_take(cx, CHUNK)).await;
        let mut cx = noop_cx();
        // Both wait: the greedy source asked first, the newcomer holds nothing.
        let mut greedy2 = ShareRequest::new(budget.clone(), ip("198.51.100.1"));
        assert!(greedy2.poll_take(&mut cx, CHUNK).is_pending());
        let mut newcomer = ShareRequest::new(budget.clone(), ip("198.51.100.3"));
        assert!(newcomer.poll_take(&mut cx, CHUNK).is_pending());
        assert!(newcomer.is_waiting_on_others());
        drop(second);
        let third = newcomer.poll_take(&mut cx, CHUNK);
        assert!(third.is_ready(), "the newcomer first");
        assert!(greedy2.poll_take(&mut cx, CHUNK).is_pending());
        drop((first, greedy2));
        assert_eq!(budget.available(), CHUNK, "a dropped waiter holds nothing");
    }

    #[tokio::test]
    async fn a_grant_never_claimed_is_given_back() {
        let budget = ServerBudget::new(CHUNK, CHUNK);
        let mut a = ShareRequest::new(budget.clone(), ip("203.0.113.1"));
        let held = poll_fn(|cx| a.poll_take(cx, CHUNK)).await;
        let mut b = ShareRequest::new(budget.clone(), ip("203.0.113.2"));
        let mut cx = noop_cx();
        assert!(b.poll_take(&mut cx, CHUNK).is_pending());
        drop(held);
        // Granted to b, which goes away before it claims it.
        assert_eq!(budget.available(), 0);
        drop(b);
        assert_eq!(budget.available(), CHUNK);
        assert!(budget.state.lock().unwrap().held.is_empty());
    }
}
