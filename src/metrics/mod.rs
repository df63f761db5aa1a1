//! Metrics a Prometheus scrapes: the file server's requests, bytes, downloads and refusals by URL group,
//! its connections, TLS handshakes and authentication failures, and the service's store commits, in the
//! Prometheus text format ([`Metrics::render`], [`CONTENT_TYPE`]); [`serve`] is a listener of their own.
//!
//! Invariants: label values are bounded. A request is labelled with its URL group's prefix (`none` when
//! no group serves it), its status class (`1xx`..`5xx`), an authentication scheme: never a URL path or a
//! client address. A group's series are resolved once, when the group is created (`GroupSeries`), so the
//! request path only adds to atomics (no lock, no allocation); they are removed when the group is deleted,
//! so the label set follows the groups that exist, however many come and go.

mod endpoint;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use endpoint::{serve, CONNECTION_LIFETIME, HEADER_TIMEOUT, MAX_CONNECTIONS};

use crate::limits::ServerBudget;
use crate::lock::Recover;

/// The `Content-Type` of [`Metrics::render`]'s text (the Prometheus text format, version 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The label of requests no URL group serves.
const NO_GROUP: &str = "none";

/// Status classes, in label order: index `status / 100 - 1`.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Authentication schemes as labels: what an `Authorization` header offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SchemeLabel {
    Basic,
    Ntlm,
    Negotiate,
    /// A scheme no group offers: bounded, whatever a client writes.
    Other,
}

impl SchemeLabel {
    const ALL: [SchemeLabel; 4] = [
        SchemeLabel::Basic,
        SchemeLabel::Ntlm,
        SchemeLabel::Negotiate,
        SchemeLabel::Other,
    ];

    fn as_str(self) -> &'static str {
        match self {
            SchemeLabel::Basic => "basic",
            SchemeLabel::Ntlm => "ntlm",
            SchemeLabel::Negotiate => "negotiate",
            SchemeLabel::Other => "other",
        }
    }

    /// The scheme an `Authorization` header value names (its first token, case-insensitively).
    pub(crate) fn of_header(value: &[u8]) -> Self {
        let token = value.split(|b| *b == b' ').next().unwrap_or_default();
        match token.to_ascii_lowercase().as_slice() {
            b"basic" => SchemeLabel::Basic,
            b"ntlm" => SchemeLabel::Ntlm,
            b"negotiate" => SchemeLabel::Negotiate,
            _ => SchemeLabel::Other,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    group: String,
    class: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SchemeLabels {
    scheme: &'static str,
}

/// The families labelled by group, kept to resolve and remove a group's series.
#[derive(Debug, Default)]
struct GroupFamilies {
    requests: Family<RequestLabels, Counter>,
    bytes: Family<GroupLabel, Counter>,
    downloads: Family<GroupLabel, Gauge>,
    completed: Family<GroupLabel, Counter>,
    busy: Family<GroupLabel, Counter>,
    paced: Family<GroupLabel, Counter<f64, AtomicU64>>,
}

/// A server's metrics: one registry, shared by its connections (`Arc`), rendered on each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    groups: GroupFamilies,
    /// Which registration of a prefix owns its series now: a group replaced by one of the same prefix
    /// must not remove its successor's series when it goes.
    owners: Mutex<HashMap<String, u64>>,
    next_owner: AtomicU64,
    ungrouped: GroupSeries,
    pub(crate) connections: Gauge,
    pub(crate) tls_handshakes: Counter,
    pub(crate) tls_failures: Counter,
    pub(crate) auth_limited: Counter,
    auth_failures: [Counter; 4],
    pub(crate) access_log_dropped: Counter,
    /// Observed by the service's store commits (registered in every build: an embedder without the
    /// service scrapes an empty histogram).
    #[cfg_attr(not(feature = "service"), allow(dead_code))]
    commits: Histogram,
}

impl Metrics {
    /// An empty set of metrics; `sendfile` is the server's zero-copy byte counter, where it has one.
    pub(crate) fn new(sendfile: Option<Arc<AtomicU64>>) -> Self {
        let mut registry = Registry::with_prefix("bcs");
        let groups = GroupFamilies::default();
        register_groups(&mut registry, &groups);
        let connections = Gauge::default();
        registry.register(
            "open_connections",
            "Connections open on the file server's ports",
            connections.clone(),
        );
        let (tls_handshakes, tls_failures) = (Counter::default(), Counter::default());
        registry.register(
            "tls_handshakes",
            "TLS handshakes completed",
            tls_handshakes.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out",
            tls_failures.clone(),
        );
        let auth = Family::<SchemeLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Requests whose credentials were refused, by authentication scheme",
            auth.clone(),
        );
        let auth_failures = SchemeLabel::ALL
            .map(|s| auth.get_or_create_owned(&SchemeLabels { scheme: s.as_str() }));
        let auth_limited = Counter::default();
        registry.register(
            "auth_rate_limited",
            "Requests refused (429) after too many failed authentication attempts",
            auth_limited.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped",
            "Access-log lines dropped because the writer fell behind",
            access_log_dropped.clone(),
        );
        let commits = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "store_commit_seconds",
            "Time to commit a management change to the store",
            commits.clone(),
        );
        if let Some(sent) = sendfile {
            registry.register_collector(Box::new(Sendfile(sent)));
        }
        let ungrouped = GroupSeries::resolve(&groups, NO_GROUP, None);
        Metrics {
            registry: Mutex::new(registry),
            groups,
            owners: Mutex::default(),
            next_owner: AtomicU64::new(1),
            ungrouped,
            connections,
            tls_handshakes,
            tls_failures,
            auth_limited,
            auth_failures,
            access_log_dropped,
            commits,
        }
    }

    /// Exports how much of the serve loop's read budget chunks hold (`bcs_read_buffer_bytes`); called
    /// once, when the server starts serving (a server serves once).
    pub(crate) fn watch_read_budget(&self, budget: Arc<ServerBudget>) {
        self.registry
            .lock()
            .recover()
            .register_collector(Box::new(ReadBuffered(budget)));
    }

    /// The series of a group being created with this prefix; they go when it is deleted
    /// ([`GroupSeries::unregister`]).
    pub(crate) fn group(self: &Arc<Self>, prefix: &str) -> GroupSeries {
        let owner = self.next_owner.fetch_add(1, Ordering::Relaxed);
        self.owners
            .lock()
            .recover()
            .insert(prefix.to_owned(), owner);
        GroupSeries::resolve(&self.groups, prefix, Some((self.clone(), owner)))
    }

    /// The series of requests no URL group serves.
    pub(crate) fn ungrouped(&self) -> &GroupSeries {
        &self.ungrouped
    }

    /// One refusal of credentials offered with `scheme`.
    pub(crate) fn auth_failed(&self, scheme: SchemeLabel) {
        let at = SchemeLabel::ALL.iter().position(|s| *s == scheme);
        self.auth_failures[at.unwrap_or(SchemeLabel::ALL.len() - 1)].inc();
    }

    /// One store commit, and how long it took.
    #[cfg(feature = "service")]
    pub(crate) fn commit_took(&self, took: std::time::Duration) {
        self.commits.observe(took.as_secs_f64());
    }

    /// Adds a collector (read on each scrape), for metrics whose values live elsewhere (the service's jobs).
    #[cfg(feature = "service")]
    pub(crate) fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry.lock().recover().register_collector(collector);
    }

    /// The metrics in the Prometheus text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::with_capacity(4096);
        let registry = self.registry.lock().recover();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &registry);
        text
    }
}

