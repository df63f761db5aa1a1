//! One leg of `Authorization: Negotiate`: NTLM (bare, or wrapped in SPNEGO) goes to our NTLM acceptor, so a
//! Negotiate-only group also serves clients without a ticket; Kerberos goes to MIT GSS-API (the
//! `negotiate` feature) with the acceptor credential from the keytab (KRB5_KTNAME).
//!
//! SECURITY: the threats are a forged or replayed Kerberos authenticator and a hostile token. GSS-API
//! checks the ticket against the keytab and MIT's replay cache refuses an authenticator seen before, so an
//! Authorization header captured from one connection fails on another; the SPNEGO parser is total and
//! fuzzed. The context lives with the connection and is dropped with it.

use super::access::{self, Granted, Wrap};
use super::response::Reject;
use super::service::ConnInfo;
use crate::auth::spnego::{self, Token};
use crate::auth::Principals;
use crate::server::Shared;
use crate::url::UrlGroup;

pub(crate) async fn leg(
    group: &UrlGroup,
    shared: &Shared,
    conn: &ConnInfo,
    raw: &[u8],
    principals: Option<&Principals>,
) -> Result<Granted, Reject> {
    let token = spnego::parse(raw).map_err(|_| Reject::BadRequest("malformed SPNEGO token"))?;
    let ntlm = |t: &[u8]| t.starts_with(b"NTLMSSP\0");
    match token {
        Token::RawNtlm(t) => access::ntlm(group, shared, conn, t, Wrap::NegotiateRaw, principals),
        Token::Init {
            mech_token: Some(t),
            mech_list,
            ..
        } if ntlm(t) => {
            access::lock(conn).spnego_mech_list = Some(mech_list.to_vec());
            access::ntlm(group, shared, conn, t, Wrap::Spnego, principals)
        }
        Token::Resp {
            response_token: Some(t),
            mech_list_mic,
        } if ntlm(t) => {
            access::lock(conn).spnego_mic = mech_list_mic.map(<[u8]>::to_vec);
            access::ntlm(group, shared, conn, t, Wrap::Spnego, principals)
        }
        _ => kerberos::accept(group, shared, conn, raw, principals).await,
    }
}

#[cfg(not(feature = "negotiate"))]
mod kerberos {
    use super::*;

    /// Without the `negotiate` feature there is no Kerberos: the caller is challenged again, and may fall
    /// back to NTLM.
    pub(super) async fn accept(
        group: &UrlGroup,
        _shared: &Shared,
        conn: &ConnInfo,
        _raw: &[u8],
        _principals: Option<&Principals>,
    ) -> Result<Granted, Reject> {
        tracing::debug!("a Kerberos token arrived; this build has no Kerberos (feature negotiate)");
        Err(access::unauthorized(group, conn))
    }
}

#[cfg(feature = "negotiate")]
mod kerberos {
    use base64::Engine as _;
    use libgssapi::context::{SecurityContext, ServerCtx};

    use super::*;
    use crate::auth::{Identity, Scheme};

    pub(super) async fn accept(
        group: &UrlGroup,
        shared: &Shared,
        conn: &ConnInfo,
        raw: &[u8],
        principals: Option<&Principals>,
    ) -> Result<Granted, Reject> {
        let cred = match shared.kerberos_credential() {
            Ok(cred) => cred,
            Err(e) => {
                tracing::warn!(error = %e, "no Kerberos acceptor credential (check the keytab)");
                return Err(access::unauthorized(group, conn));
            }
        };
        // Kerberos names no account before the ticket is verified: limited per source only.
        let attempt = shared.failures.attempt(conn.peer.ip(), None)?;
        let pending = access::lock(conn).gss.take();
        let token = raw.to_vec();
        // GSS-API reads the keytab and the replay cache: off the async workers.
        let stepped = tokio::task::spawn_blocking(move || {
            let mut ctx = pending.unwrap_or_else(|| ServerCtx::new(Some(cred)));
            let step = ctx.step(&token, None);
            let principal = match (&step, ctx.is_complete()) {
                (Ok(_), true) => ctx.source_name().ok().map(|n| n.to_string()),
                _ => None,
            };
            (ctx, step, principal)
        })
        .await
        .map_err(|_| access::unauthorized(group, conn))?;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match stepped {
            (_, Err(e), _) => {
                tracing::info!(target: "bits_compact::auth", error = %e, peer = %conn.peer, "Kerberos authentication failed");
                Err(access::unauthorized(group, conn))
            }
            (_, Ok(out), Some(principal)) => {
                // A valid ticket is no guess, even from a principal refused below.
                attempt.succeeded();
                let Some(identity) = identity(
                    &principal,
                    principals,
                    shared.config.refuse_unknown_principals,
                ) else {
                    tracing::info!(target: "bits_compact::auth", %principal, "Kerberos principal not in the principals file");
                    return Err(Reject::Forbidden(
                        "this Kerberos principal is not known here",
                    ));
                };
                access::lock(conn).identity = Some(identity.clone());
                let reply = out.map(|t| format!("Negotiate {}", b64(&t)));
                Ok(Granted { identity, reply })
            }
            (ctx, Ok(out), None) => {
                attempt.succeeded();
                access::lock(conn).gss = Some(ctx);
                let next = out.map_or_else(
                    || "Negotiate".to_owned(),
                    |t| format!("Negotiate {}", b64(&t)),
                );
                Err(Reject::Unauthorized(vec![next]))
            }
        }
    }

    /// The principals file's user for `user@REALM` (the realm-qualified name first, then the bare name);
    /// else an Authenticated User with a SID derived from the principal, unless unknown principals are
    /// refused.
    fn identity(
        principal: &str,
        principals: Option<&Principals>,
        refuse_unknown: bool,
    ) -> Option<Identity> {
        if let Some((name, user)) = principals.and_then(|p| p.user(principal)) {
            let groups = principals.map(|p| p.group_sids(user)).unwrap_or_default();
            return Some(Identity::user(
                name,
                Scheme::Kerberos,
                user.sid.clone(),
                groups,
            ));
        }
        if refuse_unknown {
            return None;
        }
        Some(Identity::derived(principal, Scheme::Kerberos))
    }
}
