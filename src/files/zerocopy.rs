//! Zero-copy file bodies on plain HTTP/1.1: hyper parses the request and writes the head, the kernel copies
//! the file to the socket (`sendfile(2)`), and no file byte passes through user memory.
//!
//! How it fits hyper (1.x, `src/proto/h1/io.rs`): when the connection's IO says it writes vectored, hyper
//! queues body buffers as they are, without copying them, and hands the queue to `poll_write_vectored` in
//! order, advancing by whatever count the write returns. So a file body on such a connection yields
//! *placeholders*: slices of [`ZEROS`], a static buffer that is never written to a socket, each registered
//! here with the file and the offset its bytes come from. The connection's IO ([`ZeroCopy::poll_write`])
//! writes the real bytes before the first placeholder (the head, multipart boundaries) as usual, and the
//! placeholder's own bytes with `sendfile` from the registered file, returning the count sent. The stream
//! of placeholder bytes is the concatenation of the registrations in order; the byte at offset `o` of a
//! placeholder is the file's byte at `offset + o`. A partial write leaves hyper's next iovec starting `o`
//! bytes into the placeholder, while the registration has counted the same `o`: the two must agree.
//!
//! SECURITY: the threat is the placeholder's zeros reaching a client as if they were the file (a corrupt
//! download under a right Content-Length), or file bytes sent from the wrong offset. So this IO never
//! writes a byte of [`ZEROS`]: an iovec inside it is sent only by `sendfile`, only when it starts exactly
//! where the front registration stands and ends within it; anything else (no registration, another
//! offset, an iovec that overlaps the buffer without starting in it, a file that ends before the promised
//! length) is an error, on which hyper closes the connection. Placeholders are only handed out once this
//! connection's hyper has been seen writing vectored (`armed`): hyper picks its write strategy once, when
//! the connection starts, and only its queueing strategy calls `poll_write_vectored`, while the flattening
//! one would copy the zeros into its own buffer, where no pointer could tell them apart. The file is the
//! descriptor this response opened link-safely (`nofollow`), never a path.
//!
//! Not covered by the read budget (`limits::memory`): a placeholder holds no user memory, and the kernel
//! bounds what `sendfile` takes by the socket's send buffer.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use crate::lock::Recover;
use bytes::Bytes;
use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;

/// The most one placeholder covers: the file is handed to hyper in pieces of this size.
pub(crate) const PLACEHOLDER: usize = 1 << 20;

/// What placeholders point into. Never written to a socket, never read: its address is all that is used.
static ZEROS: [u8; PLACEHOLDER] = [0; PLACEHOLDER];

/// One placeholder handed to hyper and not yet sent in full.
#[derive(Debug)]
struct Pending {
    file: Arc<File>,
    /// The file offset of the placeholder's first byte.
    offset: u64,
    len: usize,
    /// Bytes of it sent so far.
    sent: usize,
}

/// The zero-copy state of one plain HTTP/1.1 connection, shared by its IO and its response bodies.
#[derive(Debug)]
pub(crate) struct ZeroCopy {
    pending: Mutex<VecDeque<Pending>>,
    /// hyper has written vectored on this connection, so it queues body buffers without copying them.
    armed: AtomicBool,
    /// Bytes sent with `sendfile`, server-wide.
    sent: Arc<AtomicU64>,
}

/// Where `buf` lies relative to [`ZEROS`].
enum Place {
    Outside,
    /// Starts at this offset inside it.
    At(usize),
    /// Overlaps it without starting inside: never made by this module.
    Straddles,
}

fn place(buf: &[u8]) -> Place {
    let base = ZEROS.as_ptr() as usize;
    let start = buf.as_ptr() as usize;
    if buf.is_empty() || start.saturating_add(buf.len()) <= base || start >= base + PLACEHOLDER {
        Place::Outside
    } else if start >= base {
        Place::At(start - base)
    } else {
        Place::Straddles
    }
}

fn refused(why: &'static str) -> io::Error {
    io::Error::other(why)
}

impl ZeroCopy {
    /// A connection's state; `sent` counts the bytes sent with `sendfile`, server-wide.
    pub(crate) fn new(sent: Arc<AtomicU64>) -> Arc<Self> {
        Arc::new(ZeroCopy {
            pending: Mutex::new(VecDeque::new()),
            armed: AtomicBool::new(false),
            sent,
        })
    }

