//! Step 3 of the request path: authentication (the group's schemes) and authorization (the URL's SDDL
//! against the identity's token).
//!
//! SECURITY: the threats are reading a file without the right identity, and guessing passwords. Every
//! caller, anonymous included, is checked against the URL's SDDL; a URL without one, in a group with any
//! scheme enabled, admits authenticated users only. An anonymous caller denied is challenged (401) or, when
//! no scheme can be offered to it, refused (403). Credentials of a scheme the group does not enable are
//! ignored, never trusted. Basic is refused over plain HTTP unless the group allows it; its passwords are checked on the
//! server's few password-check threads, and failures are limited per client source and per account.

use http::header;
use http::Request;
use hyper::body::Incoming;

use super::negotiate;
use super::response::Reject;
use super::service::{ConnAuth, ConnInfo};
use crate::auth::basic::{self, Credentials};
use crate::auth::ntlm::{messages, NtlmError};
use crate::auth::spnego;
use crate::auth::{
    AuthScheme, Identity, Password, PasswordHash, Principals, Scheme, TooManyChecks,
};
use crate::authz::{AccessMask, SecurityDescriptor};
use crate::server::Shared;
use crate::url::{UrlEntry, UrlGroup};

/// A caller let in: who, and the last token of a handshake to send back with the response (SPNEGO's
/// accept-completed, Kerberos's mutual-authentication token).
#[derive(Debug)]
pub(crate) struct Granted {
    pub(crate) identity: Identity,
    pub(crate) reply: Option<String>,
}

impl From<Identity> for Granted {
    fn from(identity: Identity) -> Self {
        Granted {
            identity,
            reply: None,
        }
    }
}

/// Who the caller is, if the URL lets them read it.
///
/// The IIS model (SPEC: the SDDL decides for every caller, anonymous included): the URL's SDDL, else for a
/// group with schemes `D:(A;;GA;;;AU)`, else nothing (everyone may read). Only a caller that is denied while
/// anonymous is challenged (401), or refused with 403 where no scheme can challenge it; an authenticated
/// caller that is denied gets 403.
pub(crate) async fn check(
    req: &Request<Incoming>,
    group: &UrlGroup,
    entry: &UrlEntry,
    shared: &Shared,
    conn: &ConnInfo,
) -> Result<Granted, Reject> {
    let granted = authenticate(req, group, shared, conn).await?;
    let identity = &granted.identity;
    let auth = group.auth();
    let rule = entry
        .sddl
        .as_ref()
        .or_else(|| auth.any_enabled().then(|| &*AUTHENTICATED_USERS));
    let Some(sd) = rule else {
        return Ok(granted);
    };
    if authorize(req, sd, identity) {
        return Ok(granted);
    }
    if identity.is_authenticated() {
        return Err(Reject::Denied);
    }
    let challenges = auth.challenges(conn.secure, &group.prefix().to_string());
    Err(if !challenges.is_empty() {
        Reject::Unauthorized(challenges)
    } else if auth.is_enabled(AuthScheme::ClientCertificate) {
        Reject::Forbidden("a client certificate is required")
    } else if auth.any_enabled() {
        Reject::Forbidden("authentication is only offered over HTTPS")
    } else {
        Reject::Denied
    })
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

async fn authenticate(
    req: &Request<Incoming>,
    group: &UrlGroup,
    shared: &Shared,
    conn: &ConnInfo,
) -> Result<Granted, Reject> {
    let auth = group.auth();
    if !auth.any_enabled() {
        // No scheme: every caller is anonymous, whatever credentials it sends (and no lock is taken).
        return Ok(Identity::anonymous().into());
    }
    let principals = shared.principals.load_full();
    let identity = match &conn.client {
        Some(cert) if auth.is_enabled(AuthScheme::ClientCertificate) => {
            Identity::from_client_certificate(cert, principals.as_deref())
        }
        _ => Identity::anonymous(),
    };
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        // A connection that proved itself with NTLM stays authenticated (MS-NTHT §2.2.1).
        let proved = lock(conn).identity.clone();
        let identity = proved
            .filter(|_| auth.is_connection_bound())
            .unwrap_or(identity);
        return Ok(identity.into());
    };
    match basic::parse(value.as_bytes())? {
        Credentials::Other { scheme, token }
            if scheme == "ntlm" && auth.is_enabled(AuthScheme::Ntlm) =>
        {
            let raw = decode(&token)?;
            ntlm(group, shared, conn, &raw, Wrap::Ntlm, principals.as_deref())
        }
        Credentials::Other { scheme, token }
            if scheme == "negotiate" && auth.is_enabled(AuthScheme::Negotiate) =>
        {
            let raw = decode(&token)?;
            negotiate::leg(group, shared, conn, &raw, principals.as_deref()).await
        }
        Credentials::Basic { user, password } if auth.is_enabled(AuthScheme::Basic) => {
            if !conn.secure && !auth.basic_over_http() {
                return Err(Reject::Forbidden("Basic authentication needs HTTPS"));
            }
            let attempt = shared.failures.attempt(conn.peer.ip(), Some(&user))?;
            match verify_basic(shared, principals, user.clone(), password).await? {
                Some(identity) => {
                    attempt.succeeded();
                    Ok(identity.into())
                }
                None => {
                    tracing::info!(target: "bits_compact::auth", %user, peer = %conn.peer, "Basic authentication failed");
                    Err(unauthorized(group, conn))
                }
            }
        }
        _ => Ok(identity.into()),
    }
}

