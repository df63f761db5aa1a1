//! Where jobs are kept between runs: a small trait, [`JobStore`], a directory of JSON files,
//! [`DirStore`], and [`MemoryStore`] for tests and for programs that want no persistence.
//!
//! A save is all or nothing: after `save` returns `Ok` the job as given survives a crash, and a crash
//! during `save` leaves the previous version. `DirStore` gets that from one file per job written to a
//! temporary name, synced, renamed over the old one, and the directory synced (rename(2) is atomic; the
//! directory sync makes the rename durable).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::job::{Job, JobId};
use super::job_error::JobError;
use crate::lock::Recover;

/// A job store. Calls may block (file system); the manager calls them from a blocking thread, one at a
/// time and in order.
pub trait JobStore: Send + Sync + 'static {
    /// Every stored job (none on first use).
    fn load_all(&self) -> Result<Vec<Job>, JobError>;

    /// Stores the job, replacing any earlier version, durably and atomically.
    fn save(&self, job: &Job) -> Result<(), JobError>;

    /// Forgets the job (no error if it was not there).
    fn delete(&self, id: JobId) -> Result<(), JobError>;
}

/// A shared store (one store for several managers in turn, or kept by the caller to look into).
impl<T: JobStore + ?Sized> JobStore for std::sync::Arc<T> {
    fn load_all(&self) -> Result<Vec<Job>, JobError> {
        (**self).load_all()
    }

    fn save(&self, job: &Job) -> Result<(), JobError> {
        (**self).save(job)
    }

    fn delete(&self, id: JobId) -> Result<(), JobError> {
        (**self).delete(id)
    }
}

/// Jobs in memory only: lost when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    jobs: Mutex<BTreeMap<JobId, Job>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl JobStore for MemoryStore {
    fn load_all(&self) -> Result<Vec<Job>, JobError> {
        Ok(self.lock().values().cloned().collect())
    }

    fn save(&self, job: &Job) -> Result<(), JobError> {
        self.lock().insert(job.id, job.clone());
        Ok(())
    }

    fn delete(&self, id: JobId) -> Result<(), JobError> {
        self.lock().remove(&id);
        Ok(())
    }
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<JobId, Job>> {
        self.jobs.lock().recover()
    }
}

/// One JSON file per job, `ID.json`, in a directory of its own.
#[derive(Debug)]
pub struct DirStore {
    dir: PathBuf,
}

const SUFFIX: &str = ".json";
const TEMP_SUFFIX: &str = ".json.tmp";

