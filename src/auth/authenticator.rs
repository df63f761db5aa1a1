//! Authentication behind one call: the request's headers, the group's schemes and the connection's state
//! in; an identity, or why not (the challenges to send, a malformed header, a limit), out. The serve loop
//! only maps the answer to a response.
//!
//! SECURITY: the threats are reading a file as someone else, and guessing passwords. Credentials of a
//! scheme the group does not enable are ignored, never trusted. Basic is refused over plain HTTP unless the
//! group allows it; its passwords are checked on the server's few password-check threads; every attempt
//! (Basic, NTLM, Kerberos) counts against the caller's source and account before it is checked
//! (`limiter`). NTLM and Negotiate authenticate the connection: their state lives in [`ConnectionAuth`],
//! and a new handshake forgets what the connection proved before.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use base64::Engine as _;
use http::header::{self, HeaderMap};

use super::basic::{self, AuthorizationHeader};
use super::caller::{Caller, Granted};
use super::handshake::{Leg, Wrap};
use super::refusal::Refusal;
use super::{
    AuthScheme, FailureLimiter, GroupAuth, Identity, Mechanism, Password, PasswordChecks,
    PasswordHash, Principals, TooManyChecks,
};

/// What the server authenticates callers with: its principals, its limits on guessing, and its settings.
#[derive(Debug)]
pub(crate) struct Authenticator {
    /// Users and groups for Basic, NTLM and certificate mapping.
    pub(crate) principals: ArcSwapOption<Principals>,
    pub(crate) failures: FailureLimiter,
    pub(crate) checks: PasswordChecks,
    /// NTLM target (NetBIOS domain) and computer names, uppercase.
    pub(crate) ntlm_names: (String, String),
    /// Refuse Kerberos principals the principals file does not list (read only where Kerberos is built).
    #[cfg_attr(not(feature = "negotiate"), allow(dead_code))]
    pub(crate) refuse_unknown_principals: bool,
    /// The Kerberos acceptor credential, from the keytab, acquired on first use.
    #[cfg(feature = "negotiate")]
    pub(crate) kerberos: std::sync::Mutex<Option<libgssapi::credential::Cred>>,
}

impl Authenticator {
    pub(crate) fn new(ntlm_names: (String, String), refuse_unknown_principals: bool) -> Self {
        Authenticator {
            principals: ArcSwapOption::empty(),
            failures: FailureLimiter::default(),
            checks: PasswordChecks::default(),
            ntlm_names,
            refuse_unknown_principals,
            #[cfg(feature = "negotiate")]
            kerberos: std::sync::Mutex::new(None),
        }
    }
}

impl Authenticator {
    /// Who the caller of a request with these headers is, under the group's schemes: anonymous when no
    /// scheme is enabled or no credentials came; `realm` names the group in Basic challenges.
    pub(crate) async fn authenticate(
        &self,
        headers: &HeaderMap,
        group: &GroupAuth,
        realm: &str,
        caller: Caller<'_>,
    ) -> Result<Granted, Refusal> {
        if !group.any_enabled() {
            // No scheme: every caller is anonymous, whatever credentials it sends (and no lock is taken).
            return Ok(Identity::anonymous().into());
        }
        let principals = self.principals.load_full();
        let identity = match caller.certificate {
            Some(cert) if group.is_enabled(AuthScheme::ClientCertificate) => {
                Identity::from_client_certificate(cert, principals.as_deref())
            }
            _ => Identity::anonymous(),
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            // A connection that proved itself with NTLM or Kerberos stays authenticated (MS-NTHT §2.2.1).
            let proved = caller.connection.proved();
            let identity = proved
                .filter(|_| group.is_connection_bound())
                .map(|proved| proved.refreshed(principals.as_deref()))
                .unwrap_or(identity);
            return Ok(identity.into());
        };
        let leg = Leg {
            group,
            realm,
            caller,
            principals: principals.as_deref(),
            failures: &self.failures,
            ntlm_names: &self.ntlm_names,
            #[cfg(feature = "negotiate")]
            refuse_unknown_principals: self.refuse_unknown_principals,
            #[cfg(feature = "negotiate")]
            kerberos: &self.kerberos,
        };
        match basic::parse(value.as_bytes())? {
            AuthorizationHeader::Other { scheme, token }
                if scheme == "ntlm" && group.is_enabled(AuthScheme::Ntlm) =>
            {
                leg.ntlm(&decode(&token)?, Wrap::Ntlm)
            }
            AuthorizationHeader::Other { scheme, token }
                if scheme == "negotiate" && group.is_enabled(AuthScheme::Negotiate) =>
            {
                leg.negotiate(&decode(&token)?).await
            }
            AuthorizationHeader::Basic { user, password }
                if group.is_enabled(AuthScheme::Basic) =>
            {
                if !caller.secure && !group.basic_over_http() {
                    return Err(Refusal::Forbidden("Basic authentication needs HTTPS"));
                }
                let attempt = self.failures.attempt(caller.peer.ip(), Some(&user))?;
                match self
                    .verify_basic(principals.clone(), user.clone(), password)
                    .await
                {
                    Ok(Some(identity)) => {
                        attempt.succeeded();
                        Ok(identity.into())
                    }
                    Err(busy) => {
                        // SECURITY: no check ran, so no guess was made: counting it would let a flood
                        // that fills the queue lock out the sources and accounts of honest callers.
                        attempt.not_checked();
                        Err(busy)
                    }
                    Ok(None) => {
                        tracing::info!(target: "bits_compact::auth", %user, peer = %caller.peer, "Basic authentication failed");
                        Err(leg.challenge())
                    }
                }
            }
            _ => Ok(identity.into()),
        }
    }

    /// Checks a Basic password on the password-check threads (argon2 and bcrypt are slow and
    /// memory-hungry on purpose). An unknown user costs the same as a wrong password.
    async fn verify_basic(
        &self,
        principals: Option<Arc<Principals>>,
        user: String,
        password: Password,
    ) -> Result<Option<Identity>, Refusal> {
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
                Mechanism::Basic,
                found.sid.clone(),
                groups,
            ))
        };
        self.checks
            .run(check)
            .await
            .map_err(|_: TooManyChecks| Refusal::Busy)
    }
}

fn decode(token: &str) -> Result<Vec<u8>, Refusal> {
    base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| Refusal::BadToken("the authentication token is not valid base64"))
}
