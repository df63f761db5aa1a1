//! The fleet's content: every node serves every URL published by content from its own verified copy
//! (see [`ContentStore`]). A node publishes a file by hashing and copying it (`Managed::add_url`); every
//! other node pulls the bytes with a download job of its own (resumable, persisted in
//! `STATE/content-jobs`, so a node killed mid-fetch resumes from the bytes it has), checks the SHA-256,
//! and only then serves it; until then its URL answers 503 with `Retry-After`, or, for a URL published
//! again, goes on serving the version before until the new one is held.
//!
//! Nodes pull from each other, not only from the origin: each live node announces the copies it holds
//! and its fetches in its record ([`super::announce`]), and a node that needs content picks a holder
//! ([`choose`]): not the origin while another holder exists, the least loaded, at most
//! [`PEER_TRANSFERS`] pulls per holder, the waiting nodes taking the free holders in name order. So the
//! origin sends about one copy whatever the number of nodes, and the copies double each round. A holder
//! that fails or leaves mid-transfer is replaced by another and the job resumes by range (the bytes,
//! and so the ETag and Last-Modified, are the same on every holder).
//!
//! The peer path: a node started with `--fleet-peer ADDR:PORT` serves its copies to its peers at
//! `http://ADDR:PORT/bcs-content/<sha256>`, an own [`Server`] whose one group takes NTLM only, for the
//! one account [`peer_user`] whose password is a random secret kept in etcd (`/bcs/<fleet>/peer-secret`):
//! SECURITY: the threat is a URL whose SDDL restricts its readers becoming readable through the
//! replication path; the peer path reads only for that account, and NTLM never sends the secret.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use tokio_util::sync::CancellationToken;

use super::announce::FetchRecord;
use super::link::Link;
use super::membership::{self, NodeRecord};
use crate::auth::{AuthScheme, Password, Principals};
use crate::client::{ClientSettings, Credentials, ProxySetting};
use crate::config::ContentRecord;
use crate::jobs::{Action, Job, JobManager, JobState, NewJob};
use crate::service::content::ContentStore;
use crate::service::fleet_view::{ContentStatus, FetchStatus};
use crate::service::Managed;
use crate::url::UrlGroup;
use crate::Server;

/// How often a node looks at what it holds, what it needs and how its pulls go.
const TICK: Duration = Duration::from_millis(500);

/// Pulls one holder serves at once: a holder gives its whole link to one peer, and the copies double
/// each round.
pub(crate) const PEER_TRANSFERS: usize = 1;

/// The account peers pull as: `bcs-fleet-` and 16 hex digits derived from the fleet's secret.
/// SECURITY: the threat is someone who can reach a peer port locking the account out (accounts are
/// locked after repeated failures, whoever sends them) and so stopping every pull: a name that only
/// the holders of the secret know cannot be aimed at.
pub fn peer_user(secret: &Password) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(b"bcs fleet peer account\0");
    context.update(secret.expose().as_bytes());
    let hex: String = context.finish().as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("bcs-fleet-{hex}")
}

/// The peer path's group segment.
const PEER_SEGMENT: &str = "bcs-content";

/// Who may read the peer path: authenticated callers, of which there is one account.
const PEER_SDDL: &str = "D:(A;;GR;;;AU)";

/// How many URLs of one content `GET /v1/fleet` lists.
const MAX_URLS_LISTED: usize = 16;

/// The peer path a node serves its copies on.
pub struct PeerPath {
    server: Server,
    group: UrlGroup,
    base: String,
}

