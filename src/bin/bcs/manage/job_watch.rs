//! How `bcs job watch` shows a job as its events come: a bar per file on a terminal (without a length
//! until the file's size is known, so never a full bar reading `0 B/0 B`), a line per change otherwise,
//! nothing of its own with `--json`. What the service sent is escaped for the terminal.

use std::collections::HashMap;
use std::io::IsTerminal;

use bits_compact::service::{FileView, JobFileProgress, JobView};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// `transferred/total bytes`, the total `?` while unknown.
pub(super) fn bytes(transferred: u64, total: Option<u64>) -> String {
    let total = total.map_or_else(|| "?".to_owned(), |t| t.to_string());
    format!("{transferred}/{total} bytes")
}

/// One file's numbers as a `progress` event gives them, from a job's file.
fn progress_of(f: &FileView) -> JobFileProgress {
    JobFileProgress {
        bytes_total: f.bytes_total,
        bytes_transferred: f.bytes_transferred,
        completed: f.completed,
    }
}

/// How `watch` shows what happens: a bar per file on a terminal, lines otherwise, JSON lines with --json.
pub(super) enum Watcher {
    Bars {
        multi: MultiProgress,
        bars: Vec<ProgressBar>,
    },
    Lines {
        shown: HashMap<usize, u64>,
    },
    Json,
}

impl Watcher {
    pub(super) fn new(json: bool) -> Watcher {
        if json {
            Watcher::Json
        } else if std::io::stderr().is_terminal() {
            Watcher::Bars {
                multi: MultiProgress::new(),
                bars: Vec::new(),
            }
        } else {
            Watcher::Lines {
                shown: HashMap::new(),
            }
        }
    }

    /// The job's files as they are: a bar (or line) for each, named after its local file.
    pub(super) fn job(&mut self, job: &JobView) {
        if let Watcher::Bars { multi, bars } = self {
            for (i, f) in job.files.iter().enumerate().skip(bars.len()) {
                let name = f.local_file.rsplit('/').next().unwrap_or_default();
                let bar = multi.add(ProgressBar::no_length());
                bar.set_style(unsized_style());
                bar.set_prefix(match name.is_empty() {
                    true => format!("#{i}"),
                    false => crate::print::terminal_safe(name),
                });
                bars.push(bar);
            }
        }
        let numbers: Vec<JobFileProgress> = job.files.iter().map(progress_of).collect();
        self.files(&numbers);
    }

    /// The files' numbers (from a `job` or a `progress` event).
    pub(super) fn files(&mut self, files: &[JobFileProgress]) {
        match self {
            Watcher::Bars { bars, .. } => {
                for (bar, f) in bars.iter().zip(files) {
                    if let (Some(total), None) = (f.bytes_total, bar.length()) {
                        // The size is known: a bar from now on.
                        bar.set_style(sized_style());
                        bar.set_length(total);
                    }
                    bar.set_position(f.bytes_transferred);
                }
            }
            Watcher::Lines { shown } => {
                for (i, f) in files.iter().enumerate() {
                    if shown.insert(i, f.bytes_transferred) != Some(f.bytes_transferred) {
                        note!("file {i}: {}", bytes(f.bytes_transferred, f.bytes_total));
                    }
                }
            }
            Watcher::Json => {}
        }
    }

    pub(super) fn line(&self, text: &str) {
        let text = crate::print::terminal_safe(text);
        match self {
            Watcher::Bars { multi, .. } => {
                let _ = multi.println(text);
            }
            Watcher::Lines { .. } => note!("{text}"),
            Watcher::Json => {}
        }
    }

    pub(super) fn finish(&self) {
        if let Watcher::Bars { bars, .. } = self {
            for bar in bars {
                bar.finish();
            }
        }
    }
}

/// A file whose size is not known yet: what came so far and the rate, no bar (a bar of length 0 would
/// be drawn full).
fn unsized_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {bytes} {binary_bytes_per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// A file of known size.
fn sized_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
}
