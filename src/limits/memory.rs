//! How many bytes of file data response bodies may hold in memory: per connection and for the whole server.
//!
//! SECURITY: the threat is a client that asks for large files and never reads them. What such a client
//! pins is what we read for it and nobody has sent: the chunk hyper holds, and the chunk read ahead. Every
//! chunk read from disk first takes its size from its connection's budget and then from the server's;
//! the bytes carry those permits and give them back when the last reference to them is dropped, which is
//! when hyper (or h2, or rustls) has written them out. So a stalled HTTP/1.1 download holds at most its
//! connection's budget, an HTTP/2 connection with a hundred stalled streams holds the same, all
//! connections of one client source at most the source's share of the server's budget, and all
//! connections together at most the server's budget (`limits::shares`); past it, bodies wait
//! (backpressure), they do not allocate.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;

use super::shares::{ServerBudget, SharePermit, ShareRequest};
use super::StreamProgress;

/// The chunk a body reads at once on an HTTP/1.1 connection. Measured against nginx on one 1 GiB
/// stream (benches/compare_nginx.sh, same run): 96 KiB chunks reached 0.57 of nginx, 192 KiB 0.75,
/// 256 KiB 1.15; big files want big chunks.
pub(crate) const H1_CHUNK: usize = 256 * 1024;
/// What one HTTP/1.1 connection may hold: the chunk hyper writes and one read ahead, the latter only
/// while the client keeps up (`files::readahead`: a client that stops reading holds one chunk).
pub(crate) const H1_BUDGET: usize = 2 * H1_CHUNK;
/// The chunk a body reads at once on an HTTP/2 connection (four full DATA frames).
pub(crate) const H2_CHUNK: usize = 64 * 1024;
/// What one HTTP/2 connection may hold, over all its streams.
pub(crate) const H2_BUDGET: usize = 16 * H2_CHUNK;
/// What all connections of a server may hold together, by default.
pub(crate) const SERVER_BUDGET: usize = 64 << 20;

/// One connection's share of the server's read budget, and the chunk size its bodies read.
#[derive(Debug)]
pub(crate) struct ReadBudget {
    chunk: usize,
    connection: Arc<Semaphore>,
    server: Arc<ServerBudget>,
    /// The client's address: whose share of the server's budget the connection takes from.
    peer: IpAddr,
    /// Bodies read a chunk ahead while the client keeps up (HTTP/1.1; HTTP/2's streams share the
    /// connection's budget instead).
    reads_ahead: bool,
}

impl ReadBudget {
    /// The budget of a new connection (`http2` or not) from `peer`, under the server's budget.
    pub(crate) fn new(http2: bool, server: Arc<ServerBudget>, peer: IpAddr) -> Arc<Self> {
        let (chunk, budget) = if http2 {
            (H2_CHUNK, H2_BUDGET)
        } else {
            (H1_CHUNK, H1_BUDGET)
        };
        Arc::new(ReadBudget {
            chunk,
            connection: Arc::new(Semaphore::new(budget)),
            server,
            peer,
            reads_ahead: !http2,
        })
    }

    /// The server's budget, `bytes` large; it and each source's share hold at least one HTTP/1.1
    /// budget, so a chunk and its read-ahead always fit.
    pub(crate) fn server(bytes: usize) -> Arc<ServerBudget> {
        ServerBudget::new(bytes, H1_BUDGET)
    }

    /// How much a body on this connection reads at once.
    pub(crate) fn chunk(&self) -> usize {
        self.chunk
    }

    /// Whether bodies on this connection read ahead while the client keeps up.
    pub(crate) fn reads_ahead(&self) -> bool {
        self.reads_ahead
    }

    /// Bytes of this connection's budget that chunks hold now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        let total = if self.reads_ahead {
            H1_BUDGET
        } else {
            H2_BUDGET
        };
        total - self.connection.available_permits()
    }
}

/// A body's way of taking budget for its next chunk, one chunk at a time.
#[derive(Debug)]
pub(crate) struct Reservation {
    connection: PollSemaphore,
    server: ShareRequest,
    /// The connection's part, held while the server's part is awaited.
    held: Option<OwnedSemaphorePermit>,
}

/// Budget taken for one chunk; given back when dropped.
#[derive(Debug)]
pub(crate) struct Permits {
    _connection: Option<OwnedSemaphorePermit>,
    _server: Option<SharePermit>,
}

impl Reservation {
    pub(crate) fn new(budget: &ReadBudget) -> Self {
        Reservation {
            connection: PollSemaphore::new(budget.connection.clone()),
            server: ShareRequest::new(budget.server.clone(), budget.peer),
            held: None,
        }
    }

    /// Whether the last take is still waiting for the server's budget (other clients hold it), rather than
    /// for the connection's or its source's share (the same client's other requests hold it).
    pub(crate) fn is_waiting_on_server(&self) -> bool {
        self.held.is_some() && self.server.is_waiting_on_others()
    }