impl std::fmt::Debug for PeerPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerPath")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl PeerPath {
    /// The peer path on `addr` (`IP:PORT`): a server whose content directory is `store`'s, logging to
    /// `log` (JSON lines). It lets nobody in until the content duty has read the fleet's secret.
    pub fn new(
        addr: std::net::SocketAddr,
        store: &ContentStore,
        log: Option<std::path::PathBuf>,
    ) -> Result<PeerPath, crate::Error> {
        let mut builder = Server::builder()
            .bind_addresses([addr.ip()])
            .content_dir(store.dir());
        if let Some(file) = log {
            builder = builder.access_log(crate::AccessLog {
                target: crate::AccessLogTarget::File(file),
                format: crate::AccessLogFormat::Json,
            });
        }
        let server = builder.build()?;
        let host = match addr.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let base = format!("http://{host}:{}/{PEER_SEGMENT}/", addr.port());
        let group = server.create_url_group(base.as_str())?;
        group.set_authentication(AuthScheme::Ntlm, true)?;
        Ok(PeerPath {
            server,
            group,
            base,
        })
    }

    /// Lets the fleet's account ([`peer_user`]) in with `secret`.
    fn admit(&self, secret: &Password) -> Result<(), crate::AuthError> {
        let mut principals = Principals::default();
        principals.set_user(&peer_user(secret), secret, &[])?;
        self.server.set_principals(principals);
        Ok(())
    }

    /// The server, to run with [`Server::serve`].
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// The base URL peers pull from.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Serves exactly the copies in `serve`.
    fn sync(&self, serve: &BTreeMap<&str, &ContentRecord>) {
        for url in self.group.urls() {
            if !serve.contains_key(url.suffix()) {
                let _ = self.group.remove_url(url.suffix());
            }
        }
        for (sha, record) in serve {
            if !self.group.contains_url(sha) {
                let added = self
                    .group
                    .add_content_url(sha, sha, record, Some(PEER_SDDL));
                if let Err(e) = added {
                    tracing::warn!(target: "bits_compact::service", content = %sha, error = %e, "cannot serve a copy to peers");
                }
            }
        }
    }
}

/// The peers' shared secret: read from etcd, or made and put there by the first node that asks.
async fn peer_secret(link: &Link) -> Result<Password, String> {
    let key = format!("/bcs/{}/peer-secret", link.fleet);
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "no randomness for the peer secret".to_owned())?;
    let fresh: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key.clone(), fresh.clone(), None)])
        .or_else([TxnOp::get(key, None)]);
    let answer = link.txn("reading the peers' secret", txn).await?;
    if answer.succeeded() {
        return Ok(Password::from(fresh.as_str()));
    }
    let held = answer.op_responses().into_iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
        _ => None,
    });
    match held.map(String::from_utf8) {
        Some(Ok(secret)) if !secret.is_empty() => Ok(Password::from(secret.as_str())),
        _ => Err("the peers' secret in etcd is unreadable".into()),
    }
}

/// What the content loop needs.
pub struct ContentDuty {
    /// The node's copies.
    pub store: Arc<ContentStore>,
    /// The jobs that pull them (their own manager, persisted under the state directory).
    pub jobs: JobManager,
    /// The peer path, when this node serves its copies to peers.
    pub peer: Option<Arc<PeerPath>>,
}

impl std::fmt::Debug for ContentDuty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentDuty")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// One pull this process drives.
struct Pull {
    record: ContentRecord,
    /// The node it pulls from now.
    from: String,
    /// Whether this process set the job's credentials (the password is never stored with it).
    credentialed: bool,
    /// Bytes held at the last rate sample, and when.
    sample: (u64, Instant),
    rate: u64,
    /// Not moved on again before this (after a failure), and the pause after the next failure.
    retry_at: Instant,
    backoff: Duration,
}

/// The longest pause between two attempts of a pull that keeps failing.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long a node waits for its turn (see [`choose`]) before it takes any free holder.
const PATIENCE: Duration = Duration::from_secs(10);

/// How often the bytes of the fetches under way are written to the node's record.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What the loop keeps from one tick to the next.
#[derive(Default)]
struct Duties {
    secret: Option<Password>,
    pulls: HashMap<String, Pull>,
    records: BTreeMap<String, NodeRecord>,
    /// Since when each needed content has had no pull.
    waiting: HashMap<String, Instant>,
    /// When a content whose pulled copy failed its check may be pulled again.
    held_back: HashMap<String, Instant>,
    /// When the fetches' bytes were last announced.
    announced: Option<Instant>,
    /// With etcd away: no tick before this, so that the loop does not add to the calls that wait for it.
    paused_until: Option<Instant>,
}

