//! Step 3 of the request path: authentication (the group's schemes) and authorization (the URL's SDDL
//! against the identity's token).
//!
//! SECURITY: the threats are reading a file without the right identity, and guessing passwords. A group
//! with any scheme enabled serves no anonymous caller: it is challenged (401) or, when no scheme can be
//! offered to it, refused (403). Credentials of a scheme the group does not enable are ignored, never
//! trusted. Basic is refused over plain HTTP unless the group allows it; its passwords are checked on the
//! blocking pool, and failures are limited per client address.

use http::header;
use http::Request;
use hyper::body::Incoming;

use super::response::Reject;
use super::service::ConnInfo;
use crate::auth::basic::{self, Credentials};
use crate::auth::{AuthScheme, Identity, Password, Principals, Scheme};
use crate::authz::AccessMask;
use crate::server::Shared;
use crate::url::{UrlEntry, UrlGroup};

/// Who the caller is, if the URL lets them read it.
pub(crate) async fn check(
    req: &Request<Incoming>,
    group: &UrlGroup,
    entry: &UrlEntry,
    shared: &Shared,
    conn: &ConnInfo,
) -> Result<Identity, Reject> {
    let identity = authenticate(req, group, shared, conn).await?;
    let auth = group.auth();
    if !identity.is_authenticated() && auth.any_enabled() {
        let challenges = auth.challenges(conn.secure, &group.prefix().to_string());
        return Err(if !challenges.is_empty() {
            Reject::Unauthorized(challenges)
        } else if auth.is_enabled(AuthScheme::ClientCertificate) {
            Reject::Forbidden("a client certificate is required")
        } else {
            Reject::Forbidden("authentication is only offered over HTTPS")
        });
    }
    authorize(req, entry, &identity)?;
    Ok(identity)
}

async fn authenticate(
    req: &Request<Incoming>,
    group: &UrlGroup,
    shared: &Shared,
    conn: &ConnInfo,
) -> Result<Identity, Reject> {
    let auth = group.auth();
    let principals = shared.principals.load_full();
    let identity = match &conn.client {
        Some(cert) if auth.is_enabled(AuthScheme::ClientCertificate) => {
            Identity::from_client_certificate(cert, principals.as_deref())
        }
        _ => Identity::anonymous(),
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        return Ok(identity);
    };
    match basic::parse(value.as_bytes())? {
        Credentials::Basic { user, password } if auth.is_enabled(AuthScheme::Basic) => {
            if !conn.secure && !auth.basic_over_http() {
                return Err(Reject::Forbidden("Basic authentication needs HTTPS"));
            }
            let ip = conn.peer.ip();
            if !shared.failures.allows(ip) {
                return Err(Reject::TooManyFailures);
            }
            match verify_basic(principals, user.clone(), password).await {
                Some(identity) => Ok(identity),
                None => {
                    shared.failures.failed(ip);
                    tracing::info!(target: "bits_compact::auth", %user, peer = %conn.peer, "Basic authentication failed");
                    let realm = group.prefix().to_string();
                    Err(Reject::Unauthorized(auth.challenges(conn.secure, &realm)))
                }
            }
        }
        _ => Ok(identity),
    }
}

/// Checks a Basic password on the blocking pool (argon2 and bcrypt are slow on purpose).
async fn verify_basic(
    principals: Option<std::sync::Arc<Principals>>,
    user: String,
    password: Password,
) -> Option<Identity> {
    let principals = principals?;
    tokio::task::spawn_blocking(move || {
        let (name, found) = principals.user(&user)?;
        if !found.password.as_ref()?.verify(&password) {
            return None;
        }
        let groups = principals.group_sids(found);
        Some(Identity::user(
            name,
            Scheme::Basic,
            found.sid.clone(),
            groups,
        ))
    })
    .await
    .ok()
    .flatten()
}

/// The URL's SDDL against the caller's token. GET and HEAD ask for FILE_READ_DATA.
fn authorize(req: &Request<Incoming>, entry: &UrlEntry, identity: &Identity) -> Result<(), Reject> {
    let Some(sd) = &entry.sddl else {
        return Ok(());
    };
    let decision = sd.access_check(&identity.token(), AccessMask::FILE_READ_DATA);
    if decision.allowed {
        return Ok(());
    }
    let deciding = decision
        .ace
        .and_then(|i| sd.dacl.as_ref()?.aces.get(i))
        .map_or_else(|| "no ACE grants it".to_owned(), ToString::to_string);
    tracing::info!(
        target: "bits_compact::authz",
        identity = identity.name(),
        url = %req.uri(),
        ace = %deciding,
        "access denied"
    );
    Err(Reject::Denied)
}
