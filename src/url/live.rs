//! Downloads in progress, as an operator sees them live: who is fetching which URL, how far it is, and
//! how fast it goes now.
//!
//! Each URL keeps a registry of its downloads in progress, touched twice per download (registered when
//! the body starts, removed when it is dropped); it holds at most one entry per transfer permit, so the
//! group's ConnectionLimit and the server's transfer bound also bound it. While the body is sent, the
//! only work is [`LiveDownload::record`]: relaxed atomics, one clock read. The rate is read from a ring
//! of per-second byte counts: the bytes of the last whole seconds (up to [`WINDOW_SECS`]) over their
//! number, so a download paced at a limit shows that limit and a stalled one drops to 0 within seconds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::lock::Recover;

/// How many whole seconds the rate looks back over.
pub const WINDOW_SECS: u64 = 3;

/// Slots in the ring: the window and the second being counted now.
const SLOTS: usize = WINDOW_SECS as usize + 1;

/// A download in progress, shared by the response body that counts its bytes and the registry that
/// lists it.
#[derive(Debug)]
pub(crate) struct LiveDownload {
    client: SocketAddr,
    user: Option<String>,
    total: u64,
    started: Instant,
    sent: AtomicU64,
    /// Bytes sent in a second since `started`, and which second each slot counts.
    slots: [AtomicU64; SLOTS],
    slot_second: [AtomicU64; SLOTS],
}

impl LiveDownload {
    /// Per download on the request path: one clock read, no allocation (the URL is its registry's, the
    /// wall-clock start is derived when a status asks).
    pub(crate) fn new(client: SocketAddr, user: Option<String>, total: u64) -> Self {
        LiveDownload {
            client,
            user,
            total,
            started: Instant::now(),
            sent: AtomicU64::new(0),
            slots: Default::default(),
            slot_second: Default::default(),
        }
    }

    /// `n` more bytes went out. Called by the one body that owns this download, so the slot reset
    /// below races with no other writer (a reader may see a slot mid-reset: an estimate, never unsafe).
    pub(crate) fn record(&self, n: u64) {
        self.record_at(n, self.started.elapsed().as_secs());
    }

    fn record_at(&self, n: u64, second: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        let i = slot(second);
        if self.slot_second[i].load(Ordering::Relaxed) != second {
            self.slots[i].store(0, Ordering::Relaxed);
            self.slot_second[i].store(second, Ordering::Relaxed);
        }
        self.slots[i].fetch_add(n, Ordering::Relaxed);
    }

    /// Bytes per second now: over the last whole seconds (up to [`WINDOW_SECS`]); in the first second,
    /// the average so far.
    fn rate(&self) -> u64 {
        self.rate_at(self.started.elapsed())
    }

    fn rate_at(&self, elapsed: std::time::Duration) -> u64 {
        let now = elapsed.as_secs();
        if now == 0 {
            let ms = u64::try_from(elapsed.as_millis())
                .unwrap_or(u64::MAX)
                .max(1);
            return self.sent.load(Ordering::Relaxed).saturating_mul(1000) / ms;
        }
        let seconds = now.min(WINDOW_SECS);
        let bytes: u64 = (now - seconds..now)
            .filter(|s| self.slot_second[slot(*s)].load(Ordering::Relaxed) == *s)
            .map(|s| self.slots[slot(s)].load(Ordering::Relaxed))
            .sum();
        bytes / seconds
    }

    /// This download of `url` (the suffix of the URL whose registry lists it).
    pub(crate) fn status(&self, url: &str) -> DownloadStatus {
        let started_at = SystemTime::now()
            .checked_sub(self.started.elapsed())
            .unwrap_or(UNIX_EPOCH);
        DownloadStatus {
            client: self.client.to_string(),
            user: self.user.clone(),
            url: url.to_owned(),
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_total: self.total,
            started_unix: started_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            rate: self.rate(),
        }
    }
}

fn slot(second: u64) -> usize {
    // The remainder is below SLOTS.
    (second % SLOTS as u64) as usize
}

/// The downloads in progress of one URL.
#[derive(Debug, Default)]
pub(crate) struct LiveDownloads {
    list: Mutex<Vec<Arc<LiveDownload>>>,
}

impl LiveDownloads {
    pub(crate) fn add(&self, download: Arc<LiveDownload>) {
        self.list.lock().recover().push(download);
    }

    pub(crate) fn remove(&self, download: &Arc<LiveDownload>) {
        let mut list = self.list.lock().recover();
        if let Some(i) = list.iter().position(|d| Arc::ptr_eq(d, download)) {
            list.swap_remove(i);
        }
    }

