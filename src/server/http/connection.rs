//! One accepted connection: hyper's HTTP/1.1 loop under the connection deadlines, until it ends, is idle
//! too long, or shutdown asks it to finish its current request.
//!
//! Deadlines: the header wait is hyper's header-read timeout, which runs from the moment hyper waits for a
//! request (so it also ends keep-alive connections that stay silent that long); the idle timeout ends a
//! connection on which no byte moved in either direction for that long; the minimum send rate (HTTP.sys's
//! MinSendRate) ends a connection whose client, while a response waits on it (the socket is full), accepted
//! fewer bytes than that rate over a window. Our own bandwidth pacing never fills the socket, so it never
//! counts against a client.
//!
//! Zero-copy: on plain connections the IO wrapper also carries the connection's `ZeroCopy` state, through
//! which file bodies are sent with `sendfile` (`files::zerocopy`); those bytes count for the idle timeout
//! and the minimum send rate like any other write.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::peer::ConnInfo;
use super::request;
use super::site::Site;
use super::stream::WatchedExecutor;
use crate::files::ZeroCopy;
use crate::limits::{ReadBudget, ServerBudget, H2_CHUNK};
use crate::metrics::Metrics;
use crate::tls::ClientIdentity;

/// What every connection of one `serve` call shares.
#[derive(Debug)]
pub(crate) struct ConnContext {
    pub(crate) site: Arc<Site>,
    /// Stop accepting; connections finish their current request.
    pub(crate) shutdown: tokio_util::sync::CancellationToken,
    /// The drain deadline passed: drop what is left.
    pub(crate) force: tokio_util::sync::CancellationToken,
    /// The server's read budget: file bytes all response bodies may hold at once, shared between sources.
    pub(crate) read_budget: Arc<ServerBudget>,
}

/// Counts a connection in `bcs_open_connections` while it lives.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn count(metrics: &Arc<Metrics>) -> Self {
        metrics.connections.inc();
        OpenConnection(metrics.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections.dec();
    }
}

/// SETTINGS_MAX_CONCURRENT_STREAMS on HTTP/2 connections.
const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Serves one connection to its end: the TLS handshake first on https ports (under its deadline, in this
/// task, so a stalled client holds only its own connection), then HTTP/2 if ALPN chose it, else HTTP/1.1.
/// The permit is held for the connection's whole life.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
    ctx: Arc<ConnContext>,
    _permit: OwnedSemaphorePermit,
) {
    let Ok(local) = stream.local_addr() else {
        return;
    };
    let _open = OpenConnection::count(&ctx.site.metrics);
    let activity = Activity::new();
    let zero_copy = match &ctx.site.zero_copy {
        Some(sent) if !tls => Some(ZeroCopy::new(sent.clone())),
        _ => None,
    };
    let io = Tracked {
        inner: stream,
        activity: activity.clone(),
        zero_copy: zero_copy.clone(),
    };
    if !tls {
        let info = ConnInfo {
            peer,
            local,
            client: None,
            secure: false,
            auth: Default::default(),
            budget: ReadBudget::new(false, ctx.read_budget.clone(), peer.ip()),
            zero_copy,
        };
        return serve_h1(io, info, activity, ctx).await;
    }
    // Boxed: the handshake and HTTP/2 states are large, and a plain connection's task would otherwise be
    // sized for them (every idle keep-alive connection holds its task).
    Box::pin(serve_tls(io, peer, local, activity, ctx)).await;
}

