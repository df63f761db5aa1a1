//! HTTP/2 streams under a watchdog: the executor hyper spawns each stream's task with.
//!
//! SECURITY: see `limits::progress`. A stream whose client grants no flow-control window is never polled
//! again by hyper, so nothing inside the stream can notice it; the watchdog wraps the stream's task,
//! looks at its body's progress four times per minimum-send-rate window, and drops the task of a stream whose
//! body has bytes left and was not asked for data for a whole window. Dropping it makes h2 reset the
//! stream (RST_STREAM CANCEL) and free what was queued for it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use crate::limits::StreamProgress;

tokio::task_local! {
    /// The progress record of the HTTP/2 stream whose task is being polled.
    static STREAM: Arc<StreamProgress>;
}

/// The progress record of the current HTTP/2 stream, when called from one (the service runs inside it).
pub(crate) fn current() -> Option<Arc<StreamProgress>> {
    STREAM.try_with(Arc::clone).ok()
}

/// Spawns hyper's HTTP/2 stream tasks, each under a watchdog.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchedExecutor {
    /// The minimum send rate; 0 turns the watchdog off.
    pub(crate) rate: u64,
    /// How long a body may go unasked while it has bytes left.
    pub(crate) window: Duration,
}

impl<F> hyper::rt::Executor<F> for WatchedExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let progress = Arc::new(StreamProgress::default());
        let inner = Box::pin(STREAM.scope(progress.clone(), fut));
        let every = self.window / 4;
        let check =
            (self.rate > 0 && !every.is_zero()).then(|| Box::pin(tokio::time::sleep(every)));
        tokio::spawn(Watched {
            inner,
            progress,
            check,
            window: self.window,
            every,
        });
    }
}

struct Watched<F> {
    inner: Pin<Box<F>>,
    progress: Arc<StreamProgress>,
    check: Option<Pin<Box<Sleep>>>,
    window: Duration,
    every: Duration,
}

impl<F: Future<Output = ()>> Future for Watched<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if this.inner.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        while let Some(check) = this.check.as_mut() {
            if check.as_mut().poll(cx).is_pending() {
                break;
            }
            if this.progress.stalled_for(this.window) {
                tracing::debug!("HTTP/2 stream below the minimum send rate; resetting it");
                return Poll::Ready(());
            }
            check.as_mut().reset(Instant::now() + this.every);
        }
        Poll::Pending
    }
}
