//! The server-sent event stream of `/v1/jobs/{id}/events`: one job's progress and state changes, from the
//! job manager's broadcast, through a bounded channel, to a response body.

use std::time::Duration;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;

use super::wire::{view, JobFileProgress, JobProgressEvent, JobStateEvent};
use crate::jobs::{Job, JobEvent, JobId, JobManager};

/// How many events may wait for a slow reader; beyond that the stream falls behind and catches up with
/// the job's current state.
const EVENTS_BUFFERED: usize = 16;
/// The least time between two `progress` events of one stream.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);
/// A comment line this often, so that a reader that left is noticed while the job is idle.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// The response to a reader of `job_id`'s events: `text/event-stream`, fed until the job is final.
pub(super) fn response(manager: JobManager, job_id: JobId) -> Response {
    let body = axum::body::Body::new(EventBody(event_stream(manager, job_id)));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The response to a reader of a final job's events: the job, and the end of the stream.
pub(super) fn ended(job: &Job) -> Response {
    let text = serde_json::to_string(&view(job)).unwrap_or_default();
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        axum::body::Body::from(sse("job", &text)),
    )
        .into_response()
}

/// The events of one job, as SSE chunks on a bounded channel: a task follows the manager's events until
/// the job is final, is gone, or the receiver is dropped.
///
/// SECURITY: the threat is a reader that never reads, holding memory. The task holds at most
/// `EVENTS_BUFFERED` chunks for it; while it waits, the manager's broadcast drops the oldest events for
/// this subscriber alone (transfers never wait), and once it can send again the reader gets the job as it
/// is now in place of what it missed.
fn event_stream(manager: JobManager, job_id: JobId) -> tokio::sync::mpsc::Receiver<bytes::Bytes> {
    // Subscribed before the first snapshot, so that nothing between them is missed.
    let mut events = manager.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(EVENTS_BUFFERED);
    tokio::spawn(async move {
        let snapshot = |manager: &JobManager| -> Option<(bytes::Bytes, bool)> {
            let job = manager.job(job_id).ok()?;
            let text = serde_json::to_string(&view(&job)).ok()?;
            Some((sse("job", &text), job.state.is_final()))
        };
        let Some((first, done)) = snapshot(&manager) else {
            return;
        };
        if tx.send(first).await.is_err() || done {
            return;
        }
        let mut last_progress: Option<tokio::time::Instant> = None;
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                () = tokio::time::sleep(KEEPALIVE) => {
                    if tx.send(bytes::Bytes::from_static(b": keepalive\n\n")).await.is_err() {
                        return;
                    }
                    continue;
                }
                () = tx.closed() => return,
            };
            let (chunk, done) = match event {
                Ok(JobEvent::State {
                    id,
                    previous,
                    state,
                }) if id == job_id => {
                    let body = JobStateEvent {
                        id: id.to_string(),
                        previous: previous.to_string(),
                        state: state.to_string(),
                        state_number: u32::from(state),
                    };
                    (sse("state", &data(&body)), state.is_final())
                }
                Ok(JobEvent::Progress { id, .. }) if id == job_id => {
                    // At most one progress event per interval; the state change that ends a transfer
                    // follows with the whole job's numbers anyway.
                    if last_progress.is_some_and(|at| at.elapsed() < PROGRESS_INTERVAL) {
                        continue;
                    }
                    last_progress = Some(tokio::time::Instant::now());
                    let Ok(job) = manager.job(job_id) else { return };
                    (sse("progress", &data(&progress(&job))), false)
                }
                Ok(_) => continue,
                // Fell behind: what was missed is summed up by the job as it is now.
                Err(RecvError::Lagged(_)) => match snapshot(&manager) {
                    Some(s) => s,
                    None => return,
                },
                Err(RecvError::Closed) => return,
            };
            if tx.send(chunk).await.is_err() || done {
                return;
            }
        }
    });
    rx
}

/// The `progress` event's data: the job's and each file's bytes.
fn progress(job: &Job) -> JobProgressEvent {
    let files = job
        .files
        .iter()
        .map(|f| JobFileProgress {
            bytes_transferred: f.bytes_transferred,
            bytes_total: f.bytes_total,
            completed: f.completed,
        })
        .collect();
    JobProgressEvent {
        id: job.id.to_string(),
        bytes_transferred: job.bytes_transferred(),
        bytes_total: job.bytes_total(),
        files_transferred: job.files_transferred(),
        files,
    }
}

