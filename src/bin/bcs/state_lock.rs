//! One `bcs serve` per state directory: `bcs.lock` there, locked (`flock`) for as long as the service
//! runs and holding its pid, so that a second one says at once which process has the directory, before
//! it opens the store, binds a port or takes over the socket.
//!
//! The file is never removed: a lock on a file that a finishing service removed could be granted to one
//! starter while another locks a new file of that name. The kernel lets the lock go when the process
//! ends, however it ends (`kill -9` too), so a stale pid in the file means nothing until it is locked.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation, OFlags};

/// Why the state directory could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateLockError {
    #[error("the state directory {dir} is in use by another bcs serve{pid}; stop it, or give this one another --state")]
    InUse { dir: PathBuf, pid: String },
    #[error("cannot lock the state directory with {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The state directory's lock, held until dropped (or the process ends).
#[derive(Debug)]
pub(crate) struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock of `state` without waiting, and writes this process's pid into it.
    pub(crate) fn take(state: &Path) -> Result<StateLock, StateLockError> {
        let path = state.join("bcs.lock");
        let io = |source| StateLockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            // The directory is private (checked before); no link is followed all the same.
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(io)?;
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e != rustix::io::Errno::WOULDBLOCK {
                return Err(io(e.into()));
            }
            let mut text = String::new();
            let _ = (&file).take(32).read_to_string(&mut text);
            let pid = match text.trim().parse::<u32>() {
                Ok(pid) => format!(" (pid {pid})"),
                Err(_) => String::new(),
            };
            return Err(StateLockError::InUse {
                dir: state.to_owned(),
                pid,
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(StateLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_told_who_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::take(dir.path()).unwrap();
        let e = StateLock::take(dir.path()).unwrap_err();
        let pid = std::process::id();
        assert!(e.to_string().contains(&format!("(pid {pid})")), "{e}");
        assert!(matches!(e, StateLockError::InUse { .. }));
        drop(first);
        let again = StateLock::take(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("bcs.lock")).unwrap();
        assert_eq!(text, format!("{pid}\n"));
        drop(again);
    }
}
