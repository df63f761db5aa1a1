//! Where a server certificate comes from, kept with the certificate so that a server's configuration can
//! be read back and applied again.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Where a server certificate and its key come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum CertificateSource {
    /// A PEM chain file and a PEM private-key file.
    PemFiles {
        /// The chain, end-entity first.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// A PKCS#12 (`.pfx`) file and its password.
    Pkcs12File {
        /// The file.
        file: PathBuf,
        /// Its password.
        password: SecretText,
    },
    /// The chain and key themselves, as PEM text (what a self-signed certificate is).
    Pem {
        /// The chain, end-entity first.
        cert: String,
        /// The private key.
        key: SecretText,
    },
}

impl CertificateSource {
    /// The same source without its secrets: a PKCS#12 password and a PEM private key become empty text
    /// (files named by path are left as they are: their contents are not in the value).
    pub fn without_secrets(&self) -> CertificateSource {
        match self {
            CertificateSource::PemFiles { .. } => self.clone(),
            CertificateSource::Pkcs12File { file, .. } => CertificateSource::Pkcs12File {
                file: file.clone(),
                password: SecretText::new(""),
            },
            CertificateSource::Pem { cert, .. } => CertificateSource::Pem {
                cert: cert.clone(),
                key: SecretText::new(""),
            },
        }
    }
}

/// Text that is a secret (a password, a private key): zeroized on drop, redacted in `Debug`; serialised as
/// itself, since a stored configuration must be able to load it again (SECURITY: so keep such stores
/// private, as the principals file).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(Zeroizing<String>);

impl SecretText {
    /// Wraps a secret.
    pub fn new(text: impl Into<String>) -> Self {
        SecretText(Zeroizing::new(text.into()))
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_debug_output() {
        let source = CertificateSource::Pem {
            cert: "CERT".into(),
            key: SecretText::new("-----BEGIN PRIVATE KEY-----hunter2"),
        };
        assert!(!format!("{source:?}").contains("hunter2"));
        let json = serde_json::to_string(&source).unwrap();
        let back: CertificateSource = serde_json::from_str(&json).unwrap();
        assert_eq!(back, source);
    }
}
