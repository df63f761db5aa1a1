//! Serve files under a connection limit and a bandwidth limit, and relax both while serving.
//!
//! ```text
//! cargo run --example limits -- http://127.0.0.1:8083/slow/ 60 Cargo.toml README.md
//! ```
//!
//! The group starts with one transfer at a time at 256 KiB/s; after the given number of seconds a task
//! raises that to two transfers sharing 1 MiB/s, as a program would when its busy hours end. A download
//! beyond the limit is answered 503 with Retry-After, which BITS and download managers honour. Runs until
//! Ctrl-C or SIGTERM.

use std::path::Path;
use std::time::Duration;

use bits_compact::{ByteRate, ConnectionLimit, Server, UrlError, UrlGroup, UrlPrefix};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: limits PREFIX SECONDS FILE...";
    let prefix: UrlPrefix = args.next().ok_or(usage)?.parse()?;
    let seconds: u64 = args.next().ok_or(usage)?.parse()?;
    let files: Vec<String> = args.collect();
    if files.is_empty() {
        return Err(usage.into());
    }

    let server = Server::builder().build()?;
    let group = server.create_url_group(&prefix)?;
    // The limits are per group: every URL in it shares the transfers and the bytes per second.
    group.set_connection_limit(ConnectionLimit::new(1)?)?;
    group.set_bandwidth_limit(ByteRate::per_second(256 * 1024)?)?;
    for file in &files {
        let name = Path::new(file)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{file}: no file name"))?;
        let url = group.add_url(name, file, Some("D:(A;;GR;;;WD)"))?;
        println!("{}", url.location("127.0.0.1"));
    }
    print_limits("limits", &group);
    println!("serving; press Ctrl-C to stop");

    // A group handle is cheap to clone and stays valid while serving: changes apply to the next request
    // (connection limit) or within a fraction of a second, to transfers in flight too (bandwidth).
    let relaxed = group.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        match relax(&relaxed) {
            Ok(()) => print_limits("limits now", &relaxed),
            Err(e) => eprintln!("limits: {e}"),
        }
    });

    server.serve(shutdown()).await?;
    Ok(())
}

/// Two transfers at a time sharing 1 MiB/s. The setters refuse only a group the server has deleted.
fn relax(group: &UrlGroup) -> Result<(), UrlError> {
    group.set_connection_limit(ConnectionLimit::new(2)?)?;
    group.set_bandwidth_limit(ByteRate::per_second(1 << 20)?)?;
    Ok(())
}

fn print_limits(label: &str, group: &UrlGroup) {
    let (transfers, rate) = (group.connection_limit(), group.bandwidth_limit());
    println!("{label}: connection limit {transfers}, bandwidth limit {rate}");
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
