//! The service's job metrics, read from its job manager on each scrape (registered with the server's
//! metrics when the service gets its jobs): jobs by state, bytes the jobs hold, and jobs stopped by a
//! failure, by where it happened. Labels are the fixed state and error context names; never a job's URL,
//! name or owner.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use crate::jobs::{ErrorContext, JobManager, JobState};

/// Reads the jobs on each scrape.
#[derive(Debug)]
pub(crate) struct JobsCollector(pub(crate) JobManager);

/// The error contexts as labels, in a fixed order.
const CONTEXTS: [(ErrorContext, &str); 4] = [
    (ErrorContext::LocalFile, "local_file"),
    (ErrorContext::RemoteFile, "remote_file"),
    (ErrorContext::Transport, "transport"),
    (ErrorContext::ServerResponse, "server_response"),
];

impl Collector for JobsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let jobs = self.0.jobs();
        let mut states = [0i64; JobState::ALL.len()];
        let mut errors = [0i64; CONTEXTS.len()];
        let mut bytes = 0u64;
        for job in &jobs {
            if let Some(at) = JobState::ALL.iter().position(|s| *s == job.state) {
                states[at] += 1;
            }
            if let Some(failure) = &job.error {
                if let Some(at) = CONTEXTS.iter().position(|(c, _)| *c == failure.context) {
                    errors[at] += 1;
                }
            }
            bytes = bytes.saturating_add(job.bytes_transferred());
        }
        let mut family = encoder.encode_descriptor(
            "jobs",
            "Download jobs, by state",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in JobState::ALL.iter().zip(states) {
            let labels = [("state", state.to_string())];
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "job_errors",
            "Download jobs stopped by a failure now, by where it happened",
            None,
            MetricType::Gauge,
        )?;
        for ((_, name), n) in CONTEXTS.iter().zip(errors) {
            let labels = [("kind", *name)];
            ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
        }
        let gauge = ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "job_bytes_transferred",
            "Bytes the download jobs listed have transferred",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}
