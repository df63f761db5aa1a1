//! [`ContentStore`]: a node's verified copies of published files, by hash. A fleet serves a URL from
//! `STATE/content/SHA256` on every node (the server's content directory), so that every node sends the
//! same bytes with the same validators:
//!
//! | path | what |
//! |---|---|
//! | `STATE/content/<sha256>` | a verified copy, mode 0444; only ever put there by a rename after its hash was checked |
//! | `STATE/content-incoming/` | copies being made: the origin's snapshot while it is hashed, a pull's temporary and its finished file before the check |
//!
//! Invariants: a file under `content/` has the SHA-256 its name says (the server sends that name as its
//! ETag and Repr-Digest without hashing it again); a file that fails its check is removed, never moved
//! there; both directories are on the state directory's file system, so the move is a rename.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::ContentRecord;
use crate::lock::Recover;

/// Bytes read per step when hashing or copying.
const CHUNK: usize = 1 << 20;

/// How long a copy just published is kept though no URL names it yet: the change that names it is
/// being committed.
const PUBLISHING_GRACE: Duration = Duration::from_secs(120);

/// Why a copy could not be made or taken.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContentError {
    /// Reading, writing or renaming failed.
    #[error("{what} {path:?}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// To which file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file changed while it was read: no copy is kept.
    #[error("{0:?} changed while it was read; publish it again once it is written")]
    Changing(PathBuf),
    /// The bytes are not the ones the record names.
    #[error("the copy of {expected} has SHA-256 {found} ({size} bytes): removed")]
    Mismatch {
        /// The hash wanted.
        expected: String,
        /// The hash found.
        found: String,
        /// Its size.
        size: u64,
    },
}

/// A node's content directory and its incoming directory.
#[derive(Debug)]
pub struct ContentStore {
    dir: PathBuf,
    incoming: PathBuf,
    /// Hashes published here lately, kept from removal for [`PUBLISHING_GRACE`].
    published: Mutex<HashMap<String, Instant>>,
}

impl ContentStore {
    /// Opens (creating, mode 0700) `STATE/content` and `STATE/content-incoming`.
    pub fn open(state: &Path) -> Result<ContentStore, ContentError> {
        let mut dirs = [state.join("content"), state.join("content-incoming")];
        for dir in &mut dirs {
            let made = crate::jobs::make_private_dir(dir)
                .map_err(|e| io::Error::other(e.to_string()))
                .and_then(|()| std::fs::canonicalize(&*dir));
            *dir = made.map_err(|source| ContentError::Io {
                what: "creating",
                path: dir.clone(),
                source,
            })?;
        }
        let [dir, incoming] = dirs;
        // Copies a publication left when its process died: no other process uses this directory (the
        // state directory's lock).
        if let Ok(entries) = std::fs::read_dir(&incoming) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(".publish-") {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(ContentStore {
            dir,
            incoming,
            published: Mutex::new(HashMap::new()),
        })
    }

    /// The directory the server serves content from (`ServerBuilder::content_dir`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a pull of `sha256` puts the finished file before it is checked.
    pub fn incoming_file(&self, sha256: &str) -> PathBuf {
        self.incoming.join(sha256)
    }

    /// Whether the verified copy of `sha256` is here.
    pub fn holds(&self, sha256: &str) -> bool {
        is_hash(sha256)
            && std::fs::symlink_metadata(self.dir.join(sha256)).is_ok_and(|m| m.is_file())
    }

    /// The hashes whose verified copies are here.
    pub fn held(&self) -> BTreeSet<String> {
        names(&self.dir)
    }

    /// The origin's side of publishing: hashes `file` while copying it into the incoming directory,
    /// then moves the copy to `content/<sha256>`. The copy is a snapshot: the URL serves these bytes
    /// whatever later happens to `file`. A file that changes while it is read is refused.
    pub fn publish(&self, file: &Path, origin: &str) -> Result<ContentRecord, ContentError> {
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| ContentError::Io { what, path, source }
        };
        let real = std::fs::canonicalize(file).map_err(io("reading", file))?;
        let mut source = crate::files::nofollow::open(&real).map_err(io("reading", file))?;
        let before = source.metadata().map_err(io("reading", file))?;
        if !before.is_file() {
            return Err(ContentError::Io {
                what: "reading",
                path: file.to_owned(),
                source: io::Error::other("not a regular file"),
            });
        }
        let tmp = self.incoming.join(format!(".publish-{}", random_hex()));
        let copied = (|| {
            let mut out = create_new(&tmp).map_err(io("writing", &tmp))?;
            let (sha, size) =
                copy_hashing(&mut source, Some(&mut out)).map_err(io("reading", file))?;
            out.sync_all().map_err(io("writing", &tmp))?;
            let after = source.metadata().map_err(io("reading", file))?;
            let same = after.len() == before.len()
                && after.mtime() == before.mtime()
                && after.mtime_nsec() == before.mtime_nsec()
                && size == before.len();
            if !same {
                return Err(ContentError::Changing(file.to_owned()));
            }
            Ok(sha)
        })();
        let sha = match copied {
            Ok(sha) => sha,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        let record = ContentRecord {
            sha256: sha,
            size: before.len(),
            origin: origin.to_owned(),
            version: u64::try_from(before.mtime())
                .unwrap_or(0)
                .min(crate::config::MAX_CONTENT_VERSION),
            previous: None,
        };
        self.published
            .lock()
            .recover()
            .insert(record.sha256.clone(), Instant::now());
        self.place(&tmp, &record.sha256)?;
        Ok(record)
    }

    /// The publication of `sha256` is over: a URL that names it is in the configuration (the call
    /// succeeded). A publication whose call failed is left to expire, and its copy to be removed then.
    pub fn settled(&self, sha256: &str) {
        self.published.lock().recover().remove(sha256);
    }

    /// A pull's side: checks the finished file `incoming_file(record.sha256)` against the record, then
    /// moves it to `content/<sha256>`. A file whose size or hash differs is removed.
    pub fn install(&self, record: &ContentRecord) -> Result<(), ContentError> {
        let file = self.incoming_file(&record.sha256);
        if !is_hash(&record.sha256) {
            return Err(ContentError::Io {
                what: "taking",
                path: file,
                source: io::Error::other("not a SHA-256 in hex"),
            });
        }
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| ContentError::Io { what, path, source }
        };
        let mut source = crate::files::nofollow::open(&file).map_err(io("reading", &file))?;
        let (sha, size) = copy_hashing(&mut source, None).map_err(io("reading", &file))?;
        if sha != record.sha256 || size != record.size {
            let _ = std::fs::remove_file(&file);
            return Err(ContentError::Mismatch {
                expected: record.sha256.clone(),
                found: sha,
                size,
            });
        }
        self.place(&file, &record.sha256)
    }

