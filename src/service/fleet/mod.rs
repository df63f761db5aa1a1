//! A fleet: many `bcs serve` nodes sharing one configuration through etcd (its v3 API), which does the
//! consensus. Every node serves the same URL groups, principals and TLS bindings; a change made through
//! any node's management API is one etcd transaction, and every node follows the changes.
//!
//! | module | owns |
//! |---|---|
//! | `name` | [`FleetName`], [`NodeName`]: key segments, parsed once |
//! | `keys` | the key layout under `/bcs/<fleet>/`, the configuration as keys and back |
//! | `link` | the connection, every call bounded in time, the revision the node serves |
//! | `etcd_store` | [`EtcdStore`]: changes as compare-on-revision transactions; the local copy |
//! | `follower` | the watch that feeds [`Managed::follow`] in revision order, and its resyncs |
//! | `membership` | the node's lease and record, and `GET /v1/fleet` |
//!
//! Invariants: a node serves a configuration etcd held at one revision (its own changes included only
//! once etcd took them); a change made on a stale view is refused as a conflict, never applied over a
//! newer one; with etcd unreachable or below quorum a change fails within seconds and changes nothing,
//! and the node keeps serving what it has.

mod announce;
mod content;
mod etcd_store;
mod follower;
mod keys;
mod link;
mod membership;
mod name;

use std::path::PathBuf;
use std::sync::Arc;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use tokio_util::sync::CancellationToken;

pub use content::{peer_user, ContentDuty, PeerPath};
pub use etcd_store::EtcdStore;
pub use membership::LEASE_TTL;
pub use name::{FleetName, NameError, NodeName, MAX_NAME};

use crate::error::classify;
use crate::service::store::SqliteStore;
use crate::service::Managed;
use crate::ErrorKind as K;
use link::Link;
use membership::{Members, NodeRecord};

/// How to reach the fleet's etcd and who this node is in it.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// etcd's client URLs (`http://10.0.0.1:2379`, or `https://` with [`FleetOptions::tls`]).
    pub endpoints: Vec<String>,
    /// The fleet.
    pub fleet: FleetName,
    /// This node.
    pub node: NodeName,
    /// TLS to etcd: the CA to check it against, and this node's client certificate and key (PEM).
    pub tls: Option<EtcdTls>,
    /// Where this node listens, for its record (`bcs fleet status`).
    pub addresses: Vec<String>,
}

/// TLS to etcd, with a client certificate.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// The CA certificates (PEM) etcd's certificate is checked against.
    pub ca: PathBuf,
    /// This node's client certificate (PEM), when etcd asks for one.
    pub cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub key: Option<PathBuf>,
}

/// Why a node could not join its fleet.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// etcd could not be reached (or has no quorum), and there is no local copy of this fleet's
    /// configuration to start from.
    #[error("the fleet's etcd cannot be reached ({reason}), and this state directory holds no copy of the fleet's configuration to start from")]
    Unreachable {
        /// What failed.
        reason: String,
    },
    /// Another live process holds this node's name in the fleet.
    #[error("node {node:?} is already a live member of fleet {fleet:?} (another process holds its lease; stop it, or pick another --node)")]
    NodeTaken {
        /// The fleet.
        fleet: String,
        /// The node name.
        node: String,
    },
    /// A file for TLS to etcd could not be read.
    #[error("cannot read {path:?} for TLS to etcd")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The endpoints or TLS settings were refused.
    #[error("invalid etcd settings: {0}")]
    Settings(String),
    /// The local copy could not be opened.
    #[error(transparent)]
    Store(#[from] crate::service::store::StoreError),
}

classify! {
    FleetError {
        FleetError::Unreachable { .. } => (K::Coordinator, crate::FLEET_UNAVAILABLE),
        FleetError::NodeTaken { .. } => (K::Conflict, "fleet_node_taken"),
        FleetError::TlsFile { .. } | FleetError::Settings(_) => (K::Invalid, "fleet_settings"),
        FleetError::Store(e) => (e.kind(), e.code()),
    }
}

