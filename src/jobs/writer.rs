//! The store's writer: one task that writes job changes to the [`JobStore`] one at a time, in the order
//! they were queued, each on a blocking thread. A queued write can be awaited until it is durable
//! ([`durable`]), or left to the background.
//!
//! Invariant (write order): every write of a change is queued while the jobs lock is held, in the same
//! critical section that made the change (see [`Writer::queue_save`]). The writer keeps queue order, so a
//! later write of the same job — a runner's, another action's, the Delete of a final state — is never
//! overtaken by an older state, which would bring a deleted job back or keep a stale state on disk.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::job::{Job, JobId};
use super::job_error::JobError;
use super::job_store::JobStore;

/// A queued write to wait for with [`durable`]; `None` when the writer has stopped.
pub(super) type Written = Option<oneshot::Receiver<Result<(), JobError>>>;

/// One request to the store's writer; an acknowledgement is sent when it is durable.
enum Write {
    Save(Box<Job>, Option<oneshot::Sender<Result<(), JobError>>>),
    Delete(JobId, Option<oneshot::Sender<Result<(), JobError>>>),
    /// Acknowledged once every write queued before it is done.
    Barrier(oneshot::Sender<()>),
}

/// Queues writes for the writer task.
pub(super) struct Writer {
    queue: mpsc::UnboundedSender<Write>,
}

impl Writer {
    /// Starts the writer task on the current tokio runtime. It ends once every `Writer` is gone, after
    /// writing what was queued before.
    pub(super) fn start(store: Arc<dyn JobStore>) -> (Writer, JoinHandle<()>) {
        let (queue, writes) = mpsc::unbounded_channel();
        (
            Writer { queue },
            tokio::spawn(write_in_order(store, writes)),
        )
    }

    /// Writes the job and waits until it is durable.
    pub(super) async fn save(&self, job: Job) -> Result<(), JobError> {
        durable(self.queue_save(job)).await
    }

    /// Queues the job's write; [`durable`] waits for it. Callers that changed the job under the jobs lock
    /// queue its write before they let the lock go: the writer writes in queue order, so a write queued
    /// later (a runner's, another action's, the Delete of a final state) can never be overtaken by an older
    /// state of the same job, which would bring a deleted job back or keep a stale state on disk.
    pub(super) fn queue_save(&self, job: Job) -> Written {
        let (ack, done) = oneshot::channel();
        self.queue
            .send(Write::Save(Box::new(job), Some(ack)))
            .ok()
            .map(|()| done)
    }

    /// Writes the job in the background (in order with every other write).
    pub(super) fn save_later(&self, job: Job) {
        let _ = self.queue.send(Write::Save(Box::new(job), None));
    }

    /// Removes the job from the store and waits until that is durable.
    pub(super) async fn delete(&self, id: JobId) -> Result<(), JobError> {
        let (ack, done) = oneshot::channel();
        self.queue
            .send(Write::Delete(id, Some(ack)))
            .map_err(|_| JobError::Stopped)?;
        done.await.map_err(|_| JobError::Stopped)?
    }

    /// Removes the job from the store in the background.
    pub(super) fn delete_later(&self, id: JobId) {
        let _ = self.queue.send(Write::Delete(id, None));
    }

    /// Waits until every write queued before this call is done (or the writer has stopped).
    pub(super) async fn barrier(&self) {
        let (ack, done) = oneshot::channel();
        if self.queue.send(Write::Barrier(ack)).is_ok() {
            let _ = done.await;
        }
    }
}

/// Waits until a queued write is durable.
pub(super) async fn durable(done: Written) -> Result<(), JobError> {
    done.ok_or(JobError::Stopped)?
        .await
        .map_err(|_| JobError::Stopped)?
}

/// The writer task: one write at a time, in the order asked, each on a blocking thread.
async fn write_in_order(store: Arc<dyn JobStore>, mut queue: mpsc::UnboundedReceiver<Write>) {
    while let Some(write) = queue.recv().await {
        let store = store.clone();
        let (result, ack) = match write {
            Write::Barrier(ack) => {
                let _ = ack.send(());
                continue;
            }
            Write::Save(job, ack) => {
                let r = tokio::task::spawn_blocking(move || store.save(&job)).await;
                (r, ack)
            }
            Write::Delete(id, ack) => {
                let r = tokio::task::spawn_blocking(move || store.delete(id)).await;
                (r, ack)
            }
        };
        let result = result.unwrap_or(Err(JobError::Stopped));
        match ack {
            Some(ack) => drop(ack.send(result)),
            None => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "cannot save a job");
                }
            }
        }
    }
}
