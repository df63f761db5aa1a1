//! A response body into the temporary: where the body covers bytes the temporary already holds, they are
//! compared rather than written (a resumed file keeps only bytes the server still serves); the rest is
//! written at its offset. Held to the job's pace and to the [`LowSpeedLimit`], and never past the end the
//! server announced.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::{timeout_at, Instant};

use super::failure::{Failure, Report};
use super::pace::Pace;
use crate::jobs::job::{ErrorContext, JobFile};
use crate::jobs::job_error::JobError;

/// How slow a body may arrive before the transfer counts as stalled (as curl's `--speed-limit` and
/// `--speed-time`): fewer than `min_bytes` in any `window` of it (measured in consecutive windows from
/// its first byte asked for) is TRANSIENT_ERROR, transport, `stalled`, and the job retries later.
///
/// SECURITY: a server that sends its headers and then nothing, or a few bytes a minute, would otherwise
/// hold the transfer (and one of the manager's transfer slots) forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowSpeedLimit {
    /// The fewest bytes each window must bring (at least 1).
    pub min_bytes: u64,
    /// The window.
    pub window: Duration,
}

impl Default for LowSpeedLimit {
    /// At least 1 KiB a minute: a body with no byte for 60 s, or dripping slower, is stalled.
    fn default() -> Self {
        LowSpeedLimit {
            min_bytes: 1024,
            window: Duration::from_secs(60),
        }
    }
}

impl LowSpeedLimit {
    /// The longest window accepted: a day.
    pub const LONGEST_WINDOW: Duration = Duration::from_secs(24 * 3600);

    /// Whether the window is within 1 ms and [`LONGEST_WINDOW`](Self::LONGEST_WINDOW): a zero window
    /// would call every transfer stalled at once, and a huge one would overflow the clock.
    pub(crate) fn check(&self) -> Result<(), JobError> {
        if self.window < Duration::from_millis(1) || self.window > Self::LONGEST_WINDOW {
            return Err(JobError::InvalidSetting(format!(
                "the low-speed window {:?} is outside 1 ms to {} s",
                self.window,
                Self::LONGEST_WINDOW.as_secs()
            )));
        }
        Ok(())
    }

    /// What a window must bring under a job bandwidth of `rate` bytes per second: never more than half
    /// of what the rate lets through in a window (so the job's own pace never looks like a stall).
    pub(super) fn floor(&self, rate: Option<u64>) -> u64 {
        let paced = rate.filter(|r| *r > 0).map_or(u64::MAX, |r| {
            (u128::from(r) * self.window.as_millis() / 2000).min(u128::from(u64::MAX)) as u64
        });
        self.min_bytes.min(paced).max(1)
    }
}

/// A transfer's pace (its bandwidth) and its low-speed limit.
pub(super) struct Limits {
    pub(super) pace: Pace,
    pub(super) low_speed: LowSpeedLimit,
}

/// The temporary a body goes into, and the limits it is held to.
pub(super) struct Sink<'a> {
    pub(super) disk: &'a File,
    pub(super) part: &'a Path,
    pub(super) limits: &'a mut Limits,
}

/// Where a body's bytes belong in the file: from `from` (the offset of its first byte) to `end` (the
/// offset after its last); those before `held` are already in the temporary and are compared.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub(super) from: u64,
    pub(super) held: u64,
    pub(super) end: u64,
}

/// How a body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Received {
    /// Every byte is in the temporary.
    Done,
    /// A byte differed from the one held, in a body that does not start at zero (so the bytes before it
    /// were never compared): the temporary is a mix, and the file must start over.
    Differs,
}

