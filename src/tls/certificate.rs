//! `ServerCertificate`: a certificate chain and its private key, loaded and checked once (PEM, PKCS#12, or
//! made self-signed), with the facts people use to recognise it (SHA-1 thumbprint as Windows shows it,
//! SHA-256 fingerprint, the SPKI pin curl takes).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use super::certificate_source::{CertificateSource, SecretText};
use super::TlsError;

/// A server certificate chain with its private key.
#[derive(Clone)]
pub struct ServerCertificate {
    pub(crate) key: Arc<CertifiedKey>,
    info: CertificateInfo,
    source: CertificateSource,
}

impl fmt::Debug for ServerCertificate {
    // SECURITY: the private key never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What identifies a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// The subject, e.g. `CN=files.example`.
    pub subject: String,
    /// SHA-1 of the DER certificate, uppercase hex: the thumbprint Windows shows and the original's
    /// SetSslCertificate took.
    pub sha1_thumbprint: String,
    /// SHA-256 of the DER certificate, colon-separated uppercase hex, as browsers show it.
    pub sha256_fingerprint: String,
    /// `sha256//BASE64` of the SubjectPublicKeyInfo: what `curl --pinnedpubkey` takes.
    pub spki_pin: String,
    /// The last moment the certificate is valid, as RFC 2822 text.
    pub not_after: String,
}