    /// Takes `len` bytes of budget: the connection's, then its source's share of the server's; pending
    /// while either is spent. Call again with the same `len` until ready.
    pub(crate) fn poll_take(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<Permits> {
        let n = u32::try_from(len).unwrap_or(u32::MAX);
        if self.held.is_none() {
            // `None` means a closed semaphore: ours are never closed, so go on unlimited rather than hang.
            self.held = ready!(self.connection.poll_acquire_many(cx, n));
            if self.held.is_none() {
                return Poll::Ready(Permits {
                    _connection: None,
                    _server: None,
                });
            }
        }
        let server = ready!(self.server.poll_take(cx, len));
        Poll::Ready(Permits {
            _connection: self.held.take(),
            _server: Some(server),
        })
    }
}

/// What one chunk is handed to hyper as in an HTTP/2 stream: one DATA frame's worth at a time.
pub(crate) const H2_SLICE: usize = 16 * 1024;

/// A chunk as bytes that hold their budget until the last reference to them is dropped, which is when
/// they were written out. For an HTTP/2 stream (`written`), the chunk is cut into [`H2_SLICE`] pieces, each
/// telling the stream's record when it went out: so the watchdog sees progress a frame at a time.
pub(crate) fn hold(
    data: Vec<u8>,
    permits: Permits,
    written: Option<Arc<StreamProgress>>,
) -> VecDeque<Bytes> {
    let len = data.len();
    let held = Arc::new(Held {
        data,
        _permits: permits,
    });
    let Some(written) = written else {
        return VecDeque::from([Bytes::from_owner(Slice {
            held,
            start: 0,
            end: len,
            written: None,
        })]);
    };
    (0..len)
        .step_by(H2_SLICE)
        .map(|start| {
            Bytes::from_owner(Slice {
                held: held.clone(),
                start,
                end: (start + H2_SLICE).min(len),
                written: Some(written.clone()),
            })
        })
        .collect()
}

struct Held {
    data: Vec<u8>,
    _permits: Permits,
}

struct Slice {
    held: Arc<Held>,
    start: usize,
    end: usize,
    written: Option<Arc<StreamProgress>>,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        &self.held.data[self.start..self.end]
    }
}

impl Drop for Slice {
    fn drop(&mut self) {
        if let Some(progress) = &self.written {
            progress.moved();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[tokio::test]
    async fn bytes_give_their_budget_back_when_the_last_slice_is_dropped() {
        let server = ReadBudget::server(0);
        let budget = ReadBudget::new(false, server.clone(), PEER);
        const HALF: usize = H1_BUDGET / 2;
        let mut r = Reservation::new(&budget);
        let a = hold(
            vec![1; HALF],
            poll_fn(|cx| r.poll_take(cx, HALF)).await,
            None,
        )[0]
        .clone();
        let b = hold(
            vec![2; HALF],
            poll_fn(|cx| r.poll_take(cx, HALF)).await,
            None,
        )[0]
        .clone();
        // The connection's budget is spent: a third piece waits.
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(r.poll_take(&mut cx, HALF).is_pending());
        let slice = a.slice(10..20);
        drop(a);
        assert!(
            r.poll_take(&mut cx, HALF).is_pending(),
            "a slice still holds it"
        );
        drop(slice);
        let c = poll_fn(|cx| r.poll_take(cx, HALF)).await;
        drop((b, c));
        assert_eq!(budget.connection.available_permits(), H1_BUDGET);
        assert_eq!(server.available(), H1_BUDGET);
    }

    #[tokio::test]
    async fn the_server_budget_bounds_all_connections_together() {
        let server = ReadBudget::server(H1_BUDGET);
        const HALF: usize = H1_BUDGET / 2;
        let (one, two) = (
            ReadBudget::new(false, server.clone(), PEER),
            ReadBudget::new(false, server.clone(), PEER),
        );
        let mut r1 = Reservation::new(&one);
        let held = [
            poll_fn(|cx| r1.poll_take(cx, HALF)).await,
            poll_fn(|cx| r1.poll_take(cx, HALF)).await,
        ];
        let mut r2 = Reservation::new(&two);
        let waker = noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(r2.poll_take(&mut cx, HALF).is_pending());
        drop(held);
        assert!(r2.poll_take(&mut cx, HALF).is_ready());
    }

    #[tokio::test]
    async fn an_http2_chunk_goes_out_in_frames_each_reporting_progress() {
        let budget = ReadBudget::new(true, ReadBudget::server(0), PEER);
        let mut r = Reservation::new(&budget);
        let permits = poll_fn(|cx| r.poll_take(cx, H2_CHUNK)).await;
        let progress = Arc::new(StreamProgress::default());
        let data: Vec<u8> = (0..H2_CHUNK).map(|i| i as u8).collect();
        let mut slices = hold(data.clone(), permits, Some(progress.clone()));
        assert_eq!(slices.len(), H2_CHUNK / H2_SLICE);
        let joined: Vec<u8> = slices.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(joined, data);
        progress.started(true);
        tokio::time::pause();
        tokio::time::advance(std::time::Duration::from_secs(11)).await;
        let window = std::time::Duration::from_secs(10);
        assert!(progress.stalled_for(window));
        drop(slices.pop_front());
        assert!(!progress.stalled_for(window), "one frame out is progress");
        assert_eq!(budget.connection.available_permits(), H2_BUDGET - H2_CHUNK);
        drop(slices);
        assert_eq!(budget.connection.available_permits(), H2_BUDGET);
    }

    fn noop_waker() -> std::task::Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        std::task::Waker::from(Arc::new(Noop))
    }
}
