//! What `GET /v1/fleet` answers, whatever store a service has: the [`FleetView`] a fleet's node gives its
//! [`Managed`](super::Managed), and the wire types it answers with. The fleet itself (on etcd) is the
//! `fleet` feature's; without it, or on a service that is no fleet's node, the route answers 404
//! `not_in_fleet`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::MgmtError;

/// A fleet as one of its nodes sees it.
pub trait FleetView: Send + Sync {
    /// The fleet's nodes, alive or not (this reads the coordinator: a blocking call, bounded in time).
    fn status(&self) -> Result<FleetStatus, MgmtError>;
}

/// A fleet: its name, the revision of its configuration, and its nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FleetStatus {
    /// The fleet's name.
    pub fleet: String,
    /// The node that answered.
    pub node: String,
    /// The revision of the fleet's latest configuration change (0: none yet).
    pub revision: i64,
    /// Every node that has joined the fleet, by name.
    pub nodes: Vec<NodeStatus>,
    /// The content the configuration publishes (URLs published by content), with who holds it and
    /// who is still fetching it.
    #[serde(default)]
    pub content: Vec<ContentStatus>,
}

/// One published content in a fleet: its URLs, the live nodes that hold a verified copy, and those
/// fetching it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ContentStatus {
    /// Its SHA-256, in hex.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The node it was published on.
    pub origin: String,
    /// The URLs that serve it (prefix and suffix).
    pub urls: Vec<String>,
    /// The live nodes that hold a verified copy and serve it.
    pub holders: Vec<String>,
    /// The live nodes still fetching it.
    pub fetching: Vec<FetchStatus>,
}

/// A node fetching content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FetchStatus {
    /// The node fetching.
    pub node: String,
    /// The node it pulls from.
    pub from: String,
    /// Bytes it holds so far.
    pub bytes: u64,
    /// The content's size.
    pub total: u64,
    /// Bytes per second lately.
    pub rate: u64,
}

/// One node of a fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeStatus {
    /// Its name (`--node`).
    pub name: String,
    /// Whether it holds its lease now: a node that stopped, or lost etcd, is not alive once its lease
    /// expires.
    pub alive: bool,
    /// The addresses its URL groups listen on (empty: all of its addresses).
    pub addresses: Vec<String>,
    /// The version of `bcs` it runs.
    pub version: String,
    /// The revision of the fleet's configuration it serves.
    pub revision: i64,
    /// How many revisions it is behind the fleet's latest configuration change (0: up to date).
    pub lag: i64,
    /// The URL groups it serves (at most the first 256: see `groups_total`).
    pub groups: Vec<String>,
    /// How many URL groups it serves.
    #[serde(default)]
    pub groups_total: usize,
    /// What of the fleet's configuration it cannot serve, and why (a file or certificate missing there;
    /// at most the first 32: see `unserved_total`).
    pub unserved: Vec<String>,
    /// How many such warnings it has.
    #[serde(default)]
    pub unserved_total: usize,
}
