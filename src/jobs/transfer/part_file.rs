//! A file's temporary, `.NAME.bcs-part` beside its destination: opened (created 0600, never through a
//! planted link) and held exclusively while a transfer writes it, synced when its bytes are all there,
//! renamed into place only when the job is completed ([`complete`]) and removed when it is cancelled
//! ([`discard`]).
//!
//! The temporary stays private (0600) until Complete; then it gets the mode the file should have, as curl
//! and wget give it: an existing destination's permission bits (replacing a file keeps who may read it),
//! or for a new file 0666 less the process's umask ([`final_mode`]). Never setuid, setgid or sticky.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::failure::Failure;
use crate::jobs::job::{ErrorContext, JobFile};

/// The temporary beside `local`: `.NAME.bcs-part`.
pub fn part_path(local: &Path) -> Option<PathBuf> {
    let name = local.file_name()?.to_str()?;
    Some(local.with_file_name(format!(".{name}.bcs-part")))
}

/// Whether `local`'s name is that of a temporary (`.NAME.bcs-part`).
pub(crate) fn is_part_name(local: &Path) -> bool {
    local.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
        n.len() > ".bcs-part".len() && n.starts_with('.') && n.ends_with(".bcs-part")
    })
}

/// Puts a transferred file under its final name (rename, then a sync of the directory). A file already in
/// place (a crash after the rename, before the job was saved) counts as done.
pub(crate) fn complete(file: &JobFile, no_symlinks: bool) -> Result<(), (PathBuf, io::Error)> {
    let local = &file.local_file;
    let part = part_path(local).ok_or_else(|| {
        (
            local.clone(),
            io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
        )
    })?;
    if no_symlinks {
        return complete_in_dir(file, &part);
    }
    let existing = std::fs::symlink_metadata(local)
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.permissions().mode());
    let opened = rustix::fs::open(&part, PART_FLAGS, Mode::empty());
    set_final_mode(opened, existing).map_err(|e| (part.clone(), e))?;
    if let Err(e) = std::fs::rename(&part, local) {
        let in_place = std::fs::symlink_metadata(local)
            .is_ok_and(|m| m.is_file() && Some(m.len()) == file.bytes_total);
        if !(e.kind() == io::ErrorKind::NotFound && in_place) {
            return Err((local.clone(), e));
        }
    }
    let dir = local.parent().unwrap_or(Path::new("."));
    crate::jobs::job_store::sync_dir(dir).map_err(|e| (dir.to_owned(), e))
}

/// `complete` through a handle on the destination's directory opened without following any symbolic link
/// (see [`open_part`]): the rename cannot be redirected by a directory swapped for a link.
fn complete_in_dir(file: &JobFile, part: &Path) -> Result<(), (PathBuf, io::Error)> {
    let local = &file.local_file;
    let (dir, name, part_name) = split(local, part).map_err(|e| (local.clone(), e))?;
    let fd = crate::files::nofollow::open_dir(dir).map_err(|e| (dir.to_owned(), e))?;
    let existing = rustix::fs::statat(&fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .ok()
        .filter(|st| {
            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
        })
        .map(|st| st.st_mode);
    let opened = rustix::fs::openat(&fd, part_name, PART_FLAGS, Mode::empty());
    set_final_mode(opened, existing).map_err(|e| (part.to_owned(), e))?;
    if let Err(e) = rustix::fs::renameat(&fd, part_name, &fd, name) {
        let in_place = rustix::fs::statat(&fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
                    && u64::try_from(st.st_size).ok() == file.bytes_total
            });
        if !(e == rustix::io::Errno::NOENT && in_place) {
            return Err((local.clone(), e.into()));
        }
    }
    rustix::fs::fsync(&fd).map_err(|e| (dir.to_owned(), e.into()))
}

/// How a temporary is opened to change its mode: never through a link (SECURITY: a link planted under
/// its name would have us chmod whatever it names), and never blocking on a FIFO put in its place.
const PART_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY)
    .union(OFlags::CLOEXEC);

/// Gives the opened temporary its [`final_mode`]; a temporary already gone (renamed before a crash) is
/// left to the rename's own check.
fn set_final_mode(
    opened: Result<OwnedFd, rustix::io::Errno>,
    existing: Option<u32>,
) -> io::Result<()> {
    let fd = match opened {
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        other => other?,
    };
    let st = rustix::fs::fstat(&fd)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the temporary is not a regular file",
        ));
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(final_mode(existing)))?;
    Ok(())
}

/// The mode a completed file gets: `existing`'s permission bits (the destination it replaces), else
/// 0666 less the umask. Setuid, setgid and sticky bits are never carried over to downloaded bytes.
fn final_mode(existing: Option<u32>) -> u32 {
    match existing {
        Some(mode) => mode & 0o777,
        None => 0o666 & !umask(),
    }
}

/// The process's umask, read from `/proc/self/status` (Linux 4.7 and later) rather than set and put
/// back, which would race with other threads creating files meanwhile. Where it cannot be read, 0o077:
/// the file stays private.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| umask_in(&status))
        .unwrap_or(0o077)
}

/// The `Umask:` line of a `/proc/PID/status` text.
fn umask_in(status: &str) -> Option<u32> {
    let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(value.trim(), 8).ok().map(|m| m & 0o777)
}

