//! `ResponseBody`: the one body type the service returns, streamed in large chunks.
//!
//! A body is a queue of segments: bytes already in memory (headers of multipart parts, cached small files,
//! error texts) and ranges of an open file. File ranges are read with positioned reads on the blocking pool,
//! a chunk at a time, under the connection's read budget (`limits::memory`: each chunk holds its budget
//! until written out, so a client that stops reading pins at most its connection's budget). On HTTP/1.1
//! the next chunk is read while hyper writes one only while the client keeps up (`files::readahead`); on
//! HTTP/2 a stream reads ahead as far as the connection's budget allows. If the file turns out shorter
//! than promised, the body fails and hyper cuts the connection: a client never gets a wrong
//! Content-Length.
//!
//! On a plain HTTP/1.1 connection (`with_zero_copy`) file ranges are not read at all: the body hands hyper
//! placeholders that the connection's IO sends from the file with `sendfile` (`files::zerocopy`), unless
//! the group's bandwidth is limited, where the body keeps pacing what it reads.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use super::readahead::{HandOver, ReadAhead};
use super::zerocopy::{ZeroCopy, PLACEHOLDER};
use crate::limits::{
    self, Bandwidth, Permits, ReadBudget, Reservation, SourceTicket, StreamProgress, TransferPermit,
};

/// How much one read from disk takes in a body with no read budget (big files in big chunks).
pub(crate) const CHUNK: usize = 512 * 1024;

/// A piece of a body.
#[derive(Debug)]
pub(crate) enum Segment {
    /// Bytes ready to send.
    Bytes(Bytes),
    /// `start..end` (end exclusive) of the body's file.
    File { start: u64, end: u64 },
}

/// Called once when a body is dropped, with the bytes it sent and whether it ran to its end.
pub(crate) trait OnFinish: Send + Sync + 'static {
    /// The body is done: `sent` bytes went to hyper; `complete` is false if it was cut short.
    fn finish(&mut self, sent: u64, complete: bool);

    /// `n` more bytes went to hyper (for a live count); by default nothing.
    fn progress(&mut self, _n: u64) {}
}

/// The response body of every response this crate produces.
pub struct ResponseBody {
    segments: VecDeque<Segment>,
    file: Option<Arc<File>>,
    pending: Option<JoinHandle<io::Result<VecDeque<Bytes>>>>,
    /// The file range the pending read covers.
    pending_range: (u64, u64),
    /// On HTTP/1.1 connections with a read budget: read-ahead while the client keeps up.
    ahead: Option<ReadAhead>,
    /// How much one read takes.
    chunk: usize,
    /// The connection's read budget, when the body has one.
    reservation: Option<Reservation>,
    /// The HTTP/2 stream's progress record, watched for stalls.
    progress: Option<Arc<StreamProgress>>,
    remaining: u64,
    sent: u64,
    on_finish: Option<Box<dyn OnFinish>>,
    /// The group's transfer slot and the source's, held only to be returned when the body is dropped.
    _permit: Option<(TransferPermit, SourceTicket)>,
    throttle: Option<Throttle>,
    /// The connection's zero-copy state, on plain HTTP/1.1 connections serving a file.
    zero_copy: Option<Arc<ZeroCopy>>,
}

/// Pacing through a group's shared bandwidth budget.
struct Throttle {
    bandwidth: Arc<Bandwidth>,
    /// Seconds spent waiting for the budget, summed (the group's `bandwidth_limited_seconds`).
    paced: Counter<f64, AtomicU64>,
    /// Read but not yet sent.
    held: Bytes,
    /// A reserved piece and when it may go.
    waiting: Option<(Pin<Box<Sleep>>, Bytes)>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("remaining", &self.remaining)
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

impl ResponseBody {
    /// No body (HEAD, 304, and the like).
    pub(crate) fn empty() -> Self {
        Self::from_segments(VecDeque::new(), None)
    }

    /// A body held in memory.
    pub(crate) fn bytes(bytes: impl Into<Bytes>) -> Self {
        Self::from_segments(VecDeque::from([Segment::Bytes(bytes.into())]), None)
    }