/// How long the loop rests after it could not read the fleet's members.
const ETCD_AWAY_PAUSE: Duration = Duration::from_secs(2);

/// Runs the content duties until `stop`.
pub(crate) async fn run(
    link: Arc<Link>,
    managed: Arc<Managed>,
    duty: ContentDuty,
    stop: CancellationToken,
) {
    let mut d = Duties::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if d.paused_until.is_some_and(|t| Instant::now() < t) {
            continue;
        }
        if !known_secret(&link, &duty, &mut d.secret).await {
            d.paused_until = Some(Instant::now() + ETCD_AWAY_PAUSE);
            continue;
        }
        once(&link, &managed, &duty, &mut d).await;
    }
}

/// One tick: pulls moved on, clean-up, the peer path and the announcement brought up to date.
async fn once(link: &Link, managed: &Managed, duty: &ContentDuty, d: &mut Duties) {
    // Read first: what `wanted` finds is of this revision or a later one.
    let revision = link.applied();
    let wanted = wanted(managed);
    match membership::live(link).await {
        Ok(live) => d.records = live,
        Err(e) => {
            tracing::debug!(target: "bits_compact::service", error = %e, "cannot read the fleet's members; pulls wait");
            d.paused_until = Some(Instant::now() + ETCD_AWAY_PAUSE);
            return;
        }
    }
    let me = link.node.to_string();
    let jobs = content_jobs(&duty.jobs);
    let needs: Vec<String> = (wanted.keys())
        .filter(|sha| !duty.store.holds(sha))
        .cloned()
        .collect();
    for sha in &needs {
        if d.held_back.get(sha).is_some_and(|t| Instant::now() < *t) {
            continue;
        }
        let record = &wanted[sha].0;
        let job = jobs.get(sha.as_str()).cloned();
        drive(duty, (&me, revision), record, job, d).await;
    }
    // Pulls of content no URL names any more go, their temporaries with them.
    for (sha, job) in &jobs {
        if !wanted.contains_key(sha) {
            let _ = duty.jobs.set_state(job.id, Action::Cancel).await;
            let _ = duty.jobs.forget(job.id);
        }
    }
    d.pulls
        .retain(|sha, _| wanted.contains_key(sha) && !duty.store.holds(sha));
    d.waiting.retain(|sha, _| needs.contains(sha));
    d.held_back.retain(|sha, _| needs.contains(sha));
    // The configuration read again when the copies are weighed: a URL published while this tick waited
    // on etcd names its copy.
    let keep = || kept(&self::wanted(managed), &duty.store);
    for sha in duty.store.remove_unused(keep) {
        tracing::info!(target: "bits_compact::service", content = %sha, "removed a copy no URL names");
    }
    // What the peer path serves is exactly what the record says this node holds.
    let serve: BTreeMap<&str, &ContentRecord> = (duty.store.held().iter())
        .filter_map(|sha| wanted.get_key_value(sha))
        .map(|(sha, (record, _))| (sha.as_str(), record))
        .collect();
    if let Some(peer) = &duty.peer {
        peer.sync(&serve);
    }
    let holds: Vec<String> = serve.keys().map(|s| s.to_string()).collect();
    let jobs = content_jobs(&duty.jobs);
    let fetching: Vec<FetchRecord> = (d.pulls.iter())
        .map(|(sha, p)| FetchRecord {
            sha256: sha.clone(),
            from: p.from.clone(),
            bytes: jobs.get(sha).map_or(0, Job::bytes_transferred),
            total: p.record.size,
            rate: p.rate,
        })
        .collect();
    // The record is written when it changes: the bytes of the fetches only every few seconds, so that
    // a pull does not rewrite it on every tick.
    let same = |a: &[FetchRecord], b: &[FetchRecord]| {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| x.sha256 == y.sha256 && x.from == y.from)
    };
    let due = d.announced.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY);
    let mut refreshed = false;
    link.announced.set(|a| {
        a.holds = holds;
        a.needs = needs;
        a.needs_revision = revision.max(1);
        if due || !same(&a.fetching, &fetching) {
            a.fetching = fetching;
            refreshed = true;
        }
        a.wanted = wanted.into_values().collect();
    });
    if refreshed {
        d.announced = Some(Instant::now());
    }
}

