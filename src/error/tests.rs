//! Every variant of every error type, one value each: its kind, code and HTTP status; a code stands for
//! one kind; the codes several variants share are the ones meant to be shared.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;

use super::*;
use crate::auth::basic::HeaderError;
use crate::auth::ntlm::messages::MessageError;
use crate::auth::ntlm::NtlmError;
use crate::auth::spnego::SpnegoError;
use crate::auth::AuthScheme;
use crate::authz::{SecurityDescriptor, Sid};
use crate::client::ClientError;
use crate::jobs::{
    Event, JobId, JobIdError, JobState, PrivateDirError, TransitionError, UnknownValue,
};
use crate::url::{UrlPrefix, UrlScheme};

/// One error value's answers.
struct Row {
    label: &'static str,
    kind: ErrorKind,
    code: &'static str,
}

/// `error => Kind, "code", status;` per value: checks each and returns the rows.
macro_rules! rows {
    ($($e:expr => $kind:ident, $code:literal, $status:literal;)+) => {
        vec![$({
            let e = $e;
            let row = Row { label: stringify!($e), kind: e.kind(), code: e.code() };
            assert_eq!(
                (row.kind, row.code, row.kind.http_status().as_u16()),
                (ErrorKind::$kind, $code, $status),
                "{}",
                row.label
            );
            row
        }),+]
    };
}

fn path() -> PathBuf {
    PathBuf::from("/srv/x")
}

fn os_error() -> io::Error {
    io::Error::other("disk")
}

fn prefix_error() -> PrefixError {
    "ftp://x".parse::<UrlPrefix>().unwrap_err()
}

fn sddl_error() -> SddlError {
    SecurityDescriptor::parse("D:(X;;GA;;;WD)", None).unwrap_err()
}

fn sid_error() -> SidError {
    "X-1-5".parse::<Sid>().unwrap_err()
}

fn toml_error() -> toml::de::Error {
    toml::from_str::<toml::Table>("=").unwrap_err()
}

fn rustls_error() -> rustls::Error {
    rustls::Error::General("x".into())
}

