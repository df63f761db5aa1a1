//! The HTTP client side, for download jobs: one kept-alive HTTP/1.1 connection per transfer, over TCP or
//! TLS, directly or through an HTTP proxy (CONNECT for https, absolute-form for http), with Basic or NTLM
//! credentials, or Negotiate (Kerberos) ones with the `negotiate` feature.
//!
//! | module | owns |
//! |---|---|
//! | `tls` | [`TlsSettings`], [`SpkiPin`]: roots (system, CA file), pins, client certificates; the verifier |
//! | `proxy` | [`ProxySetting`]: PRECONFIG (environment), OVERRIDE, NO_PROXY; no_proxy matching (sans-IO) |
//! | `credentials` | [`Credentials`], [`CredentialScheme`]: secrets kept in memory only |
//! | `ntlm` | [`NtlmInitiator`]: NEGOTIATE, then AUTHENTICATE (NTLMv2, MIC) for a CHALLENGE (sans-IO) |
//! | `negotiate` | the Negotiate initiator: SPNEGO/Kerberos through GSS-API (`negotiate` feature) |
//! | `connection` | the connection a transfer reuses: connect, tunnel, handshake, authenticate, send |
//! | `peer_guard` | [`PeerGuard`]: which addresses a restricted job's connections may be made to |

mod credentials;
mod negotiate_initiator;
mod ntlm_initiator;
mod peer_guard;
mod proxy;
mod transport;
mod trust;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use credentials::{CredentialScheme, Credentials};
pub use ntlm_initiator::Initiator as NtlmInitiator;
pub use peer_guard::PeerGuard;
pub use proxy::ProxySetting;
pub(crate) use transport::Client;
pub use trust::{SpkiPin, TlsSettings};

/// How a job reaches its servers: TLS trust, proxy usage and credentials. Serialized without the password.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSettings {
    /// TLS trust and client certificate. Default is the system's roots, no client certificate.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Proxy usage. Default is PRECONFIG (the environment).
    #[serde(default)]
    pub proxy: ProxySetting,
    /// Credentials. Default is none (a 401 is then an ERROR).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
}

impl ClientSettings {
    /// Whether this build can use these settings: Negotiate credentials need the `negotiate` feature
    /// ([`ClientError::NegotiateUnavailable`] otherwise; never a silent fallback to no credentials).
    pub fn check(&self) -> Result<(), ClientError> {
        let scheme = self.credentials.as_ref().map(|c| c.scheme);
        if scheme == Some(CredentialScheme::Negotiate) && !negotiate_initiator::AVAILABLE {
            return Err(ClientError::NegotiateUnavailable);
        }
        // A proxy that cannot be used (one with `user:pass@`, whose password would be kept and shown in
        // the clear) is refused when the job is made, not at its first transfer.
        if let ProxySetting::Override { proxy, .. } = &self.proxy {
            proxy::Endpoint::parse(proxy)?;
        }
        Ok(())
    }
}

