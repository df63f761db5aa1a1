//! `bcs cert`: the service's TLS certificate per https port, and per SNI name on a port.

use std::path::PathBuf;

use bits_compact::service::{Binding, Certificate, SetCertificate, Source};
use bits_compact::tls::SecretText;
use clap::{Args, Subcommand};
use http::Method;
use zeroize::Zeroizing;

use super::connect::segment;
use super::{call, done, send, service_path, show, ApiArgs, ManageError, EXIT_CODES};
use crate::CliError;

#[derive(Subcommand)]
pub(crate) enum CertCommand {
    /// Bind a certificate to a port (or to one SNI name on it); the service reads the files.
    #[command(after_help = EXIT_CODES)]
    Set(SetArgs),
    /// Show the certificates of every port, or of one.
    #[command(after_help = EXIT_CODES)]
    Show(ShowArgs),
    /// Remove a port's binding, or one SNI name's certificate.
    #[command(after_help = EXIT_CODES)]
    Remove(RemoveArgs),
}

#[derive(Args)]
pub(crate) struct SetArgs {
    /// The https port.
    port: u16,
    /// The certificate chain (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "key",
        required_unless_present = "pkcs12"
    )]
    cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// A PKCS#12 file holding both; its password is BCS_PKCS12_PASSWORD, else asked on the terminal.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["cert", "key"])]
    pkcs12: Option<PathBuf>,
    /// Bind for clients that ask for this host name (SNI) only.
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub(crate) struct ShowArgs {
    /// Only this port.
    port: Option<u16>,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Args)]
pub(crate) struct RemoveArgs {
    /// The https port.
    port: u16,
    /// Remove only this SNI name's certificate.
    #[arg(long, value_name = "NAME")]
    sni: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

pub(crate) async fn run(command: CertCommand) -> Result<(), CliError> {
    match command {
        CertCommand::Set(args) => set(&args).await,
        CertCommand::Show(args) => {
            let path = match args.port {
                Some(port) => format!("/v1/certificates/{port}"),
                None => "/v1/certificates".to_owned(),
            };
            let answer = call(&args.api, Method::GET, &path, None).await?;
            show(&args.api, &answer, |bindings: Bindings| {
                let bindings = match bindings {
                    Bindings::Every(all) => all,
                    Bindings::One(one) => vec![*one],
                };
                if bindings.is_empty() {
                    note!("bcs: no certificates (bind one with `bcs cert set PORT --cert FILE --key FILE`)");
                }
                bindings.iter().for_each(print_binding)
            })?;
            Ok(())
        }
        CertCommand::Remove(args) => {
            let path = binding_path(args.port, args.sni.as_deref());
            call(&args.api, Method::DELETE, &path, None).await?;
            done(&args.api, || match &args.sni {
                Some(name) => {
                    note_safe!("bcs: removed port {}'s certificate for {name}", args.port)
                }
                None => note!("bcs: removed port {}'s certificates", args.port),
            });
            Ok(())
        }
    }
}

/// `GET /v1/certificates` answers every port's binding, `GET /v1/certificates/{port}` one.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum Bindings {
    Every(Vec<Binding>),
    One(Box<Binding>),
}

fn binding_path(port: u16, sni: Option<&str>) -> String {
    match sni {
        Some(name) => format!("/v1/certificates/{port}/sni/{}", segment(name)),
        None => format!("/v1/certificates/{port}"),
    }
}

