//! Whom the client trusts over TLS: the system's roots, a CA file, a pin of the server's public key, or a CA
//! and a pin together; and the client certificate it shows.
//!
//! SECURITY: the threat is a man in the middle. With a pin (`sha256//BASE64` of the SubjectPublicKeyInfo,
//! what `bcs host` prints), only a certificate whose key hashes to one of the pins is accepted — whatever
//! its chain or names, since `bcs host` certificates are self-signed — and rustls still checks the
//! handshake signature against that key, so a server must hold the private key to pass. With a CA file,
//! only chains to that CA (with the name checked) are accepted, and the system roots are not consulted.
//! With both, both must hold.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine as _;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::{Deserialize, Serialize};

use super::ClientError;

/// Where the system keeps its CA bundle (Debian, Ubuntu, Alpine; Fedora and RHEL; SUSE; Alpine's and the
/// BSDs' `cert.pem`). `SSL_CERT_FILE` comes first when set.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// A pin of a server's public key: SHA-256 of its DER SubjectPublicKeyInfo, written `sha256//BASE64`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpkiPin([u8; 32]);

impl SpkiPin {
    /// The pin of a DER certificate's key.
    pub fn of_certificate(der: &[u8]) -> Option<SpkiPin> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.public_key().raw);
        Some(SpkiPin(digest.as_ref().try_into().ok()?))
    }
}

impl fmt::Display for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = base64::engine::general_purpose::STANDARD.encode(self.0);
        write!(f, "sha256//{text}")
    }
}

impl fmt::Debug for SpkiPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiPin({self})")
    }
}

impl FromStr for SpkiPin {
    type Err = ClientError;

    /// `sha256//` then the standard base64 of exactly 32 bytes (padding required, as curl prints it).
    fn from_str(s: &str) -> Result<SpkiPin, ClientError> {
        let bad = |reason: &str| ClientError::Pin {
            input: s.chars().take(80).collect(),
            reason: reason.to_owned(),
        };
        let text = s
            .strip_prefix("sha256//")
            .ok_or_else(|| bad("expected sha256//BASE64"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| bad("not base64"))?;
        let digest: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("not a SHA-256 digest (32 bytes)"))?;
        Ok(SpkiPin(digest))
    }
}

impl Serialize for SpkiPin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpkiPin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SpkiPin, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A job's TLS settings (paths, not contents: the files are read when a transfer starts).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSettings {
    /// A PEM file of CA certificates to trust instead of the system's. Default is none: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Public keys to accept (any one). Default is none. Without a CA file, a pinned key is accepted
    /// whatever its chain; with one, the chain must verify too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pins: Vec<SpkiPin>,
    /// A client certificate: a PEM chain (end-entity first) and its PEM private key. Default is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<(PathBuf, PathBuf)>,
}

impl TlsSettings {
    /// The system's CA bundle that is trusted when no CA file is given: `SSL_CERT_FILE` when set (as
    /// OpenSSL reads it), else the first of the usual places that exists.
    pub fn system_bundle() -> Option<PathBuf> {
        let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
        from_env
            .into_iter()
            .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
            .find(|p| p.is_file())
    }

    /// The rustls configuration: HTTP/1.1 only (NTLM needs a kept-alive connection, MS-NTHT).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, ClientError> {
        let provider = crate::tls::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(ClientError::Tls)?;
        let chain = match (&self.ca_file, self.pins.is_empty()) {
            (None, false) => None,
            (Some(path), _) => Some(verifier(roots_from(path)?, &provider)?),
            (None, true) => Some(verifier(system_roots()?, &provider)?),
        };
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Verifier {
                chain,
                pins: self.pins.clone(),
                provider,
            }));
        let mut config = match &self.client_certificate {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let (chain, key) = client_identity(cert, key)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    ClientError::ClientCertificate {
                        path: cert.clone(),
                        reason: e.to_string(),
                    }
                })?
            }
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn verifier(
    roots: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, ClientError> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| ClientError::CaFile {
            path: PathBuf::new(),
            reason: e.to_string(),
        })
}

fn roots_from(path: &Path) -> Result<RootCertStore, ClientError> {
    let bad = |reason: String| ClientError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificates in it".into()));
    }
    Ok(roots)
}

/// The system's roots: `SSL_CERT_FILE`, else the first bundle found (no crate needed for one file).
fn system_roots() -> Result<RootCertStore, ClientError> {
    let path = TlsSettings::system_bundle().ok_or_else(|| ClientError::CaFile {
        path: PathBuf::from(SYSTEM_BUNDLES[0]),
        reason: "no system CA bundle found".into(),
    })?;
    // A bundle may hold a certificate webpki cannot parse; skip it rather than distrust all the others.
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&path).map_err(|e| ClientError::CaFile {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    roots.add_parsable_certificates(certs.flatten());
    Ok(roots)
}

type Identity = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn client_identity(cert: &Path, key: &Path) -> Result<Identity, ClientError> {
    let bad = |path: &Path, reason: String| ClientError::ClientCertificate {
        path: path.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    Ok((chain, key))
}

/// The chain check (when there is one) and the pins (when there are some).
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    pins: Vec<SpkiPin>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(chain) = &self.chain {
            chain.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        }
        if !self.pins.is_empty() {
            let pin = SpkiPin::of_certificate(end_entity).ok_or(
                rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding),
            )?;
            if !self.pins.contains(&pin) {
                return Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_and_print_back() {
        let text = format!("sha256//{}", "A".repeat(43) + "=");
        let pin: SpkiPin = text.parse().unwrap();
        assert_eq!(pin.to_string(), text);
        let json = serde_json::to_string(&pin).unwrap();
        assert_eq!(serde_json::from_str::<SpkiPin>(&json).unwrap(), pin);
    }

    #[test]
    fn hostile_pins_are_refused() {
        for bad in [
            "",
            "sha256//",
            "sha1//AAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "sha256//AAAA",
            "sha256//!!!!",
            &format!("sha256//{}", "A".repeat(44)),
            &format!("SHA256//{}=", "A".repeat(43)),
            &format!("sha256//{}==", "A".repeat(42)),
        ] {
            assert!(bad.parse::<SpkiPin>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_pin_is_the_hash_of_the_certificates_key() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["h".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pin = SpkiPin::of_certificate(cert.der()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
        let expected = ring::digest::digest(&ring::digest::SHA256, parsed.public_key().raw);
        assert_eq!(pin.0, expected.as_ref());
        let other = rcgen::KeyPair::generate().unwrap();
        let cert2 = rcgen::CertificateParams::new(vec!["h".into()])
            .unwrap()
            .self_signed(&other)
            .unwrap();
        assert_ne!(SpkiPin::of_certificate(cert2.der()), Some(pin));
        assert!(SpkiPin::of_certificate(b"not a certificate").is_none());
    }
}