/// The peers' secret, read once (with etcd away, retried each tick; read again when a holder refused
/// it); once known, the peer path lets the account in and is announced.
async fn known_secret(link: &Link, duty: &ContentDuty, secret: &mut Option<Password>) -> bool {
    if secret.is_some() {
        return true;
    }
    match peer_secret(link).await {
        Ok(read) => {
            if let Some(peer) = &duty.peer {
                if let Err(e) = peer.admit(&read) {
                    tracing::error!(target: "bits_compact::service", error = %e, "the peer path cannot take the fleet's account");
                    return false;
                }
                let base = peer.base().to_owned();
                link.announced.set(|a| a.peer = Some(base));
            }
            *secret = Some(read);
            true
        }
        Err(e) => {
            tracing::debug!(target: "bits_compact::service", error = %e, "the peers' secret cannot be read yet");
            false
        }
    }
}

/// The content the configuration names, by hash, with its URLs.
fn wanted(managed: &Managed) -> BTreeMap<String, (ContentRecord, Vec<String>)> {
    let mut wanted: BTreeMap<String, (ContentRecord, Vec<String>)> = BTreeMap::new();
    for group in managed.groups() {
        for url in &group.urls {
            let Some(record) = &url.content else { continue };
            if record.check().is_err() {
                continue;
            }
            let entry = wanted
                .entry(record.sha256.clone())
                .or_insert_with(|| (record.clone(), Vec::new()));
            entry.1.push(format!("{}{}", group.prefix, url.suffix));
        }
    }
    wanted
}

/// The copies to keep: those the configuration names, and the previous version of each URL whose new
/// one is not held yet (it serves that one meanwhile).
fn kept(
    wanted: &BTreeMap<String, (ContentRecord, Vec<String>)>,
    store: &ContentStore,
) -> BTreeSet<String> {
    let mut keep: BTreeSet<String> = wanted.keys().cloned().collect();
    for (sha, (record, _)) in wanted {
        if let Some(previous) = &record.previous {
            if !store.holds(sha) {
                keep.insert(previous.sha256.clone());
            }
        }
    }
    keep
}

/// The unfinished content jobs, by hash (their display name).
fn content_jobs(jobs: &JobManager) -> HashMap<String, Job> {
    jobs.jobs()
        .into_iter()
        .filter(|j| !j.state.is_final())
        .map(|j| (j.display_name.clone(), j))
        .collect()
}

