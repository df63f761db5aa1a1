//! The table of every domain error's kind and stable code, one row per variant: the one place where a
//! failure is classified. The management API's status and the management commands' exit status follow
//! from the kind (see [`ErrorKind`](crate::error::ErrorKind)); the code is what clients key on, so codes are
//! never renamed, only added. No row has a wildcard: a new variant does not compile until it is
//! classified here.
//!
//! Some kinds reproduce statuses the API has always answered rather than the kind a fresh design might
//! pick (an unwritable principals file is `Invalid`, 400; a local file a job cannot put in place is
//! `Conflict`, 409): clients depend on them.

use super::kind::ErrorKind as K;
use crate::auth::basic::HeaderError;
use crate::auth::ntlm::messages::MessageError;
use crate::auth::ntlm::NtlmError;
use crate::auth::spnego::SpnegoError;
use crate::auth::{AuthError, HashError, PrincipalsError, UnknownScheme};
use crate::authz::{SddlError, SidError};
use crate::client::ClientError;
use crate::jobs::{JobError, JobIdError, PrivateDirError, TransitionError, UnknownValue};
use crate::limits::LimitError;
use crate::server::ServerError;
use crate::tls::{TlsError, UnknownMode};
use crate::url::{PrefixError, SegmentError, UrlError};

/// `kind()` and `code()` for an error type, from one table: `pattern => (kind, code)` per variant. A row
/// may delegate to the error it wraps (`Url(e) => (e.kind(), e.code())`).
macro_rules! classify {
    ($($ty:ty { $($pat:pat => ($kind:expr, $code:expr)),+ $(,)? })+) => {$(
        // A row binds what one of the two answers needs; the other match leaves it unused.
        #[allow(unused_variables)]
        impl $ty {
            /// What kind of failure this is; the API's HTTP status and `bcs`'s exit status follow from it.
            pub fn kind(&self) -> $crate::error::ErrorKind {
                match self {
                    $($pat => $kind,)+
                }
            }

            /// A stable, machine-readable name for what went wrong: codes are never renamed, only added.
            pub fn code(&self) -> &'static str {
                match self {
                    $($pat => $code,)+
                }
            }
        }
    )+};
}
pub(crate) use classify;

