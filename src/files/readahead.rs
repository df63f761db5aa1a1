//! HTTP/1.1 read-ahead that lasts only while the client keeps up.
//!
//! A body copying a file (TLS, or plain HTTP when `sendfile` is not the faster path) reads a chunk on the
//! blocking pool while hyper writes the one before, so that reading, encrypting and writing overlap:
//! measured on one 1 GiB stream over loopback (benches/compare_nginx.sh), reading the next chunk only once
//! the last was written out loses about a third of the speed. But a chunk read ahead is memory a client
//! pins, and the hardening bound is one chunk for a client that stops reading (`limits::memory`). So:
//!
//! - hyper holds at most one chunk of the body: a chunk is handed over only with the body's *gate*, which
//!   the chunk gives back when hyper has written it out (dropped it);
//! - the next chunk is read while one is in hyper's hands only if the last chunk handed over was written
//!   out within [`PROMPT`] (the client keeps up); the first chunk of a body never has a read ahead;
//! - a chunk read ahead that cannot be handed over within [`PROMPT`] (the client stopped reading) is
//!   dropped, its budget given back, and its range read again when the client moves.
//!
//! SECURITY: the threat is a client that reads quickly, so that read-ahead starts, and then stops. It pins
//! two chunks for at most [`PROMPT`], then one, as a client that never read does (tests below, and
//! tests/it/hardening.rs for the latter over real sockets).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::PollSemaphore;

/// How soon a chunk handed to hyper must be written out for the client to count as keeping up (256 KiB
/// in this time is 1 MiB/s), and how long a chunk read ahead may wait for the one before to go.
pub(crate) const PROMPT: Duration = Duration::from_millis(250);

/// A body's read-ahead state.
pub(crate) struct ReadAhead {
    gate: PollSemaphore,
    pace: Arc<AtomicBool>,
    /// A chunk read ahead, its range in the file, and when it is dropped if still here.
    ready: Option<(Bytes, u64, u64)>,
    expiry: Pin<Box<Sleep>>,
}

/// What [`ReadAhead::poll_hand_over`] gives.
pub(crate) enum HandOver {
    /// The chunk, to give hyper.
    Chunk(Bytes),
    /// The chunk waited too long and was dropped: read `start..end` of the file again.
    Dropped { start: u64, end: u64 },
}

impl ReadAhead {
    pub(crate) fn new() -> Self {
        ReadAhead {
            gate: PollSemaphore::new(Arc::new(Semaphore::new(1))),
            pace: Arc::new(AtomicBool::new(false)),
            ready: None,
            expiry: Box::pin(tokio::time::sleep(Duration::ZERO)),
        }
    }

    /// Whether a chunk read is waiting to be handed over.
    pub(crate) fn has_ready(&self) -> bool {
        self.ready.is_some()
    }

    /// Whether a new read may start now: yes when no chunk is in hyper's hands or the client keeps up;
    /// otherwise pending until hyper has written its chunk out. Call only with no chunk ready.
    pub(crate) fn poll_may_read(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pace.load(Ordering::Relaxed) {
            return Poll::Ready(());
        }
        // Waiting for the gate registers this task to be woken when it is free; the permit is not kept.
        drop(ready!(self.gate.poll_acquire(cx)));
        Poll::Ready(())
    }

    /// A chunk read for `start..end`, to hand over once the gate allows.
    pub(crate) fn put(&mut self, chunk: Bytes, start: u64, end: u64) {
        self.ready = Some((chunk, start, end));
        self.expiry.as_mut().reset(Instant::now() + PROMPT);
    }

    /// Hands the ready chunk over once hyper has written the one before, or drops it if that takes
    /// longer than [`PROMPT`]. Pending while neither; call only with a chunk ready.
    pub(crate) fn poll_hand_over(&mut self, cx: &mut Context<'_>) -> Poll<HandOver> {
        match self.gate.poll_acquire(cx) {
            Poll::Ready(permit) => {
                let (chunk, _, _) = self.ready.take().unwrap_or_default();
                Poll::Ready(HandOver::Chunk(self.handed(chunk, permit)))
            }
            Poll::Pending => {
                ready!(self.expiry.as_mut().poll(cx));
                self.pace.store(false, Ordering::Relaxed);
                let (_, start, end) = self.ready.take().unwrap_or_default();
                Poll::Ready(HandOver::Dropped { start, end })
            }
        }
    }

    /// `chunk` holding the gate until hyper drops it, noting then whether it went out promptly.
    fn handed(&self, chunk: Bytes, permit: Option<OwnedSemaphorePermit>) -> Bytes {
        Bytes::from_owner(Handed {
            chunk,
            _gate: permit,
            pace: self.pace.clone(),
            at: Instant::now(),
        })
    }
}

/// A chunk in hyper's hands.
struct Handed {
    chunk: Bytes,
    _gate: Option<OwnedSemaphorePermit>,
    pace: Arc<AtomicBool>,
    at: Instant,
}

impl AsRef<[u8]> for Handed {
    fn as_ref(&self) -> &[u8] {
        &self.chunk
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        self.pace
            .store(self.at.elapsed() <= PROMPT, Ordering::Relaxed);
    }
}
