//! The remote management listener: TLS, callers authenticated with the URL groups' schemes and their
//! guessing limits (Basic only over this TLS, client certificates, NTLM, Negotiate where built), then the
//! admin SDDL: read access for GET, write access for changes.
//!
//! SECURITY: the threat is someone other than an administrator managing the service from the network, or
//! locking administrators out. Anonymous is 401, authenticated but not allowed is 403 — except under
//! `/v1/jobs`, where any authenticated caller may manage the jobs it owns (the router and the job
//! handlers enforce "its own"; the router refuses such a caller everywhere else again). Who may hold
//! connections, and for how long before authenticating, is `admission`'s: no one source, an anonymous
//! one included, and no caller who is not an administrator, can hold them all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use axum::Router;
use hyper::service::service_fn;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::admission::{Admission, Seat, CONNECTIONS};
use super::exchange::{call, error, serve_connection};
use crate::auth::{AuthScheme, Caller as AuthCaller, ConnectionAuth, GroupAuth, Refusal};
use crate::authz::{AccessMask, SecurityDescriptor};
use crate::service::principal::{is_jobs_path, Principal};
use crate::tls::{ClientCertificates, ClientIdentity, PortTls, ServerCertificate, TlsError};
use crate::Server;

/// Who may use the management API remotely: how they authenticate and the rule they must pass.
#[derive(Debug)]
pub struct AdminAccess {
    server: Server,
    schemes: GroupAuth,
    sddl: SecurityDescriptor,
    tls: Arc<rustls::ServerConfig>,
}

impl AdminAccess {
    /// Administrators authenticate against `server`'s principals and guessing limits, over TLS with
    /// `certificate`; client certificates are accepted when `clients` is not off; `sddl` decides (the
    /// original's rule, "local Administrators only", is `D:(A;;GA;;;BA)`).
    pub fn new(
        server: &Server,
        certificate: ServerCertificate,
        clients: ClientCertificates,
        sddl: SecurityDescriptor,
    ) -> Result<AdminAccess, TlsError> {
        let schemes = GroupAuth::default();
        let mut enabled = vec![AuthScheme::Basic, AuthScheme::Ntlm];
        if clients.mode() != crate::tls::ClientCertMode::Off {
            enabled.push(AuthScheme::ClientCertificate);
        }
        if cfg!(feature = "negotiate") {
            enabled.push(AuthScheme::Negotiate);
        }
        for scheme in enabled {
            // Setting a scheme on a fresh GroupAuth cannot fail.
            let _ = schemes.set(scheme, true);
        }
        let port = PortTls {
            default: Some(certificate),
            by_name: Default::default(),
            clients,
            http2: false,
        };
        Ok(AdminAccess {
            server: server.clone(),
            schemes,
            sddl,
            tls: port.build()?.h1,
        })
    }
}

/// Serves the management API to remote administrators on `listener` (TLS) until `shutdown`.
pub async fn serve_remote(
    listener: TcpListener,
    access: Arc<AdminAccess>,
    router: Router,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(CONNECTIONS));
    let admission = Arc::new(Admission::default());
    let acceptor = tokio_rustls::TlsAcceptor::from(access.tls.clone());
    loop {
        let Ok(permit) = (tokio::select! {
            p = permits.clone().acquire_owned() => p,
            () = shutdown.cancelled() => return,
        }) else {
            return;
        };
        let (stream, peer) = tokio::select! {
            s = listener.accept() => match s {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(target: "bits_compact::service", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let (admission, acceptor, router, access, shutdown) = (
            admission.clone(),
            acceptor.clone(),
            router.clone(),
            access.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let Some(seat) = admission.enter(peer.ip()).await else {
                tracing::debug!(target: "bits_compact::service", %peer, "too many unauthenticated connections from this source");
                return;
            };
            let seat = Arc::new(seat);
            let served = serve_tls(
                stream,
                peer,
                acceptor,
                (router, access, seat.clone()),
                shutdown,
            );
            tokio::select! {
                () = served => {}
                reason = seat.ended() => {
                    tracing::debug!(target: "bits_compact::service", %peer, reason, "connection cut");
                }
            }
            drop(permit);
        });
    }
}

/// The TLS handshake, then HTTP/1.1 with each request admitted on its own; the seat's deadline and
/// eviction bound both from outside.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    (router, access, seat): (Router, Arc<AdminAccess>, Arc<Seat>),
    shutdown: CancellationToken,
) {
    let Ok(tls) = acceptor.accept(stream).await else {
        return;
    };
    let client = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(<[_]>::first)
        .and_then(ClientIdentity::of)
        .map(Arc::new);
    let conn = Arc::new(ConnectionAuth::default());
    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
        let (router, access, conn, client, seat) = (
            router.clone(),
            access.clone(),
            conn.clone(),
            client.clone(),
            seat.clone(),
        );
        async move {
            let caller = AuthCaller {
                peer,
                secure: true,
                certificate: client.as_deref(),
                connection: &conn,
            };
            Ok::<_, std::convert::Infallible>(admit(req, caller, &access, &seat, router).await)
        }
    });
    serve_connection(tls, svc, shutdown).await;
}

