//! `/v1/users` and `/v1/principal-groups`: the principals Basic, NTLM and certificate mapping use, and that
//! SDDL group rules name. Never returns a secret: a user shows whether it has a password, not its hashes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{blocking, Body, Param, Who};
use super::fields::{self, DESCRIPTION, NAME, SECRET};
use crate::auth::{Password, Principals};
use crate::service::error::{ErrorBody, MgmtError};
use crate::service::managed::Managed;

/// A user, without secrets.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    /// The name (compared ignoring case).
    pub name: String,
    /// Its SID.
    pub sid: String,
    /// The groups it belongs to.
    pub groups: Vec<String>,
    /// Whether it has a password (for Basic and NTLM).
    pub password: bool,
    /// Client-certificate names (UPN, e-mail, CN or SHA-1 thumbprint) that identify it.
    pub certificates: Vec<String>,
}

/// A principals group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PrincipalGroup {
    /// The name (`BA` and `Administrators` are S-1-5-32-544).
    pub name: String,
    /// Its SID.
    pub sid: String,
}

/// What to set on a user; groups and certificates are added to those it has, never dropped. Its `Debug`
/// never shows the password.
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutUser {
    /// A new password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Groups to add it to (created as needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Certificate names to map to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<Vec<String>>,
}

/// SECURITY: the threat is a password reaching a log through `{:?}` of a request; it is redacted.
impl std::fmt::Debug for PutUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutUser")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("groups", &self.groups)
            .field("certificates", &self.certificates)
            .finish()
    }
}

impl PutUser {
    /// The user's name and every field within its bound and free of control characters (see `fields`).
    fn check(&self, name: &str) -> Result<(), MgmtError> {
        fields::printable("name", name, NAME)?;
        if let Some(password) = &self.password {
            fields::bounded("password", password, SECRET)?;
        }
        let names = |field: &str, list: &Option<Vec<String>>, bound| match list {
            Some(list) => fields::each(field, list, |f, v| fields::printable(f, v, bound)),
            None => Ok(()),
        };
        names("groups", &self.groups, NAME)?;
        names("certificates", &self.certificates, DESCRIPTION)
    }
}

fn users_of(p: &Principals) -> Vec<UserView> {
    p.users()
        .map(|(name, u)| UserView {
            name: name.to_owned(),
            sid: u.sid.to_string(),
            groups: u.groups.clone(),
            password: u.password.is_some() || u.nt_hash.is_some(),
            certificates: u.certificates.clone(),
        })
        .collect()
}

/// Every user.
#[utoipa::path(get, operation_id = "list_users", path = "/v1/users", tag = "principals",
    responses((status = 200, body = Vec<UserView>)))]
pub(crate) async fn list(State(m): State<Arc<Managed>>) -> Json<Vec<UserView>> {
    Json(users_of(&m.principals()))
}

/// Creates or updates a user.
#[utoipa::path(put, operation_id = "put_user", path = "/v1/users/{name}", tag = "principals", request_body = PutUser,
    params(("name" = String, Path, description = "The user name")),
    responses((status = 200, body = UserView), (status = 400, body = ErrorBody)))]
pub(crate) async fn put(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param(name): Param<String>,
    Body(body): Body<PutUser>,
) -> Result<Json<UserView>, MgmtError> {
    body.check(&name)?;
    if body.password.as_deref() == Some("") {
        return Err(MgmtError::Invalid {
            code: "invalid_password",
            message: "the password is empty".into(),
        });
    }
    let password = body.password.map(Password::from);
    let groups = body.groups.unwrap_or_default();
    let certificates = body.certificates.unwrap_or_default();
    let n = name.clone();
    let user = blocking(&m, move |m| {
        m.put_user(&who, &n, password.as_ref(), &groups, &certificates)?;
        let principals = m.principals();
        users_of(&principals)
            .into_iter()
            .find(|u| u.name.eq_ignore_ascii_case(&n))
            .ok_or_else(|| MgmtError::NotFound {
                code: "user_not_found",
                message: format!("no user {n}"),
            })
    })
    .await?;
    Ok(Json(user))
}

/// Removes a user.
#[utoipa::path(delete, operation_id = "remove_user", path = "/v1/users/{name}", tag = "principals",
    params(("name" = String, Path, description = "The user name")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param(name): Param<String>,
) -> Result<StatusCode, MgmtError> {
    blocking(&m, move |m| m.remove_user(&who, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates a principals group (`BA` or `Administrators` get S-1-5-32-544); an existing one stays as it is.
#[utoipa::path(put, operation_id = "put_principal_group", path = "/v1/principal-groups/{name}", tag = "principals",
    params(("name" = String, Path, description = "The group name")),
    responses((status = 200, body = PrincipalGroup), (status = 400, body = ErrorBody)))]
pub(crate) async fn put_group(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param(name): Param<String>,
) -> Result<Json<PrincipalGroup>, MgmtError> {
    fields::printable("name", &name, NAME)?;
    let n = name.clone();
    blocking(&m, move |m| m.add_principal_group(&who, &n)).await?;
    let principals = m.principals();
    let group = principals
        .groups()
        .find(|(g, _)| g.eq_ignore_ascii_case(&name))
        .map(|(g, group)| PrincipalGroup {
            name: g.to_owned(),
            sid: group.sid.to_string(),
        });
    group.map(Json).ok_or_else(|| MgmtError::NotFound {
        code: "principal_group_not_found",
        message: format!("no group {name}"),
    })
}

/// Removes a principals group, and every user's membership of it.
#[utoipa::path(delete, operation_id = "remove_principal_group", path = "/v1/principal-groups/{name}", tag = "principals",
    params(("name" = String, Path, description = "The group name")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn remove_group(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param(name): Param<String>,
) -> Result<StatusCode, MgmtError> {
    blocking(&m, move |m| m.remove_principal_group(&who, &name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every principals group.
#[utoipa::path(get, operation_id = "list_principal_groups", path = "/v1/principal-groups", tag = "principals",
    responses((status = 200, body = Vec<PrincipalGroup>)))]
pub(crate) async fn list_groups(State(m): State<Arc<Managed>>) -> Json<Vec<PrincipalGroup>> {
    let principals = m.principals();
    Json(
        principals
            .groups()
            .map(|(name, g)| PrincipalGroup {
                name: name.to_owned(),
                sid: g.sid.to_string(),
            })
            .collect(),
    )
}
