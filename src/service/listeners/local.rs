//! The local management listener: a Unix socket, mode 0600 in a 0700 state directory, whose callers are
//! told apart by their peer uid.
//!
//! SECURITY: the threat is another local user managing the service. Each connection's peer uid comes from
//! the kernel (`SO_PEERCRED`) and must be root or the service's own user; anyone else gets 403 on every
//! request.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{Request, StatusCode};
use axum::Router;
use hyper::service::service_fn;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::exchange::{call, error, serve_connection, MAX_CONNECTIONS};
use crate::service::principal::Principal;

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
