//! [`Link`]: this node's connection to the fleet's etcd, shared by its store, its follower and its
//! membership. Every call is bounded in time ([`OP_TIMEOUT`]): with etcd below quorum a call fails in
//! seconds instead of hanging, and a management call that needed it changes nothing.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use etcd_client::{Client, GetOptions, Txn, TxnResponse};

use super::announce::Announced;
use super::keys::{ConfigMap, Entry, Keys};
use super::name::{FleetName, NodeName};

/// How long one etcd call may take before it counts as failed: longer than an election on a healthy
/// cluster (etcd's default election timeout is 1 s), short enough that a change refused for want of
/// quorum is refused within 5 s.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// The connection, the fleet's keys, and the revision this node has applied.
pub(crate) struct Link {
    client: Client,
    pub(crate) keys: Keys,
    pub(crate) fleet: FleetName,
    pub(crate) node: NodeName,
    runtime: tokio::runtime::Handle,
    /// The revision of the fleet's configuration this node serves (0: none yet).
    applied: AtomicI64,
    /// What the node announces of its content, and the content its configuration names.
    pub(crate) announced: Announced,
}

impl Link {
    pub(crate) fn new(client: Client, fleet: FleetName, node: NodeName) -> Link {
        Link {
            client,
            keys: Keys::new(&fleet),
            fleet,
            node,
            runtime: tokio::runtime::Handle::current(),
            applied: AtomicI64::new(0),
            announced: Announced::default(),
        }
    }

    /// A client to make calls with (clones share one connection).
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    pub(crate) fn applied(&self) -> i64 {
        self.applied.load(Ordering::SeqCst)
    }

    pub(crate) fn set_applied(&self, revision: i64) {
        self.applied.fetch_max(revision, Ordering::SeqCst);
    }

    /// `call` bounded by [`OP_TIMEOUT`]; a failure as text.
    pub(crate) async fn bounded<T>(
        what: &str,
        call: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(OP_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(format!(
                "{what}: no answer within {} s (etcd unreachable or below quorum)",
                OP_TIMEOUT.as_secs()
            )),
        }
    }

    /// A transaction, made again while the member it went to cannot be connected to (see
    /// `Link::attempts`).
    pub(crate) async fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse, String> {
        let call = || {
            let (mut client, txn) = (self.client(), txn.clone());
            async move { client.txn(txn).await }
        };
        Link::attempts(what, call, false).await
    }

    /// [`Link::txn`] for a configuration change: a change etcd refuses for its size is told apart.
    pub(crate) async fn change_txn(&self, what: &str, txn: Txn) -> Result<TxnResponse, TxnFailure> {
        let call = || {
            let (mut client, txn) = (self.client(), txn.clone());
            async move { client.txn(txn).await }
        };
        Link::classified(what, call, false).await
    }

    /// `call()`, a read, bounded by [`OP_TIMEOUT`], made again while the failure is a member that
    /// cannot be connected to or has no leader (an election under way, as when the leader died).
    pub(crate) async fn retrying<T, F: Future<Output = Result<T, etcd_client::Error>>>(
        what: &str,
        call: impl FnMut() -> F,
    ) -> Result<T, String> {
        Link::attempts(what, call, true).await
    }

    /// `call()` bounded by [`OP_TIMEOUT`], made again while the failure is a member that cannot be
    /// connected to: the client spreads calls over the endpoints, and one of them may be down while the
    /// others have quorum. Such a call never reached etcd, so making it again is safe, even for a
    /// change; `reads` also retries a member without a leader, which only a read may be.
    async fn attempts<T, F: Future<Output = Result<T, etcd_client::Error>>>(
        what: &str,
        call: impl FnMut() -> F,
        reads: bool,
    ) -> Result<T, String> {
        Link::classified(what, call, reads)
            .await
            .map_err(|failure| match failure {
                TxnFailure::TooLarge(reason) | TxnFailure::Failed(reason) => reason,
            })
    }