/// Authenticates and authorizes one remote request (before its body is read), seats its connection for
/// the caller, then serves it.
async fn admit(
    req: Request<hyper::body::Incoming>,
    caller: AuthCaller<'_>,
    access: &AdminAccess,
    seat: &Seat,
    router: Router,
) -> Response<Body> {
    let peer = caller.peer;
    let auth = &access.server.site().auth;
    let granted = match auth
        .authenticate(req.headers(), &access.schemes, "bcs management", caller)
        .await
    {
        Ok(granted) => granted,
        Err(refusal) => return refused(refusal),
    };
    let identity = granted.identity;
    if !identity.is_authenticated() {
        let challenges = access.schemes.challenges(true, "bcs management");
        return refused(Refusal::Challenge(challenges));
    }
    let wanted = match *req.method() {
        Method::GET | Method::HEAD => AccessMask::FILE_READ_DATA,
        _ => AccessMask::FILE_WRITE_DATA,
    };
    let who = format!(
        "{} ({:?}) from {peer}",
        identity.name(),
        identity.mechanism()
    );
    let admin = access.sddl.access_check(&identity.token(), wanted).allowed;
    // Anyone authenticated may manage their own download jobs (as BITS lets users own theirs); everything
    // else needs the admin rule.
    if !admin && !is_jobs_path(req.uri().path()) {
        tracing::warn!(target: "bits_compact::service", %who, method = %req.method(), path = %req.uri().path(), "refused by the admin SDDL");
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this identity may not manage the service",
        );
    }
    let name = owner_name(&identity);
    // Administrators count as such for their connections whatever this request asks for.
    let reads = access
        .sddl
        .access_check(&identity.token(), AccessMask::FILE_READ_DATA);
    if seat.authenticated(&name, admin || reads.allowed).is_err() {
        tracing::debug!(target: "bits_compact::service", %who, "too many connections for this caller");
        return busy();
    }
    let principal = Principal { name, admin };
    let mut response = call(router, req, who, principal).await;
    if let Some(reply) = granted.reply {
        if let Ok(value) = HeaderValue::from_str(&reply) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
    }
    response
}

/// A caller over its share of connections: 503, and this connection closed, which gives its place back.
fn busy() -> Response<Body> {
    let mut response = error(
        StatusCode::SERVICE_UNAVAILABLE,
        "busy",
        "too many connections from this caller; retry later",
    );
    let h = response.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// Authentication's answer, as a JSON response: the status and headers every listener gives it (the
/// refusal's own), with our error body.
fn refused(refusal: Refusal) -> Response<Body> {
    let (code, message) = match &refusal {
        Refusal::Challenge(_) => (
            "unauthenticated",
            "authenticate as an administrator".to_owned(),
        ),
        Refusal::Malformed(e) => ("bad_authorization", e.to_string()),
        Refusal::BadToken(why) => ("bad_authorization", (*why).to_owned()),
        Refusal::Forbidden(why) => ("forbidden", (*why).to_owned()),
        Refusal::Limited(_) => (
            "too_many_failures",
            "too many failed attempts; wait and retry".to_owned(),
        ),
        Refusal::Busy => ("busy", "too many password checks at once; retry".to_owned()),
    };
    let mut response = error(refusal.status(), code, &message);
    refusal.add_headers(response.headers_mut());
    response
}

/// The name a remote caller's jobs are owned by: its name with its SID, else with how it authenticated.
///
/// SECURITY: ownership is compared exactly, and names alone collide across schemes and case (a client
/// certificate whose CN is `bob@REALM`, a Kerberos principal `Bob@REALM`, the principals user `bob`), so
/// the owner carries what tells identities apart: the SID, which names are mapped to, or else the scheme
/// (tested by `owners_differ_by_scheme_and_sid` below).
fn owner_name(identity: &crate::auth::Identity) -> String {
    match identity.user_sid() {
        Some(sid) => format!("{} ({sid})", identity.name()),
        None => format!("{} ({:?})", identity.name(), identity.mechanism()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Identity, Mechanism};

    #[test]
    fn owners_differ_by_scheme_and_sid() {
        let kerberos = owner_name(&Identity::derived("bob@REALM", Mechanism::Kerberos));
        let upper = owner_name(&Identity::derived("Bob@REALM", Mechanism::Kerberos));
        let anonymous = owner_name(&Identity::anonymous());
        assert_ne!(kerberos, upper);
        assert!(
            kerberos.starts_with("bob@REALM (S-1-5-21-0-0-0-"),
            "{kerberos}"
        );
        assert_eq!(anonymous, "anonymous (Anonymous)");
        let bob = Principal {
            name: kerberos.clone(),
            admin: false,
        };
        assert!(bob.may_manage(&kerberos));
        assert!(!bob.may_manage(&upper));
        assert!(!bob.may_manage("bob@REALM (ClientCertificate)"));
        assert!(!bob.may_manage("bob@REALM"));
    }

    /// A refusal gets the file server's status and headers here too, with a JSON body.
    #[test]
    fn refusals_are_answered_as_the_file_server_answers_them() {
        let bad = refused(Refusal::BadToken("malformed NTLM NEGOTIATE message"));
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let busy = refused(Refusal::Busy);
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        let challenge = refused(Refusal::Challenge(vec!["NTLM".into()]));
        assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(challenge.headers()[header::WWW_AUTHENTICATE], "NTLM");
    }
}
