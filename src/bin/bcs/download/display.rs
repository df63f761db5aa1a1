//! How a download's progress is shown: a bar on a terminal, plain lines on stderr otherwise, JSON lines
//! on stdout with `--json`; and what is said when a transfer fails transiently.

use std::io::IsTerminal;
use std::time::Instant;

use bits_compact::jobs::{Job, JobState};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use super::{GIVE_UP_AFTER, RETRY_DELAY};
use crate::print::{human_bytes, terminal_safe};

/// How progress is shown: a bar on a terminal, plain lines on stderr otherwise, JSON lines with --json.
pub(super) enum Show {
    Bar(ProgressBar),
    Plain { at: Instant, shown: u64 },
    Json { shown: Option<u64> },
}

impl Show {
    pub(super) fn new(json: bool) -> Show {
        if json {
            return Show::Json { shown: None };
        }
        if !std::io::stderr().is_terminal() {
            return Show::Plain {
                at: Instant::now(),
                shown: u64::MAX,
            };
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "{wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        Show::Bar(bar)
    }

    pub(super) fn state(&mut self, job: &Job) {
        match self {
            Show::Json { .. } => say!("{}", json!({"event": "state", "state": job.state})),
            Show::Bar(bar) if job.state == JobState::TransientError => {
                bar.suspend(|| note!("bcs: {}; {}", error_of(job), retrying()))
            }
            Show::Plain { .. } if job.state == JobState::TransientError => {
                note!("bcs: {}; {}", error_of(job), retrying())
            }
            _ => {}
        }
    }

    pub(super) fn progress(&mut self, job: &Job) {
        if let Show::Bar(bar) = self {
            // Until every file's size is known, the sizes known so far.
            let known = job.files.iter().filter_map(|f| f.bytes_total).sum();
            bar.set_length(job.bytes_total().unwrap_or(known));
            bar.set_position(job.bytes_transferred());
        }
    }

    /// A plain or JSON progress line, when something moved since the last.
    pub(super) fn line(&mut self, job: &Job) {
        let now = job.bytes_transferred();
        match self {
            Show::Json { shown } if *shown != Some(now) => {
                *shown = Some(now);
                say!(
                    "{}",
                    json!({"event": "progress", "bytes_transferred": now, "bytes_total": job.bytes_total(),
                    "files_transferred": job.files_transferred(), "files_total": job.files_total()})
                );
            }
            Show::Plain { at, shown } if *shown != now => {
                let rate = now.saturating_sub(if *shown == u64::MAX { now } else { *shown }) as f64
                    / at.elapsed().as_secs_f64().max(0.001);
                let total = job.bytes_total().map_or("?".into(), human_bytes);
                note!(
                    "bcs: {} of {total} at {}/s",
                    human_bytes(now),
                    human_bytes(rate as u64)
                );
                (*at, *shown) = (Instant::now(), now);
            }
            _ => {}
        }
    }

    pub(super) fn finish(&mut self, job: &Job) {
        self.progress(job);
        self.line(job);
        // Cleared: the "Saved" lines (stdout) and any error (stderr) then start on a line of their own.
        if let Show::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }

    pub(super) fn abandon(&mut self) {
        if let Show::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// What follows a transient failure.
pub(super) fn retrying() -> String {
    format!(
        "trying again every {} s, for up to {} s without progress",
        RETRY_DELAY.as_secs(),
        GIVE_UP_AFTER.as_secs()
    )
}

fn error_of(job: &Job) -> String {
    job.error
        .as_ref()
        .map_or_else(|| "failed".into(), terminal_safe)
}
