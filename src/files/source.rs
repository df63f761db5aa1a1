//! `FileSource`: a registered local file, its current version and, for small files, its bytes in memory.
//!
//! Invariant: every response is built from one `Version`, whose length, ETag and Last-Modified describe
//! exactly the bytes that will be sent. A version comes either from a `stat` of the path (HEAD, and
//! revalidating cached bytes) or from an `fstat` of the descriptor the body is read through; cached bytes
//! were read through the descriptor whose `fstat` gave their version. So a file that changes or vanishes
//! after registration is served as it is now, or answered 404, and a body never disagrees with its
//! Content-Length (if the file shrinks mid-transfer the connection is cut instead).
//!
//! SECURITY: a link put where the file, or a directory above it, was must not lead anywhere else on disk.
//! So the path is resolved once, at registration, and every later stat and open follows no symbolic link
//! in any component (`nofollow`): such a link reads as a vanished file.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::HeaderValue;

use super::digest::{self, Hashing};
use super::nofollow;

/// Why a file cannot be published; the caller adds the path.
#[derive(Debug)]
pub(crate) enum Unpublishable {
    /// It cannot be resolved, opened or examined.
    Io(io::Error),
    /// It is not a regular file.
    NotAFile,
}

impl From<io::Error> for Unpublishable {
    fn from(e: io::Error) -> Self {
        Unpublishable::Io(e)
    }
}

/// Identifies one version of a file: if any of these change, the content may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: i64,
    mtime_nsec: i64,
    /// The change time: no process can set it back, so a file rewritten in place whose mtime was
    /// restored (`touch -d`) is still a new version (and never keeps the old version's digest).
    ctime: i64,
    ctime_nsec: i64,
}

impl FileKey {
    fn of(md: &Metadata) -> Self {
        FileKey {
            dev: md.dev(),
            ino: md.ino(),
            len: md.size(),
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec(),
            ctime: md.ctime(),
            ctime_nsec: md.ctime_nsec(),
        }
    }
}

/// One version of a file, with its validators rendered once.
#[derive(Debug)]
pub(crate) struct Version {
    key: FileKey,
    pub(crate) len: u64,
    pub(crate) etag: HeaderValue,
    pub(crate) last_modified: HeaderValue,
    pub(crate) modified_secs: u64,
    /// The whole file, for small files once read.
    pub(crate) bytes: Option<CachedBytes>,
}

impl Version {
    fn new(md: &Metadata, bytes: Option<CachedBytes>, pinned: Option<&Pinned>) -> Self {
        let key = FileKey::of(md);
        if let Some(p) = pinned {
            return Version {
                key,
                len: key.len,
                etag: p.etag.clone(),
                last_modified: last_modified(p.modified_secs),
                modified_secs: p.modified_secs,
                bytes,
            };
        }
        let modified_secs = u64::try_from(key.mtime).unwrap_or(0);
        let etag = format!("\"{:x}-{:x}{:08x}\"", key.len, key.mtime, key.mtime_nsec);
        Version {
            key,
            len: key.len,
            etag: HeaderValue::try_from(etag).unwrap_or(HeaderValue::from_static("\"0\"")),
            last_modified: last_modified(modified_secs),
            modified_secs,
            bytes,
        }
    }
}

/// `Last-Modified` for `secs` after the epoch; clamped to the last second an HTTP date can say (the
/// year 9999), so that no time, from a file or a record, fails to be written.
fn last_modified(secs: u64) -> HeaderValue {
    let secs = secs.min(crate::config::MAX_CONTENT_VERSION);
    let modified = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    HeaderValue::try_from(httpdate::fmt_http_date(modified))
        .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"))
}

/// The validators of a content-addressed file (see [`FileSource::open_content`]): they come from its
/// identity, not from the file's inode and times, so every node that holds the same bytes sends the
/// same ones and a download resumed on another node continues (`If-Range`).
#[derive(Debug)]
struct Pinned {
    /// `"sha256-HEX"`: strong, and the same wherever the bytes are the same.
    etag: HeaderValue,
    /// The origin's modification time.
    modified_secs: u64,
    /// `Repr-Digest`, from the hash itself.
    digest: HeaderValue,
}

