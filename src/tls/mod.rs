//! TLS for https URL groups: the certificate bound to each port (the original's Set/Get/RemoveSslCertificate),
//! extra certificates per host name chosen by SNI, hot replacement, and client certificates.
//!
//! Invariant: a port's rustls `ServerConfig` is rebuilt from its `PortTls` whenever anything in it changes
//! and swapped in whole; a handshake takes the config current when it starts, so a replaced certificate is
//! seen by the next handshake while connections in flight keep theirs. Only TLS 1.2 and 1.3 are offered.

mod certificate;
mod certificate_source;
mod client_certs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub(crate) use certificate::provider;
pub use certificate::{CertificateInfo, ServerCertificate};
pub use certificate_source::{CertificateSource, SecretText};
pub use client_certs::{ClientCertMode, ClientCertificates, ClientIdentity, UnknownMode};

/// Why a certificate, key or CA bundle could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file cannot be read.
    #[error("cannot read {path:?}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file has no certificate.
    #[error("{path:?} holds no certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The CA bundle has no certificate.
    #[error("the CA file {path:?} holds no certificate")]
    NoCaCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The file has no private key.
    #[error("{path:?} holds no private key")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The PEM is malformed or holds something else.
    #[error("cannot use {path:?}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key is not one rustls can sign with.
    #[error("unusable private key in {path:?}")]
    Key {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The key does not belong to the certificate.
    #[error("the private key in {key:?} does not match the certificate in {cert:?}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The PKCS#12 file cannot be opened (often: a wrong password).
    #[error("cannot open the PKCS#12 file {path:?} (wrong password?): {reason}")]
    Pkcs12 {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// A self-signed certificate could not be made.
    #[error("cannot make a self-signed certificate")]
    SelfSigned(#[source] rcgen::Error),
    /// The client-certificate verifier could not be built.
    #[error("cannot check client certificates: {0}")]
    Verifier(String),
    /// The TLS configuration could not be built.
    #[error("cannot configure TLS")]
    Config(#[source] rustls::Error),
}

/// Everything TLS on one port: its certificates, client-certificate policy and protocols.
#[derive(Debug, Clone)]
pub(crate) struct PortTls {
    pub(crate) default: Option<ServerCertificate>,
    pub(crate) by_name: HashMap<String, ServerCertificate>,
    pub(crate) clients: ClientCertificates,
    /// Offer h2 in ALPN; off on ports whose groups authenticate the connection (NTLM, Negotiate).
    pub(crate) http2: bool,
}

impl Default for PortTls {
    fn default() -> Self {
        PortTls {
            default: None,
            by_name: HashMap::new(),
            clients: ClientCertificates::off(),
            http2: true,
        }
    }
}

impl PortTls {
    /// The rustls configurations for this port: one offering h2 (when allowed) and one offering only
    /// HTTP/1.1, for when a group on the port authenticates connections.
    pub(crate) fn build(&self) -> Result<PortConfigs, TlsError> {
        let h1 = self.build_with(false)?;
        let h2 = if self.http2 {
            self.build_with(true)?
        } else {
            h1.clone()
        };
        Ok(PortConfigs { h2, h1 })
    }

    fn build_with(&self, http2: bool) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let resolver = SniResolver {
            default: self.default.as_ref().map(|c| c.key.clone()),
            by_name: self
                .by_name
                .iter()
                .map(|(name, cert)| (name.clone(), cert.key.clone()))
                .collect(),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(certificate::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(self.clients.verifier()?)
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = if http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        // Resumption matters more than cipher speed for many short connections (measured with
        // benches/compare_nginx.sh).
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Config)?;
        Ok(Arc::new(config))
    }
}

/// A port's two rustls configurations (see [`PortTls::build`]).
#[derive(Debug, Clone)]
pub(crate) struct PortConfigs {
    pub(crate) h2: Arc<rustls::ServerConfig>,
    pub(crate) h1: Arc<rustls::ServerConfig>,
}

/// Picks the certificate for the SNI name, else the port's default.
#[derive(Debug)]
struct SniResolver {
    default: Option<Arc<CertifiedKey>>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()))
            .or(self.default.as_ref())
            .cloned()
    }
}
