//! The serve loop: one accept task per listening socket, one task per connection, one shutdown signal
//! observed everywhere, bounded by the drain deadline.
//!
//! Backpressure comes before accept: a connection permit is taken first and lives as long as the connection,
//! so past the connection limit clients wait in the kernel's backlog instead of costing memory here. The
//! accept loop does nothing slow: it sets TCP_NODELAY and spawns.

mod access;
mod connection;
mod negotiate;
mod response;
mod service;
mod stream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::{ReadBudget, SERVER_BUDGET};
use crate::server::{Port, ServerError, Shared};

/// What every task of one `serve` call shares.
#[derive(Debug)]
pub(crate) struct ServeContext {
    pub(crate) shared: Arc<Shared>,
    /// Stop accepting; connections finish their current request.
    pub(crate) shutdown: CancellationToken,
    /// The drain deadline passed: drop what is left.
    pub(crate) force: CancellationToken,
    permits: Arc<Semaphore>,
    /// The server's read budget: file bytes all response bodies may hold at once.
    pub(crate) read_budget: Arc<Semaphore>,
    tracker: TaskTracker,
}

/// A `serve` call in progress, kept in the server state so that ports added meanwhile start accepting.
#[derive(Debug)]
pub(crate) struct Running {
    handle: Handle,
    ctx: Arc<ServeContext>,
}

impl Running {
    /// Starts accepting on the port's sockets.
    pub(crate) fn start_port(&self, port: u16, p: &mut Port) {
        let tls = p.is_tls();
        for socket in p.sockets.drain(..) {
            let (ctx, stop) = (self.ctx.clone(), p.stop.clone());
            let task = accept_loop(socket, port, tls, ctx, stop);
            self.ctx.tracker.spawn_on(task, &self.handle);
        }
    }
}

pub(crate) async fn run(
    shared: &Arc<Shared>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let ctx = Arc::new(ServeContext {
        shared: shared.clone(),
        shutdown: CancellationToken::new(),
        force: CancellationToken::new(),
        permits: Arc::new(Semaphore::new(shared.config.max_connections)),
        read_budget: ReadBudget::server(SERVER_BUDGET),
        tracker: TaskTracker::new(),
    });
    {
        let mut state = shared.state();
        if state.running.is_some() || state.served {
            return Err(ServerError::AlreadyServing);
        }
        let running = Running {
            handle: Handle::current(),
            ctx: ctx.clone(),
        };
        for (port, p) in state.ports_mut() {
            running.start_port(*port, p);
        }
        state.running = Some(running);
        state.served = true;
    }
    shutdown.await;
    tracing::info!("shutting down: no new connections; draining requests in flight");
    ctx.shutdown.cancel();
    ctx.tracker.close();
    let drain = shared.config.drain_timeout;
    if tokio::time::timeout(drain, ctx.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = ctx.tracker.len(),
            "drain deadline passed; cutting the connections left"
        );
        ctx.force.cancel();
        ctx.tracker.wait().await;
    }
    shared.state().running = None;
    Ok(())
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
            () = ctx.shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
            () = ctx.shutdown.cancelled() => return,
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
        // PERF.md: without it, small responses stall ~40 ms on delayed ACKs.
        let _ = stream.set_nodelay(true);
        let span = tracing::info_span!("conn", %peer);
        let task = connection::serve(stream, peer, tls, ctx.clone(), permit);
        ctx.tracker
            .spawn(tracing::Instrument::instrument(task, span));
    }
}
