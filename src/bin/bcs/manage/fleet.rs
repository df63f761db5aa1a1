//! `bcs fleet status`: the fleet the service is a node of (`GET /v1/fleet`), one line per node, then
//! each published content with the nodes that hold it and those still fetching it.

use bits_compact::service::FleetStatus;
use clap::Subcommand;
use http::Method;

use super::{call, list_or_none, show, ApiArgs};
use crate::print::{human_bytes, human_rate};
use crate::CliError;

#[derive(Subcommand)]
pub(crate) enum FleetCommand {
    /// List the fleet's nodes: alive or not, where they listen, the revision each serves and how far
    /// behind it is, the URL groups each serves.
    Status(ApiArgs),
}

pub(crate) async fn run(command: FleetCommand) -> Result<(), CliError> {
    match command {
        FleetCommand::Status(api) => status(&api).await,
    }
}

async fn status(api: &ApiArgs) -> Result<(), CliError> {
    let answer = call(api, Method::GET, "/v1/fleet", None).await?;
    show(api, &answer, |fleet: FleetStatus| {
        say_safe!(
            "fleet {} (revision {}), answered by node {}",
            fleet.fleet,
            fleet.revision,
            fleet.node
        );
        for n in &fleet.nodes {
            let state = if n.alive { "alive" } else { "NOT ALIVE" };
            say_safe!(
                "  {} {state}: revision {} (lag {}), addresses {}, version {}, groups {}",
                n.name,
                n.revision,
                n.lag,
                list_or_none(&n.addresses),
                n.version,
                list_or_none(&n.groups)
            );
            for u in &n.unserved {
                say_safe!("    not served there: {u}");
            }
            let unlisted = n.unserved_total.saturating_sub(n.unserved.len());
            if unlisted > 0 {
                say_safe!("    and {unlisted} more not served there");
            }
        }
        for c in &fleet.content {
            say_safe!(
                "content {} ({} bytes, published on {}): {}",
                c.sha256,
                c.size,
                c.origin,
                list_or_none(&c.urls)
            );
            say_safe!("  held and served by {}", list_or_none(&c.holders));
            for f in &c.fetching {
                say_safe!(
                    "  {} fetching from {}: {} of {} ({}%), {}",
                    f.node,
                    f.from,
                    human_bytes(f.bytes),
                    human_bytes(f.total),
                    f.bytes.saturating_mul(100) / f.total.max(1),
                    human_rate(f.rate)
                );
            }
        }
    })?;
    Ok(())
}
