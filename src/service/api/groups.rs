//! `/v1/groups`: URL groups (the original's CreateUrlGroup, DeleteUrlGroup, GetUrlGroup,
//! EnumerateUrlGroups) and their URLs (AddUrl, RemoveUrl, IsUrlInUrlGroup).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{blocking, prefix, Body, Param, Who};
use crate::config::{GroupConfig, UrlConfig};
use crate::service::error::{ErrorBody, MgmtError};
use crate::service::managed::Managed;
use crate::service::GroupChange;

/// A URL group: its prefix, settings and URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupView {
    /// The prefix, in HTTP.sys syntax (`http://+:8080/app/`).
    pub prefix: String,
    /// The schemes enabled: `negotiate`, `ntlm`, `basic`, `client-cert`.
    #[serde(default)]
    pub auth: Vec<String>,
    /// Basic over plain HTTP.
    #[serde(default)]
    pub allow_basic_over_http: bool,
    /// The SDDL for URLs added without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_sddl: Option<String>,
    /// Transfers at once: a number, or `unlimited`.
    #[serde(default = "unlimited")]
    pub connection_limit: String,
    /// Bytes per second for the group: `1MiB/s`, `65536`, or `unlimited`.
    #[serde(default = "unlimited")]
    pub bandwidth_limit: String,
    /// `Cache-Control: max-age` seconds (none: `no-cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_max_age_secs: Option<u64>,
    /// An index of the URLs at the group's root.
    #[serde(default)]
    pub index: bool,
    /// The published files.
    #[serde(default)]
    pub urls: Vec<UrlView>,
}

fn unlimited() -> String {
    "unlimited".into()
}

/// A published file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UrlView {
    /// The suffix under the group's prefix (`tools/setup.exe`).
    pub suffix: String,
    /// The file on the server, an absolute path.
    pub file: String,
    /// Who may read it, in SDDL (none: the group's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sddl: Option<String>,
}

/// A new group: its prefix and, optionally, its settings. (The settings are spelled out, not a flattened
/// [`GroupSettings`]: serde's `flatten` would accept unknown fields.)
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// The prefix, in HTTP.sys syntax (`http://+:8080/app/`).
    pub prefix: String,
    /// The schemes to enable.
    #[serde(default)]
    pub auth: Option<Vec<String>>,
    /// Basic over plain HTTP.
    #[serde(default)]
    pub allow_basic_over_http: Option<bool>,
    /// The SDDL for URLs added without one.
    #[serde(default)]
    pub default_sddl: Option<String>,
    /// Transfers at once: a number, or `unlimited`.
    #[serde(default)]
    pub connection_limit: Option<String>,
    /// Bytes per second for the group, or `unlimited`.
    #[serde(default)]
    pub bandwidth_limit: Option<String>,
    /// `Cache-Control: max-age` seconds.
    #[serde(default)]
    pub cache_max_age_secs: Option<u64>,
    /// An index of the URLs at the group's root.
    #[serde(default)]
    pub index: Option<bool>,
}

/// Settings to change; those not given stay.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    /// The schemes enabled (all others off).
    #[serde(default)]
    pub auth: Option<Vec<String>>,
    /// Basic over plain HTTP.
    #[serde(default)]
    pub allow_basic_over_http: Option<bool>,
    /// The SDDL for URLs added without one; an empty string clears it.
    #[serde(default)]
    pub default_sddl: Option<String>,
    /// Transfers at once: a number, or `unlimited`.
    #[serde(default)]
    pub connection_limit: Option<String>,
    /// Bytes per second for the group, or `unlimited`.
    #[serde(default)]
    pub bandwidth_limit: Option<String>,
    /// `Cache-Control: max-age` seconds.
    #[serde(default)]
    pub cache_max_age_secs: Option<u64>,
    /// An index of the URLs at the group's root.
    #[serde(default)]
    pub index: Option<bool>,
}

