//! `/v1/groups`: URL groups (the original's CreateUrlGroup, DeleteUrlGroup, GetUrlGroup,
//! EnumerateUrlGroups) and their URLs (AddUrl, RemoveUrl, IsUrlInUrlGroup).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{blocking, prefix, Body, Param, Who};
use super::fields::{self, NAME, PATH, SDDL, URL};
use crate::config::{ContentRecord, GroupConfig, PreviousContent, UrlConfig};
use crate::service::error::{ErrorBody, MgmtError};
use crate::service::managed::Managed;
use crate::service::settings::GroupSettings;

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
    /// An index of the URLs at the group's root. Default on, as `bcs host` has one.
    #[serde(default = "on")]
    pub index: bool,
    /// The published files.
    #[serde(default)]
    pub urls: Vec<UrlView>,
}

fn unlimited() -> String {
    "unlimited".into()
}

fn on() -> bool {
    true
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
    /// Downloads of it being sent now (GET bodies of 200 or 206 not yet ended), as the group answers show
    /// it; absent is none, and a configuration document never carries it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub downloads_under_way: u64,
    /// On a fleet's node: the content's identity, recorded when it was published; every node serves the
    /// URL from its own verified copy of these bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentView>,
}

/// A published file's content in a fleet (see [`crate::config::ContentRecord`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentView {
    /// The SHA-256 of the bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// The size in bytes.
    pub size: u64,
    /// The node it was published on.
    pub origin: String,
    /// Its modification time on the origin, seconds since the Unix epoch (`Last-Modified`).
    pub version: u64,
    /// The content the URL had before it was published again, served by a node until it holds this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousView>,
}

/// The content a URL published again had before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviousView {
    /// Its SHA-256, 64 lowercase hex digits.
    pub sha256: String,
    /// Its version.
    pub version: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A new group: its prefix and, optionally, its settings (the fields of [`GroupSettings`], beside the
/// prefix). Its index is on unless `index` is false, as `bcs host`'s is.
#[derive(Debug, Clone)]
pub struct NewGroup {
    /// The prefix, in HTTP.sys syntax (`http://+:8080/app/`).
    pub prefix: String,
    /// Its settings; those not given are the defaults.
    pub settings: GroupSettings,
}

/// The prefix, then the settings' fields beside it (those given only), as [`Deserialize`] reads them.
impl Serialize for NewGroup {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            prefix: &'a str,
            #[serde(flatten)]
            settings: &'a GroupSettings,
        }
        Wire {
            prefix: &self.prefix,
            settings: &self.settings,
        }
        .serialize(s)
    }
}

/// As [`GroupSettings`] does, a new group refuses fields it does not know (serde's `flatten` alone would
/// ignore them).
impl<'de> Deserialize<'de> for NewGroup {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Wire {
            prefix: String,
            #[serde(flatten)]
            settings: GroupSettings,
            #[serde(flatten)]
            unknown: std::collections::BTreeMap<String, serde::de::IgnoredAny>,
        }
        let wire = Wire::deserialize(d)?;
        if let Some(field) = wire.unknown.keys().next() {
            return Err(serde::de::Error::custom(format!(
                "unknown field `{field}`, expected `prefix` or a group setting"
            )));
        }
        let mut settings = wire.settings;
        settings.index.get_or_insert(true);
        Ok(NewGroup {
            prefix: wire.prefix,
            settings,
        })
    }
}

/// The schema of [`GroupSettings`] with the prefix added, required.
impl utoipa::PartialSchema for NewGroup {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{Object, Schema, Type};
        use utoipa::openapi::RefOr;
        // The settings' derived schema is an object; were it not, it is left as it is.
        let RefOr::T(Schema::Object(mut object)) = GroupSettings::schema() else {
            return GroupSettings::schema();
        };
        let prefix = Object::builder()
            .schema_type(Type::String)
            .description(Some(
                "The prefix, in HTTP.sys syntax (`http://+:8080/app/`).",
            ))
            .build();
        object.properties.insert("prefix".to_owned(), prefix.into());
        let index = Object::builder()
            .schema_type(Type::Boolean)
            .description(Some(
                "An index of the URLs at the group's root. Default on.",
            ))
            .default(Some(serde_json::Value::Bool(true)))
            .build();
        object.properties.insert("index".to_owned(), index.into());
        object.required.insert(0, "prefix".to_owned());
        object.description = Some("A new group: its prefix and, optionally, its settings.".into());
        RefOr::T(Schema::Object(object))
    }
}