/// The one crypto provider of every TLS configuration the crate builds, server and client: *ring*.
///
/// rustls 0.23.48 deprecates *ring*'s provider because it offers no post-quantum key exchange; that
/// takes aws-lc-rs, a second C build (*ring* stays for rcgen and etcd-client's tonic). Measured on a
/// two-core VM with VAES and AVX-512: aws-lc-rs seals 16 KiB records twice as fast (16 against 8 GB/s
/// per core), but a 1 GiB HTTPS download costs the server the same CPU with either (558 against 562 ms
/// per GiB: the kernel's copies and TCP dominate), so *ring* is kept and its deprecation acknowledged
/// here, in one place.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    #[allow(deprecated)]
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerCertificate {
    /// Loads a PEM chain (end-entity first) and a PEM private key (PKCS#8, PKCS#1 or SEC1), and checks that
    /// the key belongs to the certificate.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let chain = read_chain(cert)?;
        let key_text = Zeroizing::new(read_file(key)?);
        let key_der = PrivateKeyDer::from_pem_slice(&key_text).map_err(|e| pem_error(key, e))?;
        let source = CertificateSource::PemFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
        };
        Self::from_parts(chain, key_der, cert, key, source)
    }

    /// A PEM chain (end-entity first) and PEM private key given as text.
    pub fn from_pem(cert: &str, key: &str) -> Result<Self, TlsError> {
        let inline = Path::new("<inline PEM>");
        let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(inline, e))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: inline.to_owned(),
            });
        }
        let key_der =
            PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| pem_error(inline, e))?;
        let source = CertificateSource::Pem {
            cert: cert.to_owned(),
            key: SecretText::new(key),
        };
        Self::from_parts(chain, key_der, inline, inline, source)
    }

    /// Loads the certificate a source names.
    pub fn from_source(source: &CertificateSource) -> Result<Self, TlsError> {
        match source {
            CertificateSource::PemFiles { cert, key } => Self::from_pem_files(cert, key),
            CertificateSource::Pkcs12File { file, password } => {
                Self::from_pkcs12_file(file, password.expose())
            }
            CertificateSource::Pem { cert, key } => Self::from_pem(cert, key.expose()),
        }
    }

    /// Where the certificate came from.
    pub fn source(&self) -> &CertificateSource {
        &self.source
    }

    /// Loads a PKCS#12 (`.pfx`) file: its first private key and that key's chain.
    pub fn from_pkcs12_file(path: impl AsRef<Path>, password: &str) -> Result<Self, TlsError> {
        let path = path.as_ref();
        let data = Zeroizing::new(read_file(path)?);
        let store = p12_keystore::KeyStore::from_pkcs12(&data, password, Default::default())
            .map_err(|e| TlsError::Pkcs12 {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
        let Some((_, chain)) = store.private_key_chain() else {
            return Err(TlsError::NoKey {
                path: path.to_owned(),
            });
        };
        let certs: Vec<CertificateDer<'static>> = chain
            .certs()
            .iter()
            .map(|c| CertificateDer::from(c.as_der().to_vec()))
            .collect();
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                path: path.to_owned(),
            });
        }
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(chain.key().as_der().to_vec()));
        let source = CertificateSource::Pkcs12File {
            file: path.to_owned(),
            password: SecretText::new(password),
        };
        Self::from_parts(certs, key, path, path, source)
    }

    /// A new self-signed certificate for these names: the first is the subject's common name, and all are
    /// subject alternative names (IP addresses as IP SANs). Valid from an hour ago (for clients whose clock
    /// is behind) for a year, as [`SELF_SIGNED_VALIDITY`](Self::SELF_SIGNED_VALIDITY) says.
    pub fn self_signed(names: &[String]) -> Result<Self, TlsError> {
        let (cert, key) = generate_self_signed(names)?;
        let here = Path::new("<self-signed>");
        let source = CertificateSource::Pem {
            cert: pem_block("CERTIFICATE", cert.as_ref()),
            key: SecretText::new(pem_block("PRIVATE KEY", &key)),
        };
        Self::from_parts(
            vec![cert],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
            here,
            here,
            source,
        )
    }

    /// The same certificate as [`self_signed`](Self::self_signed) makes, as PEM text of the certificate and
    /// of its PKCS#8 private key, for a caller that keeps it (and loads it again with
    /// [`from_pem_files`](Self::from_pem_files)) so that its fingerprint and pin outlive the process.
    pub fn self_signed_pem(names: &[String]) -> Result<(String, Zeroizing<String>), TlsError> {
        let (cert, key) = generate_self_signed(names)?;
        let key_pem = Zeroizing::new(pem_block("PRIVATE KEY", &key));
        Ok((pem_block("CERTIFICATE", cert.as_ref()), key_pem))
    }

    /// How long a self-signed certificate is valid: a year, so that one kept by its user can be trusted
    /// or pinned for a while, yet a forgotten one expires (CA/Browser Forum certificates last less).
    pub const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);

    fn from_parts(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        cert_path: &Path,
        key_path: &Path,
        source: CertificateSource,
    ) -> Result<Self, TlsError> {
        let info = CertificateInfo::of(&chain[0], cert_path)?;
        let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            },
            other => TlsError::Key {
                path: key_path.to_owned(),
                source: other,
            },
        })?;
        Ok(ServerCertificate {
            key: Arc::new(key),
            info,
            source,
        })
    }

    /// What identifies this certificate.
    pub fn info(&self) -> &CertificateInfo {
        &self.info
    }

    /// The chain as PEM (no key), for clients that need to trust a self-signed certificate.
    pub fn chain_pem(&self) -> String {
        self.key
            .cert
            .iter()
            .map(|c| pem_block("CERTIFICATE", c.as_ref()))
            .collect()
    }
}

/// A self-signed certificate and its PKCS#8 key (rcgen's default, ECDSA P-256) for `names`.
fn generate_self_signed(
    names: &[String],
) -> Result<(CertificateDer<'static>, Zeroizing<Vec<u8>>), TlsError> {
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(TlsError::SelfSigned)?;
    let mut subject = rcgen::DistinguishedName::new();
    if let Some(name) = names.first() {
        subject.push(rcgen::DnType::CommonName, name.as_str());
    }
    params.distinguished_name = subject;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(60 * 60);
    params.not_after = now + ServerCertificate::SELF_SIGNED_VALIDITY;
    let key = rcgen::KeyPair::generate().map_err(TlsError::SelfSigned)?;
    let cert = params.self_signed(&key).map_err(TlsError::SelfSigned)?;
    Ok((cert.der().clone(), Zeroizing::new(key.serialize_der())))
}

/// The most a certificate, key, CA, CRL or PKCS#12 file may hold: far more than any real one.
const MAX_FILE: u64 = 4 << 20;

