//! `/v1/status`: the live view (`bcs status`): each group's downloads in progress (client, file, bytes,
//! rate) and how full its limits are, the server-wide bounds, and the jobs in progress with their rates.
//!
//! SECURITY: the threat is anyone but an administrator learning who downloads what (client addresses,
//! user names, files) or the jobs of others. Only administrators reach it: the router refuses everyone
//! else outside `/v1/jobs` (tests/it/status.rs: anonymous 401, a user who is not one 403). The answer is
//! bounded: at most `max` downloads and `max` jobs are listed (default and ceiling [`MAX_LISTED`]), and
//! the answer says when there were more. A job's rate is measured between two status calls: the service
//! keeps, per job in progress, a sample of its bytes; a call a second or more after it measures the rate
//! and takes a new sample, a call sooner shows the rate measured last.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::jobs::{Job, JobId, JobState};
use crate::lock::Recover;
use crate::service::error::{ErrorBody, MgmtError};
use crate::service::managed::Managed;
use crate::url::ServerStatus;

/// The most downloads, and the most jobs, one answer lists.
pub const MAX_LISTED: usize = 1000;

/// What `GET /v1/status` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct StatusReport {
    /// The file server: groups, their downloads in progress and limits, the server-wide bounds.
    pub server: ServerStatus,
    /// Jobs in progress (queued, connecting, transferring, or waiting to retry), oldest first.
    pub jobs: Vec<JobStatus>,
    /// Whether some jobs in progress are not listed (there were more than `max`).
    pub jobs_truncated: bool,
}

/// A job in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[non_exhaustive]
pub struct JobStatus {
    /// The job's id.
    pub id: String,
    /// Its display name.
    pub display_name: String,
    /// Its owner.
    pub owner: String,
    /// Its state (`QUEUED`, `CONNECTING`, `TRANSFERRING`, `TRANSIENT_ERROR`).
    pub state: String,
    /// Bytes on disk so far, all files.
    pub bytes_transferred: u64,
    /// Bytes in all, once every file's size is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// Bytes per second between two status calls a second or more apart; absent until there were two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
}

/// The live view: downloads in progress per group, limits and how full they are, jobs in progress.
#[utoipa::path(get, operation_id = "show_status", path = "/v1/status", tag = "status",
    params(("max" = Option<u32>, Query, description = "The most downloads, and jobs, to list (1 to 1000; default 1000)")),
    responses((status = 200, body = StatusReport), (status = 400, body = ErrorBody)))]
pub(crate) async fn show(
    State(m): State<Arc<Managed>>,
    RawQuery(query): RawQuery,
    rates: Arc<JobRates>,
) -> Result<Json<StatusReport>, MgmtError> {
    let max = max(query.as_deref())?;
    let server = m.server().status(max);
    let mut in_progress: Vec<Job> = m
        .jobs()
        .map(|jobs| jobs.jobs())
        .unwrap_or_default()
        .into_iter()
        .filter(|j| is_in_progress(j.state))
        .collect();
    in_progress.sort_by_key(|j| j.created);
    let jobs_truncated = in_progress.len() > max;
    in_progress.truncate(max);
    let jobs = rates.measure(&in_progress, Instant::now());
    Ok(Json(StatusReport {
        server,
        jobs,
        jobs_truncated,
    }))
}

fn is_in_progress(state: JobState) -> bool {
    matches!(
        state,
        JobState::Queued | JobState::Connecting | JobState::Transferring | JobState::TransientError
    )
}

/// `max=N` from the query (clamped to 1..=[`MAX_LISTED`]); other parameters are refused.
fn max(query: Option<&str>) -> Result<usize, MgmtError> {
    let mut max = MAX_LISTED;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let refused = || MgmtError::Invalid {
            code: "invalid_request",
            message: format!(
                "{:?}: expected max=N (N from 1 to {MAX_LISTED})",
                pair.chars().take(64).collect::<String>()
            ),
        };
        let n: u64 = pair
            .strip_prefix("max=")
            .and_then(|n| n.parse().ok())
            .ok_or_else(refused)?;
        max = usize::try_from(n)
            .unwrap_or(usize::MAX)
            .clamp(1, MAX_LISTED);
    }
    Ok(max)
}

