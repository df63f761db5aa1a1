//! What a node announces of its content in its record (`nodes/<node>`, under its lease): where its peers
//! pull from it, which verified copies it holds, and what it is fetching from whom. Being under the
//! lease, a node's holdings vanish with it: a node that died is never chosen to pull from.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::ContentRecord;
use crate::lock::Recover;

/// How many held hashes a record lists (64 hex digits each: 256 KiB at most).
pub(crate) const MAX_HELD_LISTED: usize = 4096;

/// How many fetches a record lists.
pub(crate) const MAX_FETCHING_LISTED: usize = 64;

/// One fetch under way on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FetchRecord {
    /// The content.
    pub(crate) sha256: String,
    /// The node it is pulled from.
    pub(crate) from: String,
    /// Bytes held so far.
    pub(crate) bytes: u64,
    /// Its size.
    pub(crate) total: u64,
    /// Bytes per second over the last seconds.
    pub(crate) rate: u64,
}

/// What the node announces now, and the fleet's content as this node last saw it (for `GET /v1/fleet`).
#[derive(Debug, Default)]
pub(crate) struct Announced {
    inner: Mutex<Announcement>,
}

/// See [`Announced`].
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Announcement {
    /// The base URL its peers pull from (`http://ADDR:PORT/bcs-content/`).
    pub(crate) peer: Option<String>,
    /// The hashes of its verified copies (what its peer path serves).
    pub(crate) holds: Vec<String>,
    /// The hashes its configuration names that it does not hold yet.
    pub(crate) needs: Vec<String>,
    /// The revision of the configuration `needs` was made from (at least).
    pub(crate) needs_revision: i64,
    /// Its fetches.
    pub(crate) fetching: Vec<FetchRecord>,
    /// The content the configuration names, each with its URLs (`prefix` + `suffix`).
    pub(crate) wanted: Vec<(ContentRecord, Vec<String>)>,
}

impl Announced {
    pub(crate) fn get(&self) -> Announcement {
        self.inner.lock().recover().clone()
    }

    pub(crate) fn set(&self, change: impl FnOnce(&mut Announcement)) {
        change(&mut self.inner.lock().recover());
    }
}