/// Moves the pull of `record` on: starts it from a holder, completes and checks it, or moves it to
/// another holder when its own failed or left (after a pause that doubles while it keeps failing).
async fn drive(
    duty: &ContentDuty,
    (me, revision): (&str, i64),
    record: &ContentRecord,
    job: Option<Job>,
    d: &mut Duties,
) {
    let sha = &record.sha256;
    let Some(secret) = d.secret.clone() else {
        return;
    };
    let records = &d.records;
    let Some(job) = job else {
        // A pull that finished before a restart, not yet checked.
        if duty.store.incoming_file(sha).exists() {
            install(duty, record, d);
            return;
        }
        let since = *d.waiting.entry(sha.clone()).or_insert_with(Instant::now);
        let patient = since.elapsed() < PATIENCE;
        let turn = Turn {
            me,
            origin: &record.origin,
            patient,
            revision,
        };
        let Some((from, url)) = choose(sha, records, &turn) else {
            return;
        };
        let new = NewJob::new(sha.clone())
            .description("fleet content")
            .owner("fleet")
            .file(url, duty.store.incoming_file(sha))
            .client(settings(&secret));
        match duty.jobs.create_job(new).await {
            Ok(_) => {
                tracing::info!(target: "bits_compact::service", content = %sha, from = %from, "pulling content");
                d.waiting.remove(sha);
                d.pulls.insert(sha.clone(), Pull::new(record, from, true));
            }
            Err(e) => {
                tracing::warn!(target: "bits_compact::service", content = %sha, error = %e, "cannot start a pull")
            }
        }
        return;
    };
    let remote = job
        .files
        .first()
        .map(|f| f.remote_url.clone())
        .unwrap_or_default();
    let pull = d.pulls.entry(sha.clone()).or_insert_with(|| {
        let from = holder_of(records, &remote).unwrap_or_default();
        Pull::new(record, from, false)
    });
    if pull.sample_rate(job.bytes_transferred()) {
        pull.backoff = TICK;
    }
    if !pull.credentialed {
        // After a restart: the password is never stored with the job.
        let set = duty
            .jobs
            .set_client_settings(job.id, settings(&secret))
            .await;
        pull.credentialed = set.is_ok();
    }
    match job.state {
        JobState::Transferred => {
            if let Err(e) = duty.jobs.set_state(job.id, Action::Complete).await {
                tracing::warn!(target: "bits_compact::service", content = %sha, error = %e, "cannot complete a pull");
                return;
            }
            let _ = duty.jobs.forget(job.id);
            d.pulls.remove(sha);
            install(duty, record, d);
        }
        JobState::Error | JobState::TransientError | JobState::Suspended => {
            if Instant::now() < pull.retry_at {
                return;
            }
            pull.retry_at = Instant::now() + pull.backoff;
            pull.backoff = (pull.backoff * 2).min(MAX_BACKOFF);
            let failed = pull.from.clone();
            if let Some(e) = &job.error {
                tracing::info!(target: "bits_compact::service", content = %sha, from = %failed, error = %e, "a pull failed; resuming it from a holder");
                // Refused: the secret may have changed in etcd; read it again before the next pull.
                if e.http_status == Some(401) {
                    d.secret = None;
                }
            }
            let Some((from, url)) = replacement(sha, records, me, &record.origin, &failed) else {
                return;
            };
            if url != remote {
                if let Err(e) = duty.jobs.set_remote_name(job.id, 0, &url).await {
                    tracing::warn!(target: "bits_compact::service", content = %sha, error = %e, "cannot move a pull to another holder");
                    return;
                }
            }
            pull.from = from;
            let _ = duty.jobs.set_state(job.id, Action::Resume).await;
        }
        _ => {
            // Its holder left (stopped, or lost its copy): suspended here, moved next tick.
            let alive = records
                .get(&pull.from)
                .is_some_and(|r| r.holds.iter().any(|h| h == sha));
            if !alive && !records.is_empty() {
                tracing::info!(target: "bits_compact::service", content = %sha, from = %pull.from, "the holder of a pull left; moving it");
                let _ = duty.jobs.set_state(job.id, Action::Suspend).await;
            }
        }
    }
}

impl Pull {
    fn new(record: &ContentRecord, from: String, credentialed: bool) -> Pull {
        Pull {
            record: record.clone(),
            from,
            credentialed,
            sample: (0, Instant::now()),
            rate: 0,
            retry_at: Instant::now(),
            backoff: TICK,
        }
    }

    /// Updates the rate from the bytes held now, once a second; whether bytes came since the last.
    fn sample_rate(&mut self, bytes: u64) -> bool {
        let elapsed = self.sample.1.elapsed();
        let progressed = bytes > self.sample.0;
        if elapsed >= Duration::from_secs(1) {
            let added = bytes.saturating_sub(self.sample.0);
            self.rate = (added as f64 / elapsed.as_secs_f64()) as u64;
            self.sample = (bytes, Instant::now());
        }
        progressed
    }
}

