//! A job's own bandwidth limit: a transfer waits after each piece of a body until its bytes fit the rate.
//!
//! The average since the transfer (or its last stall) began is held to the rate, so a short burst after
//! a slow moment is allowed, but never more than [`CATCH_UP`] worth: a transfer that fell further behind
//! (a slow server) starts counting afresh rather than racing to catch up.

use std::time::Duration;

use tokio::time::Instant;

/// The most a transfer may run ahead of the rate to make up for a slow moment.
const CATCH_UP: Duration = Duration::from_secs(1);

/// The pace of one transfer.
#[derive(Debug)]
pub(crate) struct Pace {
    /// Bytes per second; `None`: unlimited.
    rate: Option<u64>,
    since: Instant,
    bytes: u64,
}

impl Pace {
    pub(crate) fn new(rate: Option<u64>) -> Pace {
        Pace {
            rate,
            since: Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` more bytes received and waits until they fit the rate.
    pub(crate) async fn after(&mut self, n: u64) {
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let now = Instant::now();
        let behind = self
            .due(rate)
            .and_then(|due| due.checked_add(CATCH_UP))
            .is_some_and(|late| late < now);
        if behind {
            (self.since, self.bytes) = (now, 0);
        }
        self.bytes = self.bytes.saturating_add(n);
        match self.due(rate) {
            Some(due) => tokio::time::sleep_until(due).await,
            // More bytes than the clock can pace (never in practice): count afresh rather than panic.
            None => (self.since, self.bytes) = (now, 0),
        }
    }

    /// When the bytes counted so far fit the rate; `None` beyond the clock's range.
    fn due(&self, rate: u64) -> Option<Instant> {
        let wait = Duration::try_from_secs_f64(self.bytes as f64 / rate as f64).ok()?;
        self.since.checked_add(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bytes_are_held_to_the_rate() {
        let start = Instant::now();
        let mut pace = Pace::new(Some(1000));
        for _ in 0..10 {
            pace.after(500).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        let mut free = Pace::new(None);
        free.after(1 << 30).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_moment_is_not_made_up_for_without_bound() {
        let mut pace = Pace::new(Some(1000));
        pace.after(1000).await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        let before = Instant::now();
        pace.after(2000).await;
        assert_eq!(before.elapsed(), Duration::from_secs(2));
    }
}