/// An event's data: one line of JSON (these types always serialize).
fn data(event: &impl serde::Serialize) -> String {
    serde_json::to_string(event).unwrap_or_default()
}

/// One server-sent event (the data is one line of JSON).
fn sse(event: &str, data: &str) -> bytes::Bytes {
    bytes::Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// A response body fed by a bounded channel; the stream's task ends when the reader goes.
struct EventBody(tokio::sync::mpsc::Receiver<bytes::Bytes>);

impl http_body::Body for EventBody {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(http_body::Frame::data(c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{Action, NewJob};

    /// A reader that stops reading holds at most `EVENTS_BUFFERED` chunks, however many events the
    /// manager sends meanwhile; when it reads again it gets the job as it is now, and the stream ends
    /// with the job.
    #[tokio::test]
    async fn a_slow_reader_holds_a_bounded_buffer_and_catches_up_with_a_snapshot() {
        let manager = JobManager::builder().start().await.unwrap();
        let job = manager
            .create_job(NewJob::new("watched").suspended(true))
            .await
            .unwrap();
        let mut rx = event_stream(manager.clone(), job.id);
        // Each AddFile is a state event of this job: more than the buffer holds.
        for i in 0..(EVENTS_BUFFERED * 2) {
            manager
                .add_file(job.id, "http://127.0.0.1:9/f", format!("/nonexistent/{i}"))
                .await
                .unwrap();
        }
        // Then far more events than the broadcast keeps, while nobody reads.
        for i in 0..1500 {
            manager
                .create_job(NewJob::new(format!("other {i}")).suspended(true))
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(rx.len(), EVENTS_BUFFERED, "the buffer is full, not larger");
        let mut chunks = Vec::new();
        while let Ok(Some(chunk)) =
            tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
        {
            chunks.push(String::from_utf8(chunk.to_vec()).unwrap());
        }
        assert!(chunks[0].starts_with("event: job\n"), "{}", chunks[0]);
        let snapshots = chunks
            .iter()
            .filter(|c| c.starts_with("event: job\n"))
            .count();
        assert_eq!(
            snapshots, 2,
            "the first, and one for what was missed: {chunks:?}"
        );
        let last = chunks.last().unwrap();
        assert!(
            last.contains(&format!("\"files_total\":{}", EVENTS_BUFFERED * 2)),
            "{last}"
        );
        assert!(chunks.len() <= EVENTS_BUFFERED + 2, "{}", chunks.len());
        // The stream ends once the job is final.
        manager.set_state(job.id, Action::Cancel).await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), async {
            let mut tail = Vec::new();
            while let Some(chunk) = rx.recv().await {
                tail.push(chunk);
            }
            tail
        })
        .await
        .expect("the stream ends with the job");
        assert!(String::from_utf8_lossy(end.last().unwrap()).contains("CANCELLED"));
    }

    /// The events' data is the JSON the stream sent before it had types: the same keys, in the same order.
    #[tokio::test]
    async fn event_data_keeps_its_shape() {
        let manager = JobManager::builder().start().await.unwrap();
        let job = manager
            .create_job(NewJob::new("shape").suspended(true))
            .await
            .unwrap();
        manager
            .add_file(job.id, "http://127.0.0.1:9/f", "/nonexistent/f")
            .await
            .unwrap();
        let job = manager.job(job.id).unwrap();
        let id = job.id.to_string();
        assert_eq!(
            data(&progress(&job)),
            format!(
                r#"{{"bytes_total":null,"bytes_transferred":0,"files":[{{"bytes_total":null,"bytes_transferred":0,"completed":false}}],"files_transferred":0,"id":"{id}"}}"#
            )
        );
        let state = JobStateEvent {
            id: id.clone(),
            previous: "QUEUED".into(),
            state: "SUSPENDED".into(),
            state_number: 3,
        };
        assert_eq!(
            data(&state),
            format!(r#"{{"id":"{id}","previous":"QUEUED","state":"SUSPENDED","state_number":3}}"#)
        );
    }
}
