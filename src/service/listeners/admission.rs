//! Who may hold the remote management listener's connections ([`Admission`]), so that nobody, an
//! anonymous client included, can lock administrators out.
//!
//! SECURITY: the threat is a client holding connections until an administrator cannot get one. Eight
//! addresses with eight idle TCP connections each held all of them, and an administrator's call waited
//! 7 s; 64 bodies sent at one byte a second by an authenticated non-administrator on the
//! administrator's own address held that address's share, and the administrator's call failed for 57 s.
//! So a new connection waits in the *lobby* until one of its requests authenticates: at most
//! [`LOBBY_PER_SOURCE`] per client source (an IPv4 address or an IPv6 /64; as many more wait up to
//! [`QUEUE_WAIT`] for a place, in turn, and the next is closed at once) and [`LOBBY`] in all, each for
//! at most [`LOBBY_DEADLINE`] from its place to an authenticated request head (the TLS handshake
//! included). When the lobby is full, a newcomer evicts the oldest connection of the source holding
//! most of it: idle connections from many addresses cannot keep anyone out. Once authenticated, a
//! connection counts for its caller instead: a caller who is not an administrator may hold
//! [`CALLER_CONNECTIONS`], and all of them together [`NON_ADMIN_CONNECTIONS`]; past that they are
//! answered 503. What is left of [`CONNECTIONS`] is kept for administrators.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::Source;
use crate::lock::Recover;

/// Connections not yet authenticated, in all.
const LOBBY: usize = 64;
/// Connections not yet authenticated from one client source; as many again may wait for a place.
const LOBBY_PER_SOURCE: usize = 8;
/// How long a connection waits for a place of its source in the lobby before it is closed: long
/// enough for the places of a source whose clients authenticate to turn over, short against a source
/// that holds them idle.
const QUEUE_WAIT: Duration = Duration::from_secs(1);
/// Connections waiting for a place in the lobby, in all.
const QUEUE: usize = 64;
/// From accept to an authenticated request: the TLS handshake, the request head, and an NTLM or
/// Negotiate exchange's round trips, which take a fraction of this even far away.
const LOBBY_DEADLINE: Duration = Duration::from_secs(5);
/// Connections one caller who is not an administrator may hold (its jobs need one or two).
const CALLER_CONNECTIONS: u32 = 8;
/// Connections all callers who are not administrators may hold together.
const NON_ADMIN_CONNECTIONS: u32 = 32;
/// Connections at once on the remote listener: a full lobby and its queue, the non-administrators',
/// and as many again for administrators.
pub(super) const CONNECTIONS: usize = LOBBY + QUEUE + 2 * NON_ADMIN_CONNECTIONS as usize;

/// The remote listener's connections: those in the lobby, and those of each caller.
#[derive(Debug, Default)]
pub(super) struct Admission {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Connections not yet authenticated, oldest first.
    lobby: VecDeque<Waiting>,
    /// Connections waiting for a place of their source in the lobby, oldest first.
    queue: VecDeque<Queued>,
    next_id: u64,
    /// Connections of each caller who is not an administrator, and of all of them.
    callers: HashMap<String, u32>,
    non_admins: u32,
}

#[derive(Debug)]
struct Waiting {
    id: u64,
    source: Source,
    evicted: CancellationToken,
}

/// A connection waiting for a place of its source in the lobby.
#[derive(Debug)]
struct Queued {
    id: u64,
    source: Source,
    /// Sent the token of its place once it has one.
    admit: oneshot::Sender<CancellationToken>,
}

impl Admission {
    /// A place in the lobby for a connection from `ip`. A source holding its share of the lobby waits
    /// up to [`QUEUE_WAIT`] for one of its places (in turn, behind at most [`LOBBY_PER_SOURCE`] of its
    /// own), else `None`; a full lobby makes room by evicting someone else's oldest connection.
    pub(super) async fn enter(self: &Arc<Self>, ip: IpAddr) -> Option<Seat> {
        let source = Source::from(ip);
        let (id, mut placed) = {
            let mut state = self.state.lock().recover();
            if state.in_lobby(source) < LOBBY_PER_SOURCE {
                if state.lobby.len() >= LOBBY {
                    state.evict_one();
                }
                let id = state.next_id;
                state.next_id += 1;
                let evicted = state.place(id, source);
                return Some(self.seat(id, evicted));
            }
            let queued = state.queue.iter().filter(|q| q.source == source).count();
            if queued >= LOBBY_PER_SOURCE || state.queue.len() >= QUEUE {
                return None;
            }
            let id = state.next_id;
            state.next_id += 1;
            let (admit, placed) = oneshot::channel();
            state.queue.push_back(Queued { id, source, admit });
            (id, placed)
        };
        let waited = tokio::time::timeout(QUEUE_WAIT, &mut placed).await;
        // Under the lock, so that a place handed over as the wait ended is taken, not lost.
        let mut state = self.state.lock().recover();
        let evicted = match waited {
            Ok(Ok(evicted)) => evicted,
            _ => match placed.try_recv() {
                Ok(evicted) => evicted,
                Err(_) => {
                    state.queue.retain(|q| q.id != id);
                    return None;
                }
            },
        };
        drop(state);
        Some(self.seat(id, evicted))
    }

