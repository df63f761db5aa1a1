//! Publish a file over HTTPS to one user only, with Basic authentication and SDDL, from principals made in
//! code (no principals file, no CLI), until Ctrl-C or SIGTERM.
//!
//! ```text
//! BASIC_SDDL_PASSWORD='a long passphrase' cargo run --example basic_sddl -- https://127.0.0.1:8444/team/ Cargo.toml
//! curl --insecure -u alice:'a long passphrase' https://127.0.0.1:8444/team/Cargo.toml
//! ```
//!
//! Two users are made, alice and bob, with the password from `BASIC_SDDL_PASSWORD`; the file's SDDL grants
//! read to alice's SID alone. Without credentials a client gets 401 and a Basic challenge; bob, who proves
//! his password, gets 403. Basic sends the password itself, so a group takes it over TLS only: the server
//! gets a self-signed certificate, whose key pin the example prints for `curl --pinnedpubkey`.

use bits_compact::{AuthScheme, Host, Password, Principals, Server, ServerCertificate, UrlPrefix};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: BASIC_SDDL_PASSWORD=... basic_sddl https://PREFIX FILE";
    let prefix: UrlPrefix = args.next().ok_or(usage)?.parse()?;
    let file = args.next().ok_or(usage)?;
    let password = std::env::var("BASIC_SDDL_PASSWORD").map_err(|_| usage)?;
    let password = Password::from(password.as_str());

    // Each user gets a SID of this machine's domain, an argon2id hash and an NT hash (for NTLM).
    let mut principals = Principals::default();
    principals.set_user("alice", &password, &[])?;
    principals.set_user("bob", &password, &[])?;
    // SDDL names accounts by SID, never by name.
    let alice = principals.user_sid("alice").ok_or("alice was just made")?;
    let only_alice = format!("D:(A;;GR;;;{alice})");

    let host = match prefix.host() {
        Host::Ip(ip) => ip.to_string(),
        _ => "localhost".to_owned(),
    };
    let cert = ServerCertificate::self_signed(&[host])?;
    println!("curl --pinnedpubkey '{}'", cert.info().spki_pin);

    let server = Server::builder().build()?;
    server.set_principals(principals);
    server.set_ssl_certificate(prefix.port(), cert)?;
    let group = server.create_url_group(&prefix)?;
    group.set_authentication(AuthScheme::Basic, true)?;
    let name = std::path::Path::new(&file)
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{file}: no file name"))?;
    let url = group.add_url(name, &file, Some(&only_alice))?;
    println!("{}", url.location("127.0.0.1"));
    println!("serving; press Ctrl-C to stop");

    server.serve(shutdown()).await?;
    Ok(())
}

/// Ctrl-C (SIGINT) or SIGTERM, which is how service managers stop a program.
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
