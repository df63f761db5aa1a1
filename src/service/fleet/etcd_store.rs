//! [`EtcdStore`]: the [`Store`] of a fleet's node. A change is one etcd transaction that only succeeds
//! when no other node changed the configuration since the revision this node serves (every change
//! rewrites `config/rev`, so its mod revision is the configuration's); otherwise it is refused as a
//! [`StoreError::Conflict`] naming the newer revision. The node's own SQLite store is its local copy:
//! what it served last, with that revision beside it, so that it starts and serves while etcd is away.

use std::path::PathBuf;
use std::sync::Arc;

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use super::link::{Link, TxnFailure};
use crate::service::managed::diff_stored;
use crate::service::store::{Audit, Delta, SqliteStore, Store, StoreError, Stored};

/// A fleet's store: etcd for changes, the node's SQLite store as its local copy.
pub struct EtcdStore {
    link: Arc<Link>,
    local: SqliteStore,
    /// The local copy's revision and fleet, beside the database.
    revision_file: PathBuf,
    /// What `load` gives: the configuration read from etcd at start, or (none) the local copy.
    initial: Option<(Stored, i64)>,
    /// The instance id the node claims its name with, kept in the revision file.
    instance: String,
}

/// What `revision_file` holds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LocalRevision {
    pub(crate) fleet: String,
    /// None until the local copy has taken a configuration.
    pub(crate) revision: Option<i64>,
    /// The instance id this state directory's node claims its name with: a node restarted before its
    /// old lease expired (after `kill -9`) takes back its own name. Only one process holds the state
    /// directory (its lock), so no other process can claim with it.
    #[serde(default)]
    pub(crate) instance: Option<String>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("fleet", &self.link.fleet)
            .field("node", &self.link.node)
            .finish_non_exhaustive()
    }
}

impl EtcdStore {
    pub(crate) fn new(
        link: Arc<Link>,
        local: SqliteStore,
        revision_file: PathBuf,
        initial: Option<(Stored, i64)>,
        instance: String,
    ) -> EtcdStore {
        EtcdStore {
            link,
            local,
            revision_file,
            initial,
            instance,
        }
    }

    /// What the revision file holds for `fleet`, if it is that fleet's.
    pub(crate) fn local_revision(file: &std::path::Path, fleet: &str) -> Option<LocalRevision> {
        let text = std::fs::read(file).ok()?;
        let local: LocalRevision = serde_json::from_slice(&text).ok()?;
        (local.fleet == fleet).then_some(local)
    }

    /// Writes the revision file (see [`write_local`]).
    fn write_revision(&self, revision: Option<i64>) -> Result<(), StoreError> {
        let record = LocalRevision {
            fleet: self.link.fleet.to_string(),
            revision,
            instance: Some(self.instance.clone()),
        };
        write_local(&self.revision_file, &record)
    }
}

/// Writes the revision file whole or not at all (a temporary file, synced, renamed over it).
pub(crate) fn write_local(
    file: &std::path::Path,
    record: &LocalRevision,
) -> Result<(), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        what: "fleet revision file",
        reason: format!("{}: {reason}", file.display()),
    };
    let text = serde_json::to_vec(record).map_err(|e| corrupt(e.to_string()))?;
    let tmp = file.with_extension("tmp");
    let written = (|| {
        let mut out = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut out, &text)?;
        out.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    written.map_err(|e| corrupt(e.to_string()))
}

impl Store for EtcdStore {
    fn load(&mut self) -> Result<Stored, StoreError> {
        match self.initial.take() {
            Some((stored, revision)) => {
                self.follow(&stored, revision)?;
                Ok(stored)
            }
            None => self.local.load(),
        }
    }

    fn commit(&mut self, deltas: &[Delta], audit: &Audit) -> Result<(), StoreError> {
        if deltas.is_empty() {
            return Ok(());
        }
        let keys = &self.link.keys;
        let applied = self.link.applied();
        // SECURITY: the threat is a node with a stale view overwriting a newer change it has not seen
        // (a lost update): the transaction only applies when `config/rev` has not changed after the
        // revision this node serves.
        let unchanged = Compare::mod_revision(keys.rev(), CompareOp::Less, applied + 1);
        let ops = keys
            .ops(deltas, audit, &self.link.node)
            .map_err(|reason| StoreError::TooLarge { reason })?;
        let txn = Txn::new()
            .when([unchanged])
            .and_then(ops)
            .or_else([TxnOp::get(keys.rev(), None)]);
        let answer = self
            .link
            .block(self.link.change_txn("committing the change to etcd", txn));
        let response = answer.map_err(|failure| match failure {
            TxnFailure::TooLarge(reason) => StoreError::TooLarge { reason },
            TxnFailure::Failed(reason) => StoreError::Unavailable { reason },
        })?;
        if !response.succeeded() {
            let newer = response
                .op_responses()
                .into_iter()
                .find_map(|op| match op {
                    TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.mod_revision()),
                    _ => None,
                })
                .unwrap_or(applied + 1);
            return Err(StoreError::Conflict { revision: newer });
        }
        let revision = response.header().map_or(applied, |h| h.revision());
        // The fleet has the change; the local copy follows. Should it fail, the revision stays where it
        // was and the follower takes the change again from etcd.
        match self.local.commit(deltas, audit) {
            Ok(()) => {
                self.link.set_applied(revision);
                if let Err(e) = self.write_revision(Some(revision)) {
                    tracing::warn!(target: "bits_compact::service", error = %e, "the local copy's revision is not kept");
                }
            }
            Err(e) => {
                tracing::warn!(target: "bits_compact::service", error = %e, "the local copy did not take a change the fleet took");
            }
        }
        Ok(())
    }

    fn revision(&self) -> Option<i64> {
        Some(self.link.applied())
    }

    fn latest(&mut self) -> Result<Option<i64>, StoreError> {
        let read = self.link.latest();
        let latest = self.link.block(read);
        latest
            .map(Some)
            .map_err(|reason| StoreError::Unavailable { reason })
    }

    fn follow(&mut self, stored: &Stored, revision: i64) -> Result<(), StoreError> {
        let current = self.local.load()?;
        let deltas = diff_stored(&current, stored);
        if !deltas.is_empty() {
            let audit = Audit {
                who: format!("fleet {}", self.link.fleet),
                what: format!("take the fleet's configuration at revision {revision}"),
            };
            self.local.commit(&deltas, &audit)?;
        }
        self.link.set_applied(revision);
        self.write_revision(Some(revision))
    }
}
