//! Membership: a node holds a lease ([`LEASE_TTL`]) on `nodes/<node>`, whose value is its record
//! (addresses, version, the revision it serves, its groups, what it cannot serve), and keeps a copy of
//! the record in `known/<node>` without a lease, so that a node that is gone is still listed, as not
//! alive, once its lease expires. The name is taken with a put-if-absent: a second process with the same
//! node name is refused while the first holds the lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::announce::{FetchRecord, MAX_FETCHING_LISTED, MAX_HELD_LISTED};
use super::link::Link;
use super::FleetError;
use crate::service::error::MgmtError;
use crate::service::{FleetStatus, FleetView, Managed, NodeStatus};

/// How long a node's lease lives without a keep-alive: a node that stops or loses etcd is listed as not
/// alive this long after.
pub const LEASE_TTL: Duration = Duration::from_secs(5);

/// How many of a node's groups its record lists: the record stays far below etcd's request limit
/// (1.5 MiB by default) whatever the node serves.
const MAX_GROUPS_LISTED: usize = 256;

/// How many of a node's unserved warnings its record lists.
const MAX_UNSERVED_LISTED: usize = 32;

/// What a node says of itself in `nodes/<node>` and `known/<node>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct NodeRecord {
    pub(crate) addresses: Vec<String>,
    pub(crate) version: String,
    pub(crate) revision: i64,
    pub(crate) groups: Vec<String>,
    #[serde(default)]
    pub(crate) unserved: Vec<String>,
    /// How many groups it serves, and how many warnings it has: the lists above hold at most
    /// [`MAX_GROUPS_LISTED`] and [`MAX_UNSERVED_LISTED`] of them.
    #[serde(default)]
    pub(crate) groups_total: usize,
    #[serde(default)]
    pub(crate) unserved_total: usize,
    /// Tells this process's record from another's with the same name.
    pub(crate) instance: String,
    /// Where its peers pull content from it (`http://ADDR:PORT/bcs-content/`), if it serves them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) peer: Option<String>,
    /// The hashes of the verified copies it holds (at most [`MAX_HELD_LISTED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) holds: Vec<String>,
    /// What it is fetching, from whom (at most [`MAX_FETCHING_LISTED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) fetching: Vec<FetchRecord>,
    /// The hashes it needs and does not hold yet (at most [`MAX_HELD_LISTED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) needs: Vec<String>,
    /// The configuration's revision `needs` was made from; 0: it pulls no content (no content duty,
    /// or a version without it).
    #[serde(default)]
    pub(crate) needs_revision: i64,
}

impl NodeRecord {
    pub(crate) fn new(addresses: Vec<String>) -> NodeRecord {
        let mut instance = [0u8; 8];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut instance);
        NodeRecord {
            addresses,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            revision: 0,
            groups: Vec::new(),
            unserved: Vec::new(),
            groups_total: 0,
            unserved_total: 0,
            instance: instance.iter().map(|b| format!("{b:02x}")).collect(),
            peer: None,
            holds: Vec::new(),
            fetching: Vec::new(),
            needs: Vec::new(),
            needs_revision: 0,
        }
    }

    /// The record as it stands: the revision, groups and warnings of `managed` now.
    fn now(&self, link: &Link, managed: &Managed) -> NodeRecord {
        let groups = managed
            .groups()
            .iter()
            .map(|g| g.prefix.to_string())
            .collect();
        let mut record = self.with(link.applied(), groups, managed.unserved());
        let announced = link.announced.get();
        record.peer = announced.peer;
        record.holds = announced.holds.into_iter().take(MAX_HELD_LISTED).collect();
        record.needs = announced.needs.into_iter().take(MAX_HELD_LISTED).collect();
        record.needs_revision = announced.needs_revision;
        record.fetching = (announced.fetching.into_iter())
            .take(MAX_FETCHING_LISTED)
            .collect();
        record
    }

    /// The record without what it says of content (for `known/<node>`, which outlives the node).
    fn without_content(&self) -> NodeRecord {
        NodeRecord {
            peer: None,
            holds: Vec::new(),
            fetching: Vec::new(),
            needs: Vec::new(),
            needs_revision: 0,
            ..self.clone()
        }
    }

    /// The record at `revision` with these groups and warnings, the lists capped, their counts kept.
    fn with(&self, revision: i64, groups: Vec<String>, unserved: Vec<String>) -> NodeRecord {
        NodeRecord {
            revision,
            groups_total: groups.len(),
            unserved_total: unserved.len(),
            groups: groups.into_iter().take(MAX_GROUPS_LISTED).collect(),
            unserved: unserved.into_iter().take(MAX_UNSERVED_LISTED).collect(),
            ..self.clone()
        }
    }
}

