//! `/v1/certificates`: certificate bindings per https port and per SNI name (the original's
//! Set/Get/RemoveSslCertificate). What is returned names the certificate and where it came from, never a
//! key or a password.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{blocking, Body, Param, Who};
use super::fields::{self, NAME, PATH, SECRET};
use crate::config::TlsBinding;
use crate::service::error::{ErrorBody, MgmtError};
use crate::service::managed::Managed;
use crate::tls::{CertificateInfo, CertificateSource, SecretText};

/// One https port's TLS settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Binding {
    /// The port.
    pub port: u16,
    /// The certificate for clients that send no SNI name, or one without its own.
    pub certificate: Option<Certificate>,
    /// Certificates by SNI host name.
    pub sni: BTreeMap<String, Certificate>,
    /// Client certificates, when the port asks for them.
    pub client_certificates: Option<ClientCertificatesView>,
    /// HTTP/2 is offered through ALPN.
    pub http2: bool,
}

/// A bound certificate.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Certificate {
    /// The subject.
    pub subject: String,
    /// SHA-1 of the certificate, uppercase hex: the thumbprint the original took.
    pub sha1: String,
    /// SHA-256 of the certificate, colon-separated hex.
    pub sha256: String,
    /// The end of its validity.
    pub not_after: String,
    /// Where it was loaded from.
    pub source: Source,
}

/// Where a certificate comes from: `pem_files` (`cert` and `key`) or `pkcs12_file` (`file`, and
/// `password` when setting one). Passwords are never returned.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// `pem_files` or `pkcs12_file`.
    pub kind: String,
    /// The PEM chain file (`pem_files`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// The PEM key file (`pem_files`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The PKCS#12 file (`pkcs12_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The PKCS#12 file's password (`pkcs12_file`; only when setting). A secret: `Debug` redacts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub password: Option<SecretText>,
}

/// Client-certificate settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ClientCertificatesView {
    /// `optional` or `required`.
    pub mode: String,
    /// The CA file.
    pub ca: String,
    /// CRL files.
    pub crls: Vec<String>,
}

/// A certificate to bind.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetCertificate {
    /// Where to load it from (files on the server, absolute paths).
    pub source: Source,
}

fn source_view(source: &CertificateSource) -> Source {
    let path = |p: &std::path::Path| Some(p.to_string_lossy().into_owned());
    let empty = Source {
        kind: String::new(),
        cert: None,
        key: None,
        file: None,
        password: None,
    };
    match source {
        CertificateSource::PemFiles { cert, key } => Source {
            kind: "pem_files".into(),
            cert: path(cert),
            key: path(key),
            ..empty
        },
        CertificateSource::Pkcs12File { file, .. } => Source {
            kind: "pkcs12_file".into(),
            file: path(file),
            ..empty
        },
        _ => Source {
            kind: "pem".into(),
            ..empty
        },
    }
}

impl TryFrom<Source> for CertificateSource {
    type Error = MgmtError;

    fn try_from(s: Source) -> Result<Self, MgmtError> {
        let invalid = |message: &str| MgmtError::Invalid {
            code: "invalid_certificate_source",
            message: message.into(),
        };
        fields::printable("source.kind", &s.kind, NAME)?;
        for (field, path) in [
            ("source.cert", &s.cert),
            ("source.key", &s.key),
            ("source.file", &s.file),
        ] {
            if let Some(path) = path {
                fields::printable(field, path, PATH)?;
            }
        }
        if let Some(password) = &s.password {
            fields::bounded("source.password", password.expose(), SECRET)?;
        }
        let absolute = |p: Option<String>, what: &str| {
            let p = p.ok_or_else(|| invalid(&format!("{} needs {what}", s.kind)))?;
            let path = std::path::PathBuf::from(p);
            match path.is_absolute() {
                true => Ok(path),
                false => Err(invalid(&format!("{what} must be an absolute path"))),
            }
        };
        match s.kind.as_str() {
            "pem_files" => Ok(CertificateSource::PemFiles {
                cert: absolute(s.cert.clone(), "cert")?,
                key: absolute(s.key.clone(), "key")?,
            }),
            "pkcs12_file" => Ok(CertificateSource::Pkcs12File {
                file: absolute(s.file.clone(), "file")?,
                password: s.password.clone().unwrap_or_else(|| SecretText::new("")),
            }),
            _ => Err(invalid("kind must be pem_files or pkcs12_file")),
        }
    }
}

fn certificate(info: &CertificateInfo, source: &CertificateSource) -> Certificate {
    Certificate {
        subject: info.subject.clone(),
        sha1: info.sha1_thumbprint.clone(),
        sha256: info.sha256_fingerprint.clone(),
        not_after: info.not_after.clone(),
        source: source_view(source),
    }
}

