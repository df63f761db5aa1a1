//! `/v1/groups/{prefix}/auth` and `/properties`: the original's Set/GetAuthentication and
//! Set/GetProperty, by its names and numbers as well as ours.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{blocking, prefix, Body, Param, Who};
use crate::auth::AuthScheme;
use crate::config::GroupConfig;
use crate::service::error::{ErrorBody, MgmtError};
use crate::service::managed::Managed;
use crate::url::GroupProperty;

/// Which schemes a group has enabled.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuthSettings {
    /// Negotiate (Kerberos, or NTLM inside SPNEGO).
    pub negotiate: bool,
    /// NTLM.
    pub ntlm: bool,
    /// Basic (over HTTPS, unless `allow_basic_over_http`).
    pub basic: bool,
    /// TLS client certificates.
    pub client_certificate: bool,
    /// Basic over plain HTTP.
    pub allow_basic_over_http: bool,
}

/// Whether to enable a scheme.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enable {
    /// On or off.
    pub enabled: bool,
}

/// A group's properties, by the original's names; `4294967295` (`0xFFFFFFFF`) is unlimited.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Properties {
    /// Transfers at once.
    #[serde(rename = "ConnectionLimit")]
    pub connection_limit: u32,
    /// Bytes per second for the group (at least 1024).
    #[serde(rename = "BandwidthLimit")]
    pub bandwidth_limit: u32,
}

/// A property's new value; `4294967295` is unlimited.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PropertyValue {
    /// The value.
    pub value: u32,
}

fn auth_of(g: &GroupConfig) -> AuthSettings {
    AuthSettings {
        negotiate: g.auth.contains(&AuthScheme::Negotiate),
        ntlm: g.auth.contains(&AuthScheme::Ntlm),
        basic: g.auth.contains(&AuthScheme::Basic),
        client_certificate: g.auth.contains(&AuthScheme::ClientCertificate),
        allow_basic_over_http: g.allow_basic_over_http,
    }
}

fn properties_of(g: &GroupConfig) -> Properties {
    Properties {
        connection_limit: g.connection_limit.get().unwrap_or(u32::MAX),
        bandwidth_limit: g
            .bandwidth_limit
            .get()
            .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX - 1)),
    }
}

/// A scheme by name, or by the original WMI provider's number (0 Negotiate, 1 NTLM), which is what this
/// API replaces.
fn scheme(text: &str) -> Result<AuthScheme, MgmtError> {
    match text.parse::<u32>() {
        Ok(n) => Ok(AuthScheme::from_wmi(n)?),
        Err(_) => Ok(text.parse()?),
    }
}

/// A property by the original's name (`ConnectionLimit`), or ours (`connection-limit`), ignoring case.
fn property(text: &str) -> Result<GroupProperty, MgmtError> {
    match text.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
        "connectionlimit" => Ok(GroupProperty::ConnectionLimit),
        "bandwidthlimit" => Ok(GroupProperty::BandwidthLimit),
        _ => Err(MgmtError::Invalid {
            code: "invalid_property",
            message: format!("{text:?}: expected ConnectionLimit or BandwidthLimit"),
        }),
    }
}

/// The schemes a group has enabled (GetAuthentication).
#[utoipa::path(get, operation_id = "show_group_auth", path = "/v1/groups/{prefix}/auth", tag = "auth",
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded")),
    responses((status = 200, body = AuthSettings), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn show_auth(
    State(m): State<Arc<Managed>>,
    Param(p): Param<String>,
) -> Result<Json<AuthSettings>, MgmtError> {
    Ok(Json(auth_of(&m.group(&prefix(&p)?)?)))
}

/// Enables or disables a scheme (SetAuthentication).
#[utoipa::path(put, operation_id = "set_group_auth", path = "/v1/groups/{prefix}/auth/{scheme}", tag = "auth", request_body = Enable,
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded"),
           ("scheme" = String, Path, description = "negotiate, ntlm, basic or client-cert; or the WMI number: 0 Negotiate, 1 NTLM")),
    responses((status = 200, body = AuthSettings), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn set_auth(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param((p, name)): Param<(String, String)>,
    Body(enable): Body<Enable>,
) -> Result<Json<AuthSettings>, MgmtError> {
    let p = prefix(&p)?;
    let scheme = scheme(&name)?;
    let group = blocking(&m, move |m| {
        m.set_authentication(&who, &p, scheme, enable.enabled)
    })
    .await?;
    Ok(Json(auth_of(&group)))
}

/// ConnectionLimit and BandwidthLimit (GetProperty).
#[utoipa::path(get, operation_id = "show_group_properties", path = "/v1/groups/{prefix}/properties", tag = "properties",
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded")),
    responses((status = 200, body = Properties), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn show_properties(
    State(m): State<Arc<Managed>>,
    Param(p): Param<String>,
) -> Result<Json<Properties>, MgmtError> {
    Ok(Json(properties_of(&m.group(&prefix(&p)?)?)))
}

/// Sets ConnectionLimit (at least 1) or BandwidthLimit (bytes per second, at least 1024) (SetProperty).
#[utoipa::path(put, operation_id = "set_group_property", path = "/v1/groups/{prefix}/properties/{name}", tag = "properties", request_body = PropertyValue,
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded"),
           ("name" = String, Path, description = "ConnectionLimit or BandwidthLimit (any case; connection-limit too)")),
    responses((status = 200, body = Properties), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn set_property(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param((p, name)): Param<(String, String)>,
    Body(value): Body<PropertyValue>,
) -> Result<Json<Properties>, MgmtError> {
    let p = prefix(&p)?;
    let property = property(&name)?;
    let group = blocking(&m, move |m| m.set_property(&who, &p, property, value.value)).await?;
    Ok(Json(properties_of(&group)))
}