/// Takes the node's name in the fleet: a new lease, and the record put under it unless another live
/// process holds the name. Returns the lease.
pub(crate) async fn claim(link: &Link, record: &NodeRecord) -> Result<i64, FleetError> {
    let unreachable = |reason: String| FleetError::Unreachable { reason };
    let ttl = i64::try_from(LEASE_TTL.as_secs()).unwrap_or(5);
    let grant = || {
        let mut client = link.client();
        async move { client.lease_grant(ttl, None).await }
    };
    let lease = Link::retrying("taking a lease", grant)
        .await
        .map_err(unreachable)?
        .id();
    // Whatever fails after the grant, the lease goes: a lease left to expire would keep a record put
    // under it (and so the name) for its whole life.
    let claimed = claim_under(link, record, lease).await;
    if claimed.is_err() {
        let _ = link.revoke(lease).await;
    }
    claimed
}

/// [`claim`] under the granted `lease`.
async fn claim_under(link: &Link, record: &NodeRecord, lease: i64) -> Result<i64, FleetError> {
    let unreachable = |reason: String| FleetError::Unreachable { reason };
    let value = serde_json::to_vec(record).map_err(|e| unreachable(e.to_string()))?;
    let node = link.keys.node(&link.node);
    let puts = [
        TxnOp::put(
            node.clone(),
            value.clone(),
            Some(PutOptions::new().with_lease(lease)),
        ),
        TxnOp::put(link.keys.known_node(&link.node), value, None),
    ];
    let txn = Txn::new()
        .when([Compare::create_revision(node.clone(), CompareOp::Equal, 0)])
        .and_then(puts.clone())
        .or_else([TxnOp::get(node.clone(), None)]);
    let claimed = link
        .txn("taking the node's name", txn)
        .await
        .map_err(unreachable)?;
    if claimed.succeeded() {
        return Ok(lease);
    }
    // This process's own record, under a lease it lost: it takes the name again. The record's value is
    // compared, so another process that took the name meanwhile keeps it.
    let held = claimed.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    });
    let is_ours = |value: &[u8]| {
        serde_json::from_slice::<NodeRecord>(value).is_ok_and(|r| r.instance == record.instance)
    };
    if let Some(held) = held.filter(|v| is_ours(v)) {
        let again = Txn::new()
            .when([Compare::value(node, CompareOp::Equal, held)])
            .and_then(puts);
        let taken = link
            .txn("taking the node's name", again)
            .await
            .map_err(unreachable)?;
        if taken.succeeded() {
            return Ok(lease);
        }
    }
    Err(FleetError::NodeTaken {
        fleet: link.fleet.to_string(),
        node: link.node.to_string(),
    })
}

