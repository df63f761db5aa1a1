//! What both management listeners do with a connection they accepted: serve HTTP/1.1 on it under the
//! header deadline, hand each request to the API router with who is calling, its body under a deadline
//! and a minimum rate, and answer JSON errors of their own.
//!
//! SECURITY: a body is read only once its request was authenticated and authorized (the listeners
//! decide before they call [`call`]), and a client trickling one (a byte a second) holds its connection
//! for seconds, not for the whole deadline: 64 such bodies once held a listener for a minute.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::service::error::ErrorBody;
use crate::service::principal::{CallerName, Principal};

/// Connections at once on each management listener.
pub(super) const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's header (and how long a kept-alive connection waits).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body. The change it asks for runs only once the body
/// is whole, and is never cut short: a timeout then would answer "failed" for a change that happens.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// The slowest a body may arrive on average, after [`BODY_GRACE`]: far below any real link (a job's
/// JSON is a few KiB), far above a trickle.
const MIN_BODY_RATE: u64 = 1024;
/// How long a body may take before [`MIN_BODY_RATE`] applies (a round trip or two, and a slow start).
const BODY_GRACE: Duration = Duration::from_secs(2);

/// Hands a request to the router with who is calling; its body must arrive within the body deadline and
/// at the minimum rate.
pub(super) async fn call(
    router: Router,
    req: Request<hyper::body::Incoming>,
    who: String,
    principal: Principal,
) -> Response<Body> {
    let mut req = req.map(|body| Body::new(Deadline::new(body)));
    req.extensions_mut().insert(CallerName(who));
    req.extensions_mut().insert(principal);
    match router.oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A request body that fails once it falls behind: past its deadline, or, after the grace period,
/// slower on average than the minimum rate. The rate is counted from the first time the body is read:
/// a handler that reads it late (behind a lock, on a busy machine) is the server's delay, not the
/// client's.
struct Deadline<B = hyper::body::Incoming> {
    inner: B,
    /// When the request was handed over: the deadline counts from here.
    created: Instant,
    /// When the body was first read: the rate counts from here.
    reading: Option<Instant>,
    received: u64,
    /// Wakes the body when it would fall behind with no more bytes.
    timer: Pin<Box<Sleep>>,
}

impl<B> Deadline<B> {
    fn new(inner: B) -> Self {
        let created = Instant::now();
        Deadline {
            inner,
            created,
            reading: None,
            received: 0,
            timer: Box::pin(tokio::time::sleep_until(created + BODY_TIMEOUT)),
        }
    }

    /// When the body falls behind unless more arrives: the bytes so far at the minimum rate after the
    /// grace period, and the deadline at the latest.
    fn due(&self) -> Instant {
        let deadline = self.created + BODY_TIMEOUT;
        let Some(reading) = self.reading else {
            return deadline;
        };
        let earned = Duration::from_secs_f64(self.received as f64 / MIN_BODY_RATE as f64);
        (reading + BODY_GRACE + earned).min(deadline)
    }
}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.reading.is_none() {
            this.reading = Some(Instant::now());
            let due = this.due();
            this.timer.as_mut().reset(due);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if let Some(data) = frame.as_ref().and_then(|f| f.as_ref().ok()?.data_ref()) {
                this.received += data.len() as u64;
                let due = this.due();
                this.timer.as_mut().reset(due);
            }
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.timer.as_mut().poll(cx).is_ready() {
            let why = if Instant::now() >= this.created + BODY_TIMEOUT {
                "the request body took too long"
            } else {
                "the request body arrives too slowly"
            };
            return Poll::Ready(Some(Err(why.into())));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves HTTP/1.1 on one connection under the header deadline, finishing its request on shutdown.
pub(super) async fn serve_connection<I, S>(io: I, svc: S, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<hyper::body::Incoming>,
            Response = Response<Body>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// A JSON error response.
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = ErrorBody {
        code: code.to_owned(),
        message: message.to_owned(),
    };
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A body that sends what the test puts in its channel.
    struct Fed(tokio::sync::mpsc::Receiver<bytes::Bytes>);

    impl http_body::Body for Fed {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            self.0
                .poll_recv(cx)
                .map(|b| b.map(|b| Ok(http_body::Frame::data(b))))
        }
    }

    /// Feeds `chunk` every `every` for `times`, into a body under the deadline read after `late`; how
    /// long reading it took and whether it failed.
    async fn read_after(
        late: Duration,
        chunk: usize,
        every: Duration,
        times: usize,
    ) -> (Duration, bool) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for _ in 0..times {
                tokio::time::sleep(every).await;
                if tx
                    .send(bytes::Bytes::from(vec![b' '; chunk]))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let started = Instant::now();
        let body = Deadline::new(Fed(rx));
        tokio::time::sleep(late).await;
        let failed = body.collect().await.is_err();
        (started.elapsed(), failed)
    }

    async fn read(chunk: usize, every: Duration, times: usize) -> (Duration, bool) {
        read_after(Duration::ZERO, chunk, every, times).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_body_fails_within_seconds_and_a_slow_one_does_not() {
        // One byte a second: cut soon after the grace period.
        let (took, failed) = read(1, Duration::from_secs(1), 60).await;
        assert!(
            failed && took <= BODY_GRACE + Duration::from_secs(1),
            "{took:?}"
        );
        // 2 KiB a second (a 100 KiB body over 50 s) keeps up.
        let (took, failed) = read(2048, Duration::from_secs(1), 50).await;
        assert!(!failed, "{took:?}");
        // Fast enough, but longer than the deadline.
        let (took, failed) = read(4096, Duration::from_millis(500), 200).await;
        assert!(failed && took == BODY_TIMEOUT, "{took:?}");
        // Read late by the server (hyper reads a body from the socket only once it is asked for it):
        // the client's bytes come right after, which is no fault of the client's.
        let late = Duration::from_secs(5);
        let (took, failed) = read_after(late, 100, late + Duration::from_millis(10), 1).await;
        assert!(!failed, "{took:?}");
    }
}
