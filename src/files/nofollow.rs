//! Opening a published file by the path resolved when it was published, following no symbolic link.
//!
//! SECURITY: whoever can write to a directory on a published file's path could otherwise replace the
//! file, or a directory above it, with a symbolic link to anything the server may read
//! (`ln -sf ../outside/secret pub/f.new && mv -T pub/f.new pub/f`), and the next open would serve it.
//! The path was made absolute and free of links once, at publishing (`std::fs::canonicalize`); every later
//! open and stat goes through here, and a symbolic link in any component fails as if the file had
//! vanished (`NotFound`, which is answered 404), never followed.
//!
//! On Linux 5.6 and later one `openat2` with `RESOLVE_NO_SYMLINKS` does it (magic links such as
//! `/proc/self/fd/N` included). Where `openat2` is missing, the path is walked one component at a time
//! from the root, each directory opened with `O_NOFOLLOW | O_DIRECTORY` and the last component with
//! `O_NOFOLLOW` (openat(2), open(2)).

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path};
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Mode, OFlags, CWD};
use rustix::io::Errno;

/// Opens the regular file at `path` for reading. `O_NONBLOCK` keeps a FIFO put in the file's place from
/// blocking the open; it changes nothing for a regular file.
pub(crate) fn open(path: &Path) -> io::Result<File> {
    resolve(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY).map(File::from)
}

/// The metadata of what is at `path`, from a descriptor opened without following links (`O_PATH` on
/// Linux, which needs no read permission and opens nothing but the inode).
pub(crate) fn metadata(path: &Path) -> io::Result<Metadata> {
    File::from(resolve(path, STAT_FLAGS)?).metadata()
}

#[cfg(target_os = "linux")]
const STAT_FLAGS: OFlags = OFlags::PATH;
#[cfg(not(target_os = "linux"))]
const STAT_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::NONBLOCK).union(OFlags::NOCTTY);

#[cfg(target_os = "linux")]
const DIR_FLAGS: OFlags = OFlags::PATH.union(OFlags::DIRECTORY);
#[cfg(not(target_os = "linux"))]
const DIR_FLAGS: OFlags = OFlags::RDONLY.union(OFlags::DIRECTORY);

/// Whether `openat2` may exist here; cleared the first time the kernel (or a seccomp filter) refuses it.
#[cfg(target_os = "linux")]
static OPENAT2: AtomicBool = AtomicBool::new(true);

/// Opens (creating it with mode 0600 if missing) the regular file at `path` for reading and writing,
/// following no symbolic link in any component: a download job's temporary in a service whose download
/// root is canonical (see `crate::service`'s jobs).
pub(crate) fn open_rw_create(path: &Path) -> io::Result<File> {
    resolve_mode(
        path,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOCTTY,
        Mode::from_raw_mode(0o600),
    )
    .map(File::from)
}

/// Opens the directory at `path` (readable, so that it can be synced), following no symbolic link.
pub(crate) fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    resolve(path, OFlags::RDONLY | OFlags::DIRECTORY)
}

fn resolve(path: &Path, flags: OFlags) -> io::Result<OwnedFd> {
    resolve_mode(path, flags, Mode::empty())
}

/// `mode` is used when `flags` create the file.
fn resolve_mode(path: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    #[cfg(target_os = "linux")]
    if OPENAT2.load(Ordering::Relaxed) {
        use rustix::fs::ResolveFlags;
        match rustix::fs::openat2(
            CWD,
            path,
            flags | OFlags::CLOEXEC,
            mode,
            ResolveFlags::NO_SYMLINKS,
        ) {
            // ENOSYS: a kernel before 5.6. EPERM: container seccomp profiles that predate openat2 refuse
            // it so; a read-only open has no other reason to fail with EPERM, and the walk is as strict.
            Err(Errno::NOSYS | Errno::PERM) => OPENAT2.store(false, Ordering::Relaxed),
            result => return result.map_err(to_io),
        }
    }
    walk(path, flags, mode).map_err(to_io)
}

/// The directory to open the next component in: the last one opened, else the working directory.
fn at(dir: &Option<OwnedFd>) -> BorrowedFd<'_> {
    dir.as_ref().map_or(CWD, AsFd::as_fd)
}

