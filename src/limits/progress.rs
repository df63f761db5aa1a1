//! When an HTTP/2 stream's body last moved (a chunk it read was written out, or it waited on the server),
//! and whether it still has bytes to send.
//!
//! SECURITY: the threat is a client that opens streams on large files and never grants them flow-control
//! window (an initial window of 0), keeping the connection alive with PINGs: hyper then never asks the
//! bodies for more, so neither the idle timeout nor the connection's minimum send rate (it counts only
//! writes that block on the socket) ever fires, and each stream pins what was read for it. A watchdog
//! around each stream looks at this record four times per minimum-send-rate window and resets a stream whose
//! body has bytes left and has not moved for a whole window. Reading a chunk is not moving (the client
//! may never take it), nor is waiting for its connection's read budget (the same client's other streams
//! hold it); a chunk written out, and waiting for pacing or for the server's budget, are.
//!
//! h2 does not say how much of a queued DATA frame went out, only (by dropping it) that all of it did, so
//! a body hands its chunks to hyper a frame (16 KiB) at a time: on HTTP/2 the floor is one frame per
//! window (16 KiB per 10 s by default, about 1.6 KB/s), stricter than HTTP.sys's 150 bytes/s but far below
//! any working client.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// One stream's body progress, shared by the body and the stream's watchdog.
#[derive(Debug)]
pub(crate) struct StreamProgress {
    born: Instant,
    /// Milliseconds after `born` when the body last moved.
    moved_ms: AtomicU64,
    /// A body with bytes left exists.
    active: AtomicBool,
}

impl Default for StreamProgress {
    fn default() -> Self {
        StreamProgress {
            born: Instant::now(),
            moved_ms: AtomicU64::new(0),
            active: AtomicBool::new(false),
        }
    }
}

impl StreamProgress {
    /// A body for this stream exists, with or without bytes to send.
    pub(crate) fn started(&self, has_bytes: bool) {
        self.moved();
        self.active.store(has_bytes, Ordering::Relaxed);
    }

    /// A chunk of the body was written out, or the body is waiting on the server (pacing, the server's
    /// budget).
    pub(crate) fn moved(&self) {
        let ms = u64::try_from(self.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.moved_ms.store(ms, Ordering::Relaxed);
    }

    /// The body sent its last byte, failed, or was dropped.
    pub(crate) fn ended(&self) {
        self.active.store(false, Ordering::Relaxed);
    }

    /// Whether the body has bytes left and has not moved for at least `window`.
    pub(crate) fn stalled_for(&self, window: Duration) -> bool {
        let moved = Duration::from_millis(self.moved_ms.load(Ordering::Relaxed));
        self.active.load(Ordering::Relaxed) && self.born.elapsed().saturating_sub(moved) >= window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_body_that_did_not_move_for_a_window_is_stalled_unless_done() {
        let p = StreamProgress::default();
        let window = Duration::from_secs(10);
        assert!(!p.stalled_for(window), "no body yet");
        p.started(true);
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!p.stalled_for(window));
        p.moved();
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!p.stalled_for(window), "moved 9 s ago");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(p.stalled_for(window));
        p.ended();
        assert!(!p.stalled_for(window), "a finished body waits on nobody");
    }
}