fn binding(m: &Managed, b: &TlsBinding) -> Binding {
    let server = m.server();
    let default = server.ssl_certificate(b.port);
    let by_name = server.sni_certificates(b.port);
    Binding {
        port: b.port,
        certificate: default
            .as_ref()
            .zip(b.certificate.as_ref())
            .map(|(info, source)| certificate(info, source)),
        sni: b
            .sni
            .iter()
            .filter_map(|(name, source)| {
                let info = by_name.get(name)?;
                Some((name.clone(), certificate(info, source)))
            })
            .collect(),
        client_certificates: b
            .client_certificates
            .as_ref()
            .map(|c| ClientCertificatesView {
                mode: c.mode.to_string(),
                ca: c.ca.to_string_lossy().into_owned(),
                crls: c
                    .crls
                    .iter()
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect(),
            }),
        http2: b.http2,
    }
}

/// Every port's TLS settings.
#[utoipa::path(get, operation_id = "list_certificates", path = "/v1/certificates", tag = "certificates",
    responses((status = 200, body = Vec<Binding>)))]
pub(crate) async fn list(State(m): State<Arc<Managed>>) -> Json<Vec<Binding>> {
    Json(m.tls_bindings().iter().map(|b| binding(&m, b)).collect())
}

/// One port's TLS settings (GetSslCertificate).
#[utoipa::path(get, operation_id = "show_certificate", path = "/v1/certificates/{port}", tag = "certificates",
    params(("port" = u16, Path, description = "The https port")),
    responses((status = 200, body = Binding), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(m): State<Arc<Managed>>,
    Param(port): Param<u16>,
) -> Result<Json<Binding>, MgmtError> {
    Ok(Json(binding(&m, &m.tls_binding(port)?)))
}

/// Binds the port's certificate (SetSslCertificate); new handshakes use it at once.
#[utoipa::path(put, operation_id = "set_certificate", path = "/v1/certificates/{port}", tag = "certificates", request_body = SetCertificate,
    params(("port" = u16, Path, description = "The https port")),
    responses((status = 200, body = Binding), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn set(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param(port): Param<u16>,
    Body(body): Body<SetCertificate>,
) -> Result<Json<Binding>, MgmtError> {
    let source = CertificateSource::try_from(body.source)?;
    let b = blocking(&m, move |m| m.set_certificate(&who, port, None, &source)).await?;
    Ok(Json(binding(&m, &b)))
}

/// Removes the port's certificate (RemoveSslCertificate).
#[utoipa::path(delete, operation_id = "remove_certificate", path = "/v1/certificates/{port}", tag = "certificates",
    params(("port" = u16, Path, description = "The https port")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn remove(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param(port): Param<u16>,
) -> Result<StatusCode, MgmtError> {
    blocking(&m, move |m| m.remove_certificate(&who, port, None)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Binds a certificate for one SNI host name on the port.
#[utoipa::path(put, operation_id = "set_sni_certificate", path = "/v1/certificates/{port}/sni/{name}", tag = "certificates", request_body = SetCertificate,
    params(("port" = u16, Path, description = "The https port"), ("name" = String, Path, description = "The host name")),
    responses((status = 200, body = Binding), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn set_sni(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param((port, name)): Param<(u16, String)>,
    Body(body): Body<SetCertificate>,
) -> Result<Json<Binding>, MgmtError> {
    fields::printable("name", &name, NAME)?;
    let source = CertificateSource::try_from(body.source)?;
    let b = blocking(&m, move |m| {
        m.set_certificate(&who, port, Some(&name), &source)
    })
    .await?;
    Ok(Json(binding(&m, &b)))
}

/// Removes one SNI host name's certificate.
#[utoipa::path(delete, operation_id = "remove_sni_certificate", path = "/v1/certificates/{port}/sni/{name}", tag = "certificates",
    params(("port" = u16, Path, description = "The https port"), ("name" = String, Path, description = "The host name")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn remove_sni(
    State(m): State<Arc<Managed>>,
    Who(who): Who,
    Param((port, name)): Param<(u16, String)>,
) -> Result<StatusCode, MgmtError> {
    blocking(&m, move |m| m.remove_certificate(&who, port, Some(&name))).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    // SECURITY: a set-certificate body may be logged or printed with `{:?}` (an error, a trace); the
    // PKCS#12 password it carries must not appear there, while the JSON still carries it to the server.
    #[test]
    fn a_pkcs12_password_is_redacted_in_debug_but_sent() {
        let body = r#"{"kind":"pkcs12_file","file":"/a.pfx","password":"hunter2"}"#;
        let source: Source = serde_json::from_str(body).unwrap();
        assert!(!format!("{source:?}").contains("hunter2"));
        assert!(serde_json::to_string(&source).unwrap().contains("hunter2"));
        match CertificateSource::try_from(source).unwrap() {
            CertificateSource::Pkcs12File { password, .. } => {
                assert_eq!(password.expose(), "hunter2")
            }
            other => panic!("not a PKCS#12 source: {other:?}"),
        }
    }
}