/// 401 with the group's challenges for this connection.
pub(crate) fn unauthorized(group: &UrlGroup, conn: &ConnInfo) -> Reject {
    let realm = group.prefix().to_string();
    Reject::Unauthorized(group.auth().challenges(conn.secure, &realm))
}

fn decode(token: &str) -> Result<Vec<u8>, Reject> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| Reject::BadRequest("the authentication token is not valid base64"))
}

pub(crate) fn lock(conn: &ConnInfo) -> std::sync::MutexGuard<'_, ConnAuth> {
    conn.auth.lock().unwrap_or_else(|e| e.into_inner())
}

/// How an NTLM token travelled, and so how to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrap {
    /// `Authorization: NTLM <token>`.
    Ntlm,
    /// `Authorization: Negotiate <bare NTLM token>`.
    NegotiateRaw,
    /// `Authorization: Negotiate <SPNEGO token carrying NTLM>`.
    Spnego,
}

impl Wrap {
    fn header(self, ntlm_token: &[u8], first: bool) -> String {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match self {
            Wrap::Ntlm => format!("NTLM {}", b64(ntlm_token)),
            Wrap::NegotiateRaw => format!("Negotiate {}", b64(ntlm_token)),
            Wrap::Spnego => {
                let mech = first.then_some(spnego::NTLMSSP);
                let resp = spnego::resp(
                    spnego::state::ACCEPT_INCOMPLETE,
                    mech,
                    Some(ntlm_token),
                    None,
                );
                format!("Negotiate {}", b64(&resp))
            }
        }
    }
}