    /// Whether placeholders may be handed out yet (see the module's SECURITY note).
    pub(crate) fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Relaxed)
    }

    /// A placeholder for `len` bytes (at most [`PLACEHOLDER`]) of `file` at `offset`, registered to be sent
    /// from the file when hyper writes it.
    pub(crate) fn placeholder(&self, file: &Arc<File>, offset: u64, len: usize) -> Bytes {
        let len = len.min(PLACEHOLDER);
        self.pending.lock().recover().push_back(Pending {
            file: file.clone(),
            offset,
            len,
            sent: 0,
        });
        Bytes::from_static(&ZEROS[..len])
    }

    /// Writes `bufs` to `socket`: the real bytes before the first placeholder with a plain vectored write,
    /// or, when a placeholder comes first, its bytes from the file with `sendfile`. Returns how many bytes
    /// of `bufs` went out, as a write does.
    pub(crate) fn poll_write(
        &self,
        mut socket: Pin<&mut TcpStream>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
        vectored: bool,
    ) -> Poll<io::Result<usize>> {
        if vectored {
            self.armed.store(true, Ordering::Relaxed);
        }
        let first = bufs
            .iter()
            .position(|b| !matches!(place(b), Place::Outside));
        match first {
            None => socket.as_mut().poll_write_vectored(cx, bufs),
            Some(0) => match place(&bufs[0]) {
                Place::At(at) => self.poll_sendfile(&socket, cx, at, bufs[0].len()),
                _ => Poll::Ready(Err(refused("a buffer overlaps the placeholders"))),
            },
            Some(k) => socket.as_mut().poll_write_vectored(cx, &bufs[..k]),
        }
    }

    /// Sends `len` bytes of the front registration, from `at` bytes into it, with `sendfile`.
    fn poll_sendfile(
        &self,
        socket: &TcpStream,
        cx: &mut Context<'_>,
        at: usize,
        len: usize,
    ) -> Poll<io::Result<usize>> {
        let mut pending = self.pending.lock().recover();
        let Some(front) = pending.front_mut() else {
            return Poll::Ready(Err(refused("a placeholder without a registration")));
        };
        if at != front.sent || len > front.len - front.sent {
            return Poll::Ready(Err(refused(
                "a placeholder out of step with its registration",
            )));
        }
        loop {
            ready!(socket.poll_write_ready(cx))?;
            let mut offset = front.offset + front.sent as u64;
            let file = &front.file;
            // The socket is non-blocking: a full send buffer is EAGAIN, which `try_io` turns into waiting
            // for writability again. The file side reads the page cache; a cold page blocks this worker
            // for one disk read, as it does in nginx's sendfile.
            let sent = socket.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(socket, &**file, Some(&mut offset), len)
                    .map_err(io::Error::from)
            });
            match sent {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being sent",
                    )))
                }
                Ok(n) => {
                    let n = n.min(len);
                    front.sent += n;
                    if front.sent == front.len {
                        pending.pop_front();
                    }
                    self.sent.fetch_add(n as u64, Ordering::Relaxed);
                    return Poll::Ready(Ok(n));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    fn file_of(data: &[u8]) -> Arc<File> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(data).unwrap();
        Arc::new(f)
    }

    /// A connected pair: our tokio side and a blocking peer.
    async fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (ours, _) = listener.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        (TcpStream::from_std(ours).unwrap(), peer)
    }

    async fn write_all(zc: &ZeroCopy, socket: &mut TcpStream, bufs: &[Bytes]) -> io::Result<()> {
        let mut queue: Vec<Bytes> = bufs.to_vec();
        while !queue.is_empty() {
            let n = std::future::poll_fn(|cx| {
                let slices: Vec<IoSlice<'_>> = queue.iter().map(|b| IoSlice::new(b)).collect();
                zc.poll_write(Pin::new(&mut *socket), cx, &slices, true)
            })
            .await?;
            let mut n = n;
            while n > 0 {
                if n >= queue[0].len() {
                    n -= queue[0].len();
                    queue.remove(0);
                } else {
                    let _ = queue[0].split_to(n);
                    n = 0;
                }
            }
        }
        Ok(())
    }

    #[tokio::test]
    async fn placeholders_send_the_file_and_real_bytes_around_them() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = file_of(&data);
        let counter = Arc::new(AtomicU64::new(0));
        let zc = ZeroCopy::new(counter.clone());
        let (mut ours, mut peer) = pair().await;
        let bufs = vec![
            Bytes::from_static(b"head"),
            zc.placeholder(&file, 10, 100_000),
            Bytes::from_static(b"mid"),
            zc.placeholder(&file, 200_000, 50_000),
            Bytes::from_static(b"tail"),
        ];
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).unwrap();
            got
        });
        write_all(&zc, &mut ours, &bufs).await.unwrap();
        drop(ours);
        let got = reader.join().unwrap();
        let mut want = b"head".to_vec();
        want.extend_from_slice(&data[10..100_010]);
        want.extend_from_slice(b"mid");
        want.extend_from_slice(&data[200_000..250_000]);
        want.extend_from_slice(b"tail");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "bytes differ");
        assert_eq!(counter.load(Ordering::Relaxed), 150_000);
        assert!(zc.pending.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_placeholder_without_registration_or_out_of_step_is_refused() {
        let zc = ZeroCopy::new(Arc::default());
        let (mut ours, _peer) = pair().await;
        // Points into the placeholders but was never registered.
        let stray = Bytes::from_static(&ZEROS[..10]);
        let err = write_all(&zc, &mut ours, &[stray]).await.unwrap_err();
        assert_eq!(err.to_string(), "a placeholder without a registration");
        // Registered at offset 0, but hyper's iovec starts 5 bytes in.
        let file = file_of(b"0123456789");
        let piece = zc.placeholder(&file, 0, 10);
        let err = write_all(&zc, &mut ours, &[piece.slice(5..)])
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a placeholder out of step with its registration"
        );
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_is_an_error_not_zeros() {
        let file = file_of(b"short");
        let zc = ZeroCopy::new(Arc::default());
        let (mut ours, mut peer) = pair().await;
        let piece = zc.placeholder(&file, 0, 100);
        let err = write_all(&zc, &mut ours, &[piece]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        drop(ours);
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"short", "only the file's real bytes went out");
    }
}
