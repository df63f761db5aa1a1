//! Checking a transferred file against the server's `Repr-Digest` (RFC 9530).
//!
//! When the answer that confirmed the version downloaded (the last HEAD), or the GET that brought its
//! last bytes (some servers send the field only there), carries a `sha-256` member, the temporary is
//! hashed once it is complete and compared. A mismatch empties the temporary and forgets the file's
//! validators, so that nothing known to be wrong is kept; for a file fetched whole it is fatal (ERROR,
//! server response, `digest_mismatch`: the bytes are not what the server says it serves), while `fetch`
//! starts a resumed file over from zero (the bytes held were of another version). Other algorithms are ignored; no digest
//! at all is no error (most servers send none).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use base64::Engine;
use http::header::{HeaderMap, HeaderName};

use super::failure::{Failure, Report};
use crate::jobs::job::{ErrorContext, JobFailure, JobFile};

/// The code of a mismatch.
pub(crate) const MISMATCH: &str = "digest_mismatch";
/// `Repr-Digest` (RFC 9530 §2).
const REPR_DIGEST: HeaderName = HeaderName::from_static("repr-digest");
const CHUNK: usize = 256 * 1024;

/// The `sha-256` member of the answer's Repr-Digest, if it has a well-formed one.
pub(crate) fn expected(headers: &HeaderMap) -> Option<[u8; 32]> {
    headers
        .get_all(REPR_DIGEST)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(sha256_member)
}

/// One dictionary member (RFC 8941 §3.2), `sha-256=:BASE64:` with optional parameters after `;`.
fn sha256_member(member: &str) -> Option<[u8; 32]> {
    let (key, value) = member.trim().split_once('=')?;
    if key != "sha-256" {
        return None;
    }
    let value = value.split(';').next()?.trim();
    let b64 = value.strip_prefix(':')?.strip_suffix(':')?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    bytes.try_into().ok()
}

/// Compares the complete temporary with `sum`; on a mismatch empties it, resets `file` and reports it.
pub(crate) async fn check(
    disk: &File,
    part: &Path,
    sum: [u8; 32],
    file: &mut JobFile,
    report: Report<'_>,
) -> Result<(), Failure> {
    let local = |e: &io::Error| {
        failure(
            ErrorContext::LocalFile,
            "local_io",
            format!("cannot read {}: {e}", part.display()),
        )
    };
    let copy = disk.try_clone().map_err(|e| local(&e))?;
    let got = tokio::task::spawn_blocking(move || sha256_of(&copy))
        .await
        .map_err(|e| local(&io::Error::other(e)))?
        .map_err(|e| local(&e))?;
    if got == sum {
        return Ok(());
    }
    disk.set_len(0).map_err(|e| local(&e))?;
    file.validators = None;
    file.bytes_transferred = 0;
    file.completed = false;
    report(file);
    Err(failure(
        ErrorContext::ServerResponse,
        MISMATCH,
        format!(
            "the bytes received do not match the server's Repr-Digest ({} expected, {} received)",
            hex(&sum),
            hex(&got)
        ),
    ))
}

fn sha256_of(file: &File) -> io::Result<[u8; 32]> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    loop {
        let n = file.read_at(&mut buf, at)?;
        if n == 0 {
            break;
        }
        context.update(&buf[..n]);
        at += n as u64;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn failure(context: ErrorContext, code: &str, message: String) -> Failure {
    Failure {
        transient: false,
        retry_after: None,
        error: JobFailure {
            context,
            code: code.to_owned(),
            message,
            file: None,
            http_status: None,
            auth_schemes: Vec::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const ABC: &str = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0=";

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(REPR_DIGEST, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn the_sha256_member_is_found_among_others() {
        let abc = sha256_member(&format!("sha-256=:{ABC}:"));
        assert!(abc.is_some());
        assert_eq!(expected(&with(&format!("sha-256=:{ABC}:"))), abc);
        assert_eq!(
            expected(&with(&format!("sha-512=:AAAA:, sha-256=:{ABC}:;p=1"))),
            abc
        );
        for bad in [
            "sha-512=:AAAA:",
            "sha-256=AAAA",
            "sha-256=:AAAA:",
            "sha-256=:not base64!:",
            "",
        ] {
            assert_eq!(expected(&with(bad)), None, "{bad:?}");
        }
        assert_eq!(expected(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn a_mismatch_empties_the_temporary_and_forgets_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join(".f.bcs-part");
        std::fs::write(&part, b"abc").unwrap();
        let disk = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&part)
            .unwrap();
        let sum = sha256_member(&format!("sha-256=:{ABC}:")).unwrap();
        let mut file = JobFile::new("http://h/f", dir.path().join("f"));
        file.bytes_transferred = 3;
        let mut reports = 0;
        let mut report = |_: &JobFile| reports += 1;
        check(&disk, &part, sum, &mut file, &mut report)
            .await
            .unwrap();
        let mut wrong = sum;
        wrong[0] ^= 1;
        let e = check(&disk, &part, wrong, &mut file, &mut report)
            .await
            .unwrap_err();
        assert_eq!(
            (e.error.code.as_str(), e.transient),
            ("digest_mismatch", false)
        );
        assert_eq!(e.error.context, ErrorContext::ServerResponse);
        assert_eq!(std::fs::metadata(&part).unwrap().len(), 0);
        assert_eq!((file.bytes_transferred, reports), (0, 1));
    }
}
