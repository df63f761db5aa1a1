//! The BandwidthLimit of a group: one budget of bytes per second shared by all its transfers.
//!
//! A token bucket that may go into debt: a transfer reserves the piece it is about to send and learns when it
//! may send it; a transfer in debt sleeps (a timer, never a busy loop). Each transfer reserves its next piece
//! only after sending the previous one, so concurrent transfers take turns and share the rate evenly. Pieces
//! are small (a sixteenth of a second's worth, 1 KiB to 64 KiB), so a rate changed at runtime applies to
//! transfers in flight within a fraction of a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::ByteRate;
use crate::lock::Recover;

/// The shared budget of one group.
#[derive(Debug)]
pub(crate) struct Bandwidth {
    /// Bytes per second; 0 means unlimited.
    rate: AtomicU64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may be sent now; negative when transfers have reserved ahead.
    tokens: f64,
    updated: Instant,
}

impl Default for Bandwidth {
    fn default() -> Self {
        Bandwidth {
            rate: AtomicU64::new(0),
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                updated: Instant::now(),
            }),
        }
    }
}

impl Bandwidth {
    pub(crate) fn rate(&self) -> ByteRate {
        match self.rate.load(Ordering::Acquire) {
            0 => ByteRate::UNLIMITED,
            n => ByteRate::per_second(n).unwrap_or(ByteRate::UNLIMITED),
        }
    }

    pub(crate) fn set_rate(&self, rate: ByteRate) {
        let mut bucket = self.bucket.lock().recover();
        // Settle the bucket at the old rate, so the new one counts from now.
        refill(&mut bucket, self.rate.load(Ordering::Acquire));
        self.rate.store(rate.get().unwrap_or(0), Ordering::Release);
    }

    /// The most bytes to send in one piece, or `None` when unlimited.
    pub(crate) fn piece(&self) -> Option<usize> {
        match self.rate.load(Ordering::Acquire) {
            0 => None,
            rate => Some(
                usize::try_from(rate / 16)
                    .unwrap_or(usize::MAX)
                    .clamp(1024, 64 * 1024),
            ),
        }
    }

    /// Reserves `n` bytes; returns when they may be sent, or `None` to send them now.
    pub(crate) fn reserve(&self, n: usize) -> Option<Instant> {
        let rate = self.rate.load(Ordering::Acquire);
        if rate == 0 {
            return None;
        }
        let mut bucket = self.bucket.lock().recover();
        refill(&mut bucket, rate);
        bucket.tokens -= n as f64;
        (bucket.tokens < 0.0)
            .then(|| bucket.updated + Duration::from_secs_f64(-bucket.tokens / rate as f64))
    }
}

/// Adds what the elapsed time earned, keeping at most a tenth of a second's worth in reserve so that an idle
/// group cannot burst far past its rate.
fn refill(bucket: &mut Bucket, rate: u64) {
    let now = Instant::now();
    let earned = now.duration_since(bucket.updated).as_secs_f64() * rate as f64;
    let burst = (rate as f64 / 10.0).max(1024.0);
    bucket.tokens = (bucket.tokens + earned).min(burst);
    bucket.updated = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_at_the_rate_with_a_paused_clock() {
        let bw = Bandwidth::default();
        bw.set_rate(ByteRate::per_second(64 * 1024).unwrap());
        let piece = bw.piece().unwrap();
        assert_eq!(piece, 4096);
        let start = Instant::now();
        let mut sent = 0usize;
        while sent < 10 * 64 * 1024 {
            if let Some(at) = bw.reserve(piece) {
                tokio::time::sleep_until(at).await;
            }
            sent += piece;
        }
        let took = start.elapsed().as_secs_f64();
        assert!((9.8..=10.2).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn shared_fairly_and_changed_in_flight() {
        let bw = std::sync::Arc::new(Bandwidth::default());
        bw.set_rate(ByteRate::per_second(30 * 1024).unwrap());
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let bw = bw.clone();
            tasks.push(tokio::spawn(async move {
                let mut sent = 0u64;
                let end = Instant::now() + Duration::from_secs(10);
                while Instant::now() < end {
                    let piece = bw.piece().unwrap_or(64 * 1024);
                    if let Some(at) = bw.reserve(piece) {
                        tokio::time::sleep_until(at).await;
                    }
                    sent += piece as u64;
                }
                sent
            }));
        }
        let mut shares = Vec::new();
        for t in tasks {
            shares.push(t.await.unwrap());
        }
        let total: u64 = shares.iter().sum();
        assert!((290_000..=330_000).contains(&total), "{total}");
        for s in &shares {
            let third = total as f64 / 3.0;
            assert!((*s as f64 - third).abs() < third * 0.1, "{shares:?}");
        }

        // Lowering the rate applies to the next piece.
        bw.set_rate(ByteRate::per_second(2048).unwrap());
        let start = Instant::now();
        for _ in 0..4 {
            let piece = bw.piece().unwrap();
            if let Some(at) = bw.reserve(piece) {
                tokio::time::sleep_until(at).await;
            }
        }
        // All earlier reservations were slept through, so these four 1 KiB pieces take 2 s.
        let took = start.elapsed().as_secs_f64();
        assert!((1.9..=2.2).contains(&took), "{took}");
        bw.set_rate(ByteRate::UNLIMITED);
        assert_eq!(bw.reserve(1 << 30), None);
    }
}
