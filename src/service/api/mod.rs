//! The management API's router: `/v1/...` routes, one file per resource beside this one, and the OpenAPI
//! document generated from their wire types at `/v1/openapi.json`. What every handler shares is in
//! `extract` (extractors, the blocking pool) and `fields` (the bounds and characters every string field
//! passes), which the resource files import; nothing here is imported by them.

use std::sync::Arc;

use axum::routing::{get, put};
use axum::Router;
use utoipa::OpenApi;

mod certs;
mod document;
mod extract;
mod fields;
mod fleet;
pub use fields::is_unprintable;
mod group_settings;
mod groups;
mod queue;
mod scrape;
mod status;
mod users;

use document as config;
use queue::handlers as jobs;

pub use certs::{Binding, Certificate, ClientCertificatesView, SetCertificate, Source};
pub use document::{Applied, ConfigDocument};
pub use group_settings::{AuthSettings, Enable, Properties, PropertyValue};
pub use groups::{ContentView, GroupView, NewGroup, PreviousView, UrlView};
pub use queue::{
    ChangeJob, CreateJob, CredentialsView, FileView, JobErrorView, JobFileProgress,
    JobProgressEvent, JobStateEvent, JobStreamEvent, JobView, NameOrNumber, NewFile, ProxyView,
    SetCredentials, SetState,
};
pub use status::{JobStatus, StatusReport, MAX_LISTED};
pub use users::{PrincipalGroup, PutUser, UserView};

use super::error::{ErrorBody, MgmtError};
use super::managed::Managed;
use super::principal::{is_jobs_path, Principal};

/// The largest request body: a whole configuration for `PUT /v1/config` fits with room to spare.
pub(crate) const MAX_BODY: usize = 8 << 20;

/// The management API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "bits_compact management API",
        description = "Manage the URL groups, URLs, authentication, limits, certificates and principals of a running `bcs serve`, and the download jobs it runs: the original BITS Compact Server's WMI provider, over HTTP and JSON. Errors are `{code, message}` with stable codes.",
        version = "1"
    ),
    paths(
        groups::list,
        groups::create,
        groups::show,
        groups::change,
        groups::delete,
        groups::list_urls,
        groups::add_url,
        groups::check_url,
        groups::replace_url,
        groups::remove_url,
        group_settings::show_auth,
        group_settings::set_auth,
        group_settings::show_properties,
        group_settings::set_property,
        certs::list,
        certs::show,
        certs::set,
        certs::remove,
        certs::set_sni,
        certs::remove_sni,
        users::list,
        users::put,
        users::remove,
        users::list_groups,
        users::put_group,
        users::remove_group,
        config::export,
        config::apply,
        fleet::status,
        jobs::list,
        jobs::create,
        jobs::show,
        jobs::change,
        jobs::delete,
        jobs::add_file,
        jobs::set_state,
        jobs::set_credentials,
        jobs::remove_credentials,
        jobs::error,
        jobs::events,
        status::show,
        scrape::metrics,
    ),
    components(schemas(ErrorBody)),
    modifiers(&CommonResponses)
)]
pub(crate) struct ApiDoc;

/// The answers every operation can give before its handler runs: the remote listener's 401 (with
/// `WWW-Authenticate`), 403 and 429 (too many failed attempts, with `Retry-After`), 503 (password checks
/// busy).
struct CommonResponses;

impl utoipa::Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let answers = [
            ("400", "The request is malformed"),
            (
                "401",
                "Not authenticated (remote listener): see WWW-Authenticate",
            ),
            ("403", "Not allowed to manage this service"),
            ("429", "Too many failed attempts: see Retry-After"),
            ("503", "Too many password checks at once: retry"),
        ];
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                for (status, description) in answers {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| {
                            ResponseBuilder::new()
                                .description(description)
                                .content(
                                    "application/json",
                                    ContentBuilder::new()
                                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                                        .build(),
                                )
                                .build()
                                .into()
                        });
                }
            }
        }
    }
}