/// Bytes held in memory, counted against the shared budget until dropped.
#[derive(Debug)]
pub(crate) struct CachedBytes {
    pub(crate) bytes: Bytes,
    cache: Arc<FileCache>,
}

impl Drop for CachedBytes {
    fn drop(&mut self) {
        self.cache.release(self.bytes.len() as u64);
    }
}

/// The server-wide policy of the file cache: how long a version is trusted without a `stat`, and how many
/// bytes of small files may be held in memory, shared by all URLs of a server.
#[derive(Debug)]
pub(crate) struct FileCache {
    revalidate: Duration,
    max_file: u64,
    left: AtomicU64,
    hashing: Hashing,
    /// Where content-addressed files are (see [`FileSource::open_content`]), if this server has such.
    content_dir: Option<PathBuf>,
}

impl FileCache {
    #[cfg(test)]
    pub(crate) fn new(revalidate: Duration, max_file: u64, total: u64) -> Arc<Self> {
        FileCache::with_content_dir(revalidate, max_file, total, None)
    }

    /// [`FileCache::new`], with a content directory.
    pub(crate) fn with_content_dir(
        revalidate: Duration,
        max_file: u64,
        total: u64,
        content_dir: Option<PathBuf>,
    ) -> Arc<Self> {
        Arc::new(FileCache {
            revalidate,
            max_file,
            left: AtomicU64::new(total),
            hashing: Hashing::default(),
            content_dir,
        })
    }

    /// The content directory, if any.
    pub(crate) fn content_dir(&self) -> Option<&Path> {
        self.content_dir.as_deref()
    }

    fn try_reserve(&self, n: u64) -> bool {
        n <= self.max_file
            && self
                .left
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    left.checked_sub(n)
                })
                .is_ok()
    }

    fn release(&self, n: u64) {
        self.left.fetch_add(n, Ordering::AcqRel);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What a response body is read from.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    /// The whole file in memory.
    Memory(Bytes),
    /// An open descriptor; the body reads from it with positioned reads.
    Disk(Arc<File>),
}

/// A registered file.
#[derive(Debug)]
pub(crate) struct FileSource {
    path: PathBuf,
    content_type: HeaderValue,
    cache: Arc<FileCache>,
    current: ArcSwapOption<Version>,
    born: Instant,
    /// When `current` was last confirmed by a `stat`, in microseconds since `born`.
    checked_us: AtomicU64,
    /// The Repr-Digest of one version, once computed.
    digest: ArcSwapOption<Digest>,
    /// Whether a hash of this file is under way (one at a time per file).
    hashing: AtomicBool,
    /// A content-addressed file's validators (see [`FileSource::open_content`]).
    pinned: Option<Pinned>,
    /// A content-addressed file's previous version, served whole while this one is not held yet (see
    /// [`FileSource::serving`]); never itself with a previous one.
    previous: Option<Arc<FileSource>>,
    /// Whether this content-addressed file has been seen here: once it has, it stays (a copy a URL
    /// names is never removed), and `serving` asks no more.
    held: AtomicBool,
}

/// A version's `Repr-Digest` value.
#[derive(Debug)]
struct Digest {
    key: FileKey,
    value: HeaderValue,
}

impl FileSource {
    /// Checks that `path` is a readable regular file and records its absolute path, with every symbolic
    /// link resolved now: later opens follow none.
    pub(crate) fn open(
        path: &Path,
        content_type: HeaderValue,
        cache: Arc<FileCache>,
    ) -> Result<Self, Unpublishable> {
        let absolute = std::fs::canonicalize(path)?;
        // Through `nofollow` already, so that a link swapped in since `canonicalize` is refused here too.
        let file = nofollow::open(&absolute)?;
        if !file.metadata()?.is_file() {
            return Err(Unpublishable::NotAFile);
        }
        Ok(FileSource::at(absolute, content_type, cache, None))
    }

