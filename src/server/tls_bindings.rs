//! The original's Set/Get/RemoveSslCertificate, and our additions: certificates per SNI name, client
//! certificates, HTTP/2. Every change rebuilds the port's rustls configurations and swaps them in whole.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Server, ServerError};
use crate::change::Change;
use crate::tls::{CertificateInfo, ClientCertificates, PortTls, ServerCertificate};

impl Server {
    /// Binds the port's certificate (the original's SetSslCertificate), replacing any: new handshakes use it
    /// at once, connections in flight keep the old one. Clients that send no SNI, or a name with no
    /// certificate of its own, get this one.
    pub fn set_ssl_certificate(
        &self,
        port: u16,
        cert: ServerCertificate,
    ) -> Result<(), ServerError> {
        self.change_tls(port, |tls| tls.default = Some(cert))
    }

    /// The port's certificate (the original's GetSslCertificate).
    pub fn ssl_certificate(&self, port: u16) -> Option<CertificateInfo> {
        let state = self.state();
        let cert = state.tls.get(&port)?.default.as_ref()?;
        Some(cert.info().clone())
    }

    /// Removes the port's certificate (the original's RemoveSslCertificate); returns whether there was one.
    pub fn remove_ssl_certificate(&self, port: u16) -> Result<bool, ServerError> {
        if self
            .state()
            .tls
            .get(&port)
            .is_none_or(|t| t.default.is_none())
        {
            return Ok(false);
        }
        let mut had = false;
        self.change_tls(port, |tls| had = tls.default.take().is_some())?;
        Ok(had)
    }

    /// Binds a certificate for one host name on the port, chosen by SNI (case-insensitive).
    pub fn set_sni_certificate(
        &self,
        port: u16,
        host: &str,
        cert: ServerCertificate,
    ) -> Result<(), ServerError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.change_tls(port, |tls| {
            tls.by_name.insert(host, cert);
        })
    }

    /// The certificates bound to host names on the port, by name.
    pub fn sni_certificates(
        &self,
        port: u16,
    ) -> std::collections::BTreeMap<String, CertificateInfo> {
        let state = self.state();
        state.tls.get(&port).map_or_else(Default::default, |t| {
            t.by_name
                .iter()
                .map(|(name, c)| (name.clone(), c.info().clone()))
                .collect()
        })
    }

    /// Removes a host name's certificate; returns whether there was one.
    pub fn remove_sni_certificate(&self, port: u16, host: &str) -> Result<bool, ServerError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if !self
            .state()
            .tls
            .get(&port)
            .is_some_and(|t| t.by_name.contains_key(&host))
        {
            return Ok(false);
        }
        let mut had = false;
        self.change_tls(port, |tls| had = tls.by_name.remove(&host).is_some())?;
        Ok(had)
    }

    /// Sets whether and how clients on the port present certificates. Default is off.
    pub fn set_client_certificates(
        &self,
        port: u16,
        clients: ClientCertificates,
    ) -> Result<(), ServerError> {
        self.change_tls(port, |tls| tls.clients = clients)
    }

    /// Whether the port offers HTTP/2 through ALPN. Default is on; ports whose groups authenticate the
    /// connection itself (NTLM, Negotiate) need HTTP/1.1 only.
    pub fn set_http2(&self, port: u16, enabled: bool) -> Result<(), ServerError> {
        self.change_tls(port, |tls| tls.http2 = enabled)
    }

    /// Applies a change to a port's TLS settings, rebuilds its rustls configuration and publishes it; on
    /// error nothing changes.
    fn change_tls(&self, port: u16, change: impl FnOnce(&mut PortTls)) -> Result<(), ServerError> {
        self.shared.events.record(
            || {
                let mut state = self.state();
                if state.ports.get(&port).is_some_and(|p| !p.is_tls()) {
                    return Err(ServerError::NotHttps(port));
                }
                let mut tls = state.tls.get(&port).cloned().unwrap_or_default();
                change(&mut tls);
                let config = tls.build()?;
                state.tls.insert(port, tls);
                let mut configs = HashMap::clone(&self.shared.site.tls.load());
                configs.insert(port, config);
                self.shared.site.tls.store(Arc::new(configs));
                Ok(())
            },
            |()| Some(Change::TlsChanged(port)),
        )
    }
}