/// The TLS handshake under its deadline, then HTTP/2 if ALPN chose it, else HTTP/1.1.
async fn serve_tls(
    io: Tracked,
    peer: SocketAddr,
    local: SocketAddr,
    activity: Activity,
    ctx: Arc<ConnContext>,
) {
    let Some(configs) = ctx.site.tls.load().get(&local.port()).cloned() else {
        tracing::debug!("no TLS configuration for the port");
        return;
    };
    // The ALPN switch: no HTTP/2 where a group authenticates the connection itself.
    let config = if ctx.site.routes.load().connection_bound(local.port()) {
        configs.h1
    } else {
        configs.h2
    };
    let handshake = tokio::time::timeout(
        ctx.site.settings.handshake_timeout,
        tokio_rustls::TlsAcceptor::from(config).accept(io),
    );
    let metrics = &ctx.site.metrics;
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => {
                metrics.tls_handshakes.inc();
                stream
            }
            Ok(Err(e)) => {
                metrics.tls_failures.inc();
                return tracing::debug!(error = %e, "TLS handshake failed");
            }
            Err(_) => {
                metrics.tls_failures.inc();
                return tracing::debug!("TLS handshake timeout");
            }
        },
        () = ctx.shutdown.cancelled() => return,
    };
    let (_, session) = stream.get_ref();
    let h2 = session.alpn_protocol() == Some(b"h2");
    let client = session
        .peer_certificates()
        .and_then(<[_]>::first)
        .and_then(ClientIdentity::of)
        .map(Arc::new);
    let info = ConnInfo {
        peer,
        local,
        client,
        secure: true,
        auth: Default::default(),
        budget: ReadBudget::new(h2, ctx.read_budget.clone(), peer.ip()),
        zero_copy: None,
    };
    if h2 {
        Box::pin(serve_h2(stream, info, activity, ctx)).await;
    } else {
        serve_h1(stream, info, activity, ctx).await;
    }
}

async fn serve_h2<I>(io: I, info: ConnInfo, activity: Activity, ctx: Arc<ConnContext>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &ctx.site.settings;
    let io = TokioIo::new(io);
    let info = Arc::new(info);
    let site = ctx.site.clone();
    let svc = service_fn(move |req| request::handle(req, site.clone(), info.clone()));
    {
        let streams = WatchedExecutor {
            rate: config.min_send_rate,
            window: config.min_send_window,
        };
        // SECURITY: streams at once are capped (RFC 9113 §6.5.2 recommends no fewer than 100), and h2 asks
        // a stream's body for more only once what it queued fits one chunk: with the read budget and the
        // stream watchdog, a connection's stalled streams pin a bounded amount of memory.
        let conn = http2::Builder::new(streams)
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_send_buf_size(H2_CHUNK)
            .serve_connection(io, svc);
        drive(conn, &activity, &ctx).await;
    }
}

async fn serve_h1<I>(io: I, info: ConnInfo, activity: Activity, ctx: Arc<ConnContext>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &ctx.site.settings;
    let io = TokioIo::new(io);
    let info = Arc::new(info);
    let site = ctx.site.clone();
    // Zero-copy needs hyper's queueing write strategy, which it takes when the IO writes vectored (ours
    // does) and neither `writev(false)` nor `pipeline_flush(true)` is set: `files::zerocopy` checks it.
    // Boxed per request: hyper keeps room for one response future for the whole life of a connection,
    // so an unboxed one (about 2 KiB) would be held by every idle keep-alive connection.
    let svc = service_fn(move |req| Box::pin(request::handle(req, site.clone(), info.clone())));
    {
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .keep_alive(true)
            .serve_connection(io, svc);
        drive(conn, &activity, &ctx).await;
    }
}

