//! One accepted connection: hyper's HTTP/1.1 loop under the connection deadlines, until it ends, is idle
//! too long, or shutdown asks it to finish its current request.
//!
//! Deadlines: the header wait is hyper's header-read timeout, which runs from the moment hyper waits for a
//! request (so it also ends keep-alive connections that stay silent that long); the idle timeout ends a
//! connection on which no byte moved in either direction for that long, which covers a client that stops
//! reading a response.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::service::{self, ConnInfo};
use super::ServeContext;

/// Serves one connection to its end. The permit is held for the connection's whole life.
pub(crate) async fn serve(
    stream: TcpStream,
    info: ConnInfo,
    ctx: Arc<ServeContext>,
    _permit: OwnedSemaphorePermit,
) {
    let config = &ctx.shared.config;
    let activity = Activity::new();
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let info = Arc::new(info);
    let shared = ctx.shared.clone();
    let svc = service_fn(move |req| service::handle(req, shared.clone(), info.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true)
        .serve_connection(io, svc);
    tokio::pin!(conn);
    let outcome = tokio::select! {
        res = conn.as_mut() => res.map_err(|e| e.to_string()),
        () = activity.idle_for(config.idle_timeout) => Err("idle timeout".into()),
        () = ctx.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                res = conn.as_mut() => res.map_err(|e| e.to_string()),
                () = activity.idle_for(config.idle_timeout) => Err("idle timeout while draining".into()),
                () = ctx.force.cancelled() => Err("cut at the drain deadline".into()),
            }
        }
    };
    if let Err(reason) = outcome {
        tracing::debug!(%reason, "connection ended");
    }
}

/// When bytes last moved on a connection, in milliseconds since it started.
#[derive(Clone)]
struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once no byte has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.start + last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The socket, noting each read or write that moved bytes.
struct Tracked {
    inner: TcpStream,
    activity: Activity,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