/// Every variant whose code is its own (not the code of an error it carries).
fn leaves() -> Vec<Row> {
    let id = JobId::random();
    rows! {
        prefix_error() => Invalid, "invalid_prefix", 400;
        SegmentError::Empty => Invalid, "invalid_suffix", 400;
        SegmentError::Dot => Invalid, "invalid_suffix", 400;
        SegmentError::Character => Invalid, "invalid_suffix", 400;
        SegmentError::Percent => Invalid, "invalid_suffix", 400;
        SegmentError::Utf8 => Invalid, "invalid_suffix", 400;
        UrlError::File { path: path(), source: os_error() } => Invalid, "file_unreadable", 400;
        UrlError::NotAFile { path: path() } => Invalid, "not_a_file", 400;
        UrlError::Content { suffix: "s".into(), reason: "r" } => Invalid, "invalid_content", 400;
        UrlError::Exists { prefix: "p".into(), suffix: "s".into() } => Conflict, "url_exists", 409;
        UrlError::GroupDeleted("g".into()) => Conflict, "group_deleted", 409;
        LimitError::Rate { input: "fast".into(), reason: "no unit" } => Invalid, "invalid_limit", 400;
        LimitError::TooLow(1) => Invalid, "invalid_limit", 400;
        LimitError::ZeroConnections => Invalid, "invalid_limit", 400;
        LimitError::Connections("x".into()) => Invalid, "invalid_limit", 400;
        TlsError::Read { path: path(), source: os_error() } => Invalid, "tls_file_unreadable", 400;
        TlsError::NoCertificate { path: path() } => Invalid, "tls_invalid", 400;
        TlsError::NoCaCertificate { path: path() } => Invalid, "tls_invalid", 400;
        TlsError::NoKey { path: path() } => Invalid, "tls_invalid", 400;
        TlsError::Pem { path: path(), reason: "x".into() } => Invalid, "tls_invalid", 400;
        TlsError::Key { path: path(), source: rustls_error() } => Invalid, "tls_invalid", 400;
        TlsError::KeyMismatch { cert: path(), key: path() } => Invalid, "tls_key_mismatch", 400;
        TlsError::Pkcs12 { path: path(), reason: "x".into() } => Invalid, "tls_pkcs12", 400;
        TlsError::SelfSigned(rcgen::Error::KeyGenerationUnavailable) => Invalid, "tls_invalid", 400;
        TlsError::Verifier("x".into()) => Invalid, "tls_invalid", 400;
        TlsError::Config(rustls_error()) => Invalid, "tls_invalid", 400;
        UnknownMode("sometimes".into()) => Invalid, "invalid_client_cert_mode", 400;
        AuthError::Read { path: path(), source: os_error() } => Invalid, "principals_unreadable", 400;
        AuthError::Write { path: path(), source: os_error() } => Invalid, "principals_unwritable", 400;
        AuthError::Hash("x".into()) => Invalid, "auth_error", 400;
        AuthError::Sid => Invalid, "auth_error", 400;
        AuthError::Unsupported(AuthScheme::Negotiate) => Invalid, "scheme_unsupported", 400;
        UnknownScheme("kerberos5".into()) => Invalid, "invalid_scheme", 400;
        PrincipalsError::Toml(toml_error()) => Invalid, "invalid_principals", 400;
        PrincipalsError::Sid { what: "user a".into(), source: sid_error() } => Invalid, "invalid_principals", 400;
        PrincipalsError::Duplicate { kind: "user", name: "a".into() } => Invalid, "invalid_principals", 400;
        PrincipalsError::UnknownGroup { user: "a".into(), group: "g".into() } => Invalid, "invalid_principals", 400;
        PrincipalsError::Hash { user: "a".into(), source: HashError::NotAHash } => Invalid, "invalid_principals", 400;
        HashError::Argon2 => Invalid, "invalid_password_hash", 400;
        HashError::Bcrypt => Invalid, "invalid_password_hash", 400;
        HashError::NotAHash => Invalid, "invalid_password_hash", 400;
        HashError::NtHash => Invalid, "invalid_password_hash", 400;
        sddl_error() => Invalid, "invalid_sddl", 400;
        sid_error() => Invalid, "invalid_sid", 400;
        ServerError::Config(vec!["x".into()]) => Invalid, "invalid_config", 400;
        ServerError::GroupExists("g".into()) => Conflict, "group_exists", 409;
        ServerError::GroupNotFound("g".into()) => NotFound, "group_not_found", 404;
        ServerError::SchemeConflict { port: 1, existing: UrlScheme::Http, requested: UrlScheme::Https } => Conflict, "scheme_conflict", 409;
        ServerError::NotHttps(1) => Conflict, "not_https", 409;
        ServerError::Bind { addr: "127.0.0.1:1".parse().unwrap(), source: os_error() } => Conflict, "bind_failed", 409;
        ServerError::AccessLog { path: "/x".into(), source: os_error() } => Io, "access_log_failed", 500;
        ServerError::AlreadyServing => Invalid, "already_serving", 400;
        ServerError::AddressConflict { port: 1, addrs: Vec::new(), prefix: "p".into() } => Conflict, "address_conflict", 409;
        ServerError::FixedSettings => Invalid, "fixed_settings", 400;
        TransitionError::Final(JobState::Cancelled) => Conflict, "invalid_job_state", 409;
        TransitionError::NotTransferred(JobState::Queued) => Conflict, "invalid_job_state", 409;
        TransitionError::NoFiles => Invalid, "job_has_no_files", 400;
        TransitionError::Unexpected { from: JobState::Queued, event: Event::Reloaded } => Conflict, "invalid_job_state", 409;
        JobError::NotFound(id) => NotFound, "job_not_found", 404;
        JobError::InvalidFile { remote_url: "u".into(), local_file: path(), reason: "x".into() } => Invalid, "invalid_job_file", 400;
        JobError::InvalidSetting("x".into()) => Invalid, "invalid_job_setting", 400;
        JobError::Local { path: path(), source: os_error() } => Conflict, "job_local_file", 409;
        JobError::Store { path: path(), source: os_error() } => Io, "job_store_failed", 500;
        JobError::Corrupt { path: path(), reason: "x".into() } => Io, "job_store_corrupt", 500;
        JobError::NotPrivate { path: path(), reason: "x".into() } => Invalid, "job_store_not_private", 400;
        JobError::Stopped => Internal, "job_manager_stopped", 500;
        UnknownValue { what: "priority", value: "urgent".into() } => Invalid, "invalid_job_setting", 400;
        JobIdError("x".into()) => NotFound, "job_not_found", 404;
        PrivateDirError::Io(os_error()) => Io, "private_dir_failed", 500;
        PrivateDirError::NotADirectory => Invalid, "private_dir_not_private", 400;
        PrivateDirError::Owner { owner: 1, me: 2 } => Invalid, "private_dir_not_private", 400;
        PrivateDirError::Writable(0o777) => Invalid, "private_dir_not_private", 400;
        HeaderError::TooLong => Invalid, "bad_authorization", 400;
        HeaderError::NotAscii => Invalid, "bad_authorization", 400;
        HeaderError::NoScheme => Invalid, "bad_authorization", 400;
        HeaderError::Base64 => Invalid, "bad_authorization", 400;
        HeaderError::Form => Invalid, "bad_authorization", 400;
        SpnegoError => Forbidden, "malformed_spnego", 403;
        MessageError::Truncated => Forbidden, "malformed_ntlm", 403;
        MessageError::Signature => Forbidden, "malformed_ntlm", 403;
        MessageError::Type(9) => Forbidden, "malformed_ntlm", 403;
        MessageError::Field => Forbidden, "malformed_ntlm", 403;
        MessageError::Utf16 => Forbidden, "malformed_ntlm", 403;
        MessageError::AvPairs => Forbidden, "malformed_ntlm", 403;
        MessageError::TooLong => Forbidden, "malformed_ntlm", 403;
        NtlmError::NoChallenge => Unauthorized, "unauthenticated", 401;
        NtlmError::Anonymous => Unauthorized, "unauthenticated", 401;
        NtlmError::Version1 => Unauthorized, "unauthenticated", 401;
        NtlmError::UnknownUser => Unauthorized, "unauthenticated", 401;
        NtlmError::BadProof => Unauthorized, "unauthenticated", 401;
        NtlmError::BadMic => Unauthorized, "unauthenticated", 401;
    }
}

