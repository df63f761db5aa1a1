//! The management listeners: a Unix socket for the local machine, and an optional TLS port for remote
//! administrators. Each identifies the caller, decides whether they may manage, and hands the request to
//! the API router with who they are.
//!
//! SECURITY: the threat is someone other than an administrator changing what is served (publishing any
//! file the service can read), or reading how it is configured. Locally, the socket is mode 0600 in a
//! 0700 state directory, and each connection's peer uid (from the kernel, `SO_PEERCRED`) must be root or
//! the service's own user; anyone else gets 403 on every request. Remotely, callers authenticate with the
//! URL groups' schemes and their guessing limits (Basic only over this TLS, client certificates, NTLM,
//! Negotiate where built) and must pass the admin SDDL: read access for GET, write access for changes;
//! anonymous is 401, authenticated but not allowed is 403 — except under `/v1/jobs`, where any
//! authenticated caller may manage the jobs it owns (the router and the job handlers enforce "its own";
//! the router refuses such a caller everywhere else again). Both listeners bound what clients can hold:
//! connections at once (and, remotely, per client address), the header wait and the body's time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::error::ErrorBody;
use super::principal::{is_jobs_path, CallerName, Principal};
use crate::auth::{AuthScheme, Caller as AuthCaller, ConnectionAuth, GroupAuth, Refusal};
use crate::authz::{AccessMask, SecurityDescriptor};
use crate::tls::{ClientCertificates, ClientIdentity, PortTls, ServerCertificate, TlsError};
use crate::Server;

/// Connections at once on each management listener.
const MAX_CONNECTIONS: usize = 64;
/// Connections at once from one client address on the remote listener, so that no one source (an
/// anonymous one included) can hold every connection and lock administrators out.
const MAX_PER_SOURCE: usize = 8;
/// How long a client may take to send a request's header (and how long a kept-alive connection waits).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's body. The change it asks for runs only once the body
/// is whole, and is never cut short: a timeout then would answer "failed" for a change that happens.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// The TLS handshake deadline.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Serves the management API on `listener` (from [`bind_local`]) until `shutdown`; removes the socket at
/// `path` when it returns.
pub async fn serve_local(
    listener: UnixListener,
    path: &Path,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let own = rustix::process::geteuid().as_raw();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
            () = shutdown.cancelled() => break,
        };
        let stream = tokio::select! {
            s = listener.accept() => match s {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(target: "bits_compact::service", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let uid = stream.peer_cred().ok().map(|c| c.uid());
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let allowed = uid.is_some_and(|u| u == 0 || u == own);
            let who = match uid {
                Some(u) => format!("uid {u} (local)"),
                None => "unknown uid (local)".to_owned(),
            };
            let principal = Principal {
                name: uid.map(user_name).unwrap_or_default(),
                admin: allowed,
            };
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let router = router.clone();
                let who = who.clone();
                let principal = principal.clone();
                async move {
                    if !allowed {
                        tracing::warn!(target: "bits_compact::service", %who, "refused: not root or the service's user");
                        return Ok::<_, std::convert::Infallible>(error(
                            StatusCode::FORBIDDEN,
                            "refused",
                            "only root and the service's own user may manage it",
                        ));
                    }
                    Ok(call(router, req, who, principal).await)
                }
            });
            serve_connection(stream, svc, shutdown).await;
            drop(permit);
        });
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}

/// Binds the management socket at `path` with mode 0600; replaces a stale socket file left by a crash,
/// never anything else, and refuses one another service still listens on.
pub fn bind_local(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: is another bcs serve running?",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves the management API to remote administrators on `listener` (TLS) until `shutdown`.
pub async fn serve_remote(
    listener: TcpListener,
    access: Arc<AdminAccess>,
    router: Router,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let sources = Arc::new(Sources::default());
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
        let Some(slot) = sources.take(peer.ip()) else {
            tracing::debug!(target: "bits_compact::service", %peer, "too many connections from this address");
            continue;
        };
        let (router, access, acceptor, shutdown) = (
            router.clone(),
            access.clone(),
            acceptor.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                _ => return,
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
                let (router, access, conn, client) =
                    (router.clone(), access.clone(), conn.clone(), client.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        admit(req, peer, &access, &conn, client.as_deref(), router).await,
                    )
                }
            });
            serve_connection(tls, svc, shutdown).await;
            drop((permit, slot));
        });
    }
}

