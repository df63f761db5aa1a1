//! Publish files over HTTPS with the library API, and serve them until Ctrl-C or SIGTERM.
//!
//! ```text
//! cargo run --example tls_files -- https://127.0.0.1:8443/secure/ --pem cert.pem key.pem Cargo.toml
//! cargo run --example tls_files -- https://127.0.0.1:8443/secure/ Cargo.toml    # self-signed
//! ```
//!
//! Without `--pem` the example makes a self-signed certificate for the prefix's host and prints what a
//! client needs to trust it: its SHA-256 fingerprint (as browsers show it) and its key pin for curl.

use bits_compact::{Host, Server, ServerCertificate, UrlPrefix};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: tls_files https://PREFIX [--pem CERT.pem KEY.pem] FILE...";
    if args.is_empty() {
        return Err(usage.into());
    }
    let prefix: UrlPrefix = args.remove(0).parse()?;
    let pem = match args.first().map(String::as_str) {
        Some("--pem") if args.len() >= 3 => {
            let pair = (args[1].clone(), args[2].clone());
            args.drain(..3);
            Some(pair)
        }
        Some("--pem") => return Err(usage.into()),
        _ => None,
    };
    if args.is_empty() {
        return Err(usage.into());
    }

    // The certificate is checked (chain, key match) when loaded, so a bad file fails here and not at the
    // first handshake.
    let cert = match &pem {
        Some((cert, key)) => ServerCertificate::from_pem_files(cert, key)?,
        None => ServerCertificate::self_signed(&certificate_names(prefix.host()))?,
    };
    let info = cert.info().clone();
    let server = Server::builder().build()?;
    // Bound before the group exists: an https port with no certificate would fail every handshake.
    server.set_ssl_certificate(prefix.port(), cert)?;
    let group = server.create_url_group(&prefix)?;
    for file in &args {
        let name = std::path::Path::new(file)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{file}: no file name"))?;
        // Everyone may read: TLS protects the transfer, it does not restrict who downloads.
        let url = group.add_url(name, file, Some("D:(A;;GR;;;WD)"))?;
        println!("{}", url.location("127.0.0.1"));
    }
    println!("certificate: {}", info.subject);
    println!("SHA-256 fingerprint: {}", info.sha256_fingerprint);
    println!("curl --pinnedpubkey '{}'", info.spki_pin);
    println!("serving; press Ctrl-C to stop");

    server.serve(shutdown()).await?;
    Ok(())
}

/// The names a self-signed certificate must carry for clients to accept it for this prefix's host; a
/// wildcard prefix answers any name, so it gets the loopback names the printed URLs use.
fn certificate_names(host: &Host) -> Vec<String> {
    match host {
        Host::Ip(ip) => vec![ip.to_string()],
        Host::Name(name) => vec![name.clone()],
        _ => vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
    }
}

/// Ctrl-C (SIGINT) or SIGTERM, which is how service managers stop a program; `serve` then gives transfers
/// in flight the drain timeout (30 s by default) to finish.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