/// Every variant that carries another error, and the crate-level `Error`: each answers as what it
/// carries.
fn wrappers() -> Vec<Row> {
    let id = JobId::random();
    rows! {
        UrlError::Suffix { suffix: "a//b".into(), source: SegmentError::Empty } => Invalid, "invalid_suffix", 400;
        UrlError::Sddl { suffix: "s".into(), source: sddl_error() } => Invalid, "invalid_sddl", 400;
        UrlError::DefaultSddl(sddl_error()) => Invalid, "invalid_sddl", 400;
        UrlError::Limit(LimitError::TooLow(1)) => Invalid, "invalid_limit", 400;
        UrlError::Auth(AuthError::Sid) => Invalid, "auth_error", 400;
        AuthError::Principals { path: path(), source: PrincipalsError::Toml(toml_error()) } => Invalid, "invalid_principals", 400;
        ServerError::Prefix(prefix_error()) => Invalid, "invalid_prefix", 400;
        ServerError::Tls(TlsError::NoKey { path: path() }) => Invalid, "tls_invalid", 400;
        ServerError::Url(UrlError::GroupDeleted("g".into())) => Conflict, "group_deleted", 409;
        JobError::Transition { id, source: TransitionError::NoFiles } => Invalid, "job_has_no_files", 400;
        JobError::Transition { id, source: TransitionError::Final(JobState::Acknowledged) } => Conflict, "invalid_job_state", 409;
        NtlmError::Message(MessageError::Truncated) => Forbidden, "malformed_ntlm", 403;
        Error::Prefix(prefix_error()) => Invalid, "invalid_prefix", 400;
        Error::Segment(SegmentError::Dot) => Invalid, "invalid_suffix", 400;
        Error::Url(UrlError::Exists { prefix: "p".into(), suffix: "s".into() }) => Conflict, "url_exists", 409;
        Error::Limit(LimitError::ZeroConnections) => Invalid, "invalid_limit", 400;
        Error::Tls(TlsError::Pkcs12 { path: path(), reason: "x".into() }) => Invalid, "tls_pkcs12", 400;
        Error::ClientCertMode(UnknownMode("x".into())) => Invalid, "invalid_client_cert_mode", 400;
        Error::Auth(AuthError::Unsupported(AuthScheme::Ntlm)) => Invalid, "scheme_unsupported", 400;
        Error::Scheme(UnknownScheme("x".into())) => Invalid, "invalid_scheme", 400;
        Error::Principals(PrincipalsError::Duplicate { kind: "group", name: "g".into() }) => Invalid, "invalid_principals", 400;
        Error::Hash(HashError::Bcrypt) => Invalid, "invalid_password_hash", 400;
        Error::Sddl(sddl_error()) => Invalid, "invalid_sddl", 400;
        Error::Sid(sid_error()) => Invalid, "invalid_sid", 400;
        Error::Server(ServerError::GroupNotFound("g".into())) => NotFound, "group_not_found", 404;
        Error::Job(JobError::Stopped) => Internal, "job_manager_stopped", 500;
    }
}