    /// [`Link::attempts`], telling a request etcd refuses for its size apart from the other failures.
    async fn classified<T, F: Future<Output = Result<T, etcd_client::Error>>>(
        what: &str,
        mut call: impl FnMut() -> F,
        reads: bool,
    ) -> Result<T, TxnFailure> {
        let attempts = async {
            loop {
                match call().await {
                    Err(e) if is_not_connected(&e) || (reads && is_leaderless(&e)) => {
                        tracing::debug!(target: "bits_compact::service", error = %e, "{what}: an etcd member is not reachable; trying another");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => return other,
                }
            }
        };
        match tokio::time::timeout(OP_TIMEOUT, attempts).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) if is_too_large(&e) => Err(TxnFailure::TooLarge(format!("{what}: {e}"))),
            Ok(Err(e)) => Err(TxnFailure::Failed(format!("{what}: {e}"))),
            Err(_) => Err(TxnFailure::Failed(format!(
                "{what}: no answer within {} s (etcd unreachable or below quorum)",
                OP_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Runs `call` to completion from synchronous code (a store call, made on the blocking pool or under
    /// the writer lock), on the runtime the link was made on.
    pub(crate) fn block<T>(&self, call: impl Future<Output = T>) -> T {
        tokio::task::block_in_place(|| self.runtime.block_on(call))
    }

    /// The revision of the configuration's latest change (0: none yet).
    pub(crate) async fn latest(&self) -> Result<i64, String> {
        let read = || {
            let (mut client, key) = (self.client(), self.keys.rev());
            async move { client.get(key, None).await }
        };
        let answer = Link::retrying("reading the fleet's revision", read).await?;
        Ok(answer.kvs().first().map_or(0, |kv| kv.mod_revision()))
    }

    /// Returns a lease (its keys go at once).
    pub(crate) async fn revoke(&self, lease: i64) -> Result<(), String> {
        Link::retrying("returning the lease", || {
            let mut client = self.client();
            async move { client.lease_revoke(lease).await }
        })
        .await
        .map(drop)
    }

    /// The whole configuration, read at one revision: its keys and that revision.
    pub(crate) async fn read_config(&self) -> Result<(ConfigMap, i64), String> {
        let read = || {
            let mut client = self.client();
            let key = self.keys.config();
            async move { client.get(key, Some(GetOptions::new().with_prefix())).await }
        };
        let response = Link::retrying("reading the fleet's configuration", read).await?;
        let revision = response.header().map_or(0, |h| h.revision());
        let map = response
            .kvs()
            .iter()
            .filter_map(|kv| {
                let key = kv.key_str().ok()?.to_owned();
                let entry = Entry {
                    created: kv.create_revision(),
                    value: kv.value().to_vec(),
                };
                Some((key, entry))
            })
            .collect();
        Ok((map, revision))
    }
}

/// Whether a call failed before reaching etcd: no connection to the member it was sent to (gRPC status
/// UNAVAILABLE, 14, is what the transport answers for a refused connection).
fn is_not_connected(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => {
            status.code() as i32 == 14 && status.message().contains("connect")
        }
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

/// Why a transaction failed: etcd refused it for its size (too many operations, a request too large:
/// the same change fails again), or anything else (etcd unreachable, below quorum), each as text.
pub(crate) enum TxnFailure {
    /// etcd answered InvalidArgument or ResourceExhausted.
    TooLarge(String),
    /// Any other failure.
    Failed(String),
}

/// Whether etcd refused the request itself (gRPC InvalidArgument, 3, as for "too many operations in txn
/// request"; ResourceExhausted, 8, as for a request over its size limit): making it again cannot help.
fn is_too_large(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => matches!(status.code() as i32, 3 | 8),
        _ => false,
    }
}

/// Whether the member answered that it has no leader now (an election, or no quorum).
fn is_leaderless(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => status.message().contains("leader"),
        _ => false,
    }
}
