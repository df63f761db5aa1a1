//! Who is asking and what a connection has proved, and a caller let in: the types the authenticator and
//! the handshakes share (a caller refused is `refusal`'s).

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use super::{ntlm, Identity};
use crate::lock::Recover;
use crate::tls::ClientIdentity;

/// What a connection has proved about itself, and the handshakes in progress on it: made on the first
/// handshake, so that a connection that never does one (most, and every idle one) holds one word for it.
#[derive(Debug, Default)]
pub(crate) struct ConnectionAuth(std::sync::OnceLock<Box<Mutex<ConnState>>>);

#[derive(Debug, Default)]
pub(super) struct ConnState {
    pub(super) ntlm: ntlm::Acceptor,
    /// A Kerberos context that needs another leg.
    #[cfg(feature = "negotiate")]
    pub(super) gss: Option<libgssapi::context::ServerCtx>,
    pub(super) identity: Option<Identity>,
    /// The MechTypeList of the NegTokenInit that started an NTLM-in-SPNEGO handshake.
    pub(super) spnego_mech_list: Option<Vec<u8>>,
    /// The client's mechListMIC from its last NegTokenResp.
    pub(super) spnego_mic: Option<Vec<u8>>,
}

impl ConnectionAuth {
    pub(super) fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.0.get_or_init(Box::default).lock().recover()
    }

    /// Who a handshake on this connection proved the caller to be, if one did.
    pub(super) fn proved(&self) -> Option<super::Identity> {
        let state = self.0.get()?;
        let state = state.lock().recover();
        state.identity.clone()
    }
}

/// Who is asking, as far as the connection tells.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub(crate) peer: SocketAddr,
    /// The connection is TLS.
    pub(crate) secure: bool,
    /// The verified client certificate, if the caller presented one.
    pub(crate) certificate: Option<&'a ClientIdentity>,
    pub(crate) connection: &'a ConnectionAuth,
}

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
