//! Client certificates: the per-port policy (off, optional, required) against a trusted CA bundle and CRLs,
//! and the identity a verified certificate gives a request.
//!
//! SECURITY: the threat is a client presenting a certificate we should not believe (unknown CA, revoked,
//! expired, wrong usage). rustls's WebPKI verifier decides that during the handshake; an identity is only
//! ever built from a certificate that verifier accepted, and a client that fails it never gets a connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use x509_parser::extensions::GeneralName;

use super::certificate::{hex, pem_error, provider, read_chain};
use super::TlsError;

/// Whether a port asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientCertMode {
    /// Never asked.
    #[default]
    Off,
    /// Asked; a client without one still connects, a client with an untrusted one does not.
    Optional,
    /// Required: the handshake fails without a trusted certificate.
    Required,
}

impl std::fmt::Display for ClientCertMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientCertMode::Off => "off",
            ClientCertMode::Optional => "optional",
            ClientCertMode::Required => "required",
        })
    }
}

/// A client-certificate mode name that names none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected off, optional or required")]
pub struct UnknownMode(pub String);

impl std::str::FromStr for ClientCertMode {
    type Err = UnknownMode;

    fn from_str(s: &str) -> Result<Self, UnknownMode> {
        match s {
            "off" => Ok(ClientCertMode::Off),
            "optional" => Ok(ClientCertMode::Optional),
            "required" => Ok(ClientCertMode::Required),
            _ => Err(UnknownMode(s.to_owned())),
        }
    }
}

/// A port's client-certificate policy, loaded and checked once.
#[derive(Debug, Clone)]
pub struct ClientCertificates {
    mode: ClientCertMode,
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    /// The files they were loaded from, to read the configuration back.
    ca_file: Option<PathBuf>,
    crl_files: Vec<PathBuf>,
}

impl ClientCertificates {
    /// No client certificates.
    pub fn off() -> Self {
        ClientCertificates {
            mode: ClientCertMode::Off,
            roots: Arc::new(RootCertStore::empty()),
            crls: Vec::new(),
            ca_file: None,
            crl_files: Vec::new(),
        }
    }

    /// Client certificates checked against the CAs in `ca` (PEM), and the revocation lists in `crls` (PEM).
    pub fn from_pem_files(
        mode: ClientCertMode,
        ca: impl AsRef<Path>,
        crls: &[PathBuf],
    ) -> Result<Self, TlsError> {
        let ca = ca.as_ref();
        let mut roots = RootCertStore::empty();
        let certs = read_chain(ca).map_err(|e| match e {
            TlsError::NoCertificate { path } => TlsError::NoCaCertificate { path },
            other => other,
        })?;
        for cert in certs {
            roots.add(cert).map_err(|e| TlsError::Pem {
                path: ca.to_owned(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
        let mut lists = Vec::new();
        for path in crls {
            let data = super::certificate::read_file(path)?;
            let found = CertificateRevocationListDer::pem_slice_iter(&data)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_error(path, e))?;
            if found.is_empty() {
                return Err(TlsError::Pem {
                    path: path.clone(),
                    reason: "no certificate revocation list in it".into(),
                });
            }
            lists.extend(found);
        }
        let policy = ClientCertificates {
            mode,
            roots: Arc::new(roots),
            crls: lists,
            ca_file: Some(ca.to_owned()),
            crl_files: crls.to_vec(),
        };
        policy.verifier()?;
        Ok(policy)
    }

    /// The mode.
    pub fn mode(&self) -> ClientCertMode {
        self.mode
    }

    /// The CA file the certificates are checked against (none when off).
    pub fn ca_file(&self) -> Option<&Path> {
        self.ca_file.as_deref()
    }

    /// The revocation-list files.
    pub fn crl_files(&self) -> &[PathBuf] {
        &self.crl_files
    }

    pub(crate) fn verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        if self.mode == ClientCertMode::Off {
            return Ok(WebPkiClientVerifier::no_client_auth());
        }
        let builder = WebPkiClientVerifier::builder_with_provider(self.roots.clone(), provider())
            .with_crls(self.crls.clone());
        let builder = match self.mode {
            ClientCertMode::Optional => builder.allow_unauthenticated(),
            _ => builder,
        };
        builder
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))
    }
}

/// Who a verified client certificate says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientIdentity {
    /// The subject's common name.
    pub common_name: Option<String>,
    /// An e-mail address from the SAN, or the subject's emailAddress.
    pub email: Option<String>,
    /// The Microsoft User Principal Name (otherName SAN 1.3.6.1.4.1.311.20.2.3).
    pub upn: Option<String>,
    /// SHA-1 thumbprint of the certificate, uppercase hex.
    pub sha1_thumbprint: String,
}

impl ClientIdentity {
    /// The best name to show: UPN, then e-mail, then common name, then thumbprint.
    pub fn name(&self) -> &str {
        self.upn
            .as_deref()
            .or(self.email.as_deref())
            .or(self.common_name.as_deref())
            .unwrap_or(&self.sha1_thumbprint)
    }

    /// Reads the identity out of a certificate the handshake verified.
    pub(crate) fn of(cert: &CertificateDer<'_>) -> Option<Self> {
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let subject = parsed.subject();
        let first = |it: &mut dyn Iterator<
            Item = &x509_parser::x509::AttributeTypeAndValue<'_>,
        >| { it.next().and_then(|a| a.as_str().ok()).map(str::to_owned) };
        let mut identity = ClientIdentity {
            common_name: first(&mut subject.iter_common_name()),
            email: first(&mut subject.iter_email()),
            upn: None,
            sha1_thumbprint: hex(
                ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref())
                    .as_ref(),
                "",
            ),
        };
        if let Ok(Some(san)) = parsed.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::RFC822Name(email) if identity.email.is_none() => {
                        identity.email = Some((*email).to_owned());
                    }
                    GeneralName::OtherName(oid, value) if oid.to_id_string() == UPN_OID => {
                        identity.upn = identity.upn.or_else(|| utf8_string(value));
                    }
                    _ => {}
                }
            }
        }
        Some(identity)
    }
}

const UPN_OID: &str = "1.3.6.1.4.1.311.20.2.3";

/// The UTF8String inside an otherName value (`[0] EXPLICIT UTF8String`, or the bare string).
fn utf8_string(value: &[u8]) -> Option<String> {
    use x509_parser::der_parser::ber::BerObjectContent;
    let (_, obj) = x509_parser::der_parser::der::parse_der(value).ok()?;
    let inner = match &obj.content {
        BerObjectContent::Unknown(any) => {
            let (_, inner) = x509_parser::der_parser::der::parse_der(any.data).ok()?;
            inner
        }
        _ => obj,
    };
    match inner.content {
        BerObjectContent::UTF8String(s) => Some(s.to_owned()),
        _ => None,
    }
}