/// Why the client could not get an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A pin that is not `sha256//BASE64` of 32 bytes.
    #[error("invalid public key pin {input:?}: {reason}")]
    Pin {
        /// The text given.
        input: String,
        /// Why.
        reason: String,
    },
    /// A proxy that cannot be used.
    #[error("invalid proxy {input:?}: {reason}")]
    Proxy {
        /// The text given.
        input: String,
        /// Why.
        reason: String,
    },
    /// A CA file that cannot be read or holds no usable certificate.
    #[error("cannot use the CA file {path:?}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A client certificate or key that cannot be read or used.
    #[error("cannot use the client certificate {path:?}: {reason}")]
    ClientCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The TCP connection could not be made.
    #[error("cannot connect to {host}:{port}")]
    Connect {
        /// The host (the proxy's when there is one).
        host: String,
        /// The port.
        port: u16,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A phase took too long.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The TLS handshake failed: an untrusted or unpinned certificate, a refused client certificate.
    #[error("the TLS handshake failed")]
    Tls(#[source] rustls::Error),
    /// The connection broke.
    #[error("the connection was lost")]
    Lost(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The proxy refused the CONNECT tunnel, or answered it with nonsense (status 0).
    #[error("the proxy refused the tunnel (status {0})")]
    ProxyRefused(u16),
    /// Basic credentials would travel in the clear.
    #[error("Basic credentials are only sent over https")]
    BasicOverHttp,
    /// Credentials without their password (read back from a job store).
    #[error("the job's credentials have no password: set them again")]
    NoPassword,
    /// Negotiate (Kerberos) failed on our side: no ticket, no KDC, or a server whose mutual
    /// authentication did not verify.
    #[error("Negotiate failed: {0}")]
    Negotiate(String),
    /// Negotiate credentials in a build without GSS-API.
    #[error("Negotiate (Kerberos) credentials need GSS-API: this bcs was built without the negotiate feature")]
    NegotiateUnavailable,
    /// The server's NTLM challenge is malformed, or the answer would not fit NTLM's fields (a user
    /// name over 32767 characters).
    #[error("cannot answer the server's NTLM challenge")]
    Ntlm(#[source] crate::auth::ntlm::messages::MessageError),
    /// A request that cannot be built (a header value with control characters).
    #[error("cannot build the request")]
    Request(#[source] http::Error),
    /// The job's [`PeerGuard`] refused an address the server's (or the proxy's) name resolved to.
    ///
    /// SECURITY: the message says no more (not the host, the port or the address), so that a refusal
    /// tells nothing about what is listening there.
    #[error("refused by policy")]
    RefusedByPolicy,
}

impl ClientError {
    /// Whether trying again later may help (BITS's TRANSIENT_ERROR) rather than not (ERROR).
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect { .. } | ClientError::Timeout(_) => true,
            ClientError::Lost(e) => tls_cause(e.as_ref()).is_none(),
            ClientError::ProxyRefused(status) => *status >= 500 || *status == 0,
            _ => false,
        }
    }

    /// A stable name for GetError.
    pub fn code(&self) -> &'static str {
        match self {
            ClientError::Pin { .. } | ClientError::Proxy { .. } => "invalid_setting",
            ClientError::CaFile { .. } => "ca_file",
            ClientError::ClientCertificate { .. } => "client_certificate",
            ClientError::Connect { source, .. } => match source.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection_refused",
                std::io::ErrorKind::TimedOut => "timeout",
                _ => "connect_failed",
            },
            ClientError::Timeout(_) => "timeout",
            ClientError::Tls(_) => "tls_handshake",
            ClientError::Lost(e) if tls_cause(e.as_ref()).is_some() => "tls_handshake",
            ClientError::Lost(_) => "connection_lost",
            ClientError::ProxyRefused(_) => "proxy_refused",
            ClientError::BasicOverHttp => "basic_over_http",
            ClientError::NoPassword => "credentials_missing",
            ClientError::Ntlm(_) => "ntlm_challenge",
            ClientError::Negotiate(_) => "negotiate_failed",
            ClientError::NegotiateUnavailable => "negotiate_unavailable",
            ClientError::Request(_) => "invalid_request",
            ClientError::RefusedByPolicy => "refused_by_policy",
        }
    }

    /// The message with its causes, for GetError (never holds a credential).
    pub fn describe(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        text
    }
}

/// The rustls error somewhere in a chain of causes (a TLS alert after the handshake, seen by hyper).
fn tls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        // An io::Error's source() skips the error it wraps: look at that one first.
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        cause = wrapped.or_else(|| e.source());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Negotiate credentials are usable per job where GSS-API is built in, and a clear error where it is
    /// not: never a job that silently runs without credentials.
    #[tokio::test]
    async fn negotiate_credentials_need_the_feature() {
        use crate::jobs::{JobManager, NewJob};
        let settings = ClientSettings {
            credentials: Some(Credentials::negotiate()),
            ..ClientSettings::default()
        };
        let m = JobManager::builder().start().await.unwrap();
        let new = NewJob::new("n").suspended(true).client(settings.clone());
        let created = m.create_job(new).await;
        if cfg!(feature = "negotiate") {
            settings.check().unwrap();
            assert!(Client::new(&settings).is_ok());
            assert!(created.is_ok());
        } else {
            let err = settings.check().unwrap_err();
            assert!(matches!(err, ClientError::NegotiateUnavailable));
            assert_eq!(err.code(), "negotiate_unavailable");
            assert!(!err.is_transient());
            assert!(err
                .to_string()
                .contains("built without the negotiate feature"));
            assert!(matches!(
                Client::new(&settings),
                Err(ClientError::NegotiateUnavailable)
            ));
            let err = created.unwrap_err().to_string();
            assert!(err.contains("built without the negotiate feature"), "{err}");
        }
        m.shutdown().await;
    }
}