/// Runs a connection under the idle and send-rate deadlines; on shutdown lets it finish its requests, up to
/// the drain deadline.
async fn drive<C>(conn: C, activity: &Activity, ctx: &ConnContext)
where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let config = &ctx.site.settings;
    tokio::pin!(conn);
    let outcome = tokio::select! {
        res = conn.as_mut() => res.map_err(|e| e.to_string()),
        verdict = activity.watch(config.idle_timeout, config.min_send_rate, config.min_send_window) => {
            Err(verdict.into())
        }
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

/// What moved on a connection: when bytes last moved, how many were written, and whether writes wait on
/// the client.
#[derive(Clone)]
struct Activity {
    start: Instant,
    shared: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    /// Milliseconds since `start` when a byte last moved.
    last_ms: AtomicU64,
    written: AtomicU64,
    /// A write is waiting for the client to make room now.
    blocked: AtomicBool,
    /// A write waited at some point since the last rate check.
    blocked_seen: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            shared: Arc::default(),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.shared.last_ms.store(ms, Ordering::Relaxed);
    }

    fn wrote(&self, n: usize) {
        self.touch();
        self.shared.written.fetch_add(n as u64, Ordering::Relaxed);
        self.shared.blocked.store(false, Ordering::Relaxed);
    }

    fn write_blocked(&self) {
        self.shared.blocked.store(true, Ordering::Relaxed);
        self.shared.blocked_seen.store(true, Ordering::Relaxed);
    }

    /// Completes when no byte has moved for `idle`, or when, over the last window, writes waited on the
    /// client and the client accepted fewer than `rate` bytes per second (a rate of 0 never is). The rate
    /// is looked at four times per window, over the last four looks, so a client is cut between one window
    /// and a quarter more after it slowed down (not two windows). One timer for both, since every idle
    /// keep-alive connection holds this future.
    async fn watch(&self, idle: Duration, rate: u64, window: Duration) -> &'static str {
        const LOOKS: usize = 4;
        let checking = rate != 0 && !window.is_zero();
        let step = window / LOOKS as u32;
        let floor = rate as f64 * window.as_secs_f64();
        // Bytes written at each of the last LOOKS looks, and whether writes waited in each step.
        let mut written = [self.shared.written.load(Ordering::Relaxed); LOOKS];
        let mut waited = [false; LOOKS];
        let mut look = 0usize;
        let mut next_look = Instant::now() + step;
        loop {
            let last = Duration::from_millis(self.shared.last_ms.load(Ordering::Relaxed));
            let idle_deadline = self.start + last + idle;
            let now = Instant::now();
            if now >= idle_deadline {
                return "idle timeout";
            }
            if checking && now >= next_look {
                let moved_now = self.shared.written.load(Ordering::Relaxed);
                let blocked_now = self.shared.blocked.load(Ordering::Relaxed);
                let slot = look % LOOKS;
                waited[slot] = self
                    .shared
                    .blocked_seen
                    .swap(blocked_now, Ordering::Relaxed)
                    || blocked_now;
                // `written[slot]` is the count one window ago.
                let moved = moved_now - written[slot];
                written[slot] = moved_now;
                if look + 1 >= LOOKS && waited.iter().any(|w| *w) && (moved as f64) < floor {
                    return "client below the minimum send rate";
                }
                look += 1;
                next_look += step;
                continue;
            }
            let wake = if checking {
                idle_deadline.min(next_look)
            } else {
                idle_deadline
            };
            tokio::time::sleep_until(wake).await;
        }
    }

    /// Completes once no byte has moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = Duration::from_millis(self.shared.last_ms.load(Ordering::Relaxed));
            let deadline = self.start + last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The socket, noting each read or write that moved bytes; on plain connections it sends file bodies'
/// placeholders with `sendfile`.
struct Tracked {
    inner: TcpStream,
    activity: Activity,
    zero_copy: Option<Arc<ZeroCopy>>,
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

impl Tracked {
    fn note_write(&self, res: &Poll<io::Result<usize>>) {
        match res {
            Poll::Ready(Ok(n)) if *n > 0 => self.activity.wrote(*n),
            Poll::Pending => self.activity.write_blocked(),
            _ => {}
        }
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = match &this.zero_copy {
            // Also here, so that a placeholder could never go out as zeros through a plain write.
            Some(zc) => zc.poll_write(
                Pin::new(&mut this.inner),
                cx,
                &[io::IoSlice::new(buf)],
                false,
            ),
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
        };
        this.note_write(&res);
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let res = match &this.zero_copy {
            Some(zc) => zc.poll_write(Pin::new(&mut this.inner), cx, bufs, true),
            None => Pin::new(&mut this.inner).poll_write_vectored(cx, bufs),
        };
        this.note_write(&res);
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