    /// A body made of segments; `file` must be given if any segment is a file range.
    pub(crate) fn from_segments(segments: VecDeque<Segment>, file: Option<Arc<File>>) -> Self {
        let remaining = segments.iter().map(segment_len).sum();
        ResponseBody {
            segments,
            file,
            pending: None,
            pending_range: (0, 0),
            ahead: None,
            chunk: CHUNK,
            reservation: None,
            progress: None,
            remaining,
            sent: 0,
            on_finish: None,
            _permit: None,
            throttle: None,
            zero_copy: None,
        }
    }

    /// Makes this body a transfer of a group: it holds the group's transfer permit and is paced by the
    /// group's bandwidth budget (which may be unlimited now and limited later).
    pub(crate) fn in_transfer(
        mut self,
        permit: TransferPermit,
        ticket: SourceTicket,
        bandwidth: Arc<Bandwidth>,
        paced: Counter<f64, AtomicU64>,
    ) -> Self {
        self._permit = Some((permit, ticket));
        self.throttle = Some(Throttle {
            bandwidth,
            paced,
            held: Bytes::new(),
            waiting: None,
        });
        self
    }

    /// Sets what runs when the body is dropped.
    pub(crate) fn on_finish(mut self, hook: Box<dyn OnFinish>) -> Self {
        self.on_finish = Some(hook);
        self
    }

    /// Reads file chunks under the connection's read budget, in its chunk size.
    pub(crate) fn with_budget(mut self, budget: &ReadBudget) -> Self {
        if self.file.is_some() {
            self.chunk = budget.chunk();
            self.reservation = Some(Reservation::new(budget));
            if budget.reads_ahead() {
                self.ahead = Some(ReadAhead::new());
            }
        }
        self
    }

    /// Sends this body's file ranges with `sendfile` through the connection's IO, where it can.
    pub(crate) fn with_zero_copy(mut self, zero_copy: &Arc<ZeroCopy>) -> Self {
        if self.file.is_some() {
            self.zero_copy = Some(zero_copy.clone());
        }
        self
    }

    /// The connection's zero-copy state when the next file bytes go by `sendfile`: the connection is armed
    /// and the group's bandwidth is not limited now (pacing cuts what it reads into timed pieces).
    fn sendfile_now(&self) -> Option<&Arc<ZeroCopy>> {
        let unpaced = self
            .throttle
            .as_ref()
            .is_none_or(|t| t.bandwidth.piece().is_none());
        self.zero_copy
            .as_ref()
            .filter(|zc| unpaced && zc.is_armed())
    }

    /// A placeholder for the next piece of the file segment at the front, when it goes by `sendfile`.
    fn placeholder(&mut self) -> Option<Bytes> {
        let zero_copy = self.sendfile_now()?.clone();
        let file = self.file.as_ref()?;
        let Some(Segment::File { start, end }) = self.segments.front_mut() else {
            return None;
        };
        let len = usize::try_from((*end - *start).min(PLACEHOLDER as u64)).unwrap_or(PLACEHOLDER);
        let piece = zero_copy.placeholder(file, *start, len);
        *start += len as u64;
        if *start == *end {
            self.segments.pop_front();
        }
        Some(piece)
    }

    /// Reports this body's progress to its HTTP/2 stream's watchdog.
    pub(crate) fn watched_by(mut self, progress: Arc<StreamProgress>) -> Self {
        progress.started(self.remaining > 0);
        self.progress = Some(progress);
        self
    }