impl DirStore {
    /// Opens the directory, creating it (mode 0700) if missing; an existing one must be this user's
    /// alone ([`make_private_dir`]).
    ///
    /// SECURITY: job files name local paths and remote URLs, and the manager writes wherever a stored
    /// job says: were another user able to write there, they could plant a job that overwrites any file
    /// this user can write. The directory is created readable by its owner only, each file is written
    /// 0600, and an existing directory owned by another user or writable by group or others is refused.
    pub fn open(dir: impl Into<PathBuf>) -> Result<DirStore, JobError> {
        let dir = dir.into();
        make_private_dir(&dir).map_err(|e| match e {
            PrivateDirError::Io(source) => JobError::Store {
                path: dir.clone(),
                source,
            },
            other => JobError::NotPrivate {
                path: dir.clone(),
                reason: other.to_string(),
            },
        })?;
        Ok(DirStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: JobId) -> PathBuf {
        self.dir.join(format!("{id}{SUFFIX}"))
    }

    fn load_one(&self, path: &Path, id: JobId) -> Result<Job, JobError> {
        let text = fs::read(path).map_err(|source| JobError::Store {
            path: path.to_owned(),
            source,
        })?;
        let job: Job = serde_json::from_slice(&text).map_err(|e| JobError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if job.id != id {
            return Err(JobError::Corrupt {
                path: path.to_owned(),
                reason: format!("it holds job {}", job.id),
            });
        }
        Ok(job)
    }
}

impl JobStore for DirStore {
    /// Loads every `ID.json`; removes temporaries a crash left behind; ignores other names.
    fn load_all(&self) -> Result<Vec<Job>, JobError> {
        let io_err = |source| JobError::Store {
            path: self.dir.clone(),
            source,
        };
        let mut jobs = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err)? {
            let entry = entry.map_err(io_err)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(TEMP_SUFFIX) {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(id) = name.strip_suffix(SUFFIX).and_then(|s| s.parse().ok()) else {
                continue;
            };
            jobs.push(self.load_one(&entry.path(), id)?);
        }
        jobs.sort_by_key(|j: &Job| j.created);
        Ok(jobs)
    }

    fn save(&self, job: &Job) -> Result<(), JobError> {
        let path = self.path(job.id);
        let temp = self.dir.join(format!("{}{TEMP_SUFFIX}", job.id));
        let io_err = |source| JobError::Store {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(job).map_err(|e| io_err(io::Error::other(e)))?;
        write_synced(&temp, &json).map_err(io_err)?;
        fs::rename(&temp, &path).map_err(io_err)?;
        sync_dir(&self.dir).map_err(io_err)
    }

    fn delete(&self, id: JobId) -> Result<(), JobError> {
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir).map_err(|source| JobError::Store { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(JobError::Store { path, source }),
        }
    }
}

/// Why a directory is not private to this user.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrivateDirError {
    /// It could not be created or examined.
    #[error("cannot be created or examined: {0}")]
    Io(#[source] io::Error),
    /// Something else than a directory (a symbolic link included) is there.
    #[error("is not a directory")]
    NotADirectory,
    /// Another user owns it.
    #[error("is owned by uid {owner}, not this user (uid {me})")]
    Owner {
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// Its group or others may write to it.
    #[error("is writable by others (mode {0:o}); chmod 700 it")]
    Writable(u32),
}

/// Creates `dir` (and its parents) mode 0700, or checks an existing one: a directory, not a link, owned
/// by this process's user, that neither its group nor others may write to. Shared by [`DirStore`] and
/// `bcs serve`'s state directory.
pub fn make_private_dir(dir: &Path) -> Result<(), PrivateDirError> {
    use std::os::unix::fs::MetadataExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(PrivateDirError::Io)?;
    let meta = fs::symlink_metadata(dir).map_err(PrivateDirError::Io)?;
    if !meta.is_dir() {
        return Err(PrivateDirError::NotADirectory);
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(PrivateDirError::Owner {
            owner: meta.uid(),
            me,
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(PrivateDirError::Writable(meta.mode() & 0o777));
    }
    Ok(())
}

/// Writes `bytes` to a fresh file at `path` (mode 0600, replacing a leftover) and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Makes the directory's entries (a rename, a new or removed file) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::jobs::{JobFile, JobState};

    #[test]
    fn saves_load_back_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path().join("jobs")).unwrap();
        assert!(store.load_all().unwrap().is_empty());
        let mut a = Job::new("a", JobState::Suspended);
        a.files.push(JobFile::new("http://127.0.0.1:1/a", "/tmp/a"));
        let b = Job::new("b", JobState::Queued);
        store.save(&a).unwrap();
        store.save(&b).unwrap();
        a.state = JobState::Queued;
        store.save(&a).unwrap();
        let mut loaded = store.load_all().unwrap();
        loaded.sort_by_key(|j| j.display_name.clone());
        assert_eq!(loaded, vec![a.clone(), b.clone()]);
        store.delete(a.id).unwrap();
        store.delete(a.id).unwrap();
        assert_eq!(store.load_all().unwrap(), vec![b]);
        let mode = fs::metadata(store.dir()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    /// SECURITY: an existing directory that others may write to, or that another user owns, is refused
    /// (before: opened and trusted).
    #[test]
    fn a_directory_others_can_write_or_own_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs");
        fs::create_dir(&jobs).unwrap();
        for mode in [0o777, 0o770, 0o720, 0o702] {
            fs::set_permissions(&jobs, fs::Permissions::from_mode(mode)).unwrap();
            let err = DirStore::open(&jobs).unwrap_err();
            assert!(
                matches!(err, JobError::NotPrivate { .. }),
                "{mode:o}: {err}"
            );
            assert!(err.to_string().contains("writable by others"), "{err}");
        }
        // Readable by others is no threat to what is written there: allowed, as bcs serve allows it.
        fs::set_permissions(&jobs, fs::Permissions::from_mode(0o755)).unwrap();
        DirStore::open(&jobs).unwrap();
        // A link to a directory is not the directory.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&jobs, &link).unwrap();
        assert!(matches!(
            DirStore::open(&link).unwrap_err(),
            JobError::NotPrivate { .. }
        ));
        // Another owner: a 0700 directory given to nobody (as root), else `/` (root's).
        let (other, owner) = if rustix::process::geteuid().as_raw() == 0 {
            let other = dir.path().join("other");
            fs::create_dir(&other).unwrap();
            std::os::unix::fs::chown(&other, Some(65534), None).unwrap();
            (other, 65534)
        } else {
            (PathBuf::from("/"), 0)
        };
        let err = DirStore::open(&other).unwrap_err();
        assert!(
            err.to_string().contains(&format!("owned by uid {owner}")),
            "{err}"
        );
    }

    #[test]
    fn a_crash_mid_save_keeps_the_old_version_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        let job = Job::new("a", JobState::Queued);
        store.save(&job).unwrap();
        // What a crash between write and rename leaves: a half-written temporary.
        let temp = dir.path().join(format!("{}{TEMP_SUFFIX}", job.id));
        fs::write(&temp, b"{\"id\":").unwrap();
        assert_eq!(store.load_all().unwrap(), vec![job]);
        assert!(!temp.exists());
    }

    #[test]
    fn damaged_or_foreign_files_are_reported_or_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path()).unwrap();
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        fs::write(dir.path().join("..json"), b"x").unwrap();
        assert!(store.load_all().unwrap().is_empty());
        // A job file under another job's name is refused, not loaded under the wrong id.
        let job = Job::new("a", JobState::Queued);
        let other = JobId::random();
        let text = serde_json::to_vec(&job).unwrap();
        fs::write(dir.path().join(format!("{other}.json")), text).unwrap();
        let err = store.load_all().unwrap_err();
        assert!(matches!(err, JobError::Corrupt { .. }), "{err}");
        fs::write(dir.path().join(format!("{other}.json")), b"[1,2").unwrap();
        assert!(matches!(
            store.load_all().unwrap_err(),
            JobError::Corrupt { .. }
        ));
    }
}
