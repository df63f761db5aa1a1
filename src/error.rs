//! The crate-level error: one variant per domain, each domain's error kept whole as the source, and a
//! stable machine-readable code for each (what the management API returns).

use crate::auth::{AuthError, HashError, PrincipalsError, UnknownScheme};
use crate::authz::{SddlError, SidError};
use crate::jobs::{JobError, TransitionError};
use crate::limits::LimitError;
use crate::server::ServerError;
use crate::tls::{TlsError, UnknownMode};
use crate::url::{PrefixError, SegmentError, UrlError};

/// Any error of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A URL prefix did not parse.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// A URL suffix or path segment broke a rule.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// A URL could not be published, or a group changed.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// A limit value was refused.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A certificate, key or CA file could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A client-certificate mode that names none.
    #[error(transparent)]
    ClientCertMode(#[from] UnknownMode),
    /// Authentication could not be set up.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// An authentication scheme that names none.
    #[error(transparent)]
    Scheme(#[from] UnknownScheme),
    /// A principals file's content was refused.
    #[error(transparent)]
    Principals(#[from] PrincipalsError),
    /// A stored password hash was refused.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// An SDDL string did not parse.
    #[error(transparent)]
    Sddl(#[from] SddlError),
    /// A SID did not parse.
    #[error(transparent)]
    Sid(#[from] SidError),
    /// A server operation failed.
    #[error(transparent)]
    Server(#[from] ServerError),
    /// A download job operation failed.
    #[error(transparent)]
    Job(#[from] JobError),
}

impl Error {
    /// A stable, machine-readable name for what went wrong (`group_not_found`, `invalid_sddl`, ...):
    /// codes are never renamed, only added.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Prefix(_) => "invalid_prefix",
            Error::Segment(_) => "invalid_suffix",
            Error::Url(e) => url_code(e),
            Error::Limit(_) => "invalid_limit",
            Error::Tls(e) => tls_code(e),
            Error::ClientCertMode(_) => "invalid_client_cert_mode",
            Error::Auth(e) => auth_code(e),
            Error::Scheme(_) => "invalid_scheme",
            Error::Principals(_) => "invalid_principals",
            Error::Hash(_) => "invalid_password_hash",
            Error::Sddl(_) => "invalid_sddl",
            Error::Sid(_) => "invalid_sid",
            Error::Server(e) => server_code(e),
            Error::Job(e) => job_code(e),
        }
    }
}

fn url_code(e: &UrlError) -> &'static str {
    match e {
        UrlError::Suffix { .. } => "invalid_suffix",
        UrlError::File { .. } => "file_unreadable",
        UrlError::NotAFile { .. } => "not_a_file",
        UrlError::Sddl { .. } | UrlError::DefaultSddl(_) => "invalid_sddl",
        UrlError::Exists { .. } => "url_exists",
        UrlError::GroupDeleted(_) => "group_deleted",
        UrlError::Limit(_) => "invalid_limit",
        UrlError::Auth(e) => auth_code(e),
    }
}

fn tls_code(e: &TlsError) -> &'static str {
    match e {
        TlsError::Read { .. } => "tls_file_unreadable",
        TlsError::KeyMismatch { .. } => "tls_key_mismatch",
        TlsError::Pkcs12 { .. } => "tls_pkcs12",
        _ => "tls_invalid",
    }
}

fn auth_code(e: &AuthError) -> &'static str {
    match e {
        AuthError::Read { .. } => "principals_unreadable",
        AuthError::Write { .. } => "principals_unwritable",
        AuthError::Principals { .. } => "invalid_principals",
        AuthError::Unsupported(_) => "scheme_unsupported",
        _ => "auth_error",
    }
}

fn server_code(e: &ServerError) -> &'static str {
    match e {
        ServerError::Config(_) => "invalid_config",
        ServerError::Prefix(_) => "invalid_prefix",
        ServerError::GroupExists(_) => "group_exists",
        ServerError::GroupNotFound(_) => "group_not_found",
        ServerError::SchemeConflict { .. } => "scheme_conflict",
        ServerError::Tls(e) => tls_code(e),
        ServerError::NotHttps(_) => "not_https",
        ServerError::Bind { .. } => "bind_failed",
        ServerError::AlreadyServing => "already_serving",
        ServerError::AddressConflict { .. } => "address_conflict",
        ServerError::Url(e) => url_code(e),
        ServerError::FixedSettings => "fixed_settings",
    }
}

fn job_code(e: &JobError) -> &'static str {
    match e {
        JobError::NotFound(_) => "job_not_found",
        JobError::Transition {
            source: TransitionError::NoFiles,
            ..
        } => "job_has_no_files",
        JobError::Transition { .. } => "invalid_job_state",
        JobError::InvalidFile { .. } => "invalid_job_file",
        JobError::InvalidSetting(_) => "invalid_job_setting",
        JobError::Local { .. } => "job_local_file",
        JobError::Store { .. } => "job_store_failed",
        JobError::Corrupt { .. } => "job_store_corrupt",
        JobError::NotPrivate { .. } => "job_store_not_private",
        JobError::Stopped => "job_manager_stopped",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_error_converts_and_has_a_code() {
        let prefix: Error = "ftp://x".parse::<crate::UrlPrefix>().unwrap_err().into();
        assert_eq!(prefix.code(), "invalid_prefix");
        let sddl: Error = crate::authz::SecurityDescriptor::parse("D:(X;;GA;;;WD)", None)
            .unwrap_err()
            .into();
        assert_eq!(sddl.code(), "invalid_sddl");
        let scheme: Error = "kerberos5".parse::<crate::AuthScheme>().unwrap_err().into();
        assert_eq!(scheme.code(), "invalid_scheme");
        let missing: Error = ServerError::GroupNotFound("http://+:1/a/".into()).into();
        assert_eq!(missing.code(), "group_not_found");
        let nested: Error = ServerError::Url(UrlError::GroupDeleted("g".into())).into();
        assert_eq!(nested.code(), "group_deleted");
        let hash: Error = crate::auth::PasswordHash::parse("hunter2")
            .unwrap_err()
            .into();
        assert_eq!(hash.code(), "invalid_password_hash");
        assert!(hash.to_string().contains("never plain text"));
        let id = crate::JobId::random();
        let job: Error = JobError::NotFound(id).into();
        assert_eq!(job.code(), "job_not_found");
        let final_: Error = JobError::Transition {
            id,
            source: TransitionError::Final(crate::JobState::Cancelled),
        }
        .into();
        assert_eq!(final_.code(), "invalid_job_state");
    }
}