    fn seat(self: &Arc<Self>, id: u64, evicted: CancellationToken) -> Seat {
        Seat {
            admission: self.clone(),
            id,
            evicted,
            deadline: Instant::now() + LOBBY_DEADLINE,
            place: Mutex::new(Place::Lobby),
        }
    }
}

impl State {
    fn in_lobby(&self, source: Source) -> usize {
        self.lobby.iter().filter(|w| w.source == source).count()
    }

    /// Puts connection `id` in the lobby; the token it is evicted by.
    fn place(&mut self, id: u64, source: Source) -> CancellationToken {
        let evicted = CancellationToken::new();
        self.lobby.push_back(Waiting {
            id,
            source,
            evicted: evicted.clone(),
        });
        evicted
    }

    /// Evicts the oldest lobby connection of the source that holds the most of the lobby. Its place
    /// goes to the newcomer, not to its source's queue.
    fn evict_one(&mut self) {
        let mut counts: HashMap<Source, usize> = HashMap::new();
        for w in &self.lobby {
            *counts.entry(w.source).or_default() += 1;
        }
        let Some(most) = counts.values().max().copied() else {
            return;
        };
        let oldest = self.lobby.iter().position(|w| counts[&w.source] == most);
        if let Some(w) = oldest.and_then(|i| self.lobby.remove(i)) {
            w.evicted.cancel();
        }
    }

    /// Connection `id` leaves the lobby (authenticated or gone); its place goes to the oldest queued
    /// connection of its source that still waits.
    fn leave_lobby(&mut self, id: u64) {
        let Some(i) = self.lobby.iter().position(|w| w.id == id) else {
            return;
        };
        let Some(left) = self.lobby.remove(i) else {
            return;
        };
        while let Some(q) = self.queue.iter().position(|q| q.source == left.source) {
            let Some(next) = self.queue.remove(q) else {
                return;
            };
            let evicted = self.place(next.id, next.source);
            if next.admit.send(evicted).is_ok() {
                return;
            }
            // It stopped waiting: the place is the next one's.
            self.lobby.pop_back();
        }
    }
}

/// Where a connection stands.
#[derive(Debug)]
enum Place {
    Lobby,
    /// Authenticated: an administrator (`None`) or the caller it counts for.
    Seated(Option<String>),
}

/// One connection's place: in the lobby until a request authenticates, then its caller's.
#[derive(Debug)]
pub(super) struct Seat {
    admission: Arc<Admission>,
    id: u64,
    evicted: CancellationToken,
    deadline: Instant,
    place: Mutex<Place>,
}

/// The caller holds its connections already, or callers who are not administrators hold theirs.
#[derive(Debug)]
pub(super) struct Busy;