    /// A source for `path` with nothing seen of it yet.
    fn at(
        path: PathBuf,
        content_type: HeaderValue,
        cache: Arc<FileCache>,
        pinned: Option<Pinned>,
    ) -> FileSource {
        FileSource {
            path,
            content_type,
            cache,
            current: ArcSwapOption::empty(),
            born: Instant::now(),
            checked_us: AtomicU64::new(0),
            digest: ArcSwapOption::empty(),
            hashing: AtomicBool::new(false),
            pinned,
            previous: None,
            held: AtomicBool::new(false),
        }
    }

    /// A content-addressed file: `dir/HEX` where HEX is the SHA-256 `sha256` of its bytes, written
    /// there once verified and never changed (a fleet's content directory). It need not exist yet: until
    /// it does, requests are answered as not yet held ([`FileSource::is_content`]). Its ETag, Last-Modified
    /// (`version`, seconds since the epoch) and Repr-Digest come from the identity.
    ///
    /// SECURITY: the digest is not recomputed per version: the directory is the service's own (0700),
    /// and a file lands there only by a rename after its hash was checked.
    pub(crate) fn open_content(
        dir: &Path,
        sha256: &[u8; 32],
        version: u64,
        content_type: HeaderValue,
        cache: Arc<FileCache>,
    ) -> Result<Self, Unpublishable> {
        let dir = std::fs::canonicalize(dir)?;
        let hex: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
        let etag = HeaderValue::try_from(format!("\"sha256-{hex}\"")).map_err(io::Error::other)?;
        let digest = digest::header_value(sha256).ok_or_else(|| io::Error::other("digest"))?;
        let pinned = Pinned {
            etag,
            modified_secs: version,
            digest,
        };
        Ok(FileSource::at(
            dir.join(hex),
            content_type,
            cache,
            Some(pinned),
        ))
    }

    /// This content-addressed file, served as `previous` (the version before it, also
    /// content-addressed) until it is held: a URL moves to a new version once its bytes are here, not
    /// before.
    pub(crate) fn after(mut self, previous: FileSource) -> FileSource {
        self.previous = Some(Arc::new(FileSource {
            previous: None,
            ..previous
        }));
        self
    }

    /// The source a request is answered from: this one, or while its file is not here yet, the previous
    /// version when that one is. Each response is built from the one source returned.
    pub(crate) fn serving(self: &Arc<Self>) -> Arc<FileSource> {
        let Some(previous) = &self.previous else {
            return self.clone();
        };
        if self.held.load(Ordering::Acquire) {
            return self.clone();
        }
        match nofollow::metadata(&self.path) {
            Ok(_) => {
                self.held.store(true, Ordering::Release);
                self.clone()
            }
            Err(_) => previous.clone(),
        }
    }

