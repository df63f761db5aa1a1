//! Where a caller's job files may go: the download root of [`ServiceJobs`], a sandbox. Paths are planned
//! here ([`ServiceJobs::plan_path`]) and their directories made ([`DirsMade`]).
//!
//! SECURITY: the threat is a job writing where the service must not. Every local file must resolve inside
//! the download root. `..` components are refused, absolute paths outside the root are refused, and no
//! existing component below the root (directories, the file, its `.bcs-part` temporary) may be a symbolic
//! link; the root itself is canonical, so the stored path has no link in it anywhere.
//!
//! Callers who are not administrators each get an area of their own below the root,
//! `users/<hash of the owner>/`, where their relative and absolute paths resolve: one such caller cannot
//! name (or learn of) another's files, nor overwrite a download another job verified. Across all jobs, no
//! two unfinished ones may write one file, and no destination may be named like a temporary (the job
//! manager refuses both). An administrator's paths may go anywhere in the root.
//!
//! A refused request changes nothing on disk: its paths are planned without touching it, and the
//! directories they need are made only for a request that passed every other check, and removed again if
//! the job manager refuses the job ([`DirsMade`]).

use std::path::{Component, Path, PathBuf};

use crate::service::error::MgmtError;
use crate::service::principal::Principal;
use crate::service::service_jobs::ServiceJobs;

impl ServiceJobs {
    /// Where `who`'s paths resolve, relative to the root: the root itself for administrators, else the
    /// caller's own area below it.
    fn area(who: &Principal) -> PathBuf {
        if who.admin {
            return PathBuf::new();
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, who.name.as_bytes());
        let hex: String = digest.as_ref()[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Path::new("users").join(hex)
    }

    /// Where `given` puts a file of `who`'s: a relative path under the caller's area (the root, for
    /// administrators), an absolute one only inside it; parent directories below the root are created
    /// (0700) as needed. See the module's SECURITY note. [`plan_path`](Self::plan_path) and
    /// [`DirsMade`] do the same in two steps, so that a refused request creates nothing.
    pub fn local_path(&self, who: &Principal, given: &str) -> Result<PathBuf, MgmtError> {
        let planned = self.plan_path(who, given)?;
        DirsMade::make(std::slice::from_ref(&planned))?.keep();
        Ok(planned.path)
    }

    /// Where `given` puts a file of `who`'s, checked as [`local_path`](Self::local_path) checks it,
    /// without changing anything on disk: the directories it still needs are made by [`DirsMade`].
    pub fn plan_path(&self, who: &Principal, given: &str) -> Result<PlannedPath, MgmtError> {
        let below = Self::area(who);
        let area = self.root().join(&below);
        let refuse = |why: &str| MgmtError::Invalid {
            code: "path_outside_download_root",
            message: format!(
                "{given:?}: {why}; job files must be inside {}",
                area.display()
            ),
        };
        let path = Path::new(given);
        if given.is_empty() || given.contains('\0') {
            return Err(refuse("not a file path"));
        }
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(refuse("`..` is not allowed"));
        }
        let relative = match path.strip_prefix(&area) {
            Ok(rest) => below.join(rest),
            Err(_) if path.is_absolute() => return Err(refuse("outside the download root")),
            Err(_) => below.join(path),
        };
        let parts: Vec<&std::ffi::OsStr> = relative
            .components()
            .filter_map(|c| match c {
                Component::Normal(name) => Some(name),
                _ => None,
            })
            .collect();
        let Some((name, dirs)) = parts.split_last() else {
            return Err(refuse("names no file"));
        };
        let mut at = self.root().to_owned();
        let mut missing = Vec::new();
        for dir in dirs {
            at.push(dir);
            if !missing.is_empty() {
                // Below a directory still to make, nothing exists yet.
                missing.push(at.clone());
                continue;
            }
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(refuse("a directory on the path is a symbolic link"))
                }
                Ok(m) if !m.is_dir() => {
                    return Err(refuse("a component of the path is not a directory"))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing.push(at.clone()),
                Err(e) => return Err(refuse(&e.to_string())),
            }
        }
        at.push(name);
        let part = crate::jobs::part_path(&at).ok_or_else(|| refuse("names no file"))?;
        for p in [&at, &part] {
            if let Ok(m) = std::fs::symlink_metadata(p) {
                if m.file_type().is_symlink() {
                    return Err(refuse("the file is a symbolic link"));
                }
                if !m.is_file() {
                    return Err(refuse("something other than a file is there"));
                }
            }
        }
        Ok(PlannedPath { path: at, missing })
    }
}

/// A job file's place in the download root, checked, and the directories below the root it still needs
/// ([`ServiceJobs::plan_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedPath {
    path: PathBuf,
    /// Outermost first.
    missing: Vec<PathBuf>,
}

impl PlannedPath {
    /// The absolute path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The directories made for a request's files: removed again when this is dropped, unless
/// [`keep`](Self::keep) was called once the request was accepted, so that a refused request leaves the
/// download root as it was.
///
/// Two requests must not make directories at once (one could remove what the other's accepted job
/// needs): callers hold [`ServiceJobs::making`] from [`make`](Self::make) to `keep` or drop.
#[derive(Debug)]
#[must_use = "dropped, the directories are removed again"]
pub struct DirsMade {
    /// In the order made.
    made: Vec<PathBuf>,
}

impl DirsMade {
    /// Makes (mode 0700) the directories `planned` still needs, each once; on an error, removes those it
    /// made.
    pub fn make(planned: &[PlannedPath]) -> Result<DirsMade, MgmtError> {
        use std::os::unix::fs::DirBuilderExt;
        let mut dirs = DirsMade { made: Vec::new() };
        for (file, dir) in planned
            .iter()
            .flat_map(|p| p.missing.iter().map(move |d| (&p.path, d)))
        {
            if dirs.made.contains(dir) {
                continue;
            }
            match std::fs::DirBuilder::new().mode(0o700).create(dir) {
                Ok(()) => dirs.made.push(dir.clone()),
                // Made meanwhile by someone else: used if it is a directory, never removed.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let real = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
                    if !real {
                        return Err(cannot_make(file, dir, &e));
                    }
                }
                Err(e) => return Err(cannot_make(file, dir, &e)),
            }
        }
        Ok(dirs)
    }

    /// The request was accepted: its directories stay.
    pub fn keep(mut self) {
        self.made.clear();
    }
}

impl Drop for DirsMade {
    fn drop(&mut self) {
        // Innermost first; a directory something was put in meanwhile stays (remove_dir fails on it).
        for dir in self.made.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

fn cannot_make(file: &Path, dir: &Path, e: &std::io::Error) -> MgmtError {
    MgmtError::Invalid {
        code: "path_outside_download_root",
        message: format!(
            "{}: cannot create its directory {}: {e}",
            file.display(),
            dir.display()
        ),
    }
}