/// One leg of the NTLM handshake on this connection: NEGOTIATE is answered with a CHALLENGE (401, and the
/// connection is kept); AUTHENTICATE is verified and, if right, the connection is authenticated. On success
/// the reply is the final SPNEGO token, when NTLM came wrapped in SPNEGO.
pub(crate) fn ntlm(
    group: &UrlGroup,
    shared: &Shared,
    conn: &ConnInfo,
    raw: &[u8],
    wrap: Wrap,
    principals: Option<&Principals>,
) -> Result<Granted, Reject> {
    let kind = messages::message_type(raw)
        .map_err(|_| Reject::BadRequest("the NTLM token is not an NTLM message"))?;
    let mut state = lock(conn);
    let names = &shared.config.ntlm_names;
    match kind {
        1 => {
            // A new handshake replaces whatever the connection proved before.
            state.identity = None;
            let challenge = state
                .ntlm
                .challenge(raw, &names.0, &names.1)
                .map_err(|_| Reject::BadRequest("malformed NTLM NEGOTIATE message"))?;
            Err(Reject::Unauthorized(vec![wrap.header(&challenge, true)]))
        }
        3 => {
            // The account as the message names it, to limit guesses at it before anything is verified.
            let account = messages::Authenticate::parse(raw).ok().map(|m| m.user);
            let attempt = shared
                .failures
                .attempt(conn.peer.ip(), account.as_deref())?;
            let mech_list = state.spnego_mech_list.take();
            let client_mic = state.spnego_mic.take();
            let verified = principals.ok_or(NtlmError::UnknownUser).and_then(|p| {
                let done = state.ntlm.authenticate(raw, p)?;
                let server_mic = spnego_mic(wrap, &done.session, mech_list, client_mic)?;
                let groups = p.group_sids(done.user);
                let identity =
                    Identity::user(done.name, Scheme::Ntlm, done.user.sid.clone(), groups);
                Ok((identity, server_mic))
            });
            match verified {
                Ok((identity, server_mic)) => {
                    attempt.succeeded();
                    state.identity = Some(identity.clone());
                    let reply = (wrap == Wrap::Spnego).then(|| {
                        use base64::Engine as _;
                        let done = spnego::resp(
                            spnego::state::ACCEPT_COMPLETED,
                            None,
                            None,
                            server_mic.as_ref().map(|m| &m[..]),
                        );
                        format!(
                            "Negotiate {}",
                            base64::engine::general_purpose::STANDARD.encode(done)
                        )
                    });
                    Ok(Granted { identity, reply })
                }
                Err(NtlmError::Message(_)) => {
                    Err(Reject::BadRequest("malformed NTLM AUTHENTICATE message"))
                }
                Err(e) => {
                    tracing::info!(target: "bits_compact::auth", error = %e, peer = %conn.peer, "NTLM authentication failed");
                    Err(unauthorized(group, conn))
                }
            }
        }
        _ => Err(Reject::BadRequest("unexpected NTLM message type")),
    }
}

/// SPNEGO's mechListMIC (RFC 4178 §5): when the client signed the mechanism list it offered, the signature
/// must verify under the NTLM session, and we sign the list back. SECURITY: this is what stops a
/// man-in-the-middle from stripping stronger mechanisms from the client's list.
fn spnego_mic(
    wrap: Wrap,
    session: &crate::auth::ntlm::Session,
    mech_list: Option<Vec<u8>>,
    client_mic: Option<Vec<u8>>,
) -> Result<Option<[u8; 16]>, NtlmError> {
    match (wrap, mech_list, client_mic) {
        (Wrap::Spnego, Some(list), Some(mic)) => {
            if !session.verify(&list, &mic) {
                return Err(NtlmError::BadMic);
            }
            Ok(Some(session.sign(
                crate::auth::ntlm::Direction::ServerToClient,
                0,
                &list,
            )))
        }
        _ => Ok(None),
    }
}

/// Checks a Basic password on the server's password-check threads (argon2 and bcrypt are slow and
/// memory-hungry on purpose). An unknown user costs the same as a wrong password.
async fn verify_basic(
    shared: &Shared,
    principals: Option<std::sync::Arc<Principals>>,
    user: String,
    password: Password,
) -> Result<Option<Identity>, Reject> {
    let check = move || {
        let found = principals.as_deref().and_then(|p| p.user(&user));
        let hash = found.and_then(|(_, u)| u.password.as_ref());
        if !PasswordHash::verify_or_stand_in(hash, &password) {
            return None;
        }
        let (p, (name, found)) = (principals.as_deref()?, found?);
        let groups = p.group_sids(found);
        Some(Identity::user(
            name,
            Scheme::Basic,
            found.sid.clone(),
            groups,
        ))
    };
    shared
        .checks
        .run(check)
        .await
        .map_err(|_: TooManyChecks| Reject::ChecksBusy)
}

/// The access rule against the caller's token; GET and HEAD ask for FILE_READ_DATA. A denial is logged
/// with the identity, the URL and the deciding ACE.
fn authorize(req: &Request<Incoming>, sd: &SecurityDescriptor, identity: &Identity) -> bool {
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
