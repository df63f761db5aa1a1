//! The flags that let an operator watch a server, shared by `bcs host` and `bcs serve`: the access log
//! (reopened on SIGHUP, for logrotate) and, for `bcs host`, a metrics listener of its own.

use std::net::SocketAddr;

use bits_compact::{AccessLog, AccessLogFormat, AccessLogTarget, Server, ServerBuilder};
use clap::Args;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

use crate::CliError;

#[derive(Args, Debug, Clone)]
pub(crate) struct AccessLogArgs {
    /// Writes one line per request to FILE (appended, created 0640, reopened on SIGHUP for logrotate),
    /// or to standard output with `-`.
    #[arg(long, value_name = "FILE|-")]
    access_log: Option<AccessLogTarget>,
    /// The access log's format: `combined` (Apache/nginx, read by goaccess, awstats and the like) or
    /// `json` (one object per line).
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = "combined",
        requires = "access_log"
    )]
    access_log_format: AccessLogFormat,
}

impl AccessLogArgs {
    /// The builder with the access log asked for.
    pub(crate) fn apply(&self, builder: ServerBuilder) -> ServerBuilder {
        match &self.access_log {
            Some(target) => builder.access_log(AccessLog {
                target: target.clone(),
                format: self.access_log_format,
            }),
            None => builder,
        }
    }

    /// Handles SIGHUP from now on (before serving, so that a logrotate run right after start is not
    /// lost), whatever the flags: with an access-log file it reopens the file; otherwise there is nothing
    /// to reopen, and a `kill -HUP` from a logrotate rule must still not end the process (SIGHUP's
    /// default action). `also` are other servers whose logs are files (a fleet's peer path): reopened too.
    pub(crate) fn reopen_on_hangup(
        &self,
        server: &Server,
        also: Vec<Server>,
    ) -> Result<(), CliError> {
        let file = matches!(self.access_log, Some(AccessLogTarget::File(_)));
        let mut hangups = signal(SignalKind::hangup()).map_err(CliError::Runtime)?;
        let server = server.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                if file {
                    server.reopen_access_log();
                } else {
                    tracing::debug!("SIGHUP: no access-log file to reopen");
                }
                for other in &also {
                    other.reopen_access_log();
                }
            }
        });
        Ok(())
    }
}

/// Serves `GET /metrics` on `addr` until `stop`; says where, and warns (stderr) when `addr` is not a
/// loopback address, since the listener asks for no credentials.
pub(crate) async fn serve_metrics(
    addr: SocketAddr,
    server: &Server,
    stop: CancellationToken,
) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Serve(format!("cannot listen on {addr} for metrics: {e}")))?;
    let bound = listener.local_addr().map_err(CliError::Runtime)?;
    note!("bcs: metrics at http://{bound}/metrics");
    if !bound.ip().to_canonical().is_loopback() {
        note!(
            "bcs: warning: the metrics at {bound} need no credentials: anyone who reaches that address reads them"
        );
    }
    let metrics = server.metrics();
    tokio::spawn(async move {
        bits_compact::metrics::serve(listener, metrics, stop.cancelled_owned()).await;
    });
    Ok(())
}