/// The client's errors: their codes are GetError's (kept in job stores), their kinds what a download
/// that fails this way is.
fn clients() -> Vec<Row> {
    let os = |kind: io::ErrorKind| ClientError::Connect {
        host: "h".into(),
        port: 1,
        source: kind.into(),
    };
    let request = http::Request::builder()
        .header("x", "\n")
        .body(())
        .unwrap_err();
    rows! {
        ClientError::Pin { input: "x".into(), reason: "x".into() } => Invalid, "invalid_setting", 400;
        ClientError::Proxy { input: "x".into(), reason: "x".into() } => Invalid, "invalid_setting", 400;
        ClientError::CaFile { path: path(), reason: "x".into() } => Invalid, "ca_file", 400;
        ClientError::ClientCertificate { path: path(), reason: "x".into() } => Invalid, "client_certificate", 400;
        os(io::ErrorKind::ConnectionRefused) => Unreachable, "connection_refused", 502;
        os(io::ErrorKind::TimedOut) => Unreachable, "timeout", 502;
        os(io::ErrorKind::Other) => Unreachable, "connect_failed", 502;
        ClientError::Timeout("the response") => Unreachable, "timeout", 502;
        ClientError::Tls(rustls_error()) => Unreachable, "tls_handshake", 502;
        ClientError::Lost(Box::new(rustls_error())) => Unreachable, "tls_handshake", 502;
        ClientError::Lost("reset".into()) => Unreachable, "connection_lost", 502;
        ClientError::ProxyRefused(407) => Unreachable, "proxy_refused", 502;
        ClientError::BasicOverHttp => Invalid, "basic_over_http", 400;
        ClientError::NoPassword => Invalid, "credentials_missing", 400;
        ClientError::Negotiate("no ticket".into()) => Unauthorized, "negotiate_failed", 401;
        ClientError::NegotiateUnavailable => Invalid, "negotiate_unavailable", 400;
        ClientError::Ntlm(MessageError::Field) => Unauthorized, "ntlm_challenge", 401;
        ClientError::Request(request) => Invalid, "invalid_request", 400;
    }
}

#[test]
fn every_variant_answers_its_kind_code_and_status() {
    // The tables check as they are built; these counts catch a row lost in an edit.
    assert_eq!(leaves().len(), 91);
    assert_eq!(wrappers().len(), 26);
    assert_eq!(clients().len(), 18);
}

#[test]
fn a_code_stands_for_one_kind() {
    let mut kinds: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for row in leaves().into_iter().chain(wrappers()).chain(clients()) {
        kinds
            .entry(row.code)
            .or_default()
            .insert(format!("{:?}", row.kind));
        assert!(
            !row.code.is_empty()
                && row
                    .code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{}: {:?} is not snake_case",
            row.label,
            row.code
        );
    }
    let many: Vec<_> = kinds.iter().filter(|(_, k)| k.len() > 1).collect();
    assert!(many.is_empty(), "{many:?}");
}

/// Distinct failures have distinct codes, except where one code is meant for several: the message then
/// says which.
#[test]
fn codes_are_shared_only_where_meant() {
    const SHARED: &[&str] = &[
        "invalid_suffix",          // every rule a path segment can break
        "invalid_limit",           // every way a rate or connection limit is refused
        "tls_invalid",             // a TLS file that holds the wrong thing, or a setup that fails
        "auth_error",              // authentication that cannot be set up
        "invalid_principals",      // anything wrong in a principals file
        "invalid_password_hash",   // every hash form that is refused
        "invalid_job_state",       // a state that does not allow the change
        "invalid_job_setting",     // a job property, priority or state out of range
        "job_not_found",           // no such job, and text that names no job
        "private_dir_not_private", // every way a directory is not this user's alone
        "bad_authorization",       // every malformed Authorization header
        "malformed_ntlm",          // every malformed NTLM message
        "unauthenticated",         // SECURITY: no failed NTLM proof says why
    ];
    let mut count: BTreeMap<&str, usize> = BTreeMap::new();
    for row in leaves() {
        *count.entry(row.code).or_default() += 1;
    }
    let shared: Vec<&str> = count
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(c, _)| c)
        .collect();
    let meant: BTreeSet<&str> = SHARED.iter().copied().collect();
    assert_eq!(shared, meant.into_iter().collect::<Vec<_>>());
}

