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

/// The managed server, answering `GET /v1/fleet` when it is a fleet's node.
pub(crate) fn attach(joined: &Joined, managed: Managed) -> Arc<Managed> {
    #[cfg(feature = "fleet")]
    if let Some(fleet) = &joined.0 {
        return Arc::new(managed.with_fleet(fleet.view()));
    }
    let _ = joined;
    Arc::new(managed)
}

/// Follows the fleet and keeps the membership until `stop`: the task ends once both have stopped (the
/// lease returned). Ends at once for a service that is no fleet's node.
pub(crate) fn run(
    joined: Joined,
    managed: &Arc<Managed>,
    stop: &CancellationToken,
) -> JoinHandle<()> {
    #[cfg(feature = "fleet")]
    if let Some(fleet) = joined.0 {
        let tasks = fleet.run(managed.clone(), stop.clone());
        return tokio::spawn(async move {
            for task in tasks {
                let _ = task.await;
            }
        });
    }
    let _ = (joined, managed, stop);
    tokio::spawn(async {})
}