impl From<NewGroup> for GroupSettings {
    fn from(g: NewGroup) -> Self {
        GroupSettings {
            auth: g.auth,
            allow_basic_over_http: g.allow_basic_over_http,
            default_sddl: g.default_sddl,
            connection_limit: g.connection_limit,
            bandwidth_limit: g.bandwidth_limit,
            cache_max_age_secs: g.cache_max_age_secs,
            index: g.index,
        }
    }
}

impl TryFrom<GroupSettings> for GroupChange {
    type Error = MgmtError;

    fn try_from(s: GroupSettings) -> Result<Self, MgmtError> {
        let auth = match s.auth {
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| n.parse())
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        // RFC 9111 §1.2.2: delta-seconds beyond 2^31 mean nothing more; larger is a mistake.
        if s.cache_max_age_secs
            .is_some_and(|age| age > i32::MAX as u64)
        {
            return Err(MgmtError::Invalid {
                code: "invalid_limit",
                message: format!("cache_max_age_secs is at most {}", i32::MAX),
            });
        }
        Ok(GroupChange {
            auth,
            allow_basic_over_http: s.allow_basic_over_http,
            default_sddl: s.default_sddl.map(|t| Some(t).filter(|t| !t.is_empty())),
            connection_limit: s.connection_limit.map(|t| t.parse()).transpose()?,
            bandwidth_limit: s.bandwidth_limit.map(|t| t.parse()).transpose()?,
            cache_max_age_secs: s.cache_max_age_secs.map(Some),
            index: s.index,
        })
    }
}

impl From<GroupConfig> for GroupView {
    fn from(g: GroupConfig) -> Self {
        GroupView {
            prefix: g.prefix.to_string(),
            auth: g.auth.iter().map(ToString::to_string).collect(),
            allow_basic_over_http: g.allow_basic_over_http,
            default_sddl: g.default_sddl,
            connection_limit: g.connection_limit.to_string(),
            bandwidth_limit: g.bandwidth_limit.to_string(),
            cache_max_age_secs: g.cache_max_age_secs,
            index: g.index,
            urls: g.urls.into_iter().map(UrlView::from).collect(),
        }
    }
}

impl TryFrom<GroupView> for GroupConfig {
    type Error = MgmtError;

    fn try_from(g: GroupView) -> Result<Self, MgmtError> {
        Ok(GroupConfig {
            prefix: prefix(&g.prefix)?,
            auth: g
                .auth
                .iter()
                .map(|n| n.parse())
                .collect::<Result<Vec<_>, _>>()?,
            allow_basic_over_http: g.allow_basic_over_http,
            default_sddl: g.default_sddl,
            connection_limit: g.connection_limit.parse()?,
            bandwidth_limit: g.bandwidth_limit.parse()?,
            cache_max_age_secs: g.cache_max_age_secs,
            index: g.index,
            urls: g.urls.into_iter().map(UrlConfig::from).collect(),
        })
    }
}

impl From<UrlConfig> for UrlView {
    fn from(u: UrlConfig) -> Self {
        UrlView {
            suffix: u.suffix,
            file: u.file.to_string_lossy().into_owned(),
            sddl: u.sddl,
        }
    }
}

impl From<UrlView> for UrlConfig {
    fn from(u: UrlView) -> Self {
        UrlConfig {
            suffix: u.suffix,
            file: u.file.into(),
            sddl: u.sddl,
        }
    }
}

/// Every URL group, with its URLs.
#[utoipa::path(get, path = "/v1/groups", tag = "groups",
    responses((status = 200, body = Vec<GroupView>)))]
pub(crate) async fn list(State(m): State<Arc<Managed>>) -> Json<Vec<GroupView>> {
    Json(m.groups().into_iter().map(GroupView::from).collect())
}