/// Checks a finished pull and serves it, or removes it: a pull starts again, after a pause (a holder
/// with bad bytes, or a record with a wrong size, is not asked again at once, forever).
fn install(duty: &ContentDuty, record: &ContentRecord, d: &mut Duties) {
    match duty.store.install(record) {
        Ok(()) => {
            tracing::info!(target: "bits_compact::service", content = %record.sha256, size = record.size, "content verified and served")
        }
        Err(e) => {
            tracing::error!(target: "bits_compact::service", content = %record.sha256, error = %e, "a pulled copy failed its check");
            d.held_back
                .insert(record.sha256.clone(), Instant::now() + MAX_BACKOFF);
        }
    }
}

/// The job's client settings: NTLM as the fleet's account, never through a proxy.
fn settings(secret: &Password) -> ClientSettings {
    ClientSettings {
        proxy: ProxySetting::NoProxy,
        credentials: Some(Credentials::ntlm(peer_user(secret), secret.clone())),
        ..ClientSettings::default()
    }
}

/// The node whose peer path `url` is on.
fn holder_of(records: &BTreeMap<String, NodeRecord>, url: &str) -> Option<String> {
    records
        .iter()
        .find(|(_, r)| r.peer.as_deref().is_some_and(|p| url.starts_with(p)))
        .map(|(name, _)| name.clone())
}

/// The live holders of `sha` that serve peers, but `me`: name and pull URL.
fn holders<'a>(
    sha: &str,
    records: &'a BTreeMap<String, NodeRecord>,
    me: &str,
) -> Vec<(&'a str, String)> {
    records
        .iter()
        .filter(|(name, r)| name.as_str() != me && r.holds.iter().any(|h| h == sha))
        .filter_map(|(name, r)| Some((name.as_str(), format!("{}{sha}", r.peer.as_deref()?))))
        .collect()
}

/// How many pulls (of any content) each node serves now, from the records, leaving out `me`'s.
fn loads(records: &BTreeMap<String, NodeRecord>, me: &str) -> HashMap<String, usize> {
    let mut loads = HashMap::new();
    for (name, r) in records {
        if name == me {
            continue;
        }
        for f in &r.fetching {
            *loads.entry(f.from.clone()).or_insert(0) += 1;
        }
    }
    loads
}

/// Who asks [`choose`], and how.
pub(crate) struct Turn<'a> {
    /// This node.
    pub(crate) me: &'a str,
    /// The content's origin.
    pub(crate) origin: &'a str,
    /// Whether it waits its turn (see [`choose`]).
    pub(crate) patient: bool,
    /// The configuration's revision this node serves.
    pub(crate) revision: i64,
}

/// Where a node that has no pull of `sha` yet should pull from, if anywhere now: the holders but the
/// origin (while another holder exists), with fewer than [`PEER_TRANSFERS`] pulls, least loaded first.
/// While `patient`, the nodes waiting for `sha` take them in name order, so that two nodes deciding at
/// once do not both take the one free holder: those that pull content and are not fetching it, and
/// either say they need it or said what they need at an older revision than this node's (they may not
/// know of it yet). Impatient, a node takes the first free holder: a node that says it needs content
/// but never pulls it cannot hold the others up. `None`: wait.
pub(crate) fn choose(
    sha: &str,
    records: &BTreeMap<String, NodeRecord>,
    turn: &Turn<'_>,
) -> Option<(String, String)> {
    let (me, origin) = (turn.me, turn.origin);
    let mut candidates = holders(sha, records, me);
    if candidates.iter().any(|(name, _)| *name != origin) {
        candidates.retain(|(name, _)| *name != origin);
    }
    let loads = loads(records, me);
    let load = |name: &str| loads.get(name).copied().unwrap_or(0);
    let mut free: Vec<_> = candidates
        .into_iter()
        .filter(|(name, _)| load(name) < PEER_TRANSFERS)
        .collect();
    free.sort_by_key(|(name, _)| (load(name), name.to_string()));
    let mut waiting: BTreeSet<&str> = records
        .iter()
        .filter(|(name, r)| {
            name.as_str() != me
                && r.needs_revision > 0
                && !r.holds.iter().any(|h| h == sha)
                && !r.fetching.iter().any(|f| f.sha256 == sha)
                && (r.needs.iter().any(|n| n == sha) || r.needs_revision < turn.revision)
        })
        .map(|(name, _)| name.as_str())
        .collect();
    waiting.insert(me);
    let rank = match turn.patient {
        true => waiting.iter().position(|n| *n == me)?,
        false => 0,
    };
    free.get(rank)
        .map(|(name, url)| (name.to_string(), url.clone()))
}

