//! The manager's behaviour through its public calls, on a scripted fetcher and (mostly) tokio's paused
//! clock: retries and timeouts, priorities and turns, shutdown and reload, the action table, the write
//! order on disk, the destinations' checks, and per-job watchers that lag.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::new_job::MAX_FILES_PER_JOB;
use super::transfer::{self, Fetch};
use super::{
    Action, ErrorContext, Job, JobError, JobEvent, JobFile, JobId, JobManager, JobState, JobStore,
    MemoryStore, NewJob, Priority, TransitionError,
};
use crate::client::ClientSettings;

/// A fetcher that fails transiently `fail` times (optionally with a Retry-After), then succeeds; it
/// counts its calls.
struct Scripted {
    calls: Arc<AtomicUsize>,
    fail: usize,
    retry_after: Option<Duration>,
    /// How long a successful fetch takes.
    delay: Duration,
}

impl Fetch for Scripted {
    fn fetch<'a>(
        &'a self,
        _settings: &'a ClientSettings,
        _restricted: bool,
        file: &'a mut JobFile,
        report: transfer::Report<'a>,
    ) -> transfer::Fetching<'a> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n < self.fail {
                let mut f =
                    transfer::classify(http::StatusCode::SERVICE_UNAVAILABLE, &Default::default());
                f.retry_after = self.retry_after;
                return Err(f);
            }
            tokio::time::sleep(self.delay).await;
            file.bytes_total = Some(10);
            file.bytes_transferred = 10;
            file.completed = true;
            report(file);
            Ok(())
        })
    }
}

async fn manager(fail: usize, retry_after: Option<Duration>) -> (JobManager, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let fetch = Scripted {
        calls: calls.clone(),
        fail,
        retry_after,
        delay: Duration::ZERO,
    };
    let m = JobManager::builder().fetch(fetch).start().await.unwrap();
    (m, calls)
}

fn one_file(name: &str) -> NewJob {
    NewJob::new(name).file("http://127.0.0.1:9/f", format!("/nonexistent/{name}"))
}

