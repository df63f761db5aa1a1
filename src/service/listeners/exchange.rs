//! What both management listeners do with a connection they accepted: serve HTTP/1.1 on it under the
//! header deadline, hand each request to the API router with who is calling under the body deadline, and
//! answer JSON errors of their own.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
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

/// Hands a request to the router with who is calling; its body must arrive within the body deadline.
pub(super) async fn call(
    router: Router,
    req: Request<hyper::body::Incoming>,
    who: String,
    principal: Principal,
) -> Response<Body> {
    let mut req = req.map(|body| {
        Body::new(Deadline {
            inner: body,
            expires: Box::pin(tokio::time::sleep(BODY_TIMEOUT)),
        })
    });
    req.extensions_mut().insert(CallerName(who));
    req.extensions_mut().insert(principal);
    match router.oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A request body that fails once its deadline passes (a client trickling a body holds nothing longer).
struct Deadline {
    inner: hyper::body::Incoming,
    expires: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Deadline {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if std::future::Future::poll(self.expires.as_mut(), cx).is_ready() {
            return std::task::Poll::Ready(Some(Err("the request body took too long".into())));
        }
        std::pin::Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(Into::into)
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
