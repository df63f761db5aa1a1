//! Where a service keeps its configuration between runs: a small trait, [`Store`], and its SQLite
//! implementation, [`SqliteStore`].
//!
//! A store holds what `bcs serve` manages (groups with their URLs, TLS bindings, principals), never the
//! settings a server is built with (addresses, timeouts: those come from the command line). Changes arrive
//! as [`Delta`]s, several of them at once for one management call: a store applies them in one transaction,
//! with the audit record, and returns only once they are durable. A replicated store (a fleet's, on etcd)
//! implements it too: `load` at start, `commit` per change, each commit all or nothing, and a commit that
//! another node's newer change has overtaken is refused as a [`StoreError::Conflict`]. Such a store also
//! takes the changes made elsewhere ([`Store::follow`]) and says which revision of the shared
//! configuration it holds ([`Store::revision`]).
//!
//! The same database keeps the service's download jobs ([`SqliteJobStore`], their passwords sealed with a
//! [`JobKey`]) and, for their retention period, its final ones ([`SqliteEndedJobs`]).

mod ended_rows;
mod job_key;
mod job_rows;
mod sqlite;

use std::path::PathBuf;

pub(crate) use ended_rows::cutoff;
pub use ended_rows::SqliteEndedJobs;
pub use job_key::JobKey;
pub use job_rows::SqliteJobStore;
pub use sqlite::SqliteStore;

use crate::auth::Principals;
use crate::config::{GroupConfig, TlsBinding, UrlConfig};
use crate::url::UrlPrefix;

/// One change to the stored configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delta {
    /// A group's settings, created or replaced; its `urls` are ignored (they are [`Delta::PutUrl`]s). A new
    /// group goes after the others.
    PutGroup(GroupConfig),
    /// A group and its URLs are gone.
    DeleteGroup(UrlPrefix),
    /// A URL of an existing group, created or replaced.
    PutUrl(UrlPrefix, UrlConfig),
    /// A URL is gone (its suffix, compared case-insensitively).
    DeleteUrl(UrlPrefix, String),
    /// A port's TLS binding, created or replaced.
    PutTls(TlsBinding),
    /// A port's TLS binding is gone.
    DeleteTls(u16),
    /// The principals, replaced whole (`None`: none).
    PutPrincipals(Option<Principals>),
}

/// What a store holds: the managed part of a [`ServerConfig`](crate::ServerConfig).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// The groups in creation order, each with its URLs.
    pub groups: Vec<GroupConfig>,
    /// TLS bindings by port.
    pub tls: Vec<TlsBinding>,
    /// Users and groups.
    pub principals: Option<Principals>,
}

/// Who made a change and what it was: kept beside the change, in the same transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    /// The caller, as the management listener identified it (`uid 0 (local)`, `alice (basic) from
    /// 127.0.0.1:5000`).
    pub who: String,
    /// The call, as text (`add URL http://+:80/app/a.bin`).
    pub what: String,
}

/// A configuration store.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bits_compact::service::store::{Audit, Delta, SqliteStore, Store};
/// use bits_compact::config::GroupConfig;
///
/// let dir = tempfile::tempdir()?;
/// let mut store = SqliteStore::open(dir.path().join("config.db"))?;
/// let group = GroupConfig::new("http://+:8080/Demo/".parse()?);
/// let audit = Audit { who: "uid 0 (local)".into(), what: "create group".into() };
/// store.commit(&[Delta::PutGroup(group.clone())], &audit)?;
/// drop(store);
///
/// // Durable once `commit` returned: a new process reads it back.
/// let stored = SqliteStore::open(dir.path().join("config.db"))?.load()?;
/// assert_eq!(stored.groups, [group]);
/// # Ok(()) }
/// ```
pub trait Store: Send {
    /// Everything stored (empty on first use).
    fn load(&mut self) -> Result<Stored, StoreError>;

    /// Applies the deltas, in order, and records the audit line, all in one durable transaction: when this
    /// returns `Ok` the change survives a crash; on `Err` nothing of it was stored.
    fn commit(&mut self, deltas: &[Delta], audit: &Audit) -> Result<(), StoreError>;

    /// The revision of the shared configuration this store holds, for a store that follows one (a
    /// fleet's); `None` (the default) for a store of its own.
    fn revision(&self) -> Option<i64> {
        None
    }

    /// The revision of the shared configuration's latest change, read from where it is shared (a
    /// fleet's etcd), so that a change is made on a configuration at least that new; `None` (the
    /// default) for a store of its own.
    fn latest(&mut self) -> Result<Option<i64>, StoreError> {
        Ok(None)
    }

    /// Keeps `stored`, the whole configuration as changed elsewhere (by the fleet's other nodes), at
    /// `revision`, without passing it on. Only a store that follows a shared configuration takes it; the
    /// default refuses.
    fn follow(&mut self, stored: &Stored, revision: i64) -> Result<(), StoreError> {
        let _ = (stored, revision);
        Err(StoreError::NotShared)
    }
}

/// Why a store could not load or commit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The state directory or database could not be opened or created.
    #[error("cannot open the store {path:?}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer version of this program.
    #[error("the store has schema version {found}; this program knows versions up to {known} (refusing to downgrade it)")]
    TooNew {
        /// Its version.
        found: i64,
        /// The newest this program knows.
        known: i64,
    },
    /// A read or a write failed (disk full, I/O error, a locked database).
    #[error("the store failed")]
    Database(#[from] rusqlite::Error),
    /// The key that seals the jobs' credentials cannot be used (unreadable, the wrong size, or readable
    /// by others).
    #[error("cannot use the job key {path:?}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A fleet's change was refused: another node changed the configuration since this one last took
    /// it (its revision is newer than the one this node holds). Nothing was stored; once this node has
    /// taken the newer revision, the same call may succeed.
    #[error("another node changed the fleet's configuration first (revision {revision})")]
    Conflict {
        /// The revision of the newer change.
        revision: i64,
    },
    /// The fleet's coordinator (etcd) cannot be reached, did not answer in time, or is below quorum.
    /// Nothing was stored.
    #[error("the fleet's etcd is unavailable ({reason})")]
    Unavailable {
        /// What failed, for people.
        reason: String,
    },
    /// The fleet's etcd refused a change for its size (too many operations or too many bytes in one
    /// request), or a value could not be written. Nothing was stored; the same change fails again, made
    /// smaller (fewer groups or URLs at once) it may succeed.
    #[error("the change is too large for the fleet's etcd ({reason})")]
    TooLarge {
        /// What etcd said, for people.
        reason: String,
    },
    /// [`Store::follow`] on a store that follows no shared configuration.
    #[error("this store follows no shared configuration")]
    NotShared,
    /// A stored row could not be read back (written by hand, or damaged).
    #[error("a stored {what} is unreadable: {reason}")]
    Corrupt {
        /// Which kind of row.
        what: &'static str,
        /// Why.
        reason: String,
    },
}