/// Waits (on the paused clock) until the job is in `state`; at most `within`.
async fn wait_for(m: &JobManager, id: JobId, state: JobState, within: Duration) -> Instant {
    let deadline = Instant::now() + within;
    while m.job(id).unwrap().state != state {
        assert!(
            Instant::now() < deadline,
            "{id} is {} after {within:?}, not {state}",
            m.job(id).unwrap().state
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Instant::now()
}

#[tokio::test(start_paused = true)]
async fn a_transient_error_is_retried_after_the_minimum_retry_delay() {
    let (m, calls) = manager(2, None).await;
    let start = Instant::now();
    let job = m
        .create_job(one_file("a").minimum_retry_delay(Duration::from_secs(60)))
        .await
        .unwrap();
    wait_for(&m, job.id, JobState::TransientError, Duration::from_secs(1)).await;
    let error = m.error(job.id).unwrap().unwrap();
    assert_eq!(
        (error.context, error.code.as_str()),
        (ErrorContext::ServerResponse, "http_503")
    );
    // Not before 60 s ...
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // ... and then twice more (the second retry after 60 s again), then done.
    let done = wait_for(&m, job.id, JobState::Transferred, Duration::from_secs(200)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let waited = done - start;
    assert!(
        waited >= Duration::from_secs(120) && waited < Duration::from_secs(122),
        "{waited:?}"
    );
    let job = m.job(job.id).unwrap();
    assert_eq!(job.transient_error_count, 2);
    assert_eq!(job.error, None);
}

/// SetRemoteName: refused while the job runs or for a file it lacks or a URL that is none; taken in
/// TRANSIENT_ERROR, where a Resume then fetches from the new server at once, keeping what it held.
#[tokio::test(start_paused = true)]
async fn a_file_moves_to_another_server_only_while_its_job_is_idle() {
    let (m, calls) = manager(1, None).await;
    let job = m
        .create_job(one_file("a").minimum_retry_delay(Duration::from_secs(600)))
        .await
        .unwrap();
    wait_for(&m, job.id, JobState::TransientError, Duration::from_secs(1)).await;
    for bad in ["", "ftp://x/f", "http://"] {
        let e = m.set_remote_name(job.id, 0, bad).await.unwrap_err();
        assert!(matches!(e, JobError::InvalidFile { .. }), "{bad:?}: {e}");
    }
    let e = m
        .set_remote_name(job.id, 1, "http://127.0.0.2:9/f")
        .await
        .unwrap_err();
    assert!(matches!(e, JobError::InvalidSetting(_)), "{e}");
    let moved = m
        .set_remote_name(job.id, 0, "http://127.0.0.2:9/f")
        .await
        .unwrap();
    assert_eq!(moved.files[0].remote_url, "http://127.0.0.2:9/f");
    m.set_state(job.id, Action::Resume).await.unwrap();
    wait_for(&m, job.id, JobState::Transferred, Duration::from_secs(1)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A finished file is not moved.
    let e = m
        .set_remote_name(job.id, 0, "http://127.0.0.3:9/f")
        .await
        .unwrap_err();
    assert!(matches!(e, JobError::InvalidSetting(_)), "{e}");

    // While it runs (a fetch that takes a while), it is refused and the file keeps its URL.
    let slow = JobManager::builder()
        .fetch(Scripted {
            calls: Arc::default(),
            fail: 0,
            retry_after: None,
            delay: Duration::from_secs(30),
        })
        .start()
        .await
        .unwrap();
    let running = slow.create_job(one_file("b")).await.unwrap();
    wait_for(
        &slow,
        running.id,
        JobState::Connecting,
        Duration::from_secs(1),
    )
    .await;
    let e = slow
        .set_remote_name(running.id, 0, "http://127.0.0.2:9/f")
        .await
        .unwrap_err();
    assert!(matches!(e, JobError::InvalidSetting(_)), "{e}");
    assert_eq!(
        slow.job(running.id).unwrap().files[0].remote_url,
        "http://127.0.0.1:9/f"
    );
}

#[tokio::test(start_paused = true)]
async fn a_longer_retry_after_wins_over_the_minimum_retry_delay() {
    let (m, calls) = manager(1, Some(Duration::from_secs(300))).await;
    let start = Instant::now();
    let job = m
        .create_job(one_file("a").minimum_retry_delay(Duration::from_secs(5)))
        .await
        .unwrap();
    let done = wait_for(&m, job.id, JobState::Transferred, Duration::from_secs(400)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(
        done - start >= Duration::from_secs(300),
        "{:?}",
        done - start
    );
}

#[tokio::test(start_paused = true)]
async fn no_progress_for_the_timeout_is_an_error() {
    let (m, calls) = manager(usize::MAX, None).await;
    let start = Instant::now();
    let job = m
        .create_job(
            one_file("a")
                .minimum_retry_delay(Duration::from_secs(30))
                .no_progress_timeout(Duration::from_secs(100)),
        )
        .await
        .unwrap();
    let failed = wait_for(&m, job.id, JobState::Error, Duration::from_secs(200)).await;
    let elapsed = failed - start;
    assert!(
        elapsed >= Duration::from_secs(100) && elapsed < Duration::from_secs(101),
        "{elapsed:?}"
    );
    // Tried at 0, 30, 60, 90 s; the error of the last try is kept for GetError.
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert_eq!(m.error(job.id).unwrap().unwrap().code, "http_503");
    // Resume starts over.
    m.set_state(job.id, Action::Resume).await.unwrap();
    wait_for(&m, job.id, JobState::TransientError, Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn priorities_go_first_and_one_priority_takes_turns() {
    let m = JobManager::builder()
        .max_transfers(1)
        .fetch(Scripted {
            calls: Arc::new(AtomicUsize::new(0)),
            fail: 0,
            retry_after: None,
            delay: Duration::from_secs(10),
        })
        .start()
        .await
        .unwrap();
    let mut events = m.subscribe();
    // The one slot is taken; then jobs queue up in an order unlike their priorities.
    let blocker = m
        .create_job(one_file("blocker").priority(Priority::Low))
        .await
        .unwrap();
    wait_for(&m, blocker.id, JobState::Connecting, Duration::from_secs(1)).await;
    for (name, p) in [
        ("low", Priority::Low),
        ("n1", Priority::Normal),
        ("high", Priority::High),
        ("n2", Priority::Normal),
        ("fg", Priority::Foreground),
    ] {
        m.create_job(one_file(name).priority(p)).await.unwrap();
    }
    let mut order = Vec::new();
    while order.len() < 6 {
        let event = tokio::time::timeout(Duration::from_secs(100), events.recv())
            .await
            .unwrap()
            .unwrap();
        if let JobEvent::State {
            id,
            state: JobState::Connecting,
            ..
        } = event
        {
            order.push(m.job(id).unwrap().display_name);
        }
    }
    assert_eq!(order, ["blocker", "fg", "high", "n1", "n2", "low"]);
    // Never more than one at once.
    assert!(m.jobs().iter().filter(|j| j.state.is_active()).count() <= 1);
}

#[tokio::test(start_paused = true)]
async fn a_running_job_comes_back_queued_after_shutdown_and_suspend_stops_it() {
    let store = Arc::new(MemoryStore::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let slow = |calls: &Arc<AtomicUsize>| Scripted {
        calls: calls.clone(),
        fail: 0,
        retry_after: None,
        delay: Duration::from_secs(3600),
    };
    let m = JobManager::builder()
        .store(store.clone())
        .fetch(slow(&calls))
        .start()
        .await
        .unwrap();
    let job = m.create_job(one_file("a")).await.unwrap();
    wait_for(&m, job.id, JobState::Connecting, Duration::from_secs(1)).await;
    m.shutdown().await;
    assert_eq!(store.load_all().unwrap()[0].state, JobState::Connecting);
    let m = JobManager::builder()
        .store(store.clone())
        .fetch(slow(&calls))
        .start()
        .await
        .unwrap();
    assert!(
        m.job(job.id).unwrap().state.is_active()
            || m.job(job.id).unwrap().state == JobState::Queued
    );
    wait_for(&m, job.id, JobState::Connecting, Duration::from_secs(1)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // Suspend stops the runner: nothing completes it later.
    let suspended = m.set_state(job.id, Action::Suspend).await.unwrap();
    assert_eq!(suspended.state, JobState::Suspended);
    tokio::time::sleep(Duration::from_secs(7200)).await;
    assert_eq!(m.job(job.id).unwrap().state, JobState::Suspended);
    assert_eq!(store.load_all().unwrap()[0].state, JobState::Suspended);
}

#[tokio::test(start_paused = true)]
async fn actions_follow_the_table() {
    let (m, _) = manager(0, None).await;
    let empty = m.create_job(NewJob::new("empty")).await.unwrap();
    assert_eq!(empty.state, JobState::Suspended);
    let err = m.set_state(empty.id, Action::Resume).await.unwrap_err();
    assert!(
        matches!(
            err,
            JobError::Transition {
                source: TransitionError::NoFiles,
                ..
            }
        ),
        "{err}"
    );
    let err = m.set_state(empty.id, Action::Complete).await.unwrap_err();
    assert!(matches!(
        err,
        JobError::Transition {
            source: TransitionError::NotTransferred(_),
            ..
        }
    ));
    m.set_state(empty.id, Action::Cancel).await.unwrap();
    let err = m.set_state(empty.id, Action::Complete).await.unwrap_err();
    assert!(matches!(
        err,
        JobError::Transition {
            source: TransitionError::Final(JobState::Cancelled),
            ..
        }
    ));
    assert!(m.add_file(empty.id, "http://h/x", "/tmp/x").await.is_err());
    assert!(matches!(m.job(JobId::random()), Err(JobError::NotFound(_))));
    assert!(matches!(
        m.create_job(one_file("a").minimum_retry_delay(Duration::from_secs(4)))
            .await,
        Err(JobError::InvalidSetting(_))
    ));
    for (url, local) in [
        ("ftp://h/x", "/tmp/x"),
        ("http://h/x", "relative"),
        ("http://h/x", "/"),
    ] {
        assert!(
            matches!(
                m.create_job(NewJob::new("bad").file(url, local)).await,
                Err(JobError::InvalidFile { .. })
            ),
            "{url} {local}"
        );
    }
    let dup = m.create_job(one_file("d").suspended(true)).await.unwrap();
    assert!(m
        .add_file(dup.id, "http://h/y", "/nonexistent/d")
        .await
        .is_err());
}

/// A store shared with the test, to read what the manager left in it.
struct Shared(Arc<MemoryStore>);

impl JobStore for Shared {
    fn load_all(&self) -> Result<Vec<Job>, JobError> {
        self.0.load_all()
    }
    fn save(&self, job: &Job) -> Result<(), JobError> {
        self.0.save(job)
    }
    fn delete(&self, id: JobId) -> Result<(), JobError> {
        self.0.delete(id)
    }
}

/// A caller that cancels a job the moment it sees TRANSFERRED (as `bcs download` completes it) must
/// find it gone from the store: the runner's write of TRANSFERRED is queued before the event goes out,
/// so the Delete comes after it. (Before, the runner queued it after the event, and now and then the
/// deleted job came back on disk.) Many rounds on worker threads, bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_action_on_a_state_just_reached_is_never_overwritten_on_disk() {
    let store = Arc::new(MemoryStore::new());
    let fetch = Scripted {
        calls: Arc::new(AtomicUsize::new(0)),
        fail: 0,
        retry_after: None,
        delay: Duration::ZERO,
    };
    let m = JobManager::builder()
        .store(Shared(store.clone()))
        .fetch(fetch)
        .max_transfers(4)
        .start()
        .await
        .unwrap();
    let mut events = m.subscribe();
    for round in 0..300 {
        let id = m
            .create_job(one_file(&format!("r{round}")))
            .await
            .unwrap()
            .id;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("an event within 10 s")
                .expect("no lag");
            if matches!(event, JobEvent::State { id: i, state: JobState::Transferred, .. } if i == id)
            {
                break;
            }
        }
        m.set_state(id, Action::Cancel).await.unwrap();
    }
    m.shutdown().await;
    let left = store.load_all().unwrap();
    assert!(
        left.is_empty(),
        "{} cancelled jobs came back: {:?}",
        left.len(),
        left.first().map(|j| j.state)
    );
}

/// SECURITY (see `claimed_elsewhere`): one destination, one unfinished job; no destination named like a
/// temporary; at most MAX_FILES_PER_JOB files.
#[tokio::test]
async fn destinations_are_not_shared_nor_temporaries_and_files_are_bounded() {
    let (m, _) = manager(0, None).await;
    let first = m
        .create_job(one_file("same").suspended(true))
        .await
        .unwrap();
    let again = m.create_job(one_file("same").suspended(true)).await;
    assert!(
        matches!(again, Err(JobError::InvalidFile { ref reason, .. }) if reason.contains("another unfinished job")),
        "{again:?}"
    );
    let other = m
        .create_job(one_file("other").suspended(true))
        .await
        .unwrap();
    let add = m
        .add_file(other.id, "http://127.0.0.1:9/g", "/nonexistent/same")
        .await;
    assert!(matches!(add, Err(JobError::InvalidFile { .. })), "{add:?}");
    let part = m
        .add_file(other.id, "http://127.0.0.1:9/g", "/nonexistent/.x.bcs-part")
        .await;
    assert!(
        matches!(part, Err(JobError::InvalidFile { ref reason, .. }) if reason.contains("temporary")),
        "{part:?}"
    );
    // Once the first job is final, its destination is free again.
    m.set_state(first.id, Action::Cancel).await.unwrap();
    m.add_file(other.id, "http://127.0.0.1:9/g", "/nonexistent/same")
        .await
        .unwrap();
    let mut big = NewJob::new("big").suspended(true);
    for i in 0..=MAX_FILES_PER_JOB {
        big = big.file("http://127.0.0.1:9/f", format!("/nonexistent/big/{i}"));
    }
    assert!(matches!(
        m.create_job(big).await,
        Err(JobError::InvalidFile { .. })
    ));
    m.shutdown().await;
}

/// Watchers of one job that the broadcast left behind (far more events than it keeps, none read) are
/// not ended by the lag: one read mid-way gets the job's current state, then what follows; one read only
/// at the end still sees the final state. `wait_for` sees through the lag too.
#[tokio::test(start_paused = true)]
async fn a_lagging_watcher_still_sees_the_final_state() {
    let m = JobManager::builder()
        .max_transfers(8)
        .fetch(Scripted {
            calls: Arc::new(AtomicUsize::new(0)),
            fail: 0,
            retry_after: None,
            delay: Duration::ZERO,
        })
        .start()
        .await
        .unwrap();
    let job = m
        .create_job(one_file("watched").suspended(true))
        .await
        .unwrap();
    let mut midway = m.watch(job.id).unwrap();
    let mut at_the_end = m.watch(job.id).unwrap();
    let mut everyone = m.subscribe();
    for i in 0..300 {
        m.create_job(one_file(&format!("other{i}"))).await.unwrap();
    }
    for other in m.jobs().into_iter().filter(|j| j.id != job.id) {
        wait_for(&m, other.id, JobState::Transferred, Duration::from_secs(10)).await;
    }
    assert!(matches!(
        everyone.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))
    ));

    let caught_up = midway.next().await;
    let suspended = JobEvent::State {
        id: job.id,
        previous: JobState::Suspended,
        state: JobState::Suspended,
    };
    assert_eq!(caught_up, Some(suspended));
    m.set_state(job.id, Action::Resume).await.unwrap();
    let transferred = m
        .wait_for(job.id, |j| j.state == JobState::Transferred)
        .await
        .unwrap();
    assert_eq!(transferred.bytes_transferred(), 10);
    m.set_state(job.id, Action::Cancel).await.unwrap();
    let mut states = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(10), midway.next())
        .await
        .expect("the watch ends after the final state")
    {
        assert_eq!(event.id(), job.id);
        if let JobEvent::State { state, .. } = event {
            states.push(state);
        }
    }
    use JobState::*;
    assert_eq!(
        states,
        [Queued, Connecting, Transferring, Transferred, Cancelled]
    );

    let last = tokio::time::timeout(Duration::from_secs(10), at_the_end.next())
        .await
        .unwrap();
    let cancelled = JobEvent::State {
        id: job.id,
        previous: Suspended,
        state: Cancelled,
    };
    assert_eq!(last, Some(cancelled));
    assert_eq!(at_the_end.next().await, None);
    let too_late = m.wait_for(job.id, |j| j.state == Transferred).await;
    assert!(
        matches!(
            too_late,
            Err(JobError::Transition {
                source: TransitionError::Final(Cancelled),
                ..
            })
        ),
        "{too_late:?}"
    );
    m.shutdown().await;
}

/// Out-of-range timings are refused with InvalidSetting (BITS's ranges: MinimumRetryDelay 5 s to
/// `u32::MAX` s, NoProgressTimeout up to `u32::MAX` s; a low-speed window from 1 ms to a day), by
/// CreateJob, by the setter and by the builder; the ends of the ranges are accepted.
#[tokio::test(start_paused = true)]
async fn out_of_range_timings_are_refused() {
    use super::{LowSpeedLimit, LONGEST_JOB_TIMING};
    let (m, _) = manager(0, None).await;
    let huge = Duration::from_secs(u64::MAX);
    let invalid = |r: &Result<Job, JobError>| matches!(r, Err(JobError::InvalidSetting(_)));
    for new in [
        one_file("d").minimum_retry_delay(huge),
        one_file("d").minimum_retry_delay(LONGEST_JOB_TIMING + Duration::from_secs(1)),
        one_file("d").minimum_retry_delay(Duration::from_secs(4)),
        one_file("d").no_progress_timeout(huge),
        one_file("d").no_progress_timeout(Duration::MAX),
    ] {
        let created = m.create_job(new.suspended(true)).await;
        assert!(invalid(&created), "{created:?}");
    }
    let job = m
        .create_job(
            one_file("ends")
                .suspended(true)
                .minimum_retry_delay(LONGEST_JOB_TIMING)
                .no_progress_timeout(Duration::ZERO),
        )
        .await
        .unwrap();
    let set = m.set_retry_timing(job.id, Some(huge), None).await;
    assert!(invalid(&set), "{set:?}");
    let set = m.set_retry_timing(job.id, None, Some(huge)).await;
    assert!(invalid(&set), "{set:?}");
    assert_eq!(
        m.job(job.id).unwrap().minimum_retry_delay,
        LONGEST_JOB_TIMING
    );
    // One change: a refused timing leaves the priority given with it unset too.
    let before = m.job(job.id).unwrap().priority;
    let other = match before {
        Priority::Low => Priority::High,
        _ => Priority::Low,
    };
    let set = m.set_schedule(job.id, Some(other), None, Some(huge)).await;
    assert!(invalid(&set), "{set:?}");
    assert_eq!(m.job(job.id).unwrap().priority, before);
    let set = m.set_schedule(job.id, Some(other), Some(Duration::from_secs(60)), None);
    assert_eq!(set.await.unwrap().priority, other);
    m.shutdown().await;
    for window in [Duration::ZERO, Duration::MAX, Duration::from_secs(86_401)] {
        let limit = LowSpeedLimit {
            min_bytes: 1,
            window,
        };
        let started = JobManager::builder().low_speed_limit(limit).start().await;
        assert!(
            matches!(started, Err(JobError::InvalidSetting(_))),
            "{window:?}"
        );
    }
}

/// A job whose stored timings are beyond any range (written by hand, or by an older version) fails
/// transiently without panicking its runner: it waits in TRANSIENT_ERROR (before: "overflow when adding
/// duration to instant", and the job hung in CONNECTING), and the manager goes on running other jobs.
#[tokio::test(start_paused = true)]
async fn stored_timings_beyond_the_clock_never_panic() {
    let store = Arc::new(MemoryStore::new());
    let mut stored = Job::new("hostile", JobState::Queued);
    stored
        .files
        .push(JobFile::new("http://127.0.0.1:9/f", "/nonexistent/h"));
    stored.minimum_retry_delay = Duration::from_secs(u64::MAX);
    stored.no_progress_timeout = Duration::from_secs(u64::MAX);
    store.save(&stored).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let fetch = Scripted {
        calls: calls.clone(),
        fail: 1,
        retry_after: None,
        delay: Duration::ZERO,
    };
    let m = JobManager::builder()
        .store(Shared(store))
        .fetch(fetch)
        .start()
        .await
        .unwrap();
    wait_for(
        &m,
        stored.id,
        JobState::TransientError,
        Duration::from_secs(5),
    )
    .await;
    // Long after: still waiting for its (very late) retry, not retried, not an ERROR.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(m.job(stored.id).unwrap().state, JobState::TransientError);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let other = m.create_job(one_file("other")).await.unwrap();
    wait_for(&m, other.id, JobState::Transferred, Duration::from_secs(5)).await;
    m.shutdown().await;
}
