//! The downloads `bcs download` keeps to be resumed: `STATE/download-jobs/KEY/`, one directory per
//! command line (KEY is a hash of its URLs and destinations), holding the job's `DirStore` and a lock
//! file; what `--list` shows of them and what `--forget` discards.
//!
//! The lock keeps two runs of one command from sharing a job; `--forget` takes it too, so a download that
//! is running is never discarded under it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use bits_compact::jobs::{part_path, DirStore, Job, JobStore};
use serde_json::json;

use super::DownloadError;
use crate::print::{human_bytes, terminal_safe};

/// How often [`lock`] takes the lock again after finding its file replaced.
const LOCK_TRIES: usize = 5;

/// Where the kept downloads are: `STATE/download-jobs/` (not `downloads/`: that is `bcs serve`'s default
/// download root, where service jobs write files).
pub(super) fn root() -> Result<PathBuf, DownloadError> {
    let base = bits_compact::service::default_state_dir().ok_or(DownloadError::NoStateDir)?;
    Ok(base.join("download-jobs"))
}

/// The job's directory name: a SHA-256 of the URLs and destinations, in hex (first 128 bits).
pub(super) fn key(files: &[(String, PathBuf)]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for (url, local) in files {
        context.update(url.as_bytes());
        context.update(b"\0");
        context.update(local.as_os_str().as_encoded_bytes());
        context.update(b"\0");
    }
    context.finish().as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Holds the lock file of the job's directory (created, mode 0700, if missing): the same download cannot
/// run twice at once.
///
/// A run that succeeded removes the lock file (and the directory) while it holds the lock, so another
/// run may have opened that file just before and be granted the lock on it once the first lets go:
/// a lock on a file no longer in the directory, which a third run, creating a new lock file, would not
/// see, and both would run. So the lock counts only when the path still names the very file locked
/// (same device and inode); otherwise it is taken again on the file there now (a few times at most).
pub(super) fn lock(dir: &Path) -> Result<File, DownloadError> {
    let path = dir.join("lock");
    for _ in 0..LOCK_TRIES {
        let file = open_lock(dir)?;
        if hold(&file, &path)? {
            return Ok(file);
        }
    }
    Err(DownloadError::Busy(path))
}

/// Opens (creating) the lock file in `dir` (created mode 0700, or checked to be private, first).
fn open_lock(dir: &Path) -> Result<File, DownloadError> {
    let path = dir.join("lock");
    let state = |source| DownloadError::State {
        path: path.clone(),
        source,
    };
    bits_compact::jobs::make_private_dir(dir)
        .map_err(|e| state(std::io::Error::other(e.to_string())))?;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(state)
}

/// Takes the lock on `file` without waiting (`Busy` if another run holds it); `Ok(false)` when `path`
/// no longer names `file` (it was removed, or replaced), so that this lock guards nothing.
fn hold(file: &File, path: &Path) -> Result<bool, DownloadError> {
    use rustix::fs::{flock, fstat, stat, FlockOperation};
    flock(file, FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| DownloadError::Busy(path.to_owned()))?;
    let held = fstat(file).map_err(|e| DownloadError::State {
        path: path.to_owned(),
        source: e.into(),
    })?;
    Ok(stat(path).is_ok_and(|now| (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)))
}

/// Removes the job's directory, which only holds the lock now (the job is gone from the store), while
/// still holding the lock; then lets it go.
pub(super) fn release(dir: &Path, lock: File) {
    let _ = std::fs::remove_file(dir.join("lock"));
    let _ = std::fs::remove_dir(dir);
    drop(lock);
}

/// A kept download: its directory and its job as last stored.
struct Kept {
    dir: PathBuf,
    job: Job,
}

impl Kept {
    /// The bytes its temporaries hold on disk now (the stored progress may be a second old).
    fn held(&self) -> u64 {
        self.job
            .files
            .iter()
            .filter_map(|f| part_path(&f.local_file))
            .filter_map(|p| std::fs::symlink_metadata(p).ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
            .sum()
    }
}

/// Every kept download with an unfinished job, oldest first.
fn all() -> Result<Vec<Kept>, DownloadError> {
    let root = root()?;
    let entries = match std::fs::read_dir(&root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(|source| DownloadError::State {
            path: root.clone(),
            source,
        })?,
    };
    let mut kept = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        // One unreadable download does not hide the others.
        let jobs = match DirStore::open(&dir).and_then(|store| store.load_all()) {
            Ok(jobs) => jobs,
            Err(e) => {
                note!(
                    "bcs: skipped {}: {}",
                    terminal_safe(dir.display()),
                    terminal_safe(e)
                );
                continue;
            }
        };
        kept.extend(
            jobs.into_iter()
                .filter(|j| !j.state.is_final())
                .map(|job| Kept {
                    dir: dir.clone(),
                    job,
                }),
        );
    }
    kept.sort_by_key(|k| k.job.created);
    Ok(kept)
}

/// `--list`: the kept downloads, each with its id, state and bytes held, then its URLs and destinations
/// (one JSON object a line with `--json`).
pub(super) fn list(json: bool) -> Result<(), DownloadError> {
    let kept = all()?;
    if kept.is_empty() && !json {
        say!("No download is kept to be resumed.");
    }
    for k in &kept {
        let held = k.held();
        if json {
            let files: Vec<_> = k
                .job
                .files
                .iter()
                .map(|f| json!({"url": f.remote_url, "file": f.local_file, "bytes_total": f.bytes_total}))
                .collect();
            say!(
                "{}",
                json!({"id": k.job.id, "state": k.job.state, "bytes_held": held, "files": files})
            );
            continue;
        }
        let total = k.job.bytes_total().map_or("?".into(), human_bytes);
        say!(
            "{}  {}  {} of {total} held",
            k.job.id,
            k.job.state,
            human_bytes(held)
        );
        for f in &k.job.files {
            say!(
                "  {} → {}",
                terminal_safe(&f.remote_url),
                terminal_safe(f.local_file.display())
            );
        }
    }
    Ok(())
}

/// `--forget DEST|ID`: discards every kept download whose id is `what` or that writes the destination
/// `what` names (resolved as `-o` resolves it): its temporaries, its job and its directory. A download
/// that is running is refused (`Busy`); none matching is [`DownloadError::NotKept`].
pub(super) fn forget(what: &str, dest: Option<PathBuf>) -> Result<(), DownloadError> {
    let matching: Vec<Kept> = all()?
        .into_iter()
        .filter(|k| {
            k.job.id.to_string().eq_ignore_ascii_case(what)
                || dest
                    .as_ref()
                    .is_some_and(|d| k.job.files.iter().any(|f| &f.local_file == d))
        })
        .collect();
    if matching.is_empty() {
        return Err(DownloadError::NotKept(what.to_owned()));
    }
    for k in matching {
        let lock = lock(&k.dir)?;
        for f in &k.job.files {
            let Some(part) = part_path(&f.local_file) else {
                continue;
            };
            match std::fs::remove_file(&part) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(DownloadError::State {
                        path: part,
                        source: e,
                    });
                }
                _ => {}
            }
        }
        DirStore::open(&k.dir)?.delete(k.job.id)?;
        release(&k.dir, lock);
        let dests: Vec<String> = k
            .job
            .files
            .iter()
            .map(|f| terminal_safe(f.local_file.display()))
            .collect();
        say!("Forgot {} ({})", k.job.id, dests.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The race a removed lock file leaves: a run that opened the lock file just before the finishing run
    /// removed it gets the lock on a file no longer there; it must not count it (before: it did, and a
    /// third run locking a new file ran beside it).
    #[test]
    fn a_lock_on_a_removed_lock_file_does_not_count() {
        let state = tempfile::tempdir().unwrap();
        let dir = state.path().join("job");
        let path = dir.join("lock");
        let first = lock(&dir).unwrap();
        // The second run opens the lock file while the first still holds it...
        let second = open_lock(&dir).unwrap();
        // ...and the first, done, removes it and lets go.
        release(&dir, first);
        assert!(!dir.exists());
        // The second run's lock is granted, on a file no longer there: not held.
        assert!(!hold(&second, &path).unwrap());
        // A third run locks the new file; the second, trying again, finds it busy.
        let third = lock(&dir).unwrap();
        drop(second);
        assert!(matches!(lock(&dir), Err(DownloadError::Busy(_))));
        drop(third);
        // Once the third is gone, the lock is free again.
        let again = lock(&dir).unwrap();
        assert!(hold(&again, &path).unwrap());
    }

    #[test]
    fn the_same_command_has_the_same_key() {
        let a = vec![("http://h/a".to_owned(), PathBuf::from("/d/a"))];
        let b = vec![("http://h/a".to_owned(), PathBuf::from("/d/b"))];
        assert_eq!(key(&a), key(&a.clone()));
        assert_ne!(key(&a), key(&b));
        assert_eq!(key(&a).len(), 32);
    }
}