impl ToSchema for NewGroup {}

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
            downloads_under_way: 0,
            content: u.content.map(|c| ContentView {
                sha256: c.sha256,
                size: c.size,
                origin: c.origin,
                version: c.version,
                previous: c.previous.map(|p| PreviousView {
                    sha256: p.sha256,
                    version: p.version,
                }),
            }),
        }
    }
}

impl From<UrlView> for UrlConfig {
    fn from(u: UrlView) -> Self {
        UrlConfig {
            suffix: u.suffix,
            file: u.file.into(),
            sddl: u.sddl,
            content: u.content.map(|c| ContentRecord {
                sha256: c.sha256,
                size: c.size,
                origin: c.origin,
                version: c.version,
                previous: c.previous.map(|p| PreviousContent {
                    sha256: p.sha256,
                    version: p.version,
                }),
            }),
        }
    }
}

/// A group as the API shows it, with the downloads of each URL under way now (what the server counts;
/// the configuration alone says none).
fn live(m: &Managed, group: GroupConfig) -> GroupView {
    let served = m.server().url_group(&group.prefix).ok();
    let mut view = GroupView::from(group);
    if let Some(served) = served {
        for url in &mut view.urls {
            url.downloads_under_way = downloads_under_way(&served, &url.suffix);
        }
    }
    view
}

fn downloads_under_way(group: &crate::url::UrlGroup, suffix: &str) -> u64 {
    group
        .url(suffix)
        .map_or(0, |url| url.stats().downloads_under_way)
}

/// A group's settings within their bounds and free of control characters (see `fields`).
fn check_settings(s: &GroupSettings) -> Result<(), MgmtError> {
    if let Some(auth) = &s.auth {
        fields::each("auth", auth, |f, v| fields::printable(f, v, NAME))?;
    }
    if let Some(sddl) = &s.default_sddl {
        fields::printable("default_sddl", sddl, SDDL)?;
    }
    for (field, value) in [
        ("connection_limit", &s.connection_limit),
        ("bandwidth_limit", &s.bandwidth_limit),
    ] {
        if let Some(value) = value {
            fields::printable(field, value, NAME)?;
        }
    }
    Ok(())
}

impl GroupView {
    /// Its prefix, settings and URLs within their bounds and free of control characters (see
    /// `fields`); `field` prefixes the names in an error (`groups[2].`).
    pub(super) fn check(&self, field: &str) -> Result<(), MgmtError> {
        fields::printable(&format!("{field}prefix"), &self.prefix, URL)?;
        fields::each(&format!("{field}auth"), &self.auth, |f, v| {
            fields::printable(f, v, NAME)
        })?;
        if let Some(sddl) = &self.default_sddl {
            fields::printable(&format!("{field}default_sddl"), sddl, SDDL)?;
        }
        fields::printable(
            &format!("{field}connection_limit"),
            &self.connection_limit,
            NAME,
        )?;
        fields::printable(
            &format!("{field}bandwidth_limit"),
            &self.bandwidth_limit,
            NAME,
        )?;
        for (i, url) in self.urls.iter().enumerate() {
            url.check(&format!("{field}urls[{i}]."))?;
        }
        Ok(())
    }
}