/// Streams `body` into the temporary over `span`, held to the low-speed limit: each window from the first
/// byte asked for must bring its bytes. A body that starts at zero and differs from the bytes held goes
/// on from the first differing byte (those before it are the body's own); `file.bytes_transferred`
/// follows the bytes written.
pub(super) async fn receive(
    mut body: Incoming,
    sink: Sink<'_>,
    span: Span,
    file: &mut JobFile,
    report: Report<'_>,
) -> Result<Received, Failure> {
    let Sink { disk, part, limits } = sink;
    let LowSpeedLimit { min_bytes, window } = limits.low_speed;
    // The window is at most a day (checked when the manager starts): no overflow, but no panic either.
    let window_from = |now: Instant| now.checked_add(window).unwrap_or(now);
    let mut window_end = window_from(Instant::now());
    let mut in_window = 0u64;
    let (mut at, mut held) = (span.from, span.held);
    while at < span.end {
        // `None`: the window ended first.
        let next = timeout_at(window_end, body.frame()).await.ok();
        if Instant::now() >= window_end {
            if in_window < min_bytes {
                return Err(stalled(in_window, limits.low_speed));
            }
            (window_end, in_window) = (window_from(Instant::now()), 0);
        }
        let frame = match next {
            None => continue,
            Some(None) => return Err(Failure::lost("the body ended early")),
            Some(Some(Err(e))) => return Err(Failure::lost(format!("while receiving: {e}"))),
            Some(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let len = data.len() as u64;
        // SECURITY: a server that sends more than it announced must not fill the disk.
        if at.saturating_add(len) > span.end {
            return Err(Failure::new(
                false,
                ErrorContext::ServerResponse,
                "body_too_long",
                "the server sent more bytes than it announced",
            ));
        }
        let mut fresh = &data[..];
        if at < held {
            let n = fresh
                .len()
                .min(usize::try_from(held - at).unwrap_or(usize::MAX));
            match first_difference(disk, at, &fresh[..n])
                .map_err(|e| Failure::local(&e, "read", part))?
            {
                None => (at, fresh) = (at + n as u64, &fresh[n..]),
                Some(_) if span.from > 0 => return Ok(Received::Differs),
                Some(i) => {
                    // Bytes before `i` are the body's own: the file goes on from the first that differs.
                    (at, fresh, held) = (at + i as u64, &fresh[i..], at + i as u64);
                    disk.set_len(at)
                        .map_err(|e| Failure::local(&e, "write", part))?;
                    file.bytes_transferred = at;
                    report(file);
                }
            }
        }
        if !fresh.is_empty() {
            // A synchronous write: it lands in the page cache at once, and a transfer dropped (Suspend,
            // Cancel) never leaves a write in flight behind it.
            disk.write_all_at(fresh, at)
                .map_err(|e| Failure::local(&e, "write", part))?;
            at += fresh.len() as u64;
            file.bytes_transferred = at;
            report(file);
        }
        in_window += len;
        limits.pace.after(len).await;
    }
    Ok(Received::Done)
}

/// The index of the first byte of `bytes` that differs from the temporary's at `at` on; `None` when all
/// match.
fn first_difference(disk: &File, at: u64, bytes: &[u8]) -> std::io::Result<Option<usize>> {
    let mut held = vec![0u8; bytes.len()];
    disk.read_exact_at(&mut held, at)?;
    Ok(held.iter().zip(bytes).position(|(a, b)| a != b))
}

fn stalled(got: u64, limit: LowSpeedLimit) -> Failure {
    let message = match got {
        0 => format!(
            "the server sent no byte of the body for {} s",
            limit.window.as_secs_f64()
        ),
        _ => format!(
            "the body stalled: {got} bytes in {} s, under the {} bytes required",
            limit.window.as_secs_f64(),
            limit.min_bytes
        ),
    };
    Failure::new(true, ErrorContext::Transport, "stalled", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_low_speed_floor_leaves_room_for_the_jobs_own_pace() {
        let limit = LowSpeedLimit::default();
        assert_eq!(limit.floor(None), 1024);
        assert_eq!(limit.floor(Some(0)), 1024);
        // 10 B/s lets 600 bytes through a minute: a window needs only half of them.
        assert_eq!(limit.floor(Some(10)), 300);
        assert_eq!(limit.floor(Some(1 << 20)), 1024);
        let tiny = LowSpeedLimit {
            min_bytes: 1024,
            window: Duration::from_millis(100),
        };
        assert_eq!(tiny.floor(Some(1)), 1);
    }

    #[test]
    fn the_first_difference_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        std::fs::write(&path, b"abcdef").unwrap();
        let disk = File::open(&path).unwrap();
        assert_eq!(first_difference(&disk, 1, b"bcd").unwrap(), None);
        assert_eq!(first_difference(&disk, 1, b"bxd").unwrap(), Some(1));
        assert!(first_difference(&disk, 4, b"efg").is_err(), "past the end");
    }
}
