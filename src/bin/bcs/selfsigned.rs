//! The self-signed certificate, kept in the user's state directory so that its fingerprint and pin stay
//! the same across restarts.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bits_compact::ServerCertificate;

use crate::CliError;

/// Where the self-signed certificate came from, for the banner.
pub(crate) enum Kept {
    /// Loaded from the state directory, as made by an earlier start.
    Reused(PathBuf),
    /// Made now and saved there.
    Made(PathBuf),
    /// Made now and not saved (the directory could not be written); it lasts until bcs stops.
    Ephemeral,
}

impl Kept {
    /// The certificate file (no key) clients can be given, when there is one.
    pub(crate) fn cert_file(&self) -> Option<&Path> {
        match self {
            Kept::Reused(path) | Kept::Made(path) => Some(path),
            Kept::Ephemeral => None,
        }
    }
}

/// A stored certificate this close to expiring is replaced at start, so that one start lasts a while.
const RENEW_BEFORE: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// The certificate for `names`: the stored one when it is readable, covers every name and is not about
/// to expire, unless `new` asks for a fresh one; else a new one, saved for next time. A directory that
/// cannot be written is a warning, not an error: serving matters more than keeping the pin.
pub(crate) fn self_signed(
    names: &[String],
    new: bool,
) -> Result<(ServerCertificate, Kept), CliError> {
    self_signed_in(state_dir(), names, new)
}

/// [`self_signed`], kept in `dir` (`bcs serve` keeps its own in its state directory).
pub(crate) fn self_signed_in(
    dir: Option<PathBuf>,
    names: &[String],
    new: bool,
) -> Result<(ServerCertificate, Kept), CliError> {
    let Some(dir) = dir else {
        note!("bcs: warning: neither XDG_STATE_HOME nor HOME is set, so the self-signed certificate is not kept: it lasts until bcs stops");
        return Ok((ServerCertificate::self_signed(names)?, Kept::Ephemeral));
    };
    let (cert_file, key_file) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !new && cert_file.exists() {
        match reuse(&cert_file, &key_file, names) {
            Ok(cert) => return Ok((cert, Kept::Reused(cert_file))),
            Err(why) => {
                note!("bcs: making a new self-signed certificate: the kept one {why}")
            }
        }
    }
    let (cert_pem, key_pem) = ServerCertificate::self_signed_pem(names)?;
    if let Err(e) = save(&dir, cert_pem.as_bytes(), key_pem.as_bytes()) {
        note!(
            "bcs: warning: cannot keep the self-signed certificate in {}: {e}; it lasts until bcs stops",
            dir.display()
        );
        return Ok((ServerCertificate::self_signed(names)?, Kept::Ephemeral));
    }
    // Loaded back from the files, so what is served is what the next start will find.
    let cert = ServerCertificate::from_pem_files(&cert_file, &key_file)?;
    Ok((cert, Kept::Made(cert_file)))
}

const CERT_FILE: &str = "self-signed-cert.pem";
const KEY_FILE: &str = "self-signed-key.pem";

/// `$XDG_STATE_HOME/bcs`, else `~/.local/state/bcs` (the XDG Base Directory Specification's place for
/// state that should persist between restarts; it ignores a relative XDG_STATE_HOME), and on macOS,
/// which has no such directory, `~/Library/Application Support/bcs`.
fn state_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = match xdg {
        Some(base) => base,
        None => {
            let home = PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?);
            if cfg!(target_os = "macos") {
                home.join("Library/Application Support")
            } else {
                home.join(".local/state")
            }
        }
    };
    Some(base.join("bcs"))
}

/// The stored certificate, or why it cannot serve: unreadable, key not matching, a name missing, expiring.
fn reuse(cert_file: &Path, key_file: &Path, names: &[String]) -> Result<ServerCertificate, String> {
    let cert = ServerCertificate::from_pem_files(cert_file, key_file)
        .map_err(|e| format!("cannot be loaded ({})", crate::chain(&e)))?;
    let pem = std::fs::read(cert_file).map_err(|e| format!("cannot be read ({e})"))?;
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(&pem).map_err(|e| format!("is not PEM ({e})"))?;
    let parsed = pem
        .parse_x509()
        .map_err(|e| format!("is not X.509 ({e})"))?;
    let left = parsed.validity().time_to_expiration();
    let lasting = match left {
        Some(left) => left.whole_seconds() >= RENEW_BEFORE.as_secs() as i64,
        None => false,
    };
    if !lasting {
        return Err("expires within a week".to_owned());
    }
    let sans: Vec<_> = match parsed.subject_alternative_name() {
        Ok(Some(san)) => san.value.general_names.clone(),
        _ => Vec::new(),
    };
    let covers = |name: &String| {
        sans.iter().any(|san| match (san, name.parse::<IpAddr>()) {
            (x509_parser::extensions::GeneralName::IPAddress(bytes), Ok(ip)) => match ip {
                IpAddr::V4(ip) => *bytes == ip.octets(),
                IpAddr::V6(ip) => *bytes == ip.octets(),
            },
            (x509_parser::extensions::GeneralName::DNSName(dns), Err(_)) => {
                dns.eq_ignore_ascii_case(name)
            }
            _ => false,
        })
    };
    if let Some(missing) = names.iter().find(|n| !covers(n)) {
        return Err(format!("does not name {missing}"));
    }
    Ok(cert)
}

/// Writes both files through temporary names and renames, so that a crash never leaves half a key: the
/// directory mode 0700, the key 0600 (SECURITY: it is the server's identity), the certificate 0644.
fn save(dir: &Path, cert: &[u8], key: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    for (name, bytes, mode) in [(KEY_FILE, key, 0o600), (CERT_FILE, cert, 0o644)] {
        let path = dir.join(name);
        let temp = dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&temp);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&temp)
            .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
            .and_then(|()| std::fs::rename(&temp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written?;
    }
    Ok(())
}
