//! `Repr-Digest` (RFC 9530): a SHA-256 of each published file version, computed off the request path.
//!
//! A response carries `Repr-Digest: sha-256=:BASE64:` only when the digest was computed for exactly the
//! version the response describes (the same device, inode, length and modification time): a file that
//! changed is a new version and goes without a digest until it has been hashed again, so a stale digest
//! is never sent. Hashing runs on the blocking pool, at most [`AT_ONCE`] files at a time server-wide and
//! one per file, reading in [`CHUNK`]-sized pieces; it starts when a version is first seen without one.
//! A version that changes while it is hashed is thrown away rather than recorded.

use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use http::HeaderValue;
use tokio::sync::Semaphore;

use super::nofollow;

/// Files hashed at once, server-wide: hashing is bulk reading and must not starve the transfers.
pub(crate) const AT_ONCE: usize = 2;
/// Bytes read per step.
const CHUNK: usize = 256 * 1024;

/// The server-wide bound on concurrent hashing.
#[derive(Debug, Clone)]
pub(crate) struct Hashing(Arc<Semaphore>);

impl Default for Hashing {
    fn default() -> Self {
        Hashing(Arc::new(Semaphore::new(AT_ONCE)))
    }
}

impl Hashing {
    /// Runs `hash` on the blocking pool once a slot is free; `None` outside a tokio runtime (then the
    /// version simply goes without a digest until a request, which runs in one, sees it again).
    pub(crate) fn spawn<F>(&self, hash: F) -> Option<tokio::task::JoinHandle<()>>
    where
        F: FnOnce() + Send + 'static,
    {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let slots = self.0.clone();
        Some(handle.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let _ = tokio::task::spawn_blocking(hash).await;
        }))
    }
}

/// The SHA-256 of the file at `path` read through a descriptor whose metadata satisfies `same` before
/// and after the read; `Ok(None)` when it does not (another version: not ours to record).
pub(crate) fn sha256_of(
    path: &Path,
    same: impl Fn(&std::fs::Metadata) -> bool,
) -> io::Result<Option<[u8; 32]>> {
    let mut file = nofollow::open(path)?;
    if !same(&file.metadata()?) {
        return Ok(None);
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        context.update(&buf[..n]);
    }
    if !same(&file.metadata()?) {
        return Ok(None);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    Ok(Some(out))
}

/// The header value: `sha-256=:BASE64:` (an RFC 8941 dictionary with one byte-sequence member).
pub(crate) fn header_value(sha256: &[u8; 32]) -> Option<HeaderValue> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(sha256);
    HeaderValue::try_from(format!("sha-256=:{b64}:")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_the_base64_of_the_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let sum = sha256_of(&path, |_| true).unwrap().unwrap();
        assert_eq!(
            header_value(&sum).unwrap(),
            "sha-256=:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=:"
        );
        assert_eq!(sha256_of(&path, |_| false).unwrap(), None);
    }
}
