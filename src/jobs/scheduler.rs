//! The scheduler: one task that starts QUEUED jobs while fewer than `max_transfers` run — FOREGROUND
//! first, then HIGH, NORMAL, LOW; within a priority in the order jobs became QUEUED (a retried job goes to
//! the back, so jobs of one priority take turns) — and turns TRANSIENT_ERROR jobs back into QUEUED after
//! their retry delay (MinimumRetryDelay, or a longer Retry-After) and into ERROR once they made no
//! progress for their NoProgressTimeout. It looks again when woken (a job was queued, a slot freed) or
//! when its next timer is due. Also the reload of the stored jobs at start.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::job::{Job, JobId};
use super::registry::{later, Jobs, Registry, RunnerTask};
use super::runner;
use super::state::{Event, JobState, Priority};

/// The scheduler: a tick whenever something changed or a timer is due, until shutdown.
pub(super) async fn schedule(registry: Arc<Registry>) {
    loop {
        let next = registry.tick();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = registry.stop.cancelled() => return,
            _ = registry.wake.notified() => {}
            _ = sleep => {}
        }
    }
}

impl Registry {
    /// Takes the stored jobs in; returns those whose state changed, to be saved.
    pub(super) fn reload(&self, loaded: Vec<Job>) -> Vec<Job> {
        let mut jobs = self.lock();
        let now = Instant::now();
        let mut changed = Vec::new();
        for mut job in loaded {
            if job.state.is_final() {
                self.writer.delete_later(job.id);
                continue;
            }
            let state = job.state.on(Event::Reloaded).unwrap_or(job.state);
            if state != job.state {
                job.state = state;
                changed.push(job.clone());
            }
            let id = job.id;
            jobs.insert(job);
            let entry = jobs.map.get_mut(&id).expect("just inserted");
            if entry.job.state == JobState::TransientError {
                // A restart is a good moment to try again; the no-progress clock starts over.
                entry.retry_at = Some(now);
                entry.stalled_since = Some(now);
            }
        }
        changed
    }

    /// One round of the scheduler: due retries and timeouts, then new transfers. Returns when to look again.
    fn tick(self: &Arc<Self>) -> Option<Instant> {
        let now = Instant::now();
        let mut changes = Vec::new();
        let mut next: Option<Instant> = None;
        let mut jobs = self.lock();
        let ids: Vec<JobId> = jobs.map.keys().copied().collect();
        for id in ids {
            let entry = jobs.map.get_mut(&id).expect("listed");
            if entry.job.state != JobState::TransientError {
                continue;
            }
            let stalled = entry.stalled_since.unwrap_or(now);
            let deadline = later(stalled, entry.job.no_progress_timeout);
            let retry_at = entry.retry_at.unwrap_or(now);
            let event = if deadline <= now {
                Event::NoProgressTimeout
            } else if retry_at <= now {
                Event::RetryDue
            } else {
                next = Some(next.map_or(retry_at.min(deadline), |n| n.min(retry_at).min(deadline)));
                continue;
            };
            let previous = entry.job.state;
            let Ok(state) = previous.on(event) else {
                continue;
            };
            entry.job.state = state;
            entry.job.modified = SystemTime::now();
            entry.retry_at = None;
            changes.push((entry.job.clone(), previous));
            if state == JobState::Queued {
                jobs.requeue(id);
            }
        }
        self.start_transfers(&mut jobs, &mut changes);
        for (job, _) in &changes {
            self.writer.save_later(job.clone());
        }
        drop(jobs);
        for (job, previous) in changes {
            self.emit_state(job.id, previous, job.state);
        }
        next
    }

    /// Starts QUEUED jobs while slots are free: by priority, then by their turn.
    fn start_transfers(self: &Arc<Self>, jobs: &mut Jobs, changes: &mut Vec<(Job, JobState)>) {
        let running = jobs.map.values().filter(|e| e.runner.is_some()).count();
        let mut waiting: Vec<(Priority, u64, JobId)> = jobs
            .map
            .values()
            .filter(|e| e.job.state == JobState::Queued && e.runner.is_none())
            .map(|e| (e.job.priority, e.queued, e.job.id))
            .collect();
        waiting.sort();
        for (_, _, id) in waiting
            .into_iter()
            .take(self.max_transfers.saturating_sub(running))
        {
            let entry = jobs.map.get_mut(&id).expect("listed");
            let Ok(state) = entry.job.state.on(Event::Started) else {
                continue;
            };
            entry.job.state = state;
            entry.job.modified = SystemTime::now();
            let cancel = CancellationToken::new();
            let task = tokio::spawn(runner::run(self.clone(), id, cancel.clone()));
            entry.runner = Some(RunnerTask { cancel, task });
            changes.push((entry.job.clone(), JobState::Queued));
        }
    }
}