/// The byte count of each job in progress at an earlier status call, and the rate last measured.
#[derive(Debug, Default)]
pub(crate) struct JobRates {
    seen: Mutex<HashMap<JobId, Sample>>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    bytes: u64,
    rate: Option<u64>,
}

/// The shortest time a rate is measured over: a call sooner after the last sample shows the rate
/// measured then (a fraction of a second holds too few of a transfer's progress updates).
const SAMPLE_GAP: Duration = Duration::from_secs(1);

impl JobRates {
    /// The jobs' statuses, with their rates since the samples kept; keeps samples only for these jobs,
    /// so what is kept is bounded by what one answer lists.
    fn measure(&self, jobs: &[Job], now: Instant) -> Vec<JobStatus> {
        let mut seen = self.seen.lock().recover();
        let mut kept = HashMap::with_capacity(jobs.len());
        let statuses = jobs
            .iter()
            .map(|job| {
                let bytes = job.bytes_transferred();
                let sample = match seen.remove(&job.id) {
                    Some(before) if now.saturating_duration_since(before.at) < SAMPLE_GAP => before,
                    Some(before) => {
                        let secs = now.saturating_duration_since(before.at).as_secs_f64();
                        let rate = bytes.saturating_sub(before.bytes) as f64 / secs;
                        Sample {
                            at: now,
                            bytes,
                            rate: Some(rate as u64),
                        }
                    }
                    None => Sample {
                        at: now,
                        bytes,
                        rate: None,
                    },
                };
                kept.insert(job.id, sample);
                JobStatus {
                    id: job.id.to_string(),
                    display_name: job.display_name.clone(),
                    owner: job.owner.clone(),
                    state: job.state.to_string(),
                    bytes_transferred: bytes,
                    bytes_total: job.bytes_total(),
                    rate: sample.rate,
                }
            })
            .collect();
        *seen = kept;
        statuses
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_parameter() {
        assert_eq!(max(None).unwrap(), MAX_LISTED);
        assert_eq!(max(Some("max=2")).unwrap(), 2);
        assert_eq!(max(Some("max=0")).unwrap(), 1);
        assert_eq!(max(Some("max=99999999999")).unwrap(), MAX_LISTED);
        for bad in [
            "max=-1",
            "max=x",
            "limit=3",
            "max=184467440737095516160",
            "max",
        ] {
            assert_eq!(
                max(Some(bad)).unwrap_err().code(),
                "invalid_request",
                "{bad}"
            );
        }
    }

    #[test]
    fn a_rate_is_measured_over_a_second_or_more() {
        let rates = JobRates::default();
        let mut job = Job::new("j", JobState::Transferring);
        let mut file = crate::jobs::JobFile::new("http://h/a", "/tmp/a");
        file.bytes_transferred = 1_000;
        job.files.push(file);
        let t0 = Instant::now();
        assert_eq!(rates.measure(&[job.clone()], t0)[0].rate, None);
        // Too soon to measure: still none.
        job.files[0].bytes_transferred = 1_500;
        let soon = t0 + Duration::from_millis(300);
        assert_eq!(rates.measure(&[job.clone()], soon)[0].rate, None);
        job.files[0].bytes_transferred = 3_000;
        let two_secs = t0 + Duration::from_secs(2);
        assert_eq!(rates.measure(&[job.clone()], two_secs)[0].rate, Some(1_000));
        // A moment later: the rate measured then, not one over half a second.
        job.files[0].bytes_transferred = 9_000;
        let later = two_secs + Duration::from_millis(500);
        assert_eq!(rates.measure(&[job.clone()], later)[0].rate, Some(1_000));
        let third = two_secs + Duration::from_secs(3);
        assert_eq!(rates.measure(&[job.clone()], third)[0].rate, Some(2_000));
        // A job no longer listed is forgotten.
        rates.measure(&[], later);
        assert!(rates.seen.lock().unwrap().is_empty());
    }
}