/// Authenticates and authorizes one remote request, then serves it.
async fn admit(
    req: Request<hyper::body::Incoming>,
    peer: SocketAddr,
    access: &AdminAccess,
    conn: &ConnectionAuth,
    client: Option<&ClientIdentity>,
    router: Router,
) -> Response<Body> {
    let caller = AuthCaller {
        peer,
        secure: true,
        certificate: client,
        connection: conn,
    };
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
    let who = format!("{} ({:?}) from {peer}", identity.name(), identity.scheme());
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
    let principal = Principal {
        name: owner_name(&identity),
        admin,
    };
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

/// Hands a request to the router with who is calling; its body must arrive within the body deadline.
async fn call(
    router: Router,
    req: Request<hyper::body::Incoming>,
    who: String,
    principal: Principal,
) -> Response<Body> {
    let mut req = req.map(|body| {
        Body::new(Deadline {
            inner: body,
            expires: Box::pin(tokio::time::sleep(BODY_TIMEOUT)),
        })
    });
    req.extensions_mut().insert(CallerName(who));
    req.extensions_mut().insert(principal);
    match router.oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// A request body that fails once its deadline passes (a client trickling a body holds nothing longer).
struct Deadline {
    inner: hyper::body::Incoming,
    expires: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for Deadline {
    type Data = bytes::Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if std::future::Future::poll(self.expires.as_mut(), cx).is_ready() {
            return std::task::Poll::Ready(Some(Err("the request body took too long".into())));
        }
        std::pin::Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Connections per client address; a slot is given back when its guard drops.
#[derive(Default)]
struct Sources(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>);

struct SourceSlot {
    sources: Arc<Sources>,
    ip: std::net::IpAddr,
}

impl Sources {
    fn take(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<SourceSlot> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_default();
        if *n >= MAX_PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            sources: self.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut map = self.sources.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves HTTP/1.1 on one connection under the header deadline, finishing its request on shutdown.
async fn serve_connection<I, S>(io: I, svc: S, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            Request<hyper::body::Incoming>,
            Response = Response<Body>,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// A JSON error response.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = ErrorBody {
        code: code.to_owned(),
        message: message.to_owned(),
    };
    (status, axum::Json(body)).into_response()
}

/// Authentication's answer, as a JSON response.
fn refused(refusal: Refusal) -> Response<Body> {
    match refusal {
        Refusal::Challenge(challenges) => {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "authenticate as an administrator",
            );
            for c in challenges {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    r.headers_mut().append(header::WWW_AUTHENTICATE, v);
                }
            }
            r
        }
        Refusal::Malformed(e) => {
            error(StatusCode::BAD_REQUEST, "bad_authorization", &e.to_string())
        }
        Refusal::BadToken(why) | Refusal::Forbidden(why) => {
            error(StatusCode::FORBIDDEN, "forbidden", why)
        }
        Refusal::Limited(limited) => {
            let secs = limited.retry_after.as_millis().div_ceil(1000);
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_failures",
                "too many failed attempts; wait and retry",
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Refusal::Busy => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many password checks at once; retry",
        ),
    }
}

/// The user name of `uid` from the password database (`/etc/passwd`), else `uid N`.
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id: u32 = fields.nth(1)?.parse().ok()?;
            (id == uid && !name.is_empty()).then(|| name.to_owned())
        })
        .next()
        .unwrap_or_else(|| format!("uid {uid}"))
}

/// Where the service keeps its state: `$BCS_STATE` when set, else `/var/lib/bcs` as root, else
/// `$XDG_STATE_HOME/bcs` (by default `~/.local/state/bcs`).
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BCS_STATE").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if rustix::process::geteuid().is_root() {
        return Some(PathBuf::from("/var/lib/bcs"));
    }
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    xdg.or_else(|| {
        std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .map(|h| PathBuf::from(h).join(".local/state"))
    })
    .map(|base| base.join("bcs"))
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
        None => format!("{} ({:?})", identity.name(), identity.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Identity, Scheme};

    #[test]
    fn owners_differ_by_scheme_and_sid() {
        let kerberos = owner_name(&Identity::derived("bob@REALM", Scheme::Kerberos));
        let upper = owner_name(&Identity::derived("Bob@REALM", Scheme::Kerberos));
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
}