    /// Starts reading the next chunk of the file segment at the front, once the read budget allows; ready
    /// when a read is pending or done and not yet handed over, or there is nothing to read.
    fn poll_start_read(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let read = self.ahead.as_ref().is_some_and(ReadAhead::has_ready);
        if self.pending.is_some() || read || self.sendfile_now().is_some() {
            return Poll::Ready(());
        }
        let Some(Segment::File { start, end }) = self.segments.front() else {
            return Poll::Ready(());
        };
        let Some(file) = self.file.clone() else {
            return Poll::Ready(());
        };
        if let Some(ahead) = self.ahead.as_mut() {
            ready!(ahead.poll_may_read(cx));
        }
        let len = usize::try_from((*end - *start).min(self.chunk as u64)).unwrap_or(self.chunk);
        let permits = match self.reservation.as_mut() {
            Some(r) => Some(ready!(r.poll_take(cx, len))),
            None => None,
        };
        let Some(Segment::File { start, end }) = self.segments.front_mut() else {
            return Poll::Ready(());
        };
        let at = *start;
        self.pending_range = (at, at + len as u64);
        *start += len as u64;
        if *start == *end {
            self.segments.pop_front();
        }
        let written = self.progress.clone();
        self.pending = Some(tokio::task::spawn_blocking(move || {
            read_at(&file, at, len, permits, written)
        }));
        Poll::Ready(())
    }
}

fn segment_len(s: &Segment) -> u64 {
    match s {
        Segment::Bytes(b) => b.len() as u64,
        Segment::File { start, end } => end - start,
    }
}

/// Reads exactly `len` bytes at `offset`; a short file is an error, never padding. The bytes hold `permits`
/// until they are dropped, and then tell `written` that they were written out.
fn read_at(
    file: &File,
    offset: u64,
    len: usize,
    permits: Option<Permits>,
    written: Option<Arc<StreamProgress>>,
) -> io::Result<VecDeque<Bytes>> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while being sent",
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(match permits {
        Some(permits) => limits::hold(buf, permits, written),
        None => VecDeque::from([Bytes::from(buf)]),
    })
}