impl Seat {
    /// Completes when the connection must end: evicted from a full lobby, or not authenticated by its
    /// deadline. Never, once it is authenticated.
    pub(super) async fn ended(&self) -> &'static str {
        tokio::select! {
            () = self.evicted.cancelled() => "evicted from the full lobby",
            () = tokio::time::sleep_until(self.deadline) => {
                if matches!(*self.place.lock().recover(), Place::Seated(_)) {
                    std::future::pending::<()>().await;
                }
                "not authenticated in time"
            }
        }
    }

    /// A request on this connection authenticated as `caller` (an administrator if `admin`): the
    /// connection leaves the lobby and counts for the caller, the first time; later requests change
    /// nothing.
    pub(super) fn authenticated(&self, caller: &str, admin: bool) -> Result<(), Busy> {
        let mut place = self.place.lock().recover();
        if matches!(*place, Place::Seated(_)) {
            return Ok(());
        }
        if self.evicted.is_cancelled() {
            return Err(Busy);
        }
        let mut state = self.admission.state.lock().recover();
        if !admin {
            let held = state.callers.get(caller).copied().unwrap_or(0);
            if held >= CALLER_CONNECTIONS || state.non_admins >= NON_ADMIN_CONNECTIONS {
                return Err(Busy);
            }
            *state.callers.entry(caller.to_owned()).or_insert(0) += 1;
            state.non_admins += 1;
        }
        state.leave_lobby(self.id);
        *place = Place::Seated((!admin).then(|| caller.to_owned()));
        Ok(())
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let place = self.place.get_mut().recover();
        let mut state = self.admission.state.lock().recover();
        match place {
            Place::Lobby => state.leave_lobby(self.id),
            Place::Seated(None) => {}
            Place::Seated(Some(caller)) => {
                state.non_admins = state.non_admins.saturating_sub(1);
                if let Some(n) = state.callers.get_mut(caller.as_str()) {
                    *n -= 1;
                    if *n == 0 {
                        state.callers.remove(caller.as_str());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(i: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0xC000_0200 + i))
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_lobby_evicts_the_oldest_of_the_source_holding_most() {
        let admission = Arc::new(Admission::default());
        // The oldest of all from a source with one; then seven sources with eight each; then seven
        // sources with one each: the lobby is full.
        let sources = std::iter::once(50)
            .chain((0..56).map(|i| i / 8))
            .chain(60..67);
        let mut seats = Vec::new();
        for s in sources {
            seats.push(admission.enter(ip(s)).await.unwrap());
        }
        assert_eq!(admission.state.lock().unwrap().lobby.len(), LOBBY);
        let newcomer = admission.enter(ip(100)).await.unwrap();
        let evicted: Vec<usize> = seats
            .iter()
            .enumerate()
            .filter(|(_, s)| s.evicted.is_cancelled())
            .map(|(i, _)| i)
            .collect();
        assert_eq!(evicted, [1], "the oldest of the first source with eight");
        assert!(!newcomer.evicted.is_cancelled());
        assert_eq!(admission.state.lock().unwrap().lobby.len(), LOBBY);
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_with_its_share_of_the_lobby_waits_in_turn_then_is_refused() {
        let admission = Arc::new(Admission::default());
        let mut held = Vec::new();
        for _ in 0..LOBBY_PER_SOURCE {
            held.push(admission.enter(ip(7)).await.unwrap());
        }
        // Idle places: the next waits its second, and is refused.
        let started = Instant::now();
        assert!(admission.enter(ip(7)).await.is_none());
        assert_eq!(started.elapsed(), QUEUE_WAIT);
        // A place that turns over goes to the oldest waiting, before any newcomer.
        let (first, second) = (admission.clone(), admission.clone());
        let first = tokio::spawn(async move { first.enter(ip(7)).await });
        tokio::task::yield_now().await;
        let second = tokio::spawn(async move { second.enter(ip(7)).await });
        tokio::task::yield_now().await;
        held.pop().unwrap().authenticated("admin", true).unwrap();
        let first = first
            .await
            .unwrap()
            .expect("the first waiting gets the place");
        assert!(second.await.unwrap().is_none(), "no place for the second");
        // Waiting is bounded too: past the share of waiting places, refused at once.
        let waiting: Vec<_> = (0..LOBBY_PER_SOURCE)
            .map(|_| {
                let a = admission.clone();
                tokio::spawn(async move { a.enter(ip(7)).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let started = Instant::now();
        assert!(admission.enter(ip(7)).await.is_none());
        assert_eq!(started.elapsed(), Duration::ZERO);
        drop((first, held));
        for w in waiting {
            assert!(w.await.unwrap().is_some());
        }
        assert!(admission.state.lock().unwrap().queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn callers_who_are_not_administrators_are_bounded_and_administrators_are_not() {
        let admission = Arc::new(Admission::default());
        let seated = |caller: String, admin: bool, at: u32| {
            let admission = admission.clone();
            async move {
                let seat = admission.enter(ip(at)).await.unwrap();
                seat.authenticated(&caller, admin).map(|()| seat)
            }
        };
        let mut bob = Vec::new();
        for i in 0..CALLER_CONNECTIONS {
            bob.push(seated("bob".into(), false, i).await.unwrap());
        }
        assert!(seated("bob".into(), false, 50).await.is_err());
        let mut others = Vec::new();
        for i in 0..NON_ADMIN_CONNECTIONS - CALLER_CONNECTIONS {
            others.push(
                seated(format!("user{}", i / 4), false, 60 + i)
                    .await
                    .unwrap(),
            );
        }
        assert!(seated("carol".into(), false, 120).await.is_err());
        let mut admins = Vec::new();
        for i in 0..40 {
            admins.push(seated("admin".into(), true, 130 + i).await.unwrap());
        }
        assert!(admission.state.lock().unwrap().lobby.is_empty());
        drop(bob);
        let again = seated("bob".into(), false, 180).await.unwrap();
        drop((again, others, admins));
        let state = admission.state.lock().unwrap();
        assert_eq!((state.non_admins, state.callers.len()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_not_authenticated_in_time_ends_and_an_authenticated_one_stays() {
        let admission = Arc::new(Admission::default());
        let idle = admission.enter(ip(1)).await.unwrap();
        let started = Instant::now();
        assert_eq!(idle.ended().await, "not authenticated in time");
        assert_eq!(started.elapsed(), LOBBY_DEADLINE);
        let admin = admission.enter(ip(2)).await.unwrap();
        admin.authenticated("admin", true).unwrap();
        let waited = tokio::time::timeout(LOBBY_DEADLINE * 3, admin.ended()).await;
        assert!(
            waited.is_err(),
            "an authenticated connection has no lobby deadline"
        );
    }
}