#[test]
fn every_kind_has_a_status_and_an_exit_status() {
    for (kind, status, exit) in [
        (ErrorKind::Invalid, 400, 2),
        (ErrorKind::Unauthorized, 401, 4),
        (ErrorKind::Forbidden, 403, 4),
        (ErrorKind::NotFound, 404, 3),
        (ErrorKind::Conflict, 409, 2),
        (ErrorKind::Unavailable, 503, 1),
        (ErrorKind::Io, 500, 1),
        (ErrorKind::Internal, 500, 1),
        (ErrorKind::Unreachable, 502, 5),
        (ErrorKind::Coordinator, 503, 5),
    ] {
        assert_eq!(kind.http_status().as_u16(), status, "{kind:?}");
        assert_eq!(kind.exit_code(), exit, "{kind:?}");
    }
}

/// A 503 is a busy service, unless its code says the fleet's coordinator is down.
#[test]
fn an_answer_code_tells_a_down_coordinator_from_a_busy_service() {
    let s503 = http::StatusCode::SERVICE_UNAVAILABLE;
    assert_eq!(
        ErrorKind::from_answer(s503, crate::FLEET_UNAVAILABLE),
        Some(ErrorKind::Coordinator)
    );
    assert_eq!(
        ErrorKind::from_answer(s503, "password_checks_busy"),
        Some(ErrorKind::Unavailable)
    );
    // The code alone is not enough: only a 503 carrying it.
    assert_eq!(
        ErrorKind::from_answer(http::StatusCode::CONFLICT, crate::FLEET_UNAVAILABLE),
        Some(ErrorKind::Conflict)
    );
}

/// What a client that only sees the API's status knows: the kind, or none (exit status 1).
#[test]
fn an_api_status_stands_for_a_kind() {
    let kind =
        |status: u16| ErrorKind::from_http_status(http::StatusCode::from_u16(status).unwrap());
    for (status, expected) in [
        (400, Some(ErrorKind::Invalid)),
        (413, Some(ErrorKind::Invalid)),
        (422, Some(ErrorKind::Invalid)),
        (401, Some(ErrorKind::Unauthorized)),
        (403, Some(ErrorKind::Forbidden)),
        (404, Some(ErrorKind::NotFound)),
        (409, Some(ErrorKind::Conflict)),
        (429, Some(ErrorKind::Unavailable)),
        (503, Some(ErrorKind::Unavailable)),
        (500, Some(ErrorKind::Internal)),
        (200, None),
        (405, None),
        (502, None),
    ] {
        assert_eq!(kind(status), expected, "{status}");
    }
    // Each kind the API answers with comes back as itself (Io and Internal share 500).
    for k in [
        ErrorKind::Invalid,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ] {
        assert_eq!(ErrorKind::from_http_status(k.http_status()), Some(k));
    }
}

#[test]
fn every_domain_error_converts_and_has_a_code() {
    let prefix: Error = "ftp://x"
        .parse::<crate::url::UrlPrefix>()
        .unwrap_err()
        .into();
    assert_eq!(prefix.code(), "invalid_prefix");
    let sddl: Error = crate::authz::SecurityDescriptor::parse("D:(X;;GA;;;WD)", None)
        .unwrap_err()
        .into();
    assert_eq!(sddl.code(), "invalid_sddl");
    let scheme: Error = "kerberos5"
        .parse::<crate::auth::AuthScheme>()
        .unwrap_err()
        .into();
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
    let id = crate::jobs::JobId::random();
    let job: Error = JobError::NotFound(id).into();
    assert_eq!(job.code(), "job_not_found");
    let final_: Error = JobError::Transition {
        id,
        source: TransitionError::Final(crate::jobs::JobState::Cancelled),
    }
    .into();
    assert_eq!(final_.code(), "invalid_job_state");
}
