//! What a URL has served ([`Counters`], read as [`UrlStats`]) and the downloads of it being sent now
//! ([`DownloadUnderWay`], which lists one among them for as long as its body lives).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::live::{LiveDownload, LiveDownloads};

/// What a URL has served since it was published, and the downloads of it being sent now.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    bytes: AtomicU64,
    downloads: AtomicU64,
    under_way: AtomicU64,
    live: LiveDownloads,
}

impl Counters {
    /// The totals so far.
    pub(crate) fn stats(&self) -> UrlStats {
        UrlStats {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_sent: self.bytes.load(Ordering::Relaxed),
            downloads_completed: self.downloads.load(Ordering::Relaxed),
            downloads_under_way: self.under_way.load(Ordering::Relaxed),
        }
    }

    /// The downloads being sent now.
    pub(crate) fn live(&self) -> &LiveDownloads {
        &self.live
    }

    /// One request answered: `sent` body bytes, and whether it was a whole download (a GET whose 200 or
    /// 206 body went out to its end).
    pub(crate) fn count(&self, sent: u64, download: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(sent, Ordering::Relaxed);
        if download {
            self.downloads.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A download of a URL being sent (the body of a 200 or 206 answer to a GET): counted under way, and
/// listed among the URL's downloads in progress, from [`DownloadUnderWay::start`] until dropped, however
/// the body ends (sent whole, client gone, error), since the response body's finish hook that holds it
/// runs once when the body is dropped.
#[derive(Debug)]
pub(crate) struct DownloadUnderWay {
    counters: Arc<Counters>,
    live: Arc<LiveDownload>,
}

impl DownloadUnderWay {
    pub(crate) fn start(counters: Arc<Counters>, live: LiveDownload) -> Self {
        counters.under_way.fetch_add(1, Ordering::Relaxed);
        let live = Arc::new(live);
        counters.live.add(live.clone());
        DownloadUnderWay { counters, live }
    }

    /// `n` more body bytes went out.
    pub(crate) fn record(&self, n: u64) {
        self.live.record(n);
    }
}

impl Drop for DownloadUnderWay {
    fn drop(&mut self) {
        self.counters.live.remove(&self.live);
        self.counters.under_way.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a URL has served since it was published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct UrlStats {
    /// Requests answered (any method, any status).
    pub requests: u64,
    /// Body bytes sent.
    pub bytes_sent: u64,
    /// GETs whose 200 or 206 body went out to its end.
    pub downloads_completed: u64,
    /// GETs whose 200 or 206 body is being sent now.
    pub downloads_under_way: u64,
}