async fn set(args: &SetArgs) -> Result<(), CliError> {
    let source = match (&args.cert, &args.key, &args.pkcs12) {
        (Some(cert), Some(key), _) => Source {
            kind: "pem_files".into(),
            cert: Some(service_path(cert)?),
            key: Some(service_path(key)?),
            file: None,
            password: None,
        },
        (_, _, Some(file)) => Source {
            kind: "pkcs12_file".into(),
            cert: None,
            key: None,
            file: Some(service_path(file)?),
            password: Some(SecretText::new(pkcs12_password(file)?.as_str())),
        },
        // clap requires --cert and --key, or --pkcs12.
        _ => return Err(ManageError::Invalid("give --cert and --key, or --pkcs12".into()).into()),
    };
    let body = set_body(source);
    let path = binding_path(args.port, args.sni.as_deref());
    let binding = send(&args.api, Method::PUT, &path, &body).await?;
    show(&args.api, &binding, |binding: Binding| {
        let info = match &args.sni {
            // The service may keep SNI names in lowercase.
            Some(name) => binding
                .sni
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, info)| info),
            None => binding.certificate.as_ref(),
        };
        let what = info.map_or_else(String::new, |i| format!(": {}", describe(i)));
        let port = args.port;
        match &args.sni {
            Some(name) => note_safe!("bcs: port {port} serves {name} with a new certificate{what}"),
            None => note_safe!("bcs: port {port} has a new certificate{what}"),
        }
    })?;
    Ok(())
}

/// `PUT /v1/certificates/...`'s body (a `SetCertificate`).
fn set_body(source: Source) -> SetCertificate {
    SetCertificate { source }
}

/// SECURITY: from BCS_PKCS12_PASSWORD or a prompt, never an argument (argv is visible to every user).
fn pkcs12_password(file: &std::path::Path) -> Result<Zeroizing<String>, ManageError> {
    if let Ok(password) = std::env::var("BCS_PKCS12_PASSWORD") {
        return Ok(Zeroizing::new(password));
    }
    rpassword::prompt_password(format!("Password for {}: ", file.display()))
        .map(Zeroizing::new)
        .map_err(ManageError::NoPkcs12Password)
}

/// `CN=host (SHA-1 ab12…, until 2027-01-01) from /etc/bcs/cert.pem`.
fn describe(info: &Certificate) -> String {
    let source = &info.source;
    let from = match (source.kind.as_str(), &source.cert, &source.file) {
        ("pem_files", Some(cert), _) => format!(" from {cert}"),
        ("pkcs12_file", _, Some(file)) => format!(" from {file}"),
        _ => String::new(),
    };
    format!(
        "{} (SHA-1 {}, until {}){from}",
        info.subject, info.sha1, info.not_after
    )
}

fn print_binding(binding: &Binding) {
    let http2 = if binding.http2 { ", HTTP/2" } else { "" };
    say!("port {}{http2}", binding.port);
    let certificate = binding
        .certificate
        .as_ref()
        .map_or_else(|| "none".to_owned(), describe);
    say_safe!("  certificate: {certificate}");
    for (name, info) in &binding.sni {
        say_safe!("  for {name}: {}", describe(info));
    }
    if let Some(clients) = &binding.client_certificates {
        say_safe!(
            "  client certificates: {} (CA {})",
            clients.mode,
            clients.ca
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sni_names_are_one_segment() {
        assert_eq!(binding_path(8443, None), "/v1/certificates/8443");
        assert_eq!(
            binding_path(8443, Some("files.example")),
            "/v1/certificates/8443/sni/files.example"
        );
    }

    #[test]
    fn certificates_read_in_one_line() {
        let info: Certificate = serde_json::from_value(json!({
            "subject": "CN=files.example",
            "sha1": "ab12",
            "sha256": "ab:12",
            "not_after": "2027-01-01",
            "source": {"kind": "pem_files", "cert": "/etc/bcs/c.pem", "key": "/etc/bcs/k.pem"},
        }))
        .unwrap();
        assert_eq!(
            describe(&info),
            "CN=files.example (SHA-1 ab12, until 2027-01-01) from /etc/bcs/c.pem"
        );
    }

    /// What the CLI sends is the library's `SetCertificate`.
    #[test]
    fn set_bodies_are_set_certificates() {
        let source = Source {
            kind: "pkcs12_file".into(),
            cert: None,
            key: None,
            file: Some("/etc/bcs/c.p12".into()),
            password: Some(SecretText::new("pw")),
        };
        let set: bits_compact::service::SetCertificate =
            serde_json::from_value(serde_json::to_value(set_body(source)).unwrap()).unwrap();
        assert_eq!(set.source.file.as_deref(), Some("/etc/bcs/c.p12"));
    }
}
