//! The serve loop: one accept task per listening socket, one task per connection, one shutdown signal
//! observed everywhere, bounded by the drain deadline.
//!
//! Backpressure comes before accept: a connection permit is taken first and lives as long as the connection,
//! so past the connection limit clients wait in the kernel's backlog instead of costing memory here. The
//! accept loop does nothing slow: it sets TCP_NODELAY and spawns.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{self, ConnContext};
use super::site::Site;
use crate::limits::{ReadBudget, ServerBudget, SERVER_BUDGET};

/// What every task of one `serve` call shares: what connections need, and the accept loops' permits
/// and task tracker.
#[derive(Debug)]
struct ServeContext {
    conn: Arc<ConnContext>,
    permits: Arc<Semaphore>,
    tracker: TaskTracker,
}

/// A `serve` call in progress; the server keeps a clone so that ports added meanwhile start accepting.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    handle: Handle,
    ctx: Arc<ServeContext>,
}

impl Running {
    /// What this serve loop's response bodies may hold in memory, all together.
    pub(crate) fn read_budget(&self) -> Arc<ServerBudget> {
        self.ctx.conn.read_budget.clone()
    }

    /// A serve loop for `site`, on the current runtime, accepting nothing yet.
    pub(crate) fn new(site: Arc<Site>) -> Self {
        let ctx = Arc::new(ServeContext {
            permits: Arc::new(Semaphore::new(site.settings.max_connections)),
            conn: Arc::new(ConnContext {
                site,
                shutdown: CancellationToken::new(),
                force: CancellationToken::new(),
                read_budget: ReadBudget::server(SERVER_BUDGET),
            }),
            tracker: TaskTracker::new(),
        });
        Running {
            handle: Handle::current(),
            ctx,
        }
    }

    /// Starts accepting on a port's sockets until `stop` (the port is closed) or shutdown.
    pub(crate) fn start_port(
        &self,
        port: u16,
        tls: bool,
        sockets: Vec<std::net::TcpListener>,
        stop: &CancellationToken,
    ) {
        for socket in sockets {
            let (ctx, stop) = (self.ctx.clone(), stop.clone());
            let task = accept_loop(socket, port, tls, ctx, stop);
            self.ctx.tracker.spawn_on(task, &self.handle);
        }
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight finish for up to
    /// the drain timeout, and cuts what is left.
    pub(crate) async fn run(&self, shutdown: impl Future<Output = ()>) {
        let ctx = &self.ctx;
        shutdown.await;
        tracing::info!("shutting down: no new connections; draining requests in flight");
        ctx.conn.shutdown.cancel();
        ctx.tracker.close();
        let drain = ctx.conn.site.settings.drain_timeout;
        if tokio::time::timeout(drain, ctx.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                connections = ctx.tracker.len(),
                "drain deadline passed; cutting the connections left"
            );
            ctx.conn.force.cancel();
            ctx.tracker.wait().await;
        }
    }
}

async fn accept_loop(
    socket: std::net::TcpListener,
    port: u16,
    tls: bool,
    ctx: Arc<ServeContext>,
    stop: CancellationToken,
) {
    let listener = match TcpListener::from_std(socket) {
        Ok(listener) => listener,
        Err(e) => {
            tracing::error!(port, error = %e, "cannot use a listening socket");
            return;
        }
    };
    loop {
        let permit = tokio::select! {
            permit = ctx.permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stop.cancelled() => return,
            () = ctx.conn.shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
            () = ctx.conn.shutdown.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors or a connection reset before accept: back off briefly, keep going.
                tracing::warn!(port, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Without it, a response written as headers then body stalls about 40 ms on delayed ACKs.
        let _ = stream.set_nodelay(true);
        // A debug span: at the default log level it is disabled and costs an idle connection nothing.
        let span = tracing::debug_span!("conn", %peer);
        let task = connection::serve(stream, peer, tls, ctx.conn.clone(), permit);
        ctx.tracker
            .spawn(tracing::Instrument::instrument(task, span));
    }
}