classify! {
    PrefixError {
        _ => (K::Invalid, "invalid_prefix"),
    }
    SegmentError {
        _ => (K::Invalid, "invalid_suffix"),
    }
    UrlError {
        UrlError::Suffix { source, .. } => (source.kind(), source.code()),
        UrlError::File { .. } => (K::Invalid, "file_unreadable"),
        UrlError::NotAFile { .. } => (K::Invalid, "not_a_file"),
        UrlError::Content { .. } => (K::Invalid, "invalid_content"),
        UrlError::Sddl { source, .. } => (source.kind(), source.code()),
        UrlError::DefaultSddl(e) => (e.kind(), e.code()),
        UrlError::Exists { .. } => (K::Conflict, "url_exists"),
        UrlError::GroupDeleted(_) => (K::Conflict, "group_deleted"),
        UrlError::Limit(e) => (e.kind(), e.code()),
        UrlError::Auth(e) => (e.kind(), e.code()),
    }
    LimitError {
        _ => (K::Invalid, "invalid_limit"),
    }
    TlsError {
        TlsError::Read { .. } => (K::Invalid, "tls_file_unreadable"),
        TlsError::KeyMismatch { .. } => (K::Invalid, "tls_key_mismatch"),
        TlsError::Pkcs12 { .. } => (K::Invalid, "tls_pkcs12"),
        TlsError::NoCertificate { .. }
        | TlsError::NoCaCertificate { .. }
        | TlsError::NoKey { .. }
        | TlsError::Pem { .. }
        | TlsError::Key { .. }
        | TlsError::SelfSigned(_)
        | TlsError::Verifier(_)
        | TlsError::Config(_) => (K::Invalid, "tls_invalid"),
    }
    UnknownMode {
        _ => (K::Invalid, "invalid_client_cert_mode"),
    }
    AuthError {
        AuthError::Read { .. } => (K::Invalid, "principals_unreadable"),
        AuthError::Write { .. } => (K::Invalid, "principals_unwritable"),
        AuthError::Principals { source, .. } => (source.kind(), source.code()),
        AuthError::Unsupported(_) => (K::Invalid, "scheme_unsupported"),
        AuthError::Hash(_) | AuthError::Sid => (K::Invalid, "auth_error"),
    }
    UnknownScheme {
        _ => (K::Invalid, "invalid_scheme"),
    }
    // One code for the whole file: the message names the user, group or SID at fault.
    PrincipalsError {
        PrincipalsError::Toml(_)
        | PrincipalsError::Sid { .. }
        | PrincipalsError::Duplicate { .. }
        | PrincipalsError::UnknownGroup { .. }
        | PrincipalsError::Hash { .. } => (K::Invalid, "invalid_principals"),
    }
    HashError {
        _ => (K::Invalid, "invalid_password_hash"),
    }
    SddlError {
        _ => (K::Invalid, "invalid_sddl"),
    }
    SidError {
        _ => (K::Invalid, "invalid_sid"),
    }
    ServerError {
        ServerError::Config(_) => (K::Invalid, "invalid_config"),
        ServerError::Prefix(e) => (e.kind(), e.code()),
        ServerError::GroupExists(_) => (K::Conflict, "group_exists"),
        ServerError::GroupNotFound(_) => (K::NotFound, "group_not_found"),
        ServerError::SchemeConflict { .. } => (K::Conflict, "scheme_conflict"),
        ServerError::Tls(e) => (e.kind(), e.code()),
        ServerError::NotHttps(_) => (K::Conflict, "not_https"),
        ServerError::Bind { .. } => (K::Conflict, "bind_failed"),
        ServerError::AccessLog { .. } => (K::Io, "access_log_failed"),
        ServerError::AlreadyServing => (K::Invalid, "already_serving"),
        ServerError::AddressConflict { .. } => (K::Conflict, "address_conflict"),
        ServerError::Url(e) => (e.kind(), e.code()),
        ServerError::FixedSettings => (K::Invalid, "fixed_settings"),
    }
    TransitionError {
        TransitionError::NoFiles => (K::Invalid, "job_has_no_files"),
        TransitionError::Final(_)
        | TransitionError::NotTransferred(_)
        | TransitionError::Unexpected { .. } => (K::Conflict, "invalid_job_state"),
    }
    JobError {
        JobError::NotFound(_) => (K::NotFound, "job_not_found"),
        JobError::Transition { source, .. } => (source.kind(), source.code()),
        JobError::InvalidFile { .. } => (K::Invalid, "invalid_job_file"),
        JobError::InvalidSetting(_) => (K::Invalid, "invalid_job_setting"),
        JobError::Local { .. } => (K::Conflict, "job_local_file"),
        JobError::Store { .. } => (K::Io, "job_store_failed"),
        JobError::Corrupt { .. } => (K::Io, "job_store_corrupt"),
        JobError::NotPrivate { .. } => (K::Invalid, "job_store_not_private"),
        JobError::Stopped => (K::Internal, "job_manager_stopped"),
    }
    // A state, priority or action that names none: what the API answers for a priority it refuses.
    UnknownValue {
        _ => (K::Invalid, "invalid_job_setting"),
    }
    // Text that is not a job id names no job: the API answers a malformed id in a path as a missing one.
    JobIdError {
        _ => (K::NotFound, "job_not_found"),
    }
    PrivateDirError {
        PrivateDirError::Io(_) => (K::Io, "private_dir_failed"),
        PrivateDirError::NotADirectory
        | PrivateDirError::Owner { .. }
        | PrivateDirError::Writable(_) => (K::Invalid, "private_dir_not_private"),
    }
    // The request path's parsers: the kinds are the statuses a request gets for them (a malformed
    // Authorization header is 400; a malformed NTLM or SPNEGO token is refused, 403).
    HeaderError {
        _ => (K::Invalid, "bad_authorization"),
    }
    SpnegoError {
        _ => (K::Forbidden, "malformed_spnego"),
    }
    MessageError {
        _ => (K::Forbidden, "malformed_ntlm"),
    }
    // SECURITY: every failed NTLM proof has one code, as it gets one answer (a new challenge, 401): a
    // caller must not learn whether the user exists or the password was wrong.
    NtlmError {
        NtlmError::Message(e) => (e.kind(), e.code()),
        NtlmError::NoChallenge
        | NtlmError::Anonymous
        | NtlmError::Version1
        | NtlmError::UnknownUser
        | NtlmError::BadProof
        | NtlmError::BadMic => (K::Unauthorized, "unauthenticated"),
    }
}

impl ClientError {
    /// What kind of failure this is. (Its [`code`](ClientError::code), GetError's, is beside the type: it
    /// looks into the OS error.) Reaching the server, through its proxy and TLS handshake, is
    /// `Unreachable`; what the job's settings got wrong is `Invalid`; an authentication the client could
    /// not perform is `Unauthorized`.
    pub fn kind(&self) -> K {
        match self {
            ClientError::Pin { .. }
            | ClientError::Proxy { .. }
            | ClientError::CaFile { .. }
            | ClientError::ClientCertificate { .. }
            | ClientError::BasicOverHttp
            | ClientError::NoPassword
            | ClientError::NegotiateUnavailable
            | ClientError::Request(_) => K::Invalid,
            ClientError::Connect { .. }
            | ClientError::Timeout(_)
            | ClientError::Tls(_)
            | ClientError::Lost(_)
            | ClientError::ProxyRefused(_) => K::Unreachable,
            ClientError::Negotiate(_) | ClientError::Ntlm(_) => K::Unauthorized,
            ClientError::RefusedByPolicy => K::Forbidden,
        }
    }
}
