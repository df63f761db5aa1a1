//! Step 3 of the request path: authentication (`auth`, one call) and authorization (the URL's SDDL against
//! the identity's token), and their answers as responses.
//!
//! SECURITY: the threats are reading a file without the right identity, and guessing passwords. Every
//! caller, anonymous included, is checked against the URL's SDDL; a URL without one, in a group with any
//! scheme enabled, admits authenticated users only. An anonymous caller denied is challenged (401) or, when
//! no scheme can be offered to it, refused (403). Credentials of a scheme the group does not enable are
//! ignored, never trusted (see `auth::authenticator`).

use http::Request;

use super::peer::ConnInfo;
use super::response::Reject;
use super::site::Site;
use crate::auth::{AuthScheme, Caller, Granted, Identity, Refusal};
use crate::authz::{AccessMask, SecurityDescriptor};
use crate::url::{UrlEntry, UrlGroup};

/// Who the caller is, if the URL lets them read it.
///
/// The IIS model (the SDDL decides for every caller, anonymous included): the URL's SDDL, else for a
/// group with schemes `D:(A;;GA;;;AU)`, else nothing (everyone may read). Only a caller that is denied while
/// anonymous is challenged (401), or refused with 403 where no scheme can challenge it; an authenticated
/// caller that is denied gets 403.
pub(crate) async fn check<B>(
    req: &Request<B>,
    group: &UrlGroup,
    entry: &UrlEntry,
    site: &Site,
    conn: &ConnInfo,
) -> Result<Granted, Reject> {
    let granted = authenticate(req, group, site, conn).await?;
    let Some(sd) = rule(group, entry) else {
        return Ok(granted);
    };
    if authorize(req, sd, &granted.identity) {
        return Ok(granted);
    }
    Err(denied(group, conn, &granted.identity))
}

/// Who the caller is, under the group's schemes.
pub(crate) async fn authenticate<B>(
    req: &Request<B>,
    group: &UrlGroup,
    site: &Site,
    conn: &ConnInfo,
) -> Result<Granted, Reject> {
    let caller = Caller {
        peer: conn.peer,
        secure: conn.secure,
        certificate: conn.client.as_deref(),
        connection: &conn.auth,
    };
    // Only a group with schemes names its realm: rendering the prefix per request was a visible share of
    // a small file's request path (perf, issue 15).
    let realm = if group.auth().any_enabled() {
        group.prefix().to_string()
    } else {
        String::new()
    };
    site.auth
        .authenticate(req.headers(), group.auth(), &realm, caller)
        .await
        .map_err(Reject::Refused)
}

/// The rule a URL is read under: its SDDL, else for a group with schemes authenticated users, else none.
fn rule<'a>(group: &UrlGroup, entry: &'a UrlEntry) -> Option<&'a SecurityDescriptor> {
    entry
        .sddl
        .as_ref()
        .or_else(|| group.auth().any_enabled().then(|| &*AUTHENTICATED_USERS))
}

/// Whether `identity` may read the URL, deciding quietly (for the index, which lists what may be read).
pub(crate) fn may_read(group: &UrlGroup, entry: &UrlEntry, identity: &Identity) -> bool {
    rule(group, entry).is_none_or(|sd| {
        sd.access_check(&identity.token(), AccessMask::FILE_READ_DATA)
            .allowed
    })
}

/// The answer to a caller who may not read: an authenticated one is refused (403); an anonymous one is
/// challenged (401) or, where no scheme can challenge it here, refused (403).
pub(crate) fn denied(group: &UrlGroup, conn: &ConnInfo, identity: &Identity) -> Reject {
    if identity.is_authenticated() {
        return Reject::Denied;
    }
    let auth = group.auth();
    let challenges = auth.challenges(conn.secure, &group.prefix().to_string());
    if !challenges.is_empty() {
        Reject::Refused(Refusal::Challenge(challenges))
    } else if auth.is_enabled(AuthScheme::ClientCertificate) {
        Reject::Forbidden("a client certificate is required")
    } else if auth.any_enabled() {
        Reject::Forbidden("authentication is only offered over HTTPS")
    } else {
        Reject::Denied
    }
}

/// The rule of a URL without SDDL in a group with schemes: authenticated users only (IIS's default).
static AUTHENTICATED_USERS: std::sync::LazyLock<SecurityDescriptor> =
    std::sync::LazyLock::new(|| {
        // The text is constant and parses; were it not to, an empty DACL (no one) fails closed.
        SecurityDescriptor::parse("D:(A;;GA;;;AU)", None).unwrap_or_else(|_| SecurityDescriptor {
            dacl: Some(Default::default()),
            ..Default::default()
        })
    });

/// The access rule against the caller's token; GET and HEAD ask for FILE_READ_DATA. A denial is logged
/// with the identity, the URL and the deciding ACE.
fn authorize<B>(req: &Request<B>, sd: &SecurityDescriptor, identity: &Identity) -> bool {
    let decision = sd.access_check(&identity.token(), AccessMask::FILE_READ_DATA);
    if decision.allowed {
        return true;
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
    false
}