/// The fallback: one `openat` per component, none of them following a link.
fn walk(path: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd, Errno> {
    let mut dir: Option<OwnedFd> = None;
    let mut pending = None;
    for component in path.components() {
        match component {
            Component::RootDir => {
                dir = Some(rustix::fs::openat(
                    CWD,
                    "/",
                    DIR_FLAGS | OFlags::CLOEXEC,
                    Mode::empty(),
                )?)
            }
            Component::CurDir => {}
            Component::Normal(name) => {
                if let Some(parent) = pending.replace(name) {
                    let next = rustix::fs::openat(
                        at(&dir),
                        parent,
                        DIR_FLAGS | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    dir = Some(next);
                }
            }
            // A canonical path has neither; `..` from a swapped-in directory could lead anywhere.
            Component::ParentDir | Component::Prefix(_) => return Err(Errno::INVAL),
        }
    }
    let name = pending.ok_or(Errno::INVAL)?;
    rustix::fs::openat(
        at(&dir),
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        mode,
    )
}

/// ELOOP (a link where a file was, or any link under `RESOLVE_NO_SYMLINKS`) and ENOTDIR (a link, or a
/// file, where a directory was) mean the published path no longer leads to a file: NotFound, like a
/// vanished file.
fn to_io(e: Errno) -> io::Error {
    match e {
        Errno::LOOP | Errno::NOTDIR => io::Error::new(
            io::ErrorKind::NotFound,
            "a symbolic link or a file is where the published path had a file or directory",
        ),
        e => io::Error::from(e),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::symlink;

    use super::*;

    /// root/pub/f (the file), root/outside/secret, and links to try.
    fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("pub/sub")).unwrap();
        std::fs::create_dir_all(root.join("outside/sub")).unwrap();
        std::fs::write(root.join("pub/sub/f"), b"public").unwrap();
        std::fs::write(root.join("outside/secret"), b"secret").unwrap();
        std::fs::write(root.join("outside/sub/f"), b"secret").unwrap();
        symlink(root.join("outside/secret"), root.join("pub/link")).unwrap();
        symlink("../outside/sub", root.join("pub/linked-dir")).unwrap();
        (dir, root)
    }

    fn read(file: io::Result<File>) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        file?.read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    fn assert_gone<T: std::fmt::Debug>(result: io::Result<T>) {
        let e = result.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
    }

    #[test]
    fn opens_and_stats_a_path_without_links() {
        let (_dir, root) = tree();
        let f = root.join("pub/sub/f");
        assert_eq!(read(open(&f)).unwrap(), b"public");
        let md = metadata(&f).unwrap();
        assert!(md.is_file());
        assert_eq!(md.len(), 6);
        assert!(metadata(&root.join("pub/sub")).unwrap().is_dir());
    }

    #[test]
    fn a_link_in_the_last_component_is_not_followed() {
        let (_dir, root) = tree();
        let link = root.join("pub/link");
        assert_gone(open(&link));
        // Without openat2 the O_PATH descriptor may be of the link itself: never a regular file.
        assert!(metadata(&link).map_or(true, |md| !md.is_file()));
        assert_gone(walk(&link, OFlags::RDONLY, Mode::empty()).map_err(to_io));
        let md = File::from(walk(&link, STAT_FLAGS, Mode::empty()).unwrap())
            .metadata()
            .unwrap();
        assert!(md.file_type().is_symlink());
    }

    #[test]
    fn a_link_in_a_directory_component_is_not_followed() {
        let (_dir, root) = tree();
        let through = root.join("pub/linked-dir/f");
        assert_gone(open(&through));
        assert_gone(metadata(&through));
        assert_gone(walk(&through, OFlags::RDONLY, Mode::empty()).map_err(to_io));
        assert_gone(walk(&through, STAT_FLAGS, Mode::empty()).map_err(to_io));
    }

    #[test]
    fn the_walk_opens_what_openat2_opens() {
        let (_dir, root) = tree();
        let f = root.join("pub/sub/f");
        assert_eq!(
            read(
                walk(&f, OFlags::RDONLY, Mode::empty())
                    .map(File::from)
                    .map_err(to_io)
            )
            .unwrap(),
            b"public"
        );
        assert_eq!(
            walk(
                &root.join("pub/../pub/sub/f"),
                OFlags::RDONLY,
                Mode::empty()
            )
            .err(),
            Some(Errno::INVAL)
        );
        assert_gone(walk(&root.join("pub/missing"), OFlags::RDONLY, Mode::empty()).map_err(to_io));
    }
}
