//! What every handler of the management API shares: who is calling and whom the request acts for (read
//! from what the listener put in the request), JSON bodies and path parameters whose rejections are our
//! JSON errors, a URL group's prefix from a path, and changes run off the async threads.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::service::error::MgmtError;
use crate::service::managed::Managed;
use crate::service::principal::{CallerName, Principal};
use crate::url::UrlPrefix;

/// A request without a principal (no listener sends one) is no one: not an administrator, owning nothing.
impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = MgmtError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, MgmtError> {
        Ok(parts
            .extensions
            .get::<Principal>()
            .cloned()
            .unwrap_or(Principal {
                name: String::new(),
                admin: false,
            }))
    }
}

/// Handlers' view of the caller (a request without one, which no listener sends, is "unknown").
pub(crate) struct Who(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = MgmtError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, MgmtError> {
        let who = parts.extensions.get::<CallerName>().map(|c| c.0.clone());
        Ok(Who(who.unwrap_or_else(|| "unknown".into())))
    }
}

/// A JSON body; one that does not parse is a 400 with our error body.
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = MgmtError;

    async fn from_request(req: Request, state: &S) -> Result<Self, MgmtError> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| Body(v))
            .map_err(|e: JsonRejection| MgmtError::Invalid {
                code: "invalid_request",
                message: e.body_text(),
            })
    }
}

/// Path parameters; ones that do not parse are a 400 with our error body.
pub(crate) struct Param<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Param<T> {
    type Rejection = MgmtError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, MgmtError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Param(v))
            .map_err(|e: PathRejection| MgmtError::Invalid {
                code: "invalid_request",
                message: e.body_text(),
            })
    }
}

/// A URL group's prefix from a path parameter.
pub(crate) fn prefix(text: &str) -> Result<UrlPrefix, MgmtError> {
    Ok(text.parse::<UrlPrefix>()?)
}

/// Runs a management call on the blocking pool: changes wait on the store's fsync and on the writer lock.
pub(crate) async fn blocking<T: Send + 'static>(
    managed: &Arc<Managed>,
    call: impl FnOnce(&Managed) -> Result<T, MgmtError> + Send + 'static,
) -> Result<T, MgmtError> {
    let managed = managed.clone();
    match tokio::task::spawn_blocking(move || call(&managed)).await {
        Ok(result) => result,
        Err(e) => Err(MgmtError::Internal(format!("the call did not finish: {e}"))),
    }
}