impl UrlView {
    /// Its suffix, file and SDDL within their bounds and free of control characters (see `fields`);
    /// `field` prefixes the names in an error.
    pub(super) fn check(&self, field: &str) -> Result<(), MgmtError> {
        fields::printable(&format!("{field}suffix"), &self.suffix, PATH)?;
        fields::printable(&format!("{field}file"), &self.file, PATH)?;
        if let Some(content) = &self.content {
            fields::printable(&format!("{field}content.sha256"), &content.sha256, NAME)?;
            fields::printable(&format!("{field}content.origin"), &content.origin, NAME)?;
            if let Some(p) = &content.previous {
                fields::printable(&format!("{field}content.previous.sha256"), &p.sha256, NAME)?;
            }
        }
        match &self.sddl {
            Some(sddl) => fields::printable(&format!("{field}sddl"), sddl, SDDL),
            None => Ok(()),
        }
    }
}

/// Every URL group, with its URLs.
#[utoipa::path(get, operation_id = "list_groups", path = "/v1/groups", tag = "groups",
    responses((status = 200, body = Vec<GroupView>)))]
pub(crate) async fn list(State(m): State<Arc<Managed>>) -> Json<Vec<GroupView>> {
    Json(m.groups().into_iter().map(|g| live(&m, g)).collect())
}