impl ResponseBody {
    /// The next chunk as read, before pacing.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            if let Some(pending) = self.pending.as_mut() {
                let chunk = ready!(Pin::new(pending).poll(cx)).map_err(io::Error::other);
                self.pending = None;
                return match chunk {
                    Ok(Ok(mut pieces)) if self.ahead.is_some() => {
                        // HTTP/1.1: one piece, handed over below once hyper has written the one before.
                        let (start, end) = self.pending_range;
                        if let Some(ahead) = self.ahead.as_mut() {
                            ahead.put(pieces.pop_front().unwrap_or_default(), start, end);
                        }
                        continue;
                    }
                    Ok(Ok(mut pieces)) => {
                        // A chunk may come in pieces (HTTP/2 frames): the rest go first in line.
                        let first = pieces.pop_front().unwrap_or_default();
                        while let Some(piece) = pieces.pop_back() {
                            self.segments.push_front(Segment::Bytes(piece));
                        }
                        // Read ahead while hyper writes this chunk, if the budget allows now.
                        let _ = self.poll_start_read(cx);
                        Poll::Ready(Some(Ok(first)))
                    }
                    Ok(Err(e)) | Err(e) => {
                        self.segments.clear();
                        Poll::Ready(Some(Err(e)))
                    }
                };
            }
            if let Some(ahead) = self.ahead.as_mut().filter(|a| a.has_ready()) {
                match ready!(ahead.poll_hand_over(cx)) {
                    HandOver::Chunk(chunk) => {
                        // Read ahead while hyper writes this chunk, if the client keeps up.
                        let _ = self.poll_start_read(cx);
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    HandOver::Dropped { start, end } => {
                        self.segments.push_front(Segment::File { start, end });
                        continue;
                    }
                }
            }
            match self.segments.front() {
                None => return Poll::Ready(None),
                Some(Segment::Bytes(_)) => {
                    if let Some(Segment::Bytes(b)) = self.segments.pop_front() {
                        let _ = self.poll_start_read(cx);
                        return Poll::Ready(Some(Ok(b)));
                    }
                }
                Some(Segment::File { .. }) => {
                    if self.file.is_none() {
                        // A file segment without a file: a bug, not a reason to hang.
                        self.segments.clear();
                        return Poll::Ready(Some(Err(io::Error::other(
                            "file segment without a file",
                        ))));
                    }
                    if let Some(piece) = self.placeholder() {
                        return Poll::Ready(Some(Ok(piece)));
                    }
                    ready!(self.poll_start_read(cx));
                }
            }
        }
    }

    /// The next piece to send under the group's budget: waits out a reservation, or cuts the next piece off
    /// what was read and reserves it.
    fn poll_paced(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            let Some(throttle) = self.throttle.as_mut() else {
                return self.poll_chunk(cx);
            };
            if let Some((sleep, _)) = throttle.waiting.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                let piece = throttle.waiting.take().map(|(_, piece)| piece);
                return Poll::Ready(piece.map(Ok));
            }
            if !throttle.held.is_empty() {
                let held = &mut throttle.held;
                let piece = match throttle.bandwidth.piece() {
                    Some(n) if n < held.len() => held.split_to(n),
                    _ => std::mem::take(held),
                };
                match throttle.bandwidth.reserve(piece.len()) {
                    None => return Poll::Ready(Some(Ok(piece))),
                    Some(at) => {
                        let wait = at.saturating_duration_since(tokio::time::Instant::now());
                        throttle.paced.inc_by(wait.as_secs_f64());
                        throttle.waiting = Some((Box::pin(tokio::time::sleep_until(at)), piece));
                        continue;
                    }
                }
            }
            match ready!(self.poll_chunk(cx)) {
                Some(Ok(chunk)) => {
                    if let Some(throttle) = self.throttle.as_mut() {
                        throttle.held = chunk;
                    }
                }
                other => return Poll::Ready(other),
            }
        }
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let polled = this.poll_paced(cx);
        if let Some(progress) = &this.progress {
            match &polled {
                // Without a read budget no chunk reports being written: handing it over is the move.
                Poll::Ready(Some(Ok(_))) if this.reservation.is_none() => progress.moved(),
                Poll::Pending if this.is_waiting_on_server() => progress.moved(),
                Poll::Ready(None | Some(Err(_))) => progress.ended(),
                _ => {}
            }
        }
        match ready!(polled) {
            Some(Ok(piece)) => Poll::Ready(Some(Ok(this.account(piece)))),
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

impl ResponseBody {
    /// Whether a pending poll waits on the server (pacing, the server's read budget) rather than on the
    /// client (flow control, its connection's read budget) or the disk.
    fn is_waiting_on_server(&self) -> bool {
        let paced = self.throttle.as_ref().is_some_and(|t| t.waiting.is_some());
        paced
            || (self.pending.is_none()
                && self
                    .reservation
                    .as_ref()
                    .is_some_and(Reservation::is_waiting_on_server))
    }

    fn account(&mut self, chunk: Bytes) -> Frame<Bytes> {
        let n = chunk.len() as u64;
        self.remaining = self.remaining.saturating_sub(n);
        self.sent += n;
        if let Some(hook) = self.on_finish.as_mut() {
            hook.progress(n);
        }
        if self.remaining == 0 {
            if let Some(progress) = &self.progress {
                progress.ended();
            }
        }
        Frame::data(chunk)
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.abort();
        }
        if let Some(progress) = &self.progress {
            progress.ended();
        }
        if let Some(mut hook) = self.on_finish.take() {
            hook.finish(self.sent, self.remaining == 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::ReadBudget;
    use http_body::Body as _;
    use http_body_util::BodyExt;
    use std::io::Write;

    fn temp_file(content: &[u8]) -> Arc<File> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        Arc::new(f)
    }

    #[tokio::test]
    async fn mixes_bytes_and_file_ranges_across_chunks() {
        let data: Vec<u8> = (0..(CHUNK * 2 + 100)).map(|i| (i % 251) as u8).collect();
        let file = temp_file(&data);
        let segments = VecDeque::from([
            Segment::Bytes(Bytes::from_static(b"head")),
            Segment::File {
                start: 10,
                end: (CHUNK * 2 + 50) as u64,
            },
            Segment::Bytes(Bytes::from_static(b"tail")),
        ]);
        let body = ResponseBody::from_segments(segments, Some(file));
        assert_eq!(body.size_hint().exact(), Some((8 + CHUNK * 2 + 40) as u64));
        let got = body.collect().await.unwrap().to_bytes();
        let mut want = b"head".to_vec();
        want.extend_from_slice(&data[10..CHUNK * 2 + 50]);
        want.extend_from_slice(b"tail");
        assert_eq!(got, want);
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_an_error_not_padding() {
        let file = temp_file(b"short");
        let body = ResponseBody::from_segments(
            VecDeque::from([Segment::File { start: 0, end: 100 }]),
            Some(file),
        );
        let err = body.collect().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }

    /// An HTTP/1.1 body on a budget of its own, over a file of `chunks` chunks.
    fn h1_body(chunks: usize) -> (ResponseBody, Arc<ReadBudget>, Vec<u8>) {
        let budget = ReadBudget::new(
            false,
            ReadBudget::server(64 << 20),
            std::net::Ipv4Addr::LOCALHOST.into(),
        );
        let len = chunks * budget.chunk();
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        let body = ResponseBody::from_segments(
            VecDeque::from([Segment::File {
                start: 0,
                end: len as u64,
            }]),
            Some(temp_file(&data)),
        )
        .with_budget(&budget);
        (body, budget, data)
    }

    /// The next chunk, or `None` if the body is still pending after a short wait.
    async fn next_chunk(body: &mut ResponseBody) -> Option<Bytes> {
        let frame = tokio::time::timeout(std::time::Duration::from_millis(50), body.frame());
        let frame = frame.await.ok()?.unwrap().unwrap();
        Some(frame.into_data().unwrap())
    }

    // SECURITY: a client that reads quickly and then stops pins two chunks for at most PROMPT, then one.
    #[tokio::test]
    async fn read_ahead_lasts_only_while_the_client_keeps_up() {
        use crate::files::readahead::PROMPT;
        let (mut body, budget, data) = h1_body(5);
        let chunk = budget.chunk();
        let first = next_chunk(&mut body).await.unwrap();
        let mut got = first.to_vec();
        assert!(next_chunk(&mut body).await.is_none(), "two chunks in hyper");
        assert_eq!(
            budget.held(),
            chunk,
            "no read-ahead before the client has read"
        );
        drop(first);
        let second = next_chunk(&mut body).await.unwrap();
        // The client kept up: the third chunk is read while the second is out, but not handed over.
        assert!(next_chunk(&mut body).await.is_none());
        assert!(next_chunk(&mut body).await.is_none());
        assert_eq!(budget.held(), 2 * chunk, "read ahead");
        // The client stops: after PROMPT the chunk read ahead is dropped.
        tokio::time::sleep(PROMPT).await;
        assert!(next_chunk(&mut body).await.is_none());
        assert_eq!(budget.held(), chunk, "the read-ahead outlived PROMPT");
        // It moves again, as hyper does: each chunk dropped once written. The rest arrives whole, in order.
        got.extend_from_slice(&second);
        drop(second);
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert!(got == data, "bytes differ");
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_client_that_never_reads_holds_one_chunk() {
        let (mut body, budget, _) = h1_body(4);
        let first = next_chunk(&mut body).await.unwrap();
        tokio::time::sleep(crate::files::readahead::PROMPT * 2).await;
        assert!(next_chunk(&mut body).await.is_none());
        assert_eq!(budget.held(), budget.chunk());
        drop(first);
    }

    #[tokio::test]
    async fn finish_hook_sees_bytes_and_completion() {
        struct Hook(Arc<std::sync::Mutex<Option<(u64, bool)>>>);
        impl OnFinish for Hook {
            fn finish(&mut self, sent: u64, complete: bool) {
                *self.0.lock().unwrap() = Some((sent, complete));
            }
        }
        let seen = Arc::new(std::sync::Mutex::new(None));
        let body = ResponseBody::bytes("hello").on_finish(Box::new(Hook(seen.clone())));
        body.collect().await.unwrap();
        assert_eq!(*seen.lock().unwrap(), Some((5, true)));
        let body = ResponseBody::bytes("hello").on_finish(Box::new(Hook(seen.clone())));
        drop(body);
        assert_eq!(*seen.lock().unwrap(), Some((0, false)));
    }
}
