//! Publish files under one URL group with the library API, and serve them until Ctrl-C.
//!
//! ```text
//! cargo run --example host_files -- http://127.0.0.1:8081/demo/ Cargo.toml README.md
//! ```
//!
//! A prefix with an IP literal listens on that address only (the server binds it so); any other prefix
//! listens on all addresses.

use std::net::IpAddr;
use std::path::Path;

use bits_compact::{Host, Server, UrlPrefix};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: host_files PREFIX FILE...";
    let prefix: UrlPrefix = args.next().ok_or(usage)?.parse()?;
    let files: Vec<String> = args.collect();
    if files.is_empty() {
        return Err(usage.into());
    }

    let server = Server::builder().build()?;
    let group = server.create_url_group(prefix.to_string())?;
    for file in &files {
        let path = Path::new(file);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{file}: no file name"))?;
        // Everyone may read: an SDDL string kept with the URL for authorization.
        let url = group.add_url(name, path, Some("D:(A;;GR;;;WD)"))?;
        println!("{}", url.location(&local_host(&prefix)));
    }
    println!("serving; press Ctrl-C to stop");

    server
        .serve(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// What to print for a wildcard host: loopback, which works on every machine.
fn local_host(prefix: &UrlPrefix) -> String {
    match prefix.host() {
        Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
        Host::Ip(ip) => ip.to_string(),
        _ => "127.0.0.1".to_owned(),
    }
}
