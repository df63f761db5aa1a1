//! A plain-HTTP listener of its own that serves only `GET /metrics` (`bcs host --metrics ADDR`).
//!
//! SECURITY: the threats are a scraper flood and slow clients holding the listener. At most
//! [`MAX_CONNECTIONS`] connections are served at once (others wait in the kernel's backlog), a request's
//! headers must arrive within [`HEADER_TIMEOUT`], and a connection lives at most [`CONNECTION_LIFETIME`].
//! It answers nothing but `GET`/`HEAD /metrics`: no file, no management. It has no authentication: bind it
//! to loopback or a monitoring network.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Metrics, CONTENT_TYPE};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a request's headers may take to arrive.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a connection stays open.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves `GET /metrics` on `listener` until `shutdown` completes; connections in flight are cut then.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let accepting = async {
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (metrics, stop) = (metrics.clone(), stop.clone());
            tracker.spawn(async move {
                let service = service_fn(move |req| {
                    std::future::ready(Ok::<_, Infallible>(answer(&req, &metrics)))
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = tokio::time::timeout(CONNECTION_LIFETIME, conn) => {}
                    () = stop.cancelled() => {}
                }
                drop(permit);
            });
        }
    };
    tokio::select! {
        () = accepting => {}
        () = shutdown => {}
    }
    stop.cancel();
    tracker.close();
    tracker.wait().await;
}

/// The one answer per request: the metrics, or why not.
fn answer<B>(req: &Request<B>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, text: &'static str| {
        let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response
    };
    if req.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "only /metrics is served here\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut response = Response::new(Full::new(Bytes::from(metrics.render())));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}
