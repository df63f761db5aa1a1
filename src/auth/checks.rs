//! Where password hashes are checked: a few threads of their own, behind a short queue.
//!
//! SECURITY: the threat is memory amplification. One argon2id check with the default parameters takes
//! about 19 MiB; on tokio's blocking pool (up to 512 threads, each with its own malloc arena that keeps what
//! it once held) a hundred concurrent wrong passwords raised a server from 8 MB to 1.4 GB, for good. Here
//! at most [`THREADS`] checks run at once, always on the same threads, so what they hold is bounded by
//! `THREADS` × one check; at most [`QUEUE`] more wait, and beyond that a check is refused at once
//! ([`TooManyChecks`], answered 503 with Retry-After) instead of queueing without bound.

use crate::lock::Recover;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};

/// Checks that run at once.
pub(crate) const THREADS: usize = 2;
/// Checks that may wait for a thread.
pub(crate) const QUEUE: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// The queue is full: come back later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyChecks;

/// The password-check threads of one server, started on first use; they end when the server is dropped.
#[derive(Debug, Default)]
pub(crate) struct PasswordChecks {
    queue: OnceLock<Option<SyncSender<Job>>>,
}

impl PasswordChecks {
    /// Runs `check` on a password-check thread and waits for its answer without blocking the worker.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, TooManyChecks> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(check());
        });
        let queue = self
            .queue
            .get_or_init(start)
            .as_ref()
            .ok_or(TooManyChecks)?;
        match queue.try_send(job) {
            Ok(()) => rx.await.map_err(|_| TooManyChecks),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(TooManyChecks),
        }
    }
}

/// Starts the threads; `None` if not even one could be started (every check is then refused).
fn start() -> Option<SyncSender<Job>> {
    let (tx, rx) = sync_channel::<Job>(QUEUE);
    let rx = Arc::new(Mutex::new(rx));
    let started = (0..THREADS)
        .filter(|i| {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("bcs-password-{i}"))
                .spawn(move || work(&rx))
                .is_ok()
        })
        .count();
    (started > 0).then_some(tx)
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let rx = rx.lock().recover();
            rx.recv()
        };
        match job {
            // A panicking check (a bug) must not take the thread, and so the capacity, with it.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_threads_run_at_once_and_a_full_queue_refuses() {
        let checks = Arc::new(PasswordChecks::default());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..(THREADS + QUEUE + 40) {
            let (checks, running, most) = (checks.clone(), running.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                checks
                    .run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
            }));
        }
        let mut refused = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                refused += 1;
            }
        }
        assert!(most.load(Ordering::SeqCst) <= THREADS);
        assert!(refused >= 40 - THREADS, "refused {refused}");
        // Capacity comes back once the queue drains.
        assert_eq!(checks.run(|| 7).await, Ok(7));
    }
}
