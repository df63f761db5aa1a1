//! The connection-bound handshakes, one leg per request: NTLM (bare, in `Authorization: NTLM`, or under
//! Negotiate, bare or wrapped in SPNEGO) with our own acceptor, and Kerberos through MIT GSS-API (the
//! `negotiate` feature) with the acceptor credential from the keytab (KRB5_KTNAME). A Negotiate-only group
//! so also serves clients without a ticket.
//!
//! SECURITY: the threats are a forged or replayed NTLM or Kerberos authenticator, a man-in-the-middle
//! stripping mechanisms, and a hostile token. The NTLM acceptor checks the NTLMv2 proof (and the MIC when
//! announced) and spends each challenge once; GSS-API checks the ticket against the keytab and MIT's replay
//! cache refuses an authenticator seen before, so an Authorization header captured from one connection
//! fails on another; SPNEGO's mechListMIC is verified; the parsers are total and fuzzed. The state lives
//! with the connection and is dropped with it.

use base64::Engine as _;

use super::caller::{Caller, Granted};
use super::ntlm::{self, messages, NtlmError};
use super::refusal::Refusal;
use super::spnego::{self, Token};
use super::{FailureLimiter, GroupAuth, Identity, Mechanism, Principals};

/// One leg of a connection-bound handshake (NTLM, Negotiate), with what it needs.
pub(super) struct Leg<'a> {
    pub(super) group: &'a GroupAuth,
    pub(super) realm: &'a str,
    pub(super) caller: Caller<'a>,
    pub(super) principals: Option<&'a Principals>,
    pub(super) failures: &'a FailureLimiter,
    /// NTLM target (NetBIOS domain) and computer names.
    pub(super) ntlm_names: &'a (String, String),
    #[cfg(feature = "negotiate")]
    pub(super) refuse_unknown_principals: bool,
    #[cfg(feature = "negotiate")]
    pub(super) kerberos: &'a std::sync::Mutex<Option<libgssapi::credential::Cred>>,
}

/// How an NTLM token travelled, and so how to answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wrap {
    /// `Authorization: NTLM <token>`.
    Ntlm,
    /// `Authorization: Negotiate <bare NTLM token>`.
    NegotiateRaw,
    /// `Authorization: Negotiate <SPNEGO token carrying NTLM>`.
    Spnego,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Wrap {
    fn header(self, ntlm_token: &[u8], first: bool) -> String {
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

impl Leg<'_> {
    /// 401 with the group's challenges for this connection.
    pub(super) fn challenge(&self) -> Refusal {
        Refusal::Challenge(self.group.challenges(self.caller.secure, self.realm))
    }

    /// One leg of the NTLM handshake on this connection: NEGOTIATE is answered with a CHALLENGE (401, and
    /// the connection is kept); AUTHENTICATE is verified and, if right, the connection is authenticated. On
    /// success the reply is the final SPNEGO token, when NTLM came wrapped in SPNEGO.
    pub(super) fn ntlm(&self, raw: &[u8], wrap: Wrap) -> Result<Granted, Refusal> {
        let kind = messages::message_type(raw)
            .map_err(|_| Refusal::BadToken("the NTLM token is not an NTLM message"))?;
        let mut state = self.caller.connection.lock();
        let names = self.ntlm_names;
        match kind {
            1 => {
                // A new handshake replaces whatever the connection proved before.
                state.identity = None;
                let challenge = state
                    .ntlm
                    .challenge(raw, &names.0, &names.1)
                    .map_err(|_| Refusal::BadToken("malformed NTLM NEGOTIATE message"))?;
                Err(Refusal::Challenge(vec![wrap.header(&challenge, true)]))
            }
            3 => {
                // The account as the message names it, to limit guesses at it before anything is verified.
                let account = messages::Authenticate::parse(raw).ok().map(|m| m.user);
                let attempt = self
                    .failures
                    .attempt(self.caller.peer.ip(), account.as_deref())?;
                let mech_list = state.spnego_mech_list.take();
                let client_mic = state.spnego_mic.take();
                let verified = self.principals.ok_or(NtlmError::UnknownUser).and_then(|p| {
                    let done = state.ntlm.authenticate(raw, p)?;
                    let server_mic = spnego_mic(wrap, &done.session, mech_list, client_mic)?;
                    let groups = p.group_sids(done.user);
                    let identity =
                        Identity::user(done.name, Mechanism::Ntlm, done.user.sid.clone(), groups);
                    Ok((identity, server_mic))
                });
                match verified {
                    Ok((identity, server_mic)) => {
                        attempt.succeeded();
                        state.identity = Some(identity.clone());
                        let reply = (wrap == Wrap::Spnego).then(|| {
                            let done = spnego::resp(
                                spnego::state::ACCEPT_COMPLETED,
                                None,
                                None,
                                server_mic.as_ref().map(|m| &m[..]),
                            );
                            format!("Negotiate {}", b64(&done))
                        });
                        Ok(Granted { identity, reply })
                    }
                    Err(NtlmError::Message(_)) => {
                        Err(Refusal::BadToken("malformed NTLM AUTHENTICATE message"))
                    }
                    Err(e) => {
                        tracing::info!(target: "bits_compact::auth", error = %e, peer = %self.caller.peer, "NTLM authentication failed");
                        Err(self.challenge())
                    }
                }
            }
            _ => Err(Refusal::BadToken("unexpected NTLM message type")),
        }
    }
}

/// SPNEGO's mechListMIC (RFC 4178 §5): when the client signed the mechanism list it offered, the signature
/// must verify under the NTLM session, and we sign the list back. SECURITY: this is what stops a
/// man-in-the-middle from stripping stronger mechanisms from the client's list.
fn spnego_mic(
    wrap: Wrap,
    session: &ntlm::Session,
    mech_list: Option<Vec<u8>>,
    client_mic: Option<Vec<u8>>,
) -> Result<Option<[u8; 16]>, NtlmError> {
    match (wrap, mech_list, client_mic) {
        (Wrap::Spnego, Some(list), Some(mic)) => {
            if !session.verify(&list, &mic) {
                return Err(NtlmError::BadMic);
            }
            Ok(Some(session.sign(
                ntlm::Direction::ServerToClient,
                0,
                &list,
            )))
        }
        _ => Ok(None),
    }
}

impl Leg<'_> {
    /// One leg of `Authorization: Negotiate`.
    pub(super) async fn negotiate(&self, raw: &[u8]) -> Result<Granted, Refusal> {
        let token = spnego::parse(raw).map_err(|_| Refusal::BadToken("malformed SPNEGO token"))?;
        let ntlm = |t: &[u8]| t.starts_with(b"NTLMSSP\0");
        match token {
            Token::RawNtlm(t) => self.ntlm(t, Wrap::NegotiateRaw),
            Token::Init {
                mech_token: Some(t),
                mech_list,
                ..
            } if ntlm(t) => {
                self.caller.connection.lock().spnego_mech_list = Some(mech_list.to_vec());
                self.ntlm(t, Wrap::Spnego)
            }
            Token::Resp {
                response_token: Some(t),
                mech_list_mic,
            } if ntlm(t) => {
                self.caller.connection.lock().spnego_mic = mech_list_mic.map(<[u8]>::to_vec);
                self.ntlm(t, Wrap::Spnego)
            }
            _ => kerberos::accept(self, raw).await,
        }
    }
}

