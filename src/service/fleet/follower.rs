//! The follower: every node takes the fleet's configuration changes in revision order. It reads the
//! whole configuration at one revision, serves it, then watches the configuration's keys from the next
//! revision, each watch answer (all of a transaction's events at once) updating its map of the keys and
//! serving the configuration they make. When the watch fails, is cancelled (etcd compacted the revision
//! it asked for) or etcd cannot be reached, it starts over with a whole read, retrying until it can:
//! meanwhile the node serves what it has.
//!
//! A node's own changes come back through the watch too: their revision is the one the node serves
//! already, and [`Managed::follow`] takes a revision it holds as nothing to do.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use tokio_util::sync::CancellationToken;

use super::keys::{ConfigMap, Entry};
use super::link::Link;
use crate::service::Managed;

/// The longest pause between two attempts to reach etcd.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Follows the fleet's configuration until `stop`.
pub(crate) async fn follow(link: Arc<Link>, managed: Arc<Managed>, stop: CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    loop {
        let outcome = tokio::select! {
            () = stop.cancelled() => return,
            outcome = follow_once(&link, &managed, &mut failing) => outcome,
        };
        // Logged once per outage, not per attempt.
        if !failing {
            tracing::warn!(target: "bits_compact::service", error = %outcome, "not following the fleet's changes; serving the last configuration taken and retrying");
            failing = true;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One whole read and the watch after it; returns why it stopped.
async fn follow_once(link: &Arc<Link>, managed: &Arc<Managed>, failing: &mut bool) -> String {
    let (mut map, revision) = match link.read_config().await {
        Ok(read) => read,
        Err(e) => return e,
    };
    if let Err(e) = take(link, managed, &map, revision).await {
        return e;
    }
    if std::mem::take(failing) {
        tracing::info!(target: "bits_compact::service", revision, "following the fleet's changes again");
    }
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let watch = || {
        let (mut client, key, options) = (link.client(), link.keys.config(), options.clone());
        async move { client.watch(key, Some(options)).await }
    };
    let mut stream = match Link::retrying("watching the fleet's configuration", watch).await {
        Ok(stream) => stream,
        Err(e) => return e,
    };
    loop {
        let answer = match stream.message().await {
            Ok(Some(answer)) => answer,
            Ok(None) => return "etcd ended the watch".into(),
            Err(e) => return format!("the watch failed: {e}"),
        };
        if answer.canceled() {
            return format!(
                "etcd cancelled the watch (compacted to revision {}: {}); reading the whole configuration",
                answer.compact_revision(),
                answer.cancel_reason()
            );
        }
        let mut newest = 0;
        for event in answer.events() {
            let Some(kv) = event.kv() else { continue };
            let Ok(key) = kv.key_str() else { continue };
            newest = newest.max(kv.mod_revision());
            match event.event_type() {
                EventType::Put => {
                    let entry = Entry {
                        created: kv.create_revision(),
                        value: kv.value().to_vec(),
                    };
                    map.insert(key.to_owned(), entry);
                }
                EventType::Delete => {
                    map.remove(key);
                }
            }
        }
        if newest > 0 {
            if let Err(e) = take(link, managed, &map, newest).await {
                return e;
            }
        }
    }
}

/// Serves the configuration `map` holds, at `revision` (on the blocking pool: it takes the writer lock
/// and writes the local copy).
async fn take(
    link: &Arc<Link>,
    managed: &Arc<Managed>,
    map: &ConfigMap,
    revision: i64,
) -> Result<(), String> {
    if revision <= link.applied() {
        return Ok(());
    }
    let (stored, warnings) = link.keys.stored(map);
    for w in warnings {
        tracing::warn!(target: "bits_compact::service", revision, "{w}");
    }
    let managed = managed.clone();
    let done = tokio::task::spawn_blocking(move || managed.follow(stored, revision)).await;
    match done {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!(
            "the fleet's revision {revision} could not be taken: {}",
            e.message()
        )),
        Err(e) => Err(format!(
            "taking the fleet's revision {revision} failed: {e}"
        )),
    }
}