    /// Whether this is a content-addressed file, whose absence means "not held here yet" (503), not
    /// "gone" (404).
    pub(crate) fn is_content(&self) -> bool {
        self.pinned.is_some()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn content_type(&self) -> &HeaderValue {
        &self.content_type
    }

    /// The file's version as of now: the one last seen if a `stat` confirmed it less than the revalidation
    /// interval ago, else from a new `stat` of the path (cached bytes are kept while the file is unchanged).
    ///
    /// The `stat` runs on the async worker on purpose: it is an `openat2(O_PATH)`, an `fstat` and a `close`
    /// on a path the operator registered, which never block on file contents and are cheaper than a round
    /// trip to the blocking pool. Within the interval no syscall is made at all, which is what lets small
    /// files be served fast; every response is still built from one consistent version.
    pub(crate) fn stat(&self) -> io::Result<Arc<Version>> {
        let now_us = self.now_us();
        let fresh_since = now_us.saturating_sub(micros(self.cache.revalidate));
        if let Some(v) = self.current.load_full() {
            if !self.cache.revalidate.is_zero()
                && self.checked_us.load(Ordering::Acquire) > fresh_since
            {
                return Ok(v);
            }
        }
        let md = nofollow::metadata(&self.path)?;
        if !md.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not a regular file",
            ));
        }
        let key = FileKey::of(&md);
        let version = match self.current.load_full() {
            Some(v) if v.key == key => v,
            _ => {
                let v = Arc::new(Version::new(&md, None, self.pinned.as_ref()));
                self.current.store(Some(v.clone()));
                v
            }
        };
        self.checked_us.store(now_us.max(1), Ordering::Release);
        Ok(version)
    }

    /// The `Repr-Digest` of exactly version `v`, if it has been computed; otherwise starts computing it in
    /// the background (see `digest`) and answers `None`: a response never waits for a hash.
    pub(crate) fn repr_digest(self: &Arc<Self>, v: &Version) -> Option<HeaderValue> {
        if let Some(p) = &self.pinned {
            return Some(p.digest.clone());
        }
        if let Some(d) = self.digest.load().as_deref() {
            if d.key == v.key {
                return Some(d.value.clone());
            }
        }
        self.start_hash(v.key);
        None
    }

    /// Starts hashing the current version in the background (when a file is published), so that its
    /// first responses already carry a digest more often than not.
    pub(crate) fn hash_soon(self: &Arc<Self>) {
        if self.pinned.is_some() {
            return;
        }
        if let Ok(v) = self.stat() {
            let _ = self.repr_digest(&v);
        }
    }

    /// Hashes version `key` in the background unless a hash of this file is already under way.
    fn start_hash(self: &Arc<Self>, key: FileKey) {
        if self.hashing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        let hash = move || {
            match digest::sha256_of(&this.path, |md| FileKey::of(md) == key) {
                Ok(Some(sum)) => {
                    if let Some(value) = digest::header_value(&sum) {
                        this.digest.store(Some(Arc::new(Digest { key, value })));
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(path = ?this.path, error = %e, "cannot hash the file"),
            }
            this.hashing.store(false, Ordering::Release);
        };
        if self.cache.hashing.spawn(hash).is_none() {
            self.hashing.store(false, Ordering::Release);
        }
    }

    fn now_us(&self) -> u64 {
        micros(self.born.elapsed())
    }

    /// The version to serve a body from and where to read it: memory for small files (read once and kept
    /// while unchanged), otherwise an open descriptor. `seen` is the version from [`FileSource::stat`].
    pub(crate) async fn content(
        self: &Arc<Self>,
        seen: Arc<Version>,
    ) -> io::Result<(Arc<Version>, Content)> {
        if let Some(cached) = &seen.bytes {
            let bytes = cached.bytes.clone();
            return Ok((seen, Content::Memory(bytes)));
        }
        let this = self.clone();
        let len = seen.len;
        let cache = self.cache.try_reserve(len);
        let opened = tokio::task::spawn_blocking(move || this.read(cache, len))
            .await
            .map_err(io::Error::other)?;
        if cache && !matches!(opened, Ok((_, Content::Memory(_)))) {
            self.cache.release(len);
        }
        let (version, content) = opened?;
        if matches!(content, Content::Memory(_)) {
            self.current.store(Some(version.clone()));
            self.checked_us
                .store(self.now_us().max(1), Ordering::Release);
        }
        Ok((version, content))
    }

    /// Opens the file (blocking). With `cache` (budget for `reserved` bytes already taken), reads it whole if
    /// it still has that length.
    fn read(&self, cache: bool, reserved: u64) -> io::Result<(Arc<Version>, Content)> {
        let file = nofollow::open(&self.path)?;
        let md = file.metadata()?;
        if !md.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "not a regular file",
            ));
        }
        if cache && md.size() == reserved {
            let mut buf = Vec::with_capacity(usize::try_from(reserved).unwrap_or(0));
            (&file).take(reserved).read_to_end(&mut buf)?;
            // The file may change while we read; keep the bytes only if nothing moved.
            if buf.len() as u64 == reserved && FileKey::of(&file.metadata()?) == FileKey::of(&md) {
                let bytes = CachedBytes {
                    bytes: Bytes::from(buf),
                    cache: self.cache.clone(),
                };
                let content = Content::Memory(bytes.bytes.clone());
                let version = Version::new(&md, Some(bytes), self.pinned.as_ref());
                return Ok((Arc::new(version), content));
            }
            return Err(io::Error::new(
                io::ErrorKind::Interrupted,
                "file changed while being read",
            ));
        }
        Ok((
            Arc::new(Version::new(&md, None, self.pinned.as_ref())),
            Content::Disk(Arc::new(file)),
        ))
    }
}
