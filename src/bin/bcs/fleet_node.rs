//! `bcs serve --etcd URL[,URL...] --fleet NAME --node NAME`: the node's side of a fleet. It joins the
//! fleet (refused while another process holds the node name), takes the fleet's configuration (or, with
//! etcd unreachable, this state directory's copy of it, saying so), then follows the fleet's changes and
//! keeps its membership until the service stops. The flags exist in every build; without the `fleet`
//! feature `--etcd` is an error that names it.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use bits_compact::service::store::{SqliteStore, Store};
use bits_compact::service::Managed;
#[cfg(feature = "fleet")]
use bits_compact::service::{fleet::PeerPath, ContentStore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::serve::ServeArgs;
use crate::CliError;

/// The fleet flags, checked.
pub(crate) struct FleetArgs(
    #[cfg(feature = "fleet")] Option<bits_compact::service::fleet::FleetOptions>,
);

/// The fleet this node joined, if any.
pub(crate) struct Joined(#[cfg(feature = "fleet")] Option<bits_compact::service::fleet::Fleet>);

impl FleetArgs {
    /// The flags as the fleet's options: `--fleet` and `--node` go with `--etcd`, and their names are
    /// key segments. Without the feature, any of them is an error naming it.
    pub(crate) fn parse(args: &ServeArgs) -> Result<FleetArgs, CliError> {
        let given = !args.etcd.is_empty()
            || args.fleet.is_some()
            || args.node.is_some()
            || args.etcd_ca.is_some()
            || args.etcd_cert.is_some();
        if let Some(addr) = args.fleet_peer {
            // Announced to the peers as it is: an address they can reach, not "any".
            if addr.ip().is_unspecified() || addr.port() == 0 {
                return Err(CliError::Serve(format!(
                    "--fleet-peer {addr}: give the address and port the other nodes reach this one at (not 0.0.0.0, ::, or port 0)"
                )));
            }
        }
        if !given && (args.fleet_peer.is_some() || args.fleet_pull_rate.is_some()) {
            return Err(CliError::Serve(
                "--fleet-peer and --fleet-pull-rate are a fleet's node's: they need --etcd URL[,URL...], --fleet NAME and --node NAME".into(),
            ));
        }
        #[cfg(not(feature = "fleet"))]
        {
            if given {
                return Err(CliError::Serve(
                    "--etcd needs a bcs built with the `fleet` feature (cargo build --release --features fleet)".into(),
                ));
            }
            Ok(FleetArgs())
        }
        #[cfg(feature = "fleet")]
        {
            use bits_compact::service::fleet::{EtcdTls, FleetName, FleetOptions, NodeName};
            if !given {
                return Ok(FleetArgs(None));
            }
            let (Some(fleet), Some(node), false) = (&args.fleet, &args.node, args.etcd.is_empty())
            else {
                return Err(CliError::Serve(
                    "a fleet's node needs --etcd URL[,URL...], --fleet NAME and --node NAME".into(),
                ));
            };
            let bad = |e: bits_compact::service::fleet::NameError| CliError::Serve(e.to_string());
            let fleet: FleetName = fleet.parse().map_err(bad)?;
            let node: NodeName = node.parse().map_err(bad)?;
            let tls = match (&args.etcd_ca, &args.etcd_cert, &args.etcd_key) {
                (None, None, None) => None,
                (Some(ca), cert, key) => Some(EtcdTls {
                    ca: ca.clone(),
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                (None, _, _) => return Err(CliError::Serve(
                    "--etcd-cert needs --etcd-ca (the CA etcd's certificate is checked against)"
                        .into(),
                )),
            };
            Ok(FleetArgs(Some(FleetOptions {
                endpoints: args.etcd.clone(),
                fleet,
                node,
                tls,
                addresses: Vec::new(),
            })))
        }
    }
}

/// The service's store: `local` itself, or (a fleet's node) the fleet's store with `local` as its copy.
pub(crate) async fn join(
    args: FleetArgs,
    local: SqliteStore,
    state: &Path,
    bind: &[IpAddr],
) -> Result<(Box<dyn Store>, Joined), CliError> {
    #[cfg(not(feature = "fleet"))]
    {
        let _ = (args, state, bind);
        Ok((Box::new(local), Joined()))
    }
    #[cfg(feature = "fleet")]
    {
        use bits_compact::service::fleet::Fleet;
        let Some(mut options) = args.0 else {
            return Ok((Box::new(local), Joined(None)));
        };
        options.addresses = bind.iter().map(ToString::to_string).collect();
        let (fleet, node) = (options.fleet.clone(), options.node.clone());
        let (joined, store) = Fleet::join(options, local, state.join("fleet.json"))
            .await
            .map_err(|e| CliError::Serve(crate::chain(&e)))?;
        match &joined.from_local_copy {
            Some(note) => note!("bcs: warning: {note}"),
            None => say!("bcs: node {node} joined fleet {fleet}"),
        }
        Ok((Box::new(store), Joined(Some(joined))))
    }
}

/// A fleet's node's content: its store (whose directory the server serves content from), its pulls'
/// jobs and its peer path. Made before the node joins, so that the server is built with it.
pub(crate) struct Content(
    #[cfg(feature = "fleet")] Option<(Arc<ContentStore>, Option<Arc<PeerPath>>)>,
);

impl Content {
    /// The content store under `state` and the peer path on `peer`, for a fleet's node; nothing
    /// otherwise. The content directory goes to `builder`.
    pub(crate) fn open(
        args: &FleetArgs,
        state: &Path,
        peer: Option<std::net::SocketAddr>,
        builder: bits_compact::ServerBuilder,
    ) -> Result<(Content, bits_compact::ServerBuilder), CliError> {
        #[cfg(feature = "fleet")]
        if args.0.is_some() {
            let store = ContentStore::open(state).map_err(|e| CliError::Serve(crate::chain(&e)))?;
            let builder = builder.content_dir(store.dir());
            let peer = match peer {
                Some(addr) => {
                    let log = Some(state.join("peer-access.log"));
                    let path = PeerPath::new(addr, &store, log).map_err(CliError::Library)?;
                    Some(Arc::new(path))
                }
                None => None,
            };
            return Ok((Content(Some((Arc::new(store), peer))), builder));
        }
        let _ = (args, state, peer);
        Ok((
            Content(
                #[cfg(feature = "fleet")]
                None,
            ),
            builder,
        ))
    }

    /// The peer path's server, to serve until the service stops.
    pub(crate) fn peer_server(&self) -> Option<bits_compact::Server> {
        #[cfg(feature = "fleet")]
        if let Some((_, Some(peer))) = &self.0 {
            return Some(peer.server().clone());
        }
        None
    }
}

/// The managed server, answering `GET /v1/fleet` when it is a fleet's node and publishing by content.
pub(crate) fn attach(joined: &Joined, content: &Content, managed: Managed) -> Arc<Managed> {
    #[cfg(feature = "fleet")]
    if let Some(fleet) = &joined.0 {
        let mut managed = managed.with_fleet(fleet.view());
        // A node publishes by content only when its peers can pull from it.
        if let Some((store, Some(_))) = &content.0 {
            managed = managed.with_content(store.clone(), fleet.node().as_str());
        }
        return Arc::new(managed);
    }
    let _ = (joined, content);
    Arc::new(managed)
}

/// Follows the fleet and keeps the membership until `stop`: the task ends once both have stopped (the
/// lease returned). Ends at once for a service that is no fleet's node.
pub(crate) async fn run(
    joined: Joined,
    content: Content,
    state: &Path,
    pull_rate: Option<bits_compact::ByteRate>,
    managed: &Arc<Managed>,
    stop: &CancellationToken,
) -> Result<JoinHandle<()>, CliError> {
    #[cfg(feature = "fleet")]
    if let Some(fleet) = joined.0 {
        let duty = match content.0 {
            Some((store, peer)) => {
                let jobs = content_jobs(state, pull_rate).await?;
                Some(bits_compact::service::fleet::ContentDuty { store, jobs, peer })
            }
            None => None,
        };
        let tasks = fleet.run(managed.clone(), duty, stop.clone());
        return Ok(tokio::spawn(async move {
            for task in tasks {
                let _ = task.await;
            }
        }));
    }
    let _ = (joined, content, state, pull_rate, managed, stop);
    Ok(tokio::spawn(async {}))
}

/// The jobs that pull content: their own manager, persisted in `STATE/content-jobs` (so a node killed
/// mid-pull resumes from the bytes it has), writing only into the content store's incoming directory.
#[cfg(feature = "fleet")]
async fn content_jobs(
    state: &Path,
    rate: Option<bits_compact::ByteRate>,
) -> Result<bits_compact::JobManager, CliError> {
    let store = bits_compact::DirStore::open(state.join("content-jobs"))
        .map_err(|e| CliError::Serve(format!("the content jobs: {}", crate::chain(&e))))?;
    let mut builder = bits_compact::JobManager::builder()
        .store(store)
        .max_transfers(4)
        .no_symlinks(true);
    if let Some(rate) = rate {
        builder = builder.job_bandwidth(rate);
    }
    builder
        .start()
        .await
        .map_err(|e| CliError::Serve(format!("the content jobs: {}", crate::chain(&e))))
}