/// Creates a URL group (CreateUrlGroup); its port is bound now, so a port in use fails here.
#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = NewGroup,
    responses((status = 201, body = GroupView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Body(new): Body<NewGroup>,
) -> Result<(StatusCode, Json<GroupView>), MgmtError> {
    let p = prefix(&new.prefix)?;
    let change = GroupChange::try_from(GroupSettings::from(new))?;
    let group = blocking(&m, move |m| m.create_group(&who, &p, &change)).await?;
    Ok((StatusCode::CREATED, Json(group.into())))
}

/// One URL group (GetUrlGroup).
#[utoipa::path(get, path = "/v1/groups/{prefix}", tag = "groups",
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded")),
    responses((status = 200, body = GroupView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(m): State<Arc<Managed>>,
    Param(p): Param<String>,
) -> Result<Json<GroupView>, MgmtError> {
    Ok(Json(m.group(&prefix(&p)?)?.into()))
}

/// Changes a group's settings: all given, or none on error.
#[utoipa::path(patch, path = "/v1/groups/{prefix}", tag = "groups", request_body = GroupSettings,
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded")),
    responses((status = 200, body = GroupView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn change(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param(p): Param<String>,
    Body(settings): Body<GroupSettings>,
) -> Result<Json<GroupView>, MgmtError> {
    let p = prefix(&p)?;
    let change = GroupChange::try_from(settings)?;
    let group = blocking(&m, move |m| m.change_group(&who, &p, &change)).await?;
    Ok(Json(group.into()))
}

/// Deletes a URL group and its URLs (DeleteUrlGroup).
#[utoipa::path(delete, path = "/v1/groups/{prefix}", tag = "groups",
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param(p): Param<String>,
) -> Result<StatusCode, MgmtError> {
    let p = prefix(&p)?;
    blocking(&m, move |m| m.delete_group(&who, &p)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A group's URLs.
#[utoipa::path(get, path = "/v1/groups/{prefix}/urls", tag = "urls",
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded")),
    responses((status = 200, body = Vec<UrlView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_urls(
    State(m): State<Arc<Managed>>,
    Param(p): Param<String>,
) -> Result<Json<Vec<UrlView>>, MgmtError> {
    let group = m.group(&prefix(&p)?)?;
    Ok(Json(group.urls.into_iter().map(UrlView::from).collect()))
}

/// Publishes a file (AddUrl). The file must be a readable regular file, named by an absolute path.
#[utoipa::path(post, path = "/v1/groups/{prefix}/urls", tag = "urls", request_body = UrlView,
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded")),
    responses((status = 201, body = UrlView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn add_url(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param(p): Param<String>,
    Body(url): Body<UrlView>,
) -> Result<(StatusCode, Json<UrlView>), MgmtError> {
    let p = prefix(&p)?;
    let url = UrlConfig::from(url);
    let added = blocking(&m, move |m| m.add_url(&who, &p, &url)).await?;
    Ok((StatusCode::CREATED, Json(added.into())))
}

/// One URL (IsUrlInUrlGroup): 200 with it, or 404.
#[utoipa::path(get, path = "/v1/groups/{prefix}/urls/{suffix}", tag = "urls",
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded"),
           ("suffix" = String, Path, description = "The URL's suffix, percent-encoded")),
    responses((status = 200, body = UrlView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn check_url(
    State(m): State<Arc<Managed>>,
    Param((p, suffix)): Param<(String, String)>,
) -> Result<Json<UrlView>, MgmtError> {
    Ok(Json(m.url(&prefix(&p)?, &suffix)?.into()))
}

/// Unpublishes a URL (RemoveUrl).
#[utoipa::path(delete, path = "/v1/groups/{prefix}/urls/{suffix}", tag = "urls",
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded"),
           ("suffix" = String, Path, description = "The URL's suffix, percent-encoded")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove_url(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param((p, suffix)): Param<(String, String)>,
) -> Result<StatusCode, MgmtError> {
    let p = prefix(&p)?;
    blocking(&m, move |m| m.remove_url(&who, &p, &suffix)).await?;
    Ok(StatusCode::NO_CONTENT)
}
