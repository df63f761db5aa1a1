//! `ConnInfo`: what the request path knows of the connection a request came on. Plain data, so that the
//! request path can be driven without a socket.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::ConnectionAuth;
use crate::files::ZeroCopy;
use crate::limits::ReadBudget;
use crate::tls::ClientIdentity;

/// Where a connection came from and where it arrived.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    /// The verified client certificate's identity, on TLS connections that presented one.
    pub(crate) client: Option<Arc<ClientIdentity>>,
    /// Whether the connection is TLS.
    pub(crate) secure: bool,
    /// Connection-bound authentication (NTLM, Negotiate): the handshake in progress, then who the
    /// connection is.
    pub(crate) auth: ConnectionAuth,
    /// What this connection's response bodies may hold in memory.
    pub(crate) budget: Arc<ReadBudget>,
    /// On plain HTTP/1.1 connections: what file bodies share with the IO to be sent with `sendfile`.
    pub(crate) zero_copy: Option<Arc<ZeroCopy>>,
}
