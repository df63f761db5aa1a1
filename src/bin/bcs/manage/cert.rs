//! `bcs cert`: the service's TLS certificate per https port, and per SNI name on a port.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::connect::segment;
use super::{call, field, service_path, show, ApiArgs, ManageError, EXIT_CODES};
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
            show(&args.api, &answer, |answer| match answer {
                Value::Array(bindings) => bindings.iter().for_each(print_binding),
                binding => print_binding(binding),
            });
            Ok(())
        }
        CertCommand::Remove(args) => {
            let path = binding_path(args.port, args.sni.as_deref());
            let body = call(&args.api, Method::DELETE, &path, None).await?;
            show(&args.api, &body, |_| match &args.sni {
                Some(name) => note!("bcs: removed port {}'s certificate for {name}", args.port),
                None => note!("bcs: removed port {}'s certificates", args.port),
            });
            Ok(())
        }
    }
}

fn binding_path(port: u16, sni: Option<&str>) -> String {
    match sni {
        Some(name) => format!("/v1/certificates/{port}/sni/{}", segment(name)),
        None => format!("/v1/certificates/{port}"),
    }
}

async fn set(args: &SetArgs) -> Result<(), CliError> {
    let source = match (&args.cert, &args.key, &args.pkcs12) {
        (Some(cert), Some(key), _) => json!({
            "kind": "pem_files",
            "cert": service_path(cert),
            "key": service_path(key),
        }),
        (_, _, Some(file)) => json!({
            "kind": "pkcs12_file",
            "file": service_path(file),
            "password": *pkcs12_password(file)?,
        }),
        // clap requires --cert and --key, or --pkcs12.
        _ => return Err(ManageError::Invalid("give --cert and --key, or --pkcs12".into()).into()),
    };
    let body = json!({ "source": source });
    let path = binding_path(args.port, args.sni.as_deref());
    let binding = call(&args.api, Method::PUT, &path, Some(&body)).await?;
    show(&args.api, &binding, |binding| {
        let info = match &args.sni {
            // The service may keep SNI names in lowercase.
            Some(name) => binding
                .get("sni")
                .and_then(Value::as_object)
                .and_then(|sni| sni.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)))
                .map(|(_, info)| info),
            None => binding.get("certificate"),
        };
        let what = info.map_or_else(String::new, |i| format!(": {}", describe(i)));
        let port = args.port;
        match &args.sni {
            Some(name) => note!("bcs: port {port} serves {name} with a new certificate{what}"),
            None => note!("bcs: port {port} has a new certificate{what}"),
        }
    });
    Ok(())
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
fn describe(info: &Value) -> String {
    if info.is_null() {
        return "none".to_owned();
    }
    let source = info.get("source").unwrap_or(&Value::Null);
    let from = match field(source, "kind").as_str() {
        "pem_files" => format!(" from {}", field(source, "cert")),
        "pkcs12_file" => format!(" from {}", field(source, "file")),
        _ => String::new(),
    };
    format!(
        "{} (SHA-1 {}, until {}){from}",
        field(info, "subject"),
        field(info, "sha1"),
        field(info, "not_after")
    )
}

fn print_binding(binding: &Value) {
    let http2 = match binding.get("http2") {
        Some(Value::Bool(true)) => ", HTTP/2",
        _ => "",
    };
    say!("port {}{http2}", field(binding, "port"));
    say!(
        "  certificate: {}",
        describe(binding.get("certificate").unwrap_or(&Value::Null))
    );
    for (name, info) in binding
        .get("sni")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        say!("  for {name}: {}", describe(info));
    }
    match binding.get("client_certificates") {
        Some(Value::Null) | None => {}
        Some(clients) => say!(
            "  client certificates: {} (CA {})",
            field(clients, "mode"),
            field(clients, "ca")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let info = json!({
            "subject": "CN=files.example",
            "sha1": "ab12",
            "not_after": "2027-01-01",
            "source": {"kind": "pem_files", "cert": "/etc/bcs/c.pem", "key": "/etc/bcs/k.pem"},
        });
        assert_eq!(
            describe(&info),
            "CN=files.example (SHA-1 ab12, until 2027-01-01) from /etc/bcs/c.pem"
        );
        assert_eq!(describe(&Value::Null), "none");
    }
}