#[cfg(not(feature = "negotiate"))]
mod kerberos {
    use super::*;

    /// Without the `negotiate` feature there is no Kerberos: the caller is challenged again, and may fall
    /// back to NTLM.
    pub(super) async fn accept(leg: &Leg<'_>, _raw: &[u8]) -> Result<Granted, Refusal> {
        tracing::debug!("a Kerberos token arrived; this build has no Kerberos (feature negotiate)");
        Err(leg.challenge())
    }
}

#[cfg(feature = "negotiate")]
mod kerberos {
    use base64::Engine as _;
    use libgssapi::context::{SecurityContext, ServerCtx};

    use super::*;
    use crate::auth::{Identity, Mechanism, Principals};
    use crate::lock::Recover;

    /// The acceptor credential from the default keytab (KRB5_KTNAME): acquired on first use and kept;
    /// tried again on the next request while it cannot be (a keytab put in place later is used).
    fn credential(leg: &Leg<'_>) -> Result<libgssapi::credential::Cred, libgssapi::error::Error> {
        use libgssapi::credential::{Cred, CredUsage};
        let mut kept = leg.kerberos.lock().recover();
        if let Some(cred) = kept.as_ref() {
            return Ok(cred.clone());
        }
        let cred = Cred::acquire(None, None, CredUsage::Accept, None)?;
        *kept = Some(cred.clone());
        Ok(cred)
    }

    pub(super) async fn accept(leg: &Leg<'_>, raw: &[u8]) -> Result<Granted, Refusal> {
        let cred = match credential(leg) {
            Ok(cred) => cred,
            Err(e) => {
                tracing::warn!(error = %e, "no Kerberos acceptor credential (check the keytab)");
                return Err(leg.challenge());
            }
        };
        // Kerberos names no account before the ticket is verified: limited per source only.
        let peer = leg.caller.peer;
        let attempt = leg.failures.attempt(peer.ip(), None)?;
        let pending = leg.caller.connection.lock().gss.take();
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
        .map_err(|_| leg.challenge())?;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        match stepped {
            (_, Err(e), _) => {
                tracing::info!(target: "bits_compact::auth", error = %e, %peer, "Kerberos authentication failed");
                Err(leg.challenge())
            }
            (_, Ok(out), Some(principal)) => {
                // A valid ticket is no guess, even from a principal refused below.
                attempt.succeeded();
                let Some(identity) =
                    identity(&principal, leg.principals, leg.refuse_unknown_principals)
                else {
                    tracing::info!(target: "bits_compact::auth", %principal, "Kerberos principal not in the principals file");
                    return Err(Refusal::Forbidden(
                        "this Kerberos principal is not known here",
                    ));
                };
                leg.caller.connection.lock().identity = Some(identity.clone());
                let reply = out.map(|t| format!("Negotiate {}", b64(&t)));
                Ok(Granted { identity, reply })
            }
            (ctx, Ok(out), None) => {
                attempt.succeeded();
                leg.caller.connection.lock().gss = Some(ctx);
                let next = out.map_or_else(
                    || "Negotiate".to_owned(),
                    |t| format!("Negotiate {}", b64(&t)),
                );
                Err(Refusal::Challenge(vec![next]))
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
                Mechanism::Kerberos,
                user.sid.clone(),
                groups,
            ));
        }
        if refuse_unknown {
            return None;
        }
        Some(Identity::derived(principal, Mechanism::Kerberos))
    }
}
