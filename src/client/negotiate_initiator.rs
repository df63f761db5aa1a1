//! Our Negotiate initiator (RFC 4559): SPNEGO (RFC 4178) with Kerberos through MIT krb5's GSS-API, from
//! the caller's default credential cache (`KRB5CCNAME`), for the service `HTTP@host` of the URL, as
//! `curl --negotiate -u :` does. The connection carries the tokens (`Authorization: Negotiate ...` /
//! `WWW-Authenticate: Negotiate ...`); this module only steps the context, off the async workers (GSS-API
//! reads the credential cache and may ask the KDC for a service ticket).
//!
//! SECURITY: the threat is a server that is not the one named (a spoofed name, a man in the middle on
//! plain http). Mutual authentication is asked for, and when the server's last answer carries its token
//! (the AP-REP in a NegTokenResp) the context must accept it, or the answer is refused. Which servers get a
//! token at all is the connection's choice: only the job's own origin (`Client::trust_origin`).
//!
//! Without the `negotiate` feature there is no GSS-API: [`Initiator::new`] says so, never falling back to
//! another scheme.

use super::ClientError;

/// The most legs of one exchange (Kerberos needs one, SPNEGO at most two): a server that keeps asking
/// for more is refused rather than looped with.
pub(crate) const MAX_LEGS: usize = 4;

#[cfg(feature = "negotiate")]
mod gss {
    use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
    use libgssapi::name::Name;
    use libgssapi::oid::{GSS_MECH_SPNEGO, GSS_NT_HOSTBASED_SERVICE};

    use super::ClientError;

    /// One Negotiate exchange with one server.
    #[derive(Debug)]
    pub(crate) struct Initiator {
        /// `None` only while a step runs on a blocking thread.
        ctx: Option<ClientCtx>,
    }

    impl Initiator {
        /// An exchange for the service `HTTP@host`, with the default credential cache.
        pub(crate) fn new(host: &str) -> Result<Initiator, ClientError> {
            let service = format!("HTTP@{host}");
            let target = Name::new(service.as_bytes(), Some(GSS_NT_HOSTBASED_SERVICE))
                .map_err(|e| failed(&format!("the name {service:?}"), &e))?;
            let flags = CtxFlags::GSS_C_MUTUAL_FLAG | CtxFlags::GSS_C_SEQUENCE_FLAG;
            let ctx = ClientCtx::new(None, target, flags, Some(GSS_MECH_SPNEGO));
            Ok(Initiator { ctx: Some(ctx) })
        }

        /// Feeds the server's token (none at first) and returns the next one to send, if any.
        pub(crate) async fn step(
            &mut self,
            token: Option<Vec<u8>>,
        ) -> Result<Option<Vec<u8>>, ClientError> {
            let mut ctx = self
                .ctx
                .take()
                .ok_or_else(|| ClientError::Negotiate("the exchange already failed".to_owned()))?;
            let first = token.is_none();
            let (ctx, out) = tokio::task::spawn_blocking(move || {
                let out = ctx.step(token.as_deref(), None);
                (ctx, out.map(|b| b.map(|b| b.to_vec())))
            })
            .await
            .map_err(|e| ClientError::Negotiate(e.to_string()))?;
            let what = if first {
                "a Kerberos ticket for the server (is there one? see klist)"
            } else {
                "the server's Negotiate answer"
            };
            let out = out.map_err(|e| failed(what, &e))?;
            self.ctx = Some(ctx);
            Ok(out)
        }

        /// Whether the context is established (the server is authenticated to us as well).
        pub(crate) fn is_complete(&self) -> bool {
            self.ctx.as_ref().is_some_and(SecurityContext::is_complete)
        }
    }

    fn failed(what: &str, e: &libgssapi::error::Error) -> ClientError {
        ClientError::Negotiate(format!("cannot get {what}: {e}"))
    }
}

#[cfg(feature = "negotiate")]
pub(crate) use gss::Initiator;

/// Without GSS-API: every exchange is refused with [`ClientError::NegotiateUnavailable`].
#[cfg(not(feature = "negotiate"))]
#[derive(Debug)]
pub(crate) struct Initiator(std::convert::Infallible);

#[cfg(not(feature = "negotiate"))]
impl Initiator {
    pub(crate) fn new(_host: &str) -> Result<Initiator, ClientError> {
        Err(ClientError::NegotiateUnavailable)
    }

    pub(crate) async fn step(
        &mut self,
        _token: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        match self.0 {}
    }

    pub(crate) fn is_complete(&self) -> bool {
        match self.0 {}
    }
}

/// Whether this build can use Negotiate credentials.
pub(crate) const AVAILABLE: bool = cfg!(feature = "negotiate");
