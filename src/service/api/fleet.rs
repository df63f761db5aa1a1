//! `/v1/fleet`: the fleet this service is a node of, with every node, alive or not.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;

use super::extract::blocking;
use crate::service::error::{ErrorBody, MgmtError};
use crate::service::fleet_view::FleetStatus;
use crate::service::managed::Managed;

/// The fleet's nodes: alive or not, where they listen, the revision each serves and its lag, the groups
/// each serves.
#[utoipa::path(get, operation_id = "fleet_status", path = "/v1/fleet", tag = "fleet",
    responses((status = 200, body = FleetStatus),
        (status = 404, body = ErrorBody, description = "This service is no fleet's node"),
        (status = 503, body = ErrorBody, description = "The fleet's etcd cannot be reached (`fleet_unavailable`)")))]
pub(crate) async fn status(State(m): State<Arc<Managed>>) -> Result<Json<FleetStatus>, MgmtError> {
    blocking(&m, |m| match m.fleet() {
        Some(view) => view.status(),
        None => Err(MgmtError::NotFound {
            code: "not_in_fleet",
            message:
                "this service is no fleet's node (bcs serve --etcd ... --fleet NAME --node NAME)"
                    .into(),
        }),
    })
    .await
    .map(Json)
}