/// The destination's directory, its name and its temporary's name.
fn split<'a>(
    local: &'a Path,
    part: &'a Path,
) -> io::Result<(&'a Path, &'a std::ffi::OsStr, &'a std::ffi::OsStr)> {
    let invalid = || io::Error::new(io::ErrorKind::InvalidInput, "no file name");
    let dir = local.parent().ok_or_else(invalid)?;
    Ok((
        dir,
        local.file_name().ok_or_else(invalid)?,
        part.file_name().ok_or_else(invalid)?,
    ))
}

/// Removes a file's temporary, if there is one (with `no_symlinks`, through its directory opened without
/// following links).
pub(crate) fn discard(file: &JobFile, no_symlinks: bool) -> io::Result<()> {
    let Some(part) = part_path(&file.local_file) else {
        return Ok(());
    };
    if no_symlinks {
        let (dir, _, part_name) = split(&file.local_file, &part)?;
        let fd = match crate::files::nofollow::open_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => other?,
        };
        return match rustix::fs::unlinkat(&fd, part_name, rustix::fs::AtFlags::empty()) {
            Err(rustix::io::Errno::NOENT) | Ok(()) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    match std::fs::remove_file(part) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn bad_local(local: &Path) -> Failure {
    Failure::new(
        false,
        ErrorContext::LocalFile,
        "invalid_local_file",
        format!("{} names no file", local.display()),
    )
}

/// Opens (or creates, 0600) the temporary for reading and writing.
///
/// SECURITY: the temporary is in the destination's directory, which others may be able to write to; a
/// symbolic link planted under its name would make us write through it, so the last component is opened
/// with `O_NOFOLLOW` (a link fails the open: ERROR, local file). Its bytes are only trusted when the job
/// itself recorded validators for them (see `fetch::fetch_file`). With `no_symlinks` (a service whose download
/// root is canonical and whose job paths were checked to be link-free), no component at all may be a
/// link, so a directory swapped for a link after the job was created cannot redirect the write either.
fn open_part(part: &Path, no_symlinks: bool) -> io::Result<File> {
    if no_symlinks {
        return crate::files::nofollow::open_rw_create(part);
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(part)
}

/// Opens the temporary of `local` (see [`open_part`]) and holds it exclusively; returns it and its path.
pub(super) fn open(local: &Path, no_symlinks: bool) -> Result<(File, PathBuf), Failure> {
    let part = part_path(local).ok_or_else(|| bad_local(local))?;
    let disk = open_part(&part, no_symlinks).map_err(|e| Failure::local(&e, "open", &part))?;
    // SECURITY: two transfers writing one temporary (two jobs, or two spellings of one destination) would
    // truncate each other's bytes and publish a mix: the temporary is held exclusively while it is written.
    if rustix::fs::flock(&disk, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Err(Failure::new(
            false,
            ErrorContext::LocalFile,
            "local_file_in_use",
            format!("{} is being written by another transfer", part.display()),
        ));
    }
    Ok((disk, part))
}

/// Cuts (or extends) the temporary to `size` and makes its bytes durable.
pub(super) fn sync(disk: &File, size: u64, part: &Path) -> Result<(), Failure> {
    disk.set_len(size)
        .and_then(|()| disk.sync_all())
        .map_err(|e| Failure::local(&e, "sync", part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temporary_sits_beside_the_destination() {
        assert_eq!(
            part_path(Path::new("/d/setup.exe")),
            Some(PathBuf::from("/d/.setup.exe.bcs-part"))
        );
        assert_eq!(part_path(Path::new("/")), None);
    }

    #[test]
    fn a_completed_file_takes_the_umask_or_the_mode_it_replaces() {
        assert_eq!(
            umask_in("Name:\tbcs\nUmask:\t0022\nState:\tR\n"),
            Some(0o022)
        );
        assert_eq!(umask_in("Umask:\t0077\n"), Some(0o077));
        assert_eq!(umask_in("Name:\tbcs\n"), None);
        assert_eq!(umask_in("Umask:\tzz\n"), None);
        assert_eq!(final_mode(Some(0o100644)), 0o644);
        assert_eq!(final_mode(Some(0o104755)), 0o755, "no setuid carried over");
        assert_eq!(final_mode(None), 0o666 & !umask());
        assert!(umask_in(&std::fs::read_to_string("/proc/self/status").unwrap()).is_some());
    }

    /// SECURITY: a link planted under the temporary's name at Complete is neither followed (its target's
    /// mode stays) nor renamed into place.
    #[test]
    fn complete_never_changes_the_mode_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, b"keep").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).unwrap();
        let local = dir.path().join("f");
        std::os::unix::fs::symlink(&target, part_path(&local).unwrap()).unwrap();
        for no_symlinks in [false, true] {
            assert!(complete(&JobFile::new("http://h/f", &local), no_symlinks).is_err());
            let mode = std::fs::metadata(&target).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            assert!(!local.exists());
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("victim");
        std::fs::write(&target, b"keep").unwrap();
        let part = dir.path().join(".f.bcs-part");
        std::os::unix::fs::symlink(&target, &part).unwrap();
        assert!(open_part(&part, false).is_err());
        assert!(open_part(&part, true).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        // With no_symlinks, a linked directory on the way is refused too.
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let linked = dir.path().join("linked");
        std::os::unix::fs::symlink(&real, &linked).unwrap();
        assert!(open_part(&linked.join(".g.bcs-part"), false).is_ok());
        assert!(open_part(&linked.join(".h.bcs-part"), true).is_err());
        assert!(!real.join(".h.bcs-part").exists());
        assert!(open_part(&real.join(".h.bcs-part"), true).is_ok());
    }
}
