//! `Site`: what the serve loop needs of a server, handed to it explicitly by the server that owns it.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::access_log::AccessLogSink;
use crate::auth::Authenticator;
use crate::limits::SourceTransfers;
use crate::metrics::Metrics;
use crate::router::RouteTable;
use crate::tls::PortConfigs;

/// The connection settings, the routing and TLS snapshots the server publishes, and authentication.
#[derive(Debug)]
pub(crate) struct Site {
    pub(crate) settings: Settings,
    pub(crate) routes: ArcSwap<RouteTable>,
    /// The rustls configuration of each port that has TLS settings, rebuilt on every change.
    pub(crate) tls: ArcSwap<HashMap<u16, PortConfigs>>,
    pub(crate) auth: Authenticator,
    /// Transfers per client source and in all.
    pub(crate) transfers: SourceTransfers,
    /// Bytes sent with `sendfile` on plain HTTP/1.1 connections, or `None` where zero-copy is off.
    pub(crate) zero_copy: Option<Arc<AtomicU64>>,
    /// The server's metrics, counted by its connections and requests.
    pub(crate) metrics: Arc<Metrics>,
    /// Where access-log entries go, when the server has an access log.
    pub(crate) access_log: Option<AccessLogSink>,
}

/// Connection deadlines and bounds, fixed when the server is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) header_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) min_send_rate: u64,
    pub(crate) min_send_window: Duration,
    pub(crate) max_connections: usize,
}