    /// Makes `file` read-only and renames it to `content/<sha256>` (an existing copy is the same bytes:
    /// `file` then goes), syncing the directory.
    fn place(&self, file: &Path, sha256: &str) -> Result<(), ContentError> {
        let target = self.dir.join(sha256);
        let io = |what, path: &Path| {
            let path = path.to_owned();
            move |source| ContentError::Io { what, path, source }
        };
        if self.holds(sha256) {
            let _ = std::fs::remove_file(file);
            return Ok(());
        }
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o444))
            .map_err(io("protecting", file))?;
        std::fs::rename(file, &target).map_err(io("placing", &target))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", &self.dir))?;
        Ok(())
    }

    /// Removes the copies and incoming files whose hashes the set `keep` gives does not hold (no URL
    /// names them), except those being published. Returns the hashes whose copies went.
    ///
    /// The order makes a publication safe: the directory is listed, then the publications under way are
    /// read, then `keep` is asked. A copy placed after the listing is not in it; one placed before is
    /// still under way when read, or its URL (added before [`ContentStore::settled`]) is in `keep`.
    pub fn remove_unused(&self, keep: impl FnOnce() -> BTreeSet<String>) -> Vec<String> {
        let copies = names(&self.dir);
        let recent: BTreeSet<String> = {
            let mut published = self.published.lock().recover();
            published.retain(|_, at| at.elapsed() < PUBLISHING_GRACE);
            published.keys().cloned().collect()
        };
        let keep = keep();
        let mut removed = Vec::new();
        for sha in copies {
            if !keep.contains(&sha) && !recent.contains(&sha) {
                match std::fs::remove_file(self.dir.join(&sha)) {
                    Ok(()) => removed.push(sha),
                    Err(e) => {
                        tracing::warn!(target: "bits_compact::service", content = %sha, error = %e, "cannot remove content no URL names")
                    }
                }
            }
        }
        for sha in names(&self.incoming) {
            if !keep.contains(&sha) {
                let _ = std::fs::remove_file(self.incoming.join(&sha));
            }
        }
        removed
    }
}