/// Keeps the node's lease alive and its record current until `stop`; takes the name again (a new
/// lease) when the lease was lost, e.g. while etcd was away. On `stop` the lease is returned, so the
/// node is listed as not alive at once.
pub(crate) async fn keep(
    link: Arc<Link>,
    managed: Arc<Managed>,
    record: NodeRecord,
    mut lease: Option<i64>,
    stop: CancellationToken,
) {
    let mut warned = false;
    loop {
        let held = match lease {
            Some(held) => held,
            None => match claim(&link, &record.now(&link, &managed)).await {
                Ok(held) => held,
                Err(e) => {
                    if !std::mem::replace(&mut warned, true) {
                        tracing::warn!(target: "bits_compact::service", error = %e, "not a live member of the fleet; retrying");
                    }
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        if std::mem::take(&mut warned) {
            tracing::info!(target: "bits_compact::service", "a live member of the fleet again");
        }
        let lost = tokio::select! {
            () = stop.cancelled() => {
                let _ = link.revoke(held).await;
                return;
            }
            lost = hold(&link, &managed, &record, held) => lost,
        };
        tracing::warn!(target: "bits_compact::service", reason = %lost, "the fleet lease was lost");
        warned = true;
        lease = None;
    }
}

/// Renews the lease every third of its life and refreshes the record when it changed; returns why it
/// could not.
async fn hold(link: &Link, managed: &Managed, record: &NodeRecord, lease: i64) -> String {
    let keep = || {
        let mut client = link.client();
        async move { client.lease_keep_alive(lease).await }
    };
    let (mut keeper, mut answers) = match Link::retrying("renewing the lease", keep).await {
        Ok(pair) => pair,
        Err(e) => return e,
    };
    let mut last: Option<NodeRecord> = None;
    let mut last_known: Option<NodeRecord> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let mut renewed = tokio::time::Instant::now() - LEASE_TTL;
    loop {
        tick.tick().await;
        if renewed.elapsed() >= LEASE_TTL / 3 {
            if let Err(e) = Link::bounded("renewing the lease", keeper.keep_alive()).await {
                return e;
            }
            match Link::bounded("renewing the lease", answers.message()).await {
                Ok(Some(answer)) if answer.ttl() > 0 => renewed = tokio::time::Instant::now(),
                Ok(_) => return "etcd says the lease has expired".into(),
                Err(e) => return e,
            }
        }
        let now = record.now(link, managed);
        if last.as_ref() != Some(&now) {
            let value = serde_json::to_vec(&now).unwrap_or_default();
            let mut puts = vec![TxnOp::put(
                link.keys.node(&link.node),
                value,
                Some(PutOptions::new().with_lease(lease)),
            )];
            // The kept copy lists no content (only the leased record is read for it), and is written
            // only when what it lists changed.
            let known = now.without_content();
            if last_known.as_ref() != Some(&known) {
                let value = serde_json::to_vec(&known).unwrap_or_default();
                puts.push(TxnOp::put(link.keys.known_node(&link.node), value, None));
            }
            let txn = Txn::new().and_then(puts);
            if let Err(e) = link.txn("updating the node's record", txn).await {
                return e;
            }
            last = Some(now);
            last_known = Some(known);
        }
    }
}

/// The live nodes' records, by name (one read, bounded in time).
pub(crate) async fn live(link: &Link) -> Result<BTreeMap<String, NodeRecord>, String> {
    let read = || {
        let (mut client, key) = (link.client(), link.keys.nodes());
        async move { client.get(key, Some(GetOptions::new().with_prefix())).await }
    };
    let answer = Link::retrying("reading the fleet's members", read).await?;
    let prefix = link.keys.nodes();
    Ok(answer
        .kvs()
        .iter()
        .filter_map(|kv| {
            let name = kv.key_str().ok()?.strip_prefix(&prefix)?.to_owned();
            let record: NodeRecord = serde_json::from_slice(kv.value()).ok()?;
            Some((name, record))
        })
        .collect())
}

/// `GET /v1/fleet` on a fleet's node: the records of live and known nodes, read at one revision.
pub(crate) struct Members {
    pub(crate) link: Arc<Link>,
}

impl FleetView for Members {
    fn status(&self) -> Result<FleetStatus, MgmtError> {
        let keys = &self.link.keys;
        let prefix = || Some(GetOptions::new().with_prefix());
        let txn = Txn::new().and_then([
            TxnOp::get(keys.nodes(), prefix()),
            TxnOp::get(keys.known(), prefix()),
            TxnOp::get(keys.rev(), None),
        ]);
        let read = self
            .link
            .block(self.link.txn("reading the fleet's members", txn))
            .map_err(|reason| crate::service::store::StoreError::Unavailable { reason })?;
        let mut gets = read.op_responses().into_iter().filter_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get),
            _ => None,
        });
        let (live, known, rev) = match (gets.next(), gets.next(), gets.next()) {
            (Some(a), Some(b), Some(c)) => (a, b, c),
            _ => return Err(MgmtError::Internal("etcd's answer lacks a read".into())),
        };
        let revision = rev.kvs().first().map_or(0, |kv| kv.mod_revision());
        let records = |get: &etcd_client::GetResponse, prefix: String| {
            get.kvs()
                .iter()
                .filter_map(|kv| {
                    let name = kv.key_str().ok()?.strip_prefix(&prefix)?.to_owned();
                    let record: NodeRecord = serde_json::from_slice(kv.value()).ok()?;
                    Some((name, record))
                })
                .collect::<BTreeMap<_, _>>()
        };
        let live = records(&live, keys.nodes());
        let mut all = records(&known, keys.known());
        all.extend(live.clone());
        let nodes = all
            .into_iter()
            .map(|(name, r)| NodeStatus {
                alive: live.contains_key(&name),
                name,
                addresses: r.addresses,
                version: r.version,
                revision: r.revision,
                lag: (revision - r.revision).max(0),
                groups_total: r.groups_total.max(r.groups.len()),
                unserved_total: r.unserved_total.max(r.unserved.len()),
                groups: r.groups,
                unserved: r.unserved,
            })
            .collect();
        let content = super::content::status(&self.link.announced.get().wanted, &live);
        Ok(FleetStatus {
            fleet: self.link.fleet.to_string(),
            node: self.link.node.to_string(),
            revision,
            nodes,
            content,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node with very many groups and warnings (long ones: a hostile file name) still writes a
    /// record far below etcd's request limit, and says how many there are.
    #[test]
    fn a_record_stays_small_whatever_the_node_serves() {
        let long = "x".repeat(4096);
        let groups = (0..100_000).map(|i| format!("http://+:80/{i}/")).collect();
        let unserved = (0..100_000).map(|i| format!("{i} {long}")).collect();
        let record = NodeRecord::new(vec!["127.0.0.1".into()]).with(7, groups, unserved);
        assert_eq!(
            (record.groups_total, record.unserved_total),
            (100_000, 100_000)
        );
        assert_eq!(record.groups.len(), MAX_GROUPS_LISTED);
        assert_eq!(record.unserved.len(), MAX_UNSERVED_LISTED);
        let size = serde_json::to_vec(&record).unwrap().len();
        assert!(size < 512 * 1024, "{size} bytes");
    }
}