    /// How many there are, and up to `max` of them, oldest first; `url` is the suffix of the URL they download.
    pub(crate) fn snapshot(&self, url: &str, max: usize) -> (u64, Vec<DownloadStatus>) {
        let mut list: Vec<Arc<LiveDownload>> = self.list.lock().recover().clone();
        list.sort_by_key(|d| d.started);
        let shown = list.iter().take(max).map(|d| d.status(url)).collect();
        (list.len() as u64, shown)
    }
}

/// One download being sent now: a GET answered 200 or 206 whose body has not ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct DownloadStatus {
    /// The client's address and port.
    pub client: String,
    /// Who the client authenticated as; absent for an anonymous client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The URL's suffix under its group.
    pub url: String,
    /// Body bytes sent so far.
    pub bytes_sent: u64,
    /// Body bytes this answer sends in all (the range's length for a 206).
    pub bytes_total: u64,
    /// When the body started, in seconds since the Unix epoch.
    pub started_unix: u64,
    /// Bytes per second over the last few whole seconds.
    pub rate: u64,
}

/// A URL group's downloads in progress and how full its limits are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct GroupStatus {
    /// The group's prefix.
    pub prefix: String,
    /// Transfers running now (each holds one of the ConnectionLimit's places).
    pub transfers: u32,
    /// The ConnectionLimit; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<u32>,
    /// The BandwidthLimit in bytes per second, shared by the group's transfers; absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_limit: Option<u64>,
    /// The sum of the listed downloads' rates.
    pub rate: u64,
    /// Downloads in progress, all of them, listed or not.
    pub downloads_in_progress: u64,
    /// The downloads listed, oldest first (the server's status may list fewer than there are).
    pub downloads: Vec<DownloadStatus>,
}

/// What a server is sending now: each group's downloads and limits, and the server-wide bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "service", derive(utoipa::ToSchema))]
#[non_exhaustive]
pub struct ServerStatus {
    /// Transfers running now, in all groups.
    pub transfers: u64,
    /// The most transfers the server runs at once.
    pub transfers_max: u64,
    /// The most transfers one client address may run at once.
    pub transfers_per_source_max: u32,
    /// The most connections the server accepts at once.
    pub connections_max: u64,
    /// The groups, in creation order.
    pub groups: Vec<GroupStatus>,
    /// Downloads listed across all groups; at most the cap the status was asked with.
    pub downloads_listed: u64,
    /// Whether some downloads in progress are not listed (there were more than the cap).
    pub downloads_truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn download() -> LiveDownload {
        LiveDownload::new("127.0.0.1:1".parse().unwrap(), None, 100)
    }

    #[test]
    fn the_rate_is_the_mean_of_the_whole_seconds_in_the_window() {
        let d = download();
        for (second, bytes) in [(4, 999_999), (5, 300), (6, 600), (7, 900), (8, 5)] {
            d.record_at(bytes, second);
        }
        // At 8.5 s: seconds 5, 6 and 7 are whole; 4 is out of the window, 8 is being counted.
        assert_eq!(d.rate_at(Duration::from_millis(8_500)), 600);
        // At 2.5 s (had nothing been sent later) only two whole seconds exist.
        let early = download();
        early.record_at(1_000, 0);
        early.record_at(3_000, 1);
        assert_eq!(early.rate_at(Duration::from_millis(2_500)), 2_000);
    }

    #[test]
    fn a_slot_left_from_an_earlier_lap_counts_nothing() {
        let d = download();
        d.record_at(1_000_000, 1);
        // At 9.2 s the window is 6..9; slot(5) == slot(1) still holds second 1's bytes.
        assert_eq!(d.rate_at(Duration::from_millis(9_200)), 0);
        d.record_at(3_000, 8);
        assert_eq!(d.rate_at(Duration::from_millis(9_200)), 1_000);
    }

    #[test]
    fn the_first_second_is_the_average_so_far_and_registry_lists_and_forgets() {
        let d = Arc::new(download());
        d.record(40);
        assert_eq!(d.status("a").bytes_sent, 40);
        assert!(d.status("a").rate >= 40, "{:?}", d.status("a"));
        let all = LiveDownloads::default();
        all.add(d.clone());
        all.add(Arc::new(download()));
        assert_eq!(all.snapshot("a", 10).1.len(), 2);
        let (count, shown) = all.snapshot("a", 1);
        assert_eq!((count, shown.len()), (2, 1));
        all.remove(&d);
        let (count, shown) = all.snapshot("a", 10);
        assert_eq!((count, shown[0].bytes_sent), (1, 0));
    }
}
