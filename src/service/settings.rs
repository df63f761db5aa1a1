//! [`GroupSettings`]: a URL group's settings as a management call gives them, creating a group
//! (`POST /v1/groups`, beside its prefix) or changing one (`PATCH /v1/groups/{prefix}`, and
//! [`Managed::change_group`](super::Managed::change_group)). Each setting given replaces the group's and
//! the others stay. They are parsed as a whole before any is set, so a malformed one changes nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::MgmtError;
use crate::auth::AuthScheme;
use crate::url::UrlGroup;
use crate::{ByteRate, ConnectionLimit};

/// A URL group's settings to set; those not given stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    /// The schemes enabled (all others off): `negotiate`, `ntlm`, `basic`, `client-cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Vec<String>>,
    /// Basic over plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_basic_over_http: Option<bool>,
    /// The SDDL for URLs added without one; an empty string clears it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_sddl: Option<String>,
    /// Transfers at once: a number, or `unlimited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<String>,
    /// Bytes per second for the group (`1MiB/s`, `65536`), or `unlimited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_limit: Option<String>,
    /// `Cache-Control: max-age` seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_max_age_secs: Option<u64>,
    /// An index of the URLs at the group's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<bool>,
}

/// The settings parsed, each as the group takes it.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    given: &'a GroupSettings,
    auth: Option<Vec<AuthScheme>>,
    connection_limit: Option<ConnectionLimit>,
    bandwidth_limit: Option<ByteRate>,
}

impl GroupSettings {
    /// Parses every setting given; the first malformed one is the error.
    pub(crate) fn parse(&self) -> Result<Parsed<'_>, MgmtError> {
        let auth = match &self.auth {
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| n.parse())
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            None => None,
        };
        // RFC 9111 §1.2.2: delta-seconds beyond 2^31 mean nothing more; larger is a mistake.
        if self
            .cache_max_age_secs
            .is_some_and(|age| age > i32::MAX as u64)
        {
            return Err(MgmtError::Invalid {
                code: "invalid_limit",
                message: format!("cache_max_age_secs is at most {}", i32::MAX),
            });
        }
        Ok(Parsed {
            given: self,
            auth,
            connection_limit: self
                .connection_limit
                .as_deref()
                .map(str::parse)
                .transpose()?,
            bandwidth_limit: self
                .bandwidth_limit
                .as_deref()
                .map(str::parse)
                .transpose()?,
        })
    }
}

impl Parsed<'_> {
    /// Sets what was given on `group`; the caller restores the group when this fails partway.
    pub(crate) fn set_on(&self, group: &UrlGroup) -> Result<(), MgmtError> {
        let given = self.given;
        if let Some(schemes) = &self.auth {
            for scheme in AuthScheme::ALL {
                group.set_authentication(scheme, schemes.contains(&scheme))?;
            }
        }
        if let Some(allow) = given.allow_basic_over_http {
            group.allow_basic_over_http(allow)?;
        }
        if let Some(sddl) = &given.default_sddl {
            group.set_default_sddl(Some(sddl.as_str()).filter(|t| !t.is_empty()))?;
        }
        if let Some(limit) = self.connection_limit {
            group.set_connection_limit(limit)?;
        }
        if let Some(rate) = self.bandwidth_limit {
            group.set_bandwidth_limit(rate)?;
        }
        if let Some(age) = given.cache_max_age_secs {
            group.set_cache_max_age(Some(Duration::from_secs(age)))?;
        }
        if let Some(on) = given.index {
            group.set_index(on)?;
        }
        Ok(())
    }
}