fn register_groups(registry: &mut Registry, g: &GroupFamilies) {
    registry.register(
        "http_requests",
        "Requests answered, by URL group and status class",
        g.requests.clone(),
    );
    registry.register(
        "http_response_bytes",
        "Response body bytes sent, by URL group",
        g.bytes.clone(),
    );
    registry.register(
        "downloads_in_progress",
        "Downloads (200 or 206 answers to GET) being sent now, by URL group",
        g.downloads.clone(),
    );
    registry.register(
        "downloads_completed",
        "Downloads whose body went out to its end, by URL group",
        g.completed.clone(),
    );
    registry.register(
        "connection_limit_refusals",
        "Requests refused (503) at the group's or the client's transfer limit, by URL group",
        g.busy.clone(),
    );
    registry.register(
        "bandwidth_limited_seconds",
        "Time transfers waited for the group's bandwidth budget, summed over transfers, by URL group",
        g.paced.clone(),
    );
}

/// The serve loop's read budget in use, read on each scrape.
#[derive(Debug)]
struct ReadBuffered(Arc<ServerBudget>);

impl Collector for ReadBuffered {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(i64::try_from(self.0.held()).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "read_buffer_bytes",
            "File bytes read into memory for clients and not yet written out to them",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

/// The zero-copy byte counter, read on each scrape.
#[derive(Debug)]
struct Sendfile(Arc<AtomicU64>);

impl Collector for Sendfile {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counter = ConstCounter::new(self.0.load(Ordering::Relaxed));
        let metric = encoder.encode_descriptor(
            "sendfile_bytes",
            "Response body bytes sent with sendfile",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

/// One URL group's series, resolved when the group is created: counting is adding to atomics.
#[derive(Debug)]
pub(crate) struct GroupSeries {
    requests: [Counter; 5],
    bytes: Counter,
    downloads: Gauge,
    completed: Counter,
    pub(crate) busy: Counter,
    pub(crate) paced: Counter<f64, AtomicU64>,
    /// The metrics and the registration that own these series (none for `none`'s, or detached ones).
    owner: Option<(Arc<Metrics>, u64)>,
    label: String,
}

impl GroupSeries {
    fn resolve(g: &GroupFamilies, label: &str, owner: Option<(Arc<Metrics>, u64)>) -> Self {
        let group = GroupLabel {
            group: label.to_owned(),
        };
        GroupSeries {
            requests: CLASSES.map(|class| {
                g.requests.get_or_create_owned(&RequestLabels {
                    group: label.to_owned(),
                    class,
                })
            }),
            bytes: g.bytes.get_or_create_owned(&group),
            downloads: g.downloads.get_or_create_owned(&group),
            completed: g.completed.get_or_create_owned(&group),
            busy: g.busy.get_or_create_owned(&group),
            paced: g.paced.get_or_create_owned(&group),
            owner,
            label: group.group,
        }
    }

    /// Series that no registry exports (a group built outside a server).
    pub(crate) fn detached() -> Self {
        GroupSeries::resolve(&GroupFamilies::default(), NO_GROUP, None)
    }

    /// One request answered with `status`, its body `sent` bytes.
    pub(crate) fn answered(&self, status: u16, sent: u64) {
        let class = usize::from(status / 100).clamp(1, CLASSES.len()) - 1;
        self.requests[class].inc();
        if sent > 0 {
            self.bytes.inc_by(sent);
        }
    }

    /// A download starts; [`GroupSeries::download_ended`] ends it.
    pub(crate) fn download_started(&self) {
        self.downloads.inc();
    }

    /// A download ends; `complete` when its body went out to its end.
    pub(crate) fn download_ended(&self, complete: bool) {
        self.downloads.dec();
        if complete {
            self.completed.inc();
        }
    }

    /// The group is deleted: its series leave the registry (what is still in flight counts into
    /// nothing). A successor of the same prefix, registered since, keeps its own.
    pub(crate) fn unregister(&self) {
        let Some((metrics, owner)) = &self.owner else {
            return;
        };
        let mut owners = metrics.owners.lock().recover();
        if owners.get(&self.label) != Some(owner) {
            return;
        }
        owners.remove(&self.label);
        let g = &metrics.groups;
        let group = GroupLabel {
            group: self.label.clone(),
        };
        for class in CLASSES {
            g.requests.remove(&RequestLabels {
                group: self.label.clone(),
                class,
            });
        }
        g.bytes.remove(&group);
        g.downloads.remove(&group);
        g.completed.remove(&group);
        g.busy.remove(&group);
        g.paced.remove(&group);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count_lines(text: &str, needle: &str) -> usize {
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(needle))
            .count()
    }

    #[test]
    fn requests_and_bytes_by_group_and_class() {
        let metrics = Arc::new(Metrics::new(Some(Arc::new(AtomicU64::new(7)))));
        let series = metrics.group("http://+:80/A/");
        series.answered(200, 10);
        series.answered(206, 5);
        series.answered(404, 0);
        metrics.ungrouped().answered(400, 3);
        let text = metrics.render();
        assert!(text.contains(r#"bcs_http_requests_total{group="http://+:80/A/",class="2xx"} 2"#));
        assert!(text.contains(r#"bcs_http_requests_total{group="http://+:80/A/",class="4xx"} 1"#));
        assert!(text.contains(r#"bcs_http_response_bytes_total{group="http://+:80/A/"} 15"#));
        assert!(text.contains(r#"bcs_http_requests_total{group="none",class="4xx"} 1"#));
        assert!(text.contains("bcs_sendfile_bytes_total 7"), "{text}");
    }

    /// SECURITY: the threat is memory and scrape size growing without bound as groups come and go (an
    /// administrator's script creating a group per rollout): a deleted group's series leave.
    #[test]
    fn deleted_groups_leave_no_series() {
        let metrics = Arc::new(Metrics::new(None));
        for i in 0..500 {
            let series = metrics.group(&format!("http://+:80/G{i}/"));
            series.answered(200, 1);
            series.unregister();
        }
        let text = metrics.render();
        assert_eq!(count_lines(&text, "/G"), 0, "{text}");
    }

    #[test]
    fn a_replaced_group_keeps_its_successors_series() {
        let metrics = Arc::new(Metrics::new(None));
        let old = metrics.group("http://+:80/A/");
        let new = metrics.group("http://+:80/A/");
        old.unregister();
        new.answered(200, 1);
        assert!(metrics
            .render()
            .contains(r#"bcs_http_requests_total{group="http://+:80/A/",class="2xx"}"#));
    }

    #[test]
    fn scheme_labels_are_bounded() {
        assert_eq!(SchemeLabel::of_header(b"NTLM abc"), SchemeLabel::Ntlm);
        assert_eq!(SchemeLabel::of_header(b"basic x"), SchemeLabel::Basic);
        assert_eq!(SchemeLabel::of_header(b"\"}\n evil"), SchemeLabel::Other);
        let metrics = Metrics::new(None);
        metrics.auth_failed(SchemeLabel::Other);
        assert!(metrics
            .render()
            .contains(r#"bcs_auth_failures_total{scheme="other"} 1"#));
    }
}