/// Whether `name` is a SHA-256 in lowercase hex (and so a safe file name).
pub(crate) fn is_hash(name: &str) -> bool {
    crate::config::hex_digest(name).is_some()
}

/// The names in `dir` that are hashes (others are temporaries, or not ours).
fn names(dir: &Path) -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeSet::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| is_hash(n))
        .collect()
}

/// Reads `source` to its end, hashing it and writing it to `out` when given: its SHA-256 in hex and size.
fn copy_hashing(source: &mut File, mut out: Option<&mut File>) -> io::Result<(String, u64)> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = source.read(&mut buf)?;
        if n == 0 {
            break;
        }
        context.update(&buf[..n]);
        if let Some(out) = out.as_deref_mut() {
            out.write_all(&buf[..n])?;
        }
        size += n as u64;
    }
    let hex = context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, size))
}

fn create_new(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha_hex(data: &[u8]) -> String {
        let d = ring::digest::digest(&ring::digest::SHA256, data);
        d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Publishing keeps a read-only snapshot named by the hash; later changes to the file do not reach it.
    #[test]
    fn a_published_file_is_a_snapshot_named_by_its_hash() {
        let state = tempfile::tempdir().unwrap();
        let store = ContentStore::open(state.path()).unwrap();
        let file = state.path().join("app.bin");
        std::fs::write(&file, b"version one").unwrap();
        let record = store.publish(&file, "a").unwrap();
        assert_eq!(record.sha256, sha_hex(b"version one"));
        assert_eq!((record.size, record.origin.as_str()), (11, "a"));
        std::fs::write(&file, b"version two!").unwrap();
        let copy = store.dir().join(&record.sha256);
        assert_eq!(std::fs::read(&copy).unwrap(), b"version one");
        assert_eq!(std::fs::metadata(&copy).unwrap().mode() & 0o777, 0o444);
        assert!(store.holds(&record.sha256));
        assert_eq!(
            store.held().into_iter().collect::<Vec<_>>(),
            std::slice::from_ref(&record.sha256)
        );
        // Nothing is left in incoming.
        assert_eq!(std::fs::read_dir(&store.incoming).unwrap().count(), 0);
    }

    /// SECURITY: the threat is a peer (or a disk) handing over other bytes than the record names: they
    /// are removed, never served.
    #[test]
    fn an_incoming_file_with_other_bytes_is_removed_not_installed() {
        let state = tempfile::tempdir().unwrap();
        let store = ContentStore::open(state.path()).unwrap();
        let record = ContentRecord {
            sha256: sha_hex(b"the real bytes"),
            size: 14,
            origin: "a".into(),
            version: 1,
            previous: None,
        };
        let incoming = store.incoming_file(&record.sha256);
        std::fs::write(&incoming, b"the fake bytes").unwrap();
        let e = store.install(&record).unwrap_err();
        assert!(matches!(e, ContentError::Mismatch { .. }), "{e}");
        assert!(!incoming.exists() && !store.holds(&record.sha256));
        std::fs::write(&incoming, b"the real bytes").unwrap();
        store.install(&record).unwrap();
        assert!(store.holds(&record.sha256) && !incoming.exists());
    }

    /// Copies no URL names go, but not one just published (its change is being committed), and names
    /// that are not hashes are never taken for content.
    #[test]
    fn unused_copies_go_but_fresh_publications_stay() {
        let state = tempfile::tempdir().unwrap();
        let store = ContentStore::open(state.path()).unwrap();
        let file = state.path().join("f");
        std::fs::write(&file, b"fresh").unwrap();
        let fresh = store.publish(&file, "a").unwrap();
        let old = sha_hex(b"old");
        std::fs::write(store.dir().join(&old), b"old").unwrap();
        std::fs::write(store.dir().join("not-a-hash"), b"x").unwrap();
        assert!(!store.holds("not-a-hash"));
        let removed = store.remove_unused(BTreeSet::new);
        assert_eq!(removed, std::slice::from_ref(&old));
        assert!(store.holds(&fresh.sha256));
        assert!(store.dir().join("not-a-hash").exists());
        // Kept by the caller: never removed, however old; once settled and no longer kept, it goes.
        store.settled(&fresh.sha256);
        let kept = store.remove_unused(|| BTreeSet::from([fresh.sha256.clone()]));
        assert!(kept.is_empty() && store.holds(&fresh.sha256));
        let removed = store.remove_unused(BTreeSet::new);
        assert_eq!(removed, std::slice::from_ref(&fresh.sha256));
    }
}