/// Another holder for a pull whose holder `failed`: the least loaded of the others (the origin last),
/// else `failed` itself if it still holds the content.
fn replacement(
    sha: &str,
    records: &BTreeMap<String, NodeRecord>,
    me: &str,
    origin: &str,
    failed: &str,
) -> Option<(String, String)> {
    let candidates = holders(sha, records, me);
    let loads = loads(records, me);
    let load = |name: &str| loads.get(name).copied().unwrap_or(0);
    let best = candidates
        .iter()
        .filter(|(name, _)| *name != failed)
        .min_by_key(|(name, _)| (*name == origin, load(name), name.to_string()))
        .or_else(|| candidates.iter().find(|(name, _)| *name == failed));
    best.map(|(name, url)| (name.to_string(), url.clone()))
}

/// `GET /v1/fleet`'s content: each wanted content with its holders and fetches among the live records.
pub(crate) fn status(
    wanted: &[(ContentRecord, Vec<String>)],
    live: &BTreeMap<String, NodeRecord>,
) -> Vec<ContentStatus> {
    wanted
        .iter()
        .map(|(record, urls)| {
            let sha = &record.sha256;
            let holders = live
                .iter()
                .filter(|(_, r)| r.holds.iter().any(|h| h == sha))
                .map(|(name, _)| name.clone())
                .collect();
            let fetching = live
                .iter()
                .flat_map(|(name, r)| {
                    r.fetching
                        .iter()
                        .filter(|f| f.sha256 == *sha)
                        .map(|f| FetchStatus {
                            node: name.clone(),
                            from: f.from.clone(),
                            bytes: f.bytes,
                            total: f.total,
                            rate: f.rate,
                        })
                })
                .collect();
            ContentStatus {
                sha256: sha.clone(),
                size: record.size,
                origin: record.origin.clone(),
                urls: urls.iter().take(MAX_URLS_LISTED).cloned().collect(),
                holders,
                fetching,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "aa";

    fn node(holds: bool, fetching_from: Option<&str>) -> NodeRecord {
        let mut r = NodeRecord::new(Vec::new());
        r.peer = Some(format!("http://peer/{}/", r.instance));
        if holds {
            r.holds = vec![SHA.into()];
        } else if fetching_from.is_none() {
            r.needs = vec![SHA.into()];
        }
        r.needs_revision = 2;
        if let Some(from) = fetching_from {
            r.fetching = vec![FetchRecord {
                sha256: SHA.into(),
                from: from.into(),
                bytes: 0,
                total: 1,
                rate: 0,
            }];
        }
        r
    }

    fn fleet(nodes: &[(&str, NodeRecord)]) -> BTreeMap<String, NodeRecord> {
        nodes
            .iter()
            .map(|(n, r)| (n.to_string(), r.clone()))
            .collect()
    }

    fn turn(me: &str, patient: bool, revision: i64) -> Turn<'_> {
        Turn {
            me,
            origin: "a",
            patient,
            revision,
        }
    }

    fn chosen(records: &BTreeMap<String, NodeRecord>, me: &str) -> Option<String> {
        choose(SHA, records, &turn(me, true, 2)).map(|(name, _)| name)
    }

    /// A node that does not say it needs the content (it cannot serve the URL, or runs an older
    /// version) takes no turn; one that says so but never pulls holds the others up only while they are
    /// patient.
    #[test]
    fn only_nodes_that_need_the_content_take_turns() {
        let mut records = fleet(&[
            ("a", node(true, None)),
            ("b", node(false, None)),
            ("c", node(false, None)),
        ]);
        records.get_mut("b").unwrap().needs.clear();
        assert_eq!(chosen(&records, "c").as_deref(), Some("a"));
        // ... unless what b said it needs is older than the configuration c serves.
        let newer = choose(SHA, &records, &turn("c", true, 3)).map(|(n, _)| n);
        assert_eq!(newer, None);
        // A node that pulls no content (an older version) takes no turn either.
        records.get_mut("b").unwrap().needs_revision = 0;
        assert_eq!(chosen(&records, "c").as_deref(), Some("a"));
        records.get_mut("b").unwrap().needs = vec![SHA.into()];
        records.get_mut("b").unwrap().needs_revision = 2;
        assert_eq!(chosen(&records, "c"), None);
        let impatient = choose(SHA, &records, &turn("c", false, 2)).map(|(n, _)| n);
        assert_eq!(impatient.as_deref(), Some("a"));
    }

    /// Round one: the origin is the only holder; of the nodes waiting, only the first in name order
    /// pulls, so the origin sends one copy, not one per node.
    #[test]
    fn the_origin_serves_one_waiting_node_at_a_time() {
        let records = fleet(&[
            ("a", node(true, None)),
            ("b", node(false, None)),
            ("c", node(false, None)),
        ]);
        assert_eq!(chosen(&records, "b").as_deref(), Some("a"));
        assert_eq!(chosen(&records, "c"), None);
        // Once b's pull shows, a is busy: c still waits.
        let records = fleet(&[
            ("a", node(true, None)),
            ("b", node(false, Some("a"))),
            ("c", node(false, None)),
        ]);
        assert_eq!(chosen(&records, "c"), None);
    }

    /// Once another node holds it, nobody pulls from the origin; free holders are shared out in name
    /// order among the waiting nodes.
    #[test]
    fn holders_but_the_origin_are_shared_out() {
        let records = fleet(&[
            ("a", node(true, None)),
            ("b", node(true, None)),
            ("c", node(true, None)),
            ("d", node(false, None)),
            ("e", node(false, None)),
        ]);
        assert_eq!(chosen(&records, "d").as_deref(), Some("b"));
        assert_eq!(chosen(&records, "e").as_deref(), Some("c"));
        // b busy with another pull: d takes c, e waits.
        let mut busy = records.clone();
        busy.insert("x".into(), node(false, Some("b")));
        // x (waiting too, but last in name order) pulls other content from b.
        busy.get_mut("x").unwrap().fetching[0].sha256 = "other".into();
        busy.get_mut("x").unwrap().needs = vec![SHA.into()];
        assert_eq!(chosen(&busy, "d").as_deref(), Some("c"));
        assert_eq!(chosen(&busy, "e"), None);
    }

    /// A failed holder is replaced by another, the origin last; with no other, by itself; a node
    /// without a peer path or not alive is never chosen.
    #[test]
    fn a_failed_holder_is_replaced() {
        let mut records = fleet(&[
            ("a", node(true, None)),
            ("b", node(true, None)),
            ("c", node(false, Some("b"))),
        ]);
        let again = |r: &BTreeMap<String, NodeRecord>, failed| {
            replacement(SHA, r, "c", "a", failed).map(|(n, _)| n)
        };
        assert_eq!(again(&records, "b").as_deref(), Some("a"));
        records.remove("a");
        assert_eq!(again(&records, "b").as_deref(), Some("b"));
        records.get_mut("b").unwrap().peer = None;
        assert_eq!(again(&records, "b"), None);
        assert_eq!(chosen(&records, "c"), None);
    }
}
