//! A job's runner: the task that fetches a running job's unfinished files in order, and its two reports
//! to the [`Registry`] — progress (CONNECTING → TRANSFERRING, the no-progress clock, a write every
//! `save_interval`) and its end (TRANSFERRED, or a failure: TRANSIENT_ERROR with its retry time, or ERROR).
//!
//! An action that stops a job (Suspend, Cancel, Complete, shutdown) cancels the runner's token under the
//! jobs lock; a report made after that changes nothing, so nothing is written for the job after the
//! action that stopped it returns.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::JobEvent;
use super::job::{JobFile, JobId};
use super::registry::{later, Registry};
use super::state::Event;
use super::transfer::Failure;

/// A job's runner: its unfinished files in order, until done, a failure, or cancellation.
pub(super) async fn run(registry: Arc<Registry>, id: JobId, cancel: CancellationToken) {
    loop {
        let next = {
            let jobs = registry.lock();
            let Some(entry) = jobs.map.get(&id) else {
                return;
            };
            entry
                .job
                .files
                .iter()
                .enumerate()
                .find(|(_, f)| !f.completed)
                .map(|(i, f)| (i, f.clone(), entry.job.client.clone(), entry.job.restricted))
        };
        let Some((index, mut file, settings, restricted)) = next else {
            registry.finished(id, None, &cancel);
            return;
        };
        let mut report = |f: &JobFile| registry.progress(id, index, f, &cancel);
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = registry.fetch.fetch(&settings, restricted, &mut file, &mut report) => r,
        };
        if let Err(failure) = result {
            registry.finished(id, Some((index, failure)), &cancel);
            return;
        }
        registry.progress(id, index, &file, &cancel);
    }
}

impl Registry {
    /// A runner's report about its current file: record it, move CONNECTING to TRANSFERRING, restart the
    /// no-progress clock on new bytes, and write progress every `save_interval`.
    fn progress(&self, id: JobId, index: usize, file: &JobFile, cancel: &CancellationToken) {
        let mut jobs = self.lock();
        let Some(entry) = jobs.map.get_mut(&id) else {
            return;
        };
        if cancel.is_cancelled() || !entry.job.state.is_active() {
            return;
        }
        let Some(slot) = entry.job.files.get_mut(index) else {
            return;
        };
        if file.bytes_transferred > slot.bytes_transferred {
            entry.stalled_since = None;
        }
        *slot = file.clone();
        let previous = entry.job.state;
        let state = previous.on(Event::Receiving).unwrap_or(previous);
        entry.job.state = state;
        let now = Instant::now();
        let due = now.duration_since(entry.saved_at) >= self.save_interval;
        if due || state != previous {
            entry.saved_at = now;
            entry.job.modified = SystemTime::now();
            self.writer.save_later(entry.job.clone());
        }
        let _ = self.events.send(JobEvent::Progress {
            id,
            bytes_transferred: entry.job.bytes_transferred(),
            bytes_total: entry.job.bytes_total(),
            files_transferred: entry.job.files_transferred(),
        });
        if state != previous {
            self.emit_state(id, previous, state);
        }
    }

    /// A runner's end: every file transferred (`None`) or a failure.
    fn finished(&self, id: JobId, failure: Option<(usize, Failure)>, cancel: &CancellationToken) {
        let change = {
            let mut jobs = self.lock();
            let Some(entry) = jobs.map.get_mut(&id) else {
                return;
            };
            if cancel.is_cancelled() {
                return;
            }
            entry.runner = None;
            let previous = entry.job.state;
            let now = SystemTime::now();
            let event = match failure {
                None => {
                    entry.job.completed = Some(now);
                    entry.job.error = None;
                    Event::AllTransferred
                }
                Some((index, f)) => {
                    let mut error = f.error;
                    error.file = Some(index);
                    entry.job.error = Some(error);
                    if f.transient {
                        entry.job.transient_error_count += 1;
                        let delay = entry
                            .job
                            .minimum_retry_delay
                            .max(f.retry_after.unwrap_or_default());
                        let at = Instant::now();
                        entry.retry_at = Some(later(at, delay));
                        entry.stalled_since.get_or_insert(at);
                        Event::TransientFailure
                    } else {
                        Event::FatalFailure
                    }
                }
            };
            let Ok(state) = previous.on(event) else {
                return;
            };
            entry.job.state = state;
            entry.job.modified = now;
            // Queued under the lock: an action that follows this change (Complete on TRANSFERRED, whose
            // Delete must come last) queues its write after this one.
            self.writer.save_later(entry.job.clone());
            (state, previous)
        };
        self.emit_state(id, change.1, change.0);
        self.wake.notify_one();
    }
}
