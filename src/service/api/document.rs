//! `/v1/config`: the whole managed configuration, out (`bcs export`) and in (`bcs apply`), so that it can
//! live in version control. Exports carry no secrets: users have no hashes and PKCS#12 passwords and PEM
//! keys are empty; applying such a file keeps the secrets the service has.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::extract::{blocking, Body, Who};
use super::fields;
use super::groups::GroupView;
use crate::auth::Principals;
use crate::config::{GroupConfig, TlsBinding};
use crate::service::error::{ErrorBody, MgmtError};
use crate::service::managed::Managed;
use crate::service::store::Stored;

/// The managed configuration: groups with their URLs, TLS bindings per port, principals.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigDocument {
    /// The URL groups, in creation order.
    #[serde(default)]
    pub groups: Vec<GroupView>,
    /// TLS per https port: `{port, certificate, sni, client_certificates, http2}`, sources as
    /// `{kind: "pem_files", cert, key}` or `{kind: "pkcs12_file", file, password}`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tls: Vec<Value>,
    /// Users and groups: `{machine_sid, users: {name: {sid, groups, certificates}}, groups: {name: {sid}}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub principals: Option<Value>,
}

/// Whether an apply changed anything.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Applied {
    /// Something changed.
    pub changed: bool,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> MgmtError {
    MgmtError::Invalid {
        code: "invalid_config",
        message: format!("{what}: {e}"),
    }
}

impl ConfigDocument {
    /// The document of what is stored, without secrets.
    pub fn of(stored: Stored) -> ConfigDocument {
        ConfigDocument {
            groups: stored.groups.into_iter().map(GroupView::from).collect(),
            tls: stored
                .tls
                .iter()
                .map(|b| serde_json::to_value(b.without_secrets()).unwrap_or(Value::Null))
                .collect(),
            principals: stored
                .principals
                .map(|p| serde_json::to_value(p.without_secrets()).unwrap_or(Value::Null)),
        }
    }

    /// What the document says, checked for shape (the server checks the rest when applying it).
    pub fn into_stored(self) -> Result<Stored, MgmtError> {
        for (i, group) in self.groups.iter().enumerate() {
            group.check(&format!("groups[{i}]."))?;
        }
        // Principals are names, SIDs, hashes and certificate names; TLS bindings carry PEM text, whose
        // newlines are allowed, within the bound of a certificate chain.
        if let Some(principals) = &self.principals {
            fields::document("principals", principals, fields::DESCRIPTION, false)?;
        }
        for (i, binding) in self.tls.iter().enumerate() {
            fields::document(&format!("tls[{i}]"), binding, fields::PEM, true)?;
        }
        let groups = self
            .groups
            .into_iter()
            .map(GroupConfig::try_from)
            .collect::<Result<_, _>>()?;
        let tls = self
            .tls
            .into_iter()
            .map(|v| serde_json::from_value::<TlsBinding>(v).map_err(|e| invalid("tls", e)))
            .collect::<Result<_, _>>()?;
        let principals = self
            .principals
            .map(|v| serde_json::from_value::<Principals>(v).map_err(|e| invalid("principals", e)))
            .transpose()?;
        Ok(Stored {
            groups,
            tls,
            principals,
        })
    }
}

/// The whole managed configuration, without secrets (`bcs export`).
#[utoipa::path(get, operation_id = "export_config", path = "/v1/config", tag = "config",
    responses((status = 200, body = ConfigDocument)))]
pub(crate) async fn export(State(m): State<Arc<Managed>>) -> Json<ConfigDocument> {
    Json(ConfigDocument::of(m.export()))
}

/// Makes the service match a configuration (`bcs apply`): all or nothing, idempotent. `prune=true` also
/// removes the groups, bindings and users the document does not name.
#[utoipa::path(put, operation_id = "apply_config", path = "/v1/config", tag = "config", request_body = ConfigDocument,
    params(("prune" = Option<bool>, Query, description = "Remove what the document does not name")),
    responses((status = 200, body = Applied), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn apply(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    RawQuery(query): RawQuery,
    Body(doc): Body<ConfigDocument>,
) -> Result<Json<Applied>, MgmtError> {
    let prune = prune(query.as_deref())?;
    let wanted = doc.into_stored()?;
    let changed = blocking(&m, move |m| m.apply(&who, wanted, prune)).await?;
    Ok(Json(Applied { changed }))
}

/// `prune=true|false` (or 1|0) from the query; other parameters are refused.
fn prune(query: Option<&str>) -> Result<bool, MgmtError> {
    let mut prune = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        prune = match pair {
            "prune=true" | "prune=1" => true,
            "prune=false" | "prune=0" => false,
            _ => {
                return Err(invalid(
                    "query",
                    format!("{pair:?}: expected prune=true or prune=false"),
                ))
            }
        };
    }
    Ok(prune)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_blank_every_secret() {
        let v = serde_json::json!({
            "port": 443,
            "certificate": {"kind": "pkcs12_file", "file": "/a.pfx", "password": "hunter2"},
            "sni": {"a.example": {"kind": "pem", "cert": "C", "key": "PRIVATE"},
                    "b.example": {"kind": "pem_files", "cert": "/c.pem", "key": "/k.pem"}},
            "http2": true
        });
        let binding: TlsBinding = serde_json::from_value(v).unwrap();
        let v = serde_json::to_value(binding.without_secrets()).unwrap();
        let text = v.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("PRIVATE"),
            "{text}"
        );
        // A key *file* is a path, not a secret: it stays.
        assert_eq!(v["sni"]["b.example"]["key"], "/k.pem");
    }

    #[test]
    fn prune_parameter() {
        assert!(!prune(None).unwrap());
        assert!(prune(Some("prune=true")).unwrap());
        assert!(!prune(Some("prune=0")).unwrap());
        assert_eq!(
            prune(Some("prune=yes")).unwrap_err().code(),
            "invalid_config"
        );
    }
}