/// The management API: every `/v1` route, with `managed` as their state.
pub fn router(managed: Arc<Managed>) -> Router {
    let openapi = ApiDoc::openapi();
    let rates = Arc::new(status::JobRates::default());
    Router::new()
        .route(
            "/v1/status",
            get(move |state, query| status::show(state, query, rates.clone())),
        )
        .route("/v1/groups", get(groups::list).post(groups::create))
        .route(
            "/v1/groups/{prefix}",
            get(groups::show)
                .patch(groups::change)
                .delete(groups::delete),
        )
        .route(
            "/v1/groups/{prefix}/urls",
            get(groups::list_urls).post(groups::add_url),
        )
        .route(
            "/v1/groups/{prefix}/urls/{suffix}",
            get(groups::check_url)
                .put(groups::replace_url)
                .delete(groups::remove_url),
        )
        .route("/v1/groups/{prefix}/auth", get(group_settings::show_auth))
        .route(
            "/v1/groups/{prefix}/auth/{scheme}",
            put(group_settings::set_auth),
        )
        .route(
            "/v1/groups/{prefix}/properties",
            get(group_settings::show_properties),
        )
        .route(
            "/v1/groups/{prefix}/properties/{name}",
            put(group_settings::set_property),
        )
        .route("/v1/certificates", get(certs::list))
        .route(
            "/v1/certificates/{port}",
            get(certs::show).put(certs::set).delete(certs::remove),
        )
        .route(
            "/v1/certificates/{port}/sni/{name}",
            put(certs::set_sni).delete(certs::remove_sni),
        )
        .route("/v1/users", get(users::list))
        .route("/v1/users/{name}", put(users::put).delete(users::remove))
        .route("/v1/principal-groups", get(users::list_groups))
        .route(
            "/v1/principal-groups/{name}",
            put(users::put_group).delete(users::remove_group),
        )
        .route("/v1/config", get(config::export).put(config::apply))
        .route("/v1/fleet", get(fleet::status))
        .route("/v1/jobs", get(jobs::list).post(jobs::create))
        .route(
            "/v1/jobs/{id}",
            get(jobs::show).patch(jobs::change).delete(jobs::delete),
        )
        .route("/v1/jobs/{id}/files", axum::routing::post(jobs::add_file))
        .route("/v1/jobs/{id}/state", put(jobs::set_state))
        .route(
            "/v1/jobs/{id}/credentials",
            put(jobs::set_credentials).delete(jobs::remove_credentials),
        )
        .route("/v1/jobs/{id}/error", get(jobs::error))
        .route("/v1/jobs/{id}/events", get(jobs::events))
        .route("/metrics", get(scrape::metrics))
        .route(
            "/v1/openapi.json",
            get(move || std::future::ready(axum::Json(openapi.clone()))),
        )
        .fallback(|| async {
            MgmtError::NotFound {
                code: "not_found",
                message: "no such management resource; see /v1/openapi.json".into(),
            }
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn(admins_only_outside_jobs))
        .with_state(managed)
}

/// SECURITY: the threat is a caller who is not an administrator (let in by the remote listener for its own
/// jobs) reaching the rest of the API. The listener already refuses them outside `/v1/jobs`; this refuses
/// them again here, on the path the router itself matches, so no route added later is open to them by
/// accident.
async fn admins_only_outside_jobs(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let refused = req
        .extensions()
        .get::<Principal>()
        .is_some_and(|p| !p.admin)
        && !is_jobs_path(req.uri().path());
    if refused {
        return MgmtError::Forbidden.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Client generators name a method after each operation's id: two alike collide (issue 23, item 7).
    #[test]
    fn every_operation_has_an_id_of_its_own() {
        let document = ApiDoc::openapi();
        let mut ids: Vec<String> = Vec::new();
        for item in document.paths.paths.values() {
            for op in [&item.get, &item.put, &item.post, &item.delete, &item.patch]
                .into_iter()
                .flatten()
            {
                let id = op.operation_id.clone().expect("every operation has an id");
                assert!(!ids.contains(&id), "{id} is used twice");
                ids.push(id);
            }
        }
        assert_eq!(ids.len(), 42);
    }
}