/// A node that has joined its fleet: its store (for [`Managed::start`]), then [`Fleet::run`] to follow
/// the fleet and keep its membership.
pub struct Fleet {
    link: Arc<Link>,
    record: NodeRecord,
    lease: Option<i64>,
    /// Set when it started from its local copy (etcd unreachable): what it says to the operator.
    pub from_local_copy: Option<String>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("fleet", &self.link.fleet)
            .field("node", &self.link.node)
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Joins the fleet: takes the node's name (refused while another live process holds it) and reads
    /// the fleet's configuration, which the returned store's `load` gives. When etcd cannot be reached
    /// and the local copy (`local`, with its revision in `revision_file`) is this fleet's, the store
    /// gives the local copy instead, and [`Fleet::from_local_copy`] says so; without a local copy that
    /// is an error.
    pub async fn join(
        options: FleetOptions,
        local: SqliteStore,
        revision_file: PathBuf,
    ) -> Result<(Fleet, EtcdStore), FleetError> {
        let client = connect(&options).await?;
        let link = Arc::new(Link::new(
            client,
            options.fleet.clone(),
            options.node.clone(),
        ));
        let kept = EtcdStore::local_revision(&revision_file, options.fleet.as_str());
        let mut record = NodeRecord::new(options.addresses.clone());
        match kept.as_ref().and_then(|k| k.instance.clone()) {
            Some(instance) => record.instance = instance,
            // Kept before the name is claimed with it, so that a node killed at once and restarted
            // claims with the same id.
            None => {
                let first = etcd_store::LocalRevision {
                    fleet: options.fleet.to_string(),
                    revision: kept.as_ref().and_then(|k| k.revision),
                    instance: Some(record.instance.clone()),
                };
                if let Err(e) = etcd_store::write_local(&revision_file, &first) {
                    tracing::warn!(target: "bits_compact::service", error = %e, "the node's instance id is not kept");
                }
            }
        }
        let local_revision = kept.and_then(|k| k.revision);
        let joined = match membership::claim(&link, &record).await {
            Ok(lease) => link.read_config().await.map(|read| (lease, read)),
            Err(FleetError::Unreachable { reason }) => Err(reason),
            Err(e) => return Err(e),
        };
        let (lease, initial, from_local_copy) = match joined {
            Ok((lease, (map, revision))) => {
                let (stored, warnings) = link.keys.stored(&map);
                for w in warnings {
                    tracing::warn!(target: "bits_compact::service", "{w}");
                }
                (Some(lease), Some((stored, revision)), None)
            }
            Err(reason) => match local_revision {
                Some(revision) => {
                    link.set_applied(revision);
                    let note = format!("the fleet's etcd cannot be reached ({reason}): serving the local copy of the fleet's configuration (revision {revision}) and retrying etcd in the background");
                    (None, None, Some(note))
                }
                None => return Err(FleetError::Unreachable { reason }),
            },
        };
        let instance = record.instance.clone();
        let store = EtcdStore::new(link.clone(), local, revision_file, initial, instance);
        let fleet = Fleet {
            link,
            record,
            lease,
            from_local_copy,
        };
        Ok((fleet, store))
    }

    /// What answers `GET /v1/fleet` (see [`Managed::with_fleet`]).
    pub fn view(&self) -> Arc<dyn crate::service::FleetView> {
        Arc::new(Members {
            link: self.link.clone(),
        })
    }

    /// Follows the fleet's changes and keeps this node's membership until `stop`; on `stop` the lease is
    /// returned (the node is listed as not alive at once). Spawns its tasks and returns their handles.
    pub fn run(
        self,
        managed: Arc<Managed>,
        content: Option<ContentDuty>,
        stop: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let follow = follower::follow(self.link.clone(), managed.clone(), stop.clone());
        let mut tasks = vec![tokio::spawn(follow)];
        if let Some(duty) = content {
            let pulls = content::run(self.link.clone(), managed.clone(), duty, stop.clone());
            tasks.push(tokio::spawn(pulls));
        }
        let keep = membership::keep(self.link, managed, self.record, self.lease, stop);
        tasks.push(tokio::spawn(keep));
        tasks
    }

    /// This node's name.
    pub fn node(&self) -> &NodeName {
        &self.link.node
    }
}

/// A client for the endpoints; it connects lazily, so an unreachable etcd shows at the first call.
async fn connect(options: &FleetOptions) -> Result<Client, FleetError> {
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(link::OP_TIMEOUT)
        .with_timeout(link::OP_TIMEOUT)
        .with_keep_alive(std::time::Duration::from_secs(1), link::OP_TIMEOUT)
        .with_keep_alive_while_idle(true)
        // A member without a leader answers at once, instead of holding the call until it times out.
        .with_require_leader(true);
    if let Some(tls) = &options.tls {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|source| FleetError::TlsFile {
                path: path.clone(),
                source,
            })
        };
        let mut config = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        connect = connect.with_tls(config);
    }
    if options.endpoints.is_empty() {
        return Err(FleetError::Settings("no etcd endpoint".into()));
    }
    Client::connect(&options.endpoints, Some(connect))
        .await
        .map_err(|e| FleetError::Settings(e.to_string()))
}
