//! `bcs status`: the service's live view (`GET /v1/status`): each group's downloads in progress and how
//! full its limits are, and the jobs in progress. Once, or with `--watch` every `--interval` seconds:
//! redrawn in place on a terminal, else a frame after another (with `--json`, one JSON line each).

use std::io::IsTerminal;
use std::time::Duration;

use bits_compact::service::{JobStatus, StatusReport};
use bits_compact::url::{DownloadStatus, GroupStatus};
use clap::Args;
use http::{Method, StatusCode};

use super::{print_json, read, ApiArgs, Client};
use crate::print::{human_bytes, human_rate, terminal_safe};
use crate::CliError;

/// `bcs status`.
#[derive(Args)]
pub(crate) struct StatusArgs {
    /// Show it again every --interval seconds until interrupted.
    #[arg(long)]
    watch: bool,
    /// Seconds between two views with --watch.
    #[arg(long, value_name = "S", default_value = "2", requires = "watch",
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    interval: u64,
    /// The most downloads, and jobs, to list (the service lists at most 1000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max: Option<u32>,
    #[command(flatten)]
    api: ApiArgs,
}

/// Runs `bcs status`.
pub(crate) async fn run(args: StatusArgs) -> Result<(), CliError> {
    let client = Client::new(&args.api)?;
    let path = match args.max {
        Some(n) => format!("/v1/status?max={n}"),
        None => "/v1/status".to_owned(),
    };
    let redraw = args.watch && !args.api.json && std::io::stdout().is_terminal();
    loop {
        let answer = client.fetch(Method::GET, &path, None).await?;
        if args.api.json && !answer.status.is_success() {
            print_json(&answer.body, answer.status);
        }
        let body = answer.into_result()?;
        match (args.api.json, args.watch) {
            (true, false) => print_json(&body, StatusCode::OK),
            // One JSON text per line, for a reader that takes them as they come.
            (true, true) => say!("{}", crate::print::json_safe(body.to_string())),
            (false, _) => {
                let report: StatusReport = read(&body)?;
                if redraw {
                    // Home and clear: each view replaces the last.
                    let _ = std::io::Write::write_all(&mut std::io::stdout(), b"\x1b[H\x1b[2J");
                }
                print_report(&report);
            }
        }
        if !args.watch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
        if !redraw && !args.api.json {
            say!("");
        }
    }
}

fn print_report(report: &StatusReport) {
    let s = &report.server;
    say!(
        "server: {}/{} transfers (at most {} per client), at most {} connections",
        s.transfers,
        s.transfers_max,
        s.transfers_per_source_max,
        s.connections_max
    );
    for group in &s.groups {
        print_group(group);
    }
    if s.downloads_truncated {
        say!(
            "(only {} downloads listed: there are more)",
            s.downloads_listed
        );
    }
    match report.jobs.is_empty() {
        true => say!("jobs in progress: none"),
        false => say!("jobs in progress:"),
    }
    for job in &report.jobs {
        print_job(job);
    }
    if report.jobs_truncated {
        say!("(only {} jobs listed: there are more)", report.jobs.len());
    }
}

fn print_group(g: &GroupStatus) {
    let connections = g
        .connection_limit
        .map_or("unlimited".into(), |n| n.to_string());
    let bandwidth = g.bandwidth_limit.map_or("unlimited".into(), human_rate);
    say_safe!(
        "{}  transfers {}/{}  bandwidth {} of {}",
        g.prefix,
        g.transfers,
        connections,
        human_rate(g.rate),
        bandwidth
    );
    for d in &g.downloads {
        print_download(d);
    }
}

fn print_download(d: &DownloadStatus) {
    let user = d.user.as_deref().unwrap_or("-");
    say!(
        "  {}  {}  {}  {}/{}  {}",
        terminal_safe(&d.client),
        terminal_safe(user),
        terminal_safe(&d.url),
        human_bytes(d.bytes_sent),
        human_bytes(d.bytes_total),
        human_rate(d.rate)
    );
}

fn print_job(j: &JobStatus) {
    let total = j.bytes_total.map_or("?".into(), human_bytes);
    let rate = j.rate.map_or("-".into(), human_rate);
    say_safe!(
        "  {}  {}  {}  {}/{}  {}",
        j.id,
        j.display_name,
        j.state,
        human_bytes(j.bytes_transferred),
        total,
        rate
    );
}
