//! `GET /metrics`: the server's metrics in the Prometheus text format, for a Prometheus to scrape. Like
//! every route outside `/v1/jobs`, only administrators (the admin SDDL) reach it: the listener refuses
//! anyone else (401 without credentials), and the router refuses them again.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::service::managed::Managed;

/// The metrics: requests, bytes and downloads by URL group, refusals, connections, TLS handshakes,
/// authentication failures, jobs, store commits (Prometheus text format 0.0.4).
#[utoipa::path(get, operation_id = "metrics", path = "/metrics", tag = "metrics",
    responses((status = 200, description = "The metrics in the Prometheus text format", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(m): State<Arc<Managed>>) -> impl IntoResponse {
    let text = m.server().metrics().render();
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text)
}