/// Creates a URL group (CreateUrlGroup); its port is bound now, so a port in use fails here.
#[utoipa::path(post, operation_id = "create_group", path = "/v1/groups", tag = "groups", request_body = NewGroup,
    responses((status = 201, body = GroupView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Body(new): Body<NewGroup>,
) -> Result<(StatusCode, Json<GroupView>), MgmtError> {
    fields::printable("prefix", &new.prefix, URL)?;
    check_settings(&new.settings)?;
    let p = prefix(&new.prefix)?;
    let group = blocking(&m, move |m| m.create_group(&who, &p, &new.settings)).await?;
    Ok((StatusCode::CREATED, Json(group.into())))
}

/// One URL group (GetUrlGroup).
#[utoipa::path(get, operation_id = "show_group", path = "/v1/groups/{prefix}", tag = "groups",
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded")),
    responses((status = 200, body = GroupView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(m): State<Arc<Managed>>,
    Param(p): Param<String>,
) -> Result<Json<GroupView>, MgmtError> {
    Ok(Json(live(&m, m.group(&prefix(&p)?)?)))
}

/// Changes a group's settings: all given, or none on error.
#[utoipa::path(patch, operation_id = "change_group", path = "/v1/groups/{prefix}", tag = "groups", request_body = GroupSettings,
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded")),
    responses((status = 200, body = GroupView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn change(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param(p): Param<String>,
    Body(settings): Body<GroupSettings>,
) -> Result<Json<GroupView>, MgmtError> {
    check_settings(&settings)?;
    let p = prefix(&p)?;
    let group = blocking(&m, move |m| m.change_group(&who, &p, &settings)).await?;
    Ok(Json(live(&m, group)))
}

/// Deletes a URL group and its URLs (DeleteUrlGroup).
#[utoipa::path(delete, operation_id = "delete_group", path = "/v1/groups/{prefix}", tag = "groups",
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
#[utoipa::path(get, operation_id = "list_urls", path = "/v1/groups/{prefix}/urls", tag = "urls",
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded")),
    responses((status = 200, body = Vec<UrlView>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_urls(
    State(m): State<Arc<Managed>>,
    Param(p): Param<String>,
) -> Result<Json<Vec<UrlView>>, MgmtError> {
    let group = m.group(&prefix(&p)?)?;
    Ok(Json(live(&m, group).urls))
}

/// Publishes a file (AddUrl). The file must be a readable regular file, named by an absolute path.
#[utoipa::path(post, operation_id = "add_url", path = "/v1/groups/{prefix}/urls", tag = "urls", request_body = UrlView,
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded")),
    responses((status = 201, body = UrlView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn add_url(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param(p): Param<String>,
    Body(url): Body<UrlView>,
) -> Result<(StatusCode, Json<UrlView>), MgmtError> {
    url.check("")?;
    let p = prefix(&p)?;
    let url = UrlConfig::from(url);
    let added = blocking(&m, move |m| m.add_url(&who, &p, &url)).await?;
    Ok((StatusCode::CREATED, Json(added.into())))
}

/// Publishes the URL again: its file (re-read: on a fleet's node, hashed and copied again, so every
/// node moves to the new bytes at once) and, when given, its SDDL; without `sddl` it keeps the one it
/// has, so re-publishing never widens who may read it. 404 when the group has no such URL.
#[utoipa::path(put, operation_id = "replace_url", path = "/v1/groups/{prefix}/urls/{suffix}", tag = "urls", request_body = UrlView,
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded"),
           ("suffix" = String, Path, description = "The URL's suffix, percent-encoded")),
    responses((status = 200, body = UrlView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn replace_url(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param((p, suffix)): Param<(String, String)>,
    Body(url): Body<UrlView>,
) -> Result<Json<UrlView>, MgmtError> {
    url.check("")?;
    if !url.suffix.eq_ignore_ascii_case(&suffix) {
        return Err(MgmtError::Invalid {
            code: "suffix_mismatch",
            message: format!("the body names URL {:?}, the path {suffix:?}", url.suffix),
        });
    }
    let p = prefix(&p)?;
    let url = UrlConfig::from(url);
    let replaced = blocking(&m, move |m| m.replace_url(&who, &p, &url)).await?;
    Ok(Json(replaced.into()))
}

/// One URL (IsUrlInUrlGroup): 200 with it, or 404.
#[utoipa::path(get, operation_id = "check_url", path = "/v1/groups/{prefix}/urls/{suffix}", tag = "urls",
    params(("prefix" = String, Path, description = "The group's prefix, percent-encoded"),
           ("suffix" = String, Path, description = "The URL's suffix, percent-encoded")),
    responses((status = 200, body = UrlView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn check_url(
    State(m): State<Arc<Managed>>,
    Param((p, suffix)): Param<(String, String)>,
) -> Result<Json<UrlView>, MgmtError> {
    let p = prefix(&p)?;
    let mut url = UrlView::from(m.url(&p, &suffix)?);
    if let Ok(group) = m.server().url_group(&p) {
        url.downloads_under_way = downloads_under_way(&group, &url.suffix);
    }
    Ok(Json(url))
}

/// Unpublishes a URL (RemoveUrl).
#[utoipa::path(delete, operation_id = "remove_url", path = "/v1/groups/{prefix}/urls/{suffix}", tag = "urls",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A new group's JSON is its prefix beside the settings' fields, and a field neither knows is refused,
    /// as a change refuses one.
    #[test]
    fn a_new_group_is_its_prefix_beside_its_settings_and_nothing_else() {
        let text =
            r#"{"prefix": "http://+:80/a/", "auth": ["ntlm"], "index": true, "default_sddl": ""}"#;
        let new: NewGroup = serde_json::from_str(text).unwrap();
        assert_eq!(new.prefix, "http://+:80/a/");
        let expected = GroupSettings {
            auth: Some(vec!["ntlm".into()]),
            index: Some(true),
            default_sddl: Some(String::new()),
            ..GroupSettings::default()
        };
        assert_eq!(new.settings, expected);
        let bare: NewGroup = serde_json::from_str(r#"{"prefix": "http://+:80/a/"}"#).unwrap();
        assert_eq!(bare.settings.index, Some(true), "a new group has an index");
        let off: NewGroup =
            serde_json::from_str(r#"{"prefix": "http://+:80/a/", "index": false}"#).unwrap();
        assert_eq!(off.settings.index, Some(false));
        let unknown = r#"{"prefix": "http://+:80/a/", "urls": []}"#;
        let err = serde_json::from_str::<NewGroup>(unknown).unwrap_err();
        assert!(err.to_string().contains("unknown field `urls`"), "{err}");
        assert!(serde_json::from_str::<NewGroup>(r#"{"index": true}"#).is_err());
        assert!(serde_json::from_str::<GroupSettings>(r#"{"prefix": "http://+:80/a/"}"#).is_err());
    }
}