/// A certificate, key, CA, CRL or PKCS#12 file's bytes.
///
/// SECURITY: these paths come from configuration, which the management API takes remotely: the file is
/// opened without blocking (a FIFO cannot stall the caller), must be a regular file (not a device such as
/// `/dev/zero`), and is read up to [`MAX_FILE`] bytes, so no path can exhaust memory or hang a change.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    if meta.len() > MAX_FILE {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE} bytes"),
        )));
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE + 1)
        .read_to_end(&mut data)
        .map_err(err)?;
    if data.len() as u64 > MAX_FILE {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE} bytes"),
        )));
    }
    Ok(data)
}

/// Every certificate in a PEM file; an empty file is an error naming it.
pub(crate) fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read_file(path)?;
    let chain = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

pub(crate) fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> TlsError {
    match e {
        rustls_pki_types::pem::Error::Io(source) => TlsError::Read {
            path: path.to_owned(),
            source,
        },
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_owned(),
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    }
}

impl CertificateInfo {
    fn of(cert: &CertificateDer<'_>, path: &Path) -> Result<Self, TlsError> {
        let (_, parsed) =
            x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| TlsError::Pem {
                path: path.to_owned(),
                reason: format!("not an X.509 certificate: {e}"),
            })?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref());
        let sha256 = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        let spki = ring::digest::digest(&ring::digest::SHA256, parsed.public_key().raw);
        Ok(CertificateInfo {
            subject: parsed.subject().to_string(),
            sha1_thumbprint: hex(sha1.as_ref(), ""),
            sha256_fingerprint: hex(sha256.as_ref(), ":"),
            spki_pin: format!("sha256//{}", base64(spki.as_ref())),
            not_after: parsed
                .validity()
                .not_after
                .to_rfc2822()
                .unwrap_or_else(|e| e),
        })
    }
}

pub(crate) fn hex(bytes: &[u8], separator: &str) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(separator)
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn pem_block(label: &str, der: &[u8]) -> String {
    // Zeroized, and the output sized up front so that it never reallocates: the DER may be a private key.
    let text = Zeroizing::new(base64(der));
    let mut out = String::with_capacity(text.len() + text.len() / 64 + 2 * label.len() + 40);
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for line in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_has_consistent_facts() {
        let cert =
            ServerCertificate::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let info = cert.info();
        assert_eq!(info.sha1_thumbprint.len(), 40);
        assert_eq!(info.sha256_fingerprint.len(), 32 * 3 - 1);
        assert!(info.spki_pin.starts_with("sha256//") && info.spki_pin.ends_with('='));
        assert!(cert
            .chain_pem()
            .starts_with("-----BEGIN CERTIFICATE-----\n"));
        // The PEM we print parses back to the same certificate.
        let parsed: Vec<_> = CertificateDer::pem_slice_iter(cert.chain_pem().as_bytes())
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(parsed, cert.key.cert);
    }

    #[test]
    fn self_signed_names_its_subject_and_lasts_a_year() {
        let names = ["buildbox".to_owned(), "127.0.0.1".to_owned()];
        let cert = ServerCertificate::self_signed(&names).unwrap();
        assert_eq!(cert.info().subject, "CN=buildbox");
        let der = &cert.key.cert[0];
        let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let validity = parsed.validity();
        let lasts = validity.not_after.timestamp() - validity.not_before.timestamp();
        let year = ServerCertificate::SELF_SIGNED_VALIDITY.as_secs() as i64;
        assert_eq!(lasts, year + 3600);
        let left = validity.time_to_expiration().unwrap().whole_seconds();
        assert!((year - 60..=year).contains(&left), "{left}");
    }

    #[test]
    fn self_signed_pem_loads_back_as_the_same_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_pem, key_pem) =
            ServerCertificate::self_signed_pem(&["localhost".into()]).unwrap();
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, &cert_pem).unwrap();
        std::fs::write(&key, key_pem.as_bytes()).unwrap();
        let loaded = ServerCertificate::from_pem_files(&cert, &key).unwrap();
        assert_eq!(loaded.chain_pem(), cert_pem);
        assert_eq!(loaded.info().subject, "CN=localhost");
    }
}
