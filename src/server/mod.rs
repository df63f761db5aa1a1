//! `Server`: the composition root. It owns the URL groups, the routing snapshot, the listeners (one per
//! port, on each bind address) and the serve loop, and is the library's equivalent of the original
//! `ICompactServer`.
//!
//! Invariants: every port used by a group has a bound listener (bound when the first group on it is
//! created, so "port in use" is an error there and then); a port left with no group is closed; one port
//! carries one scheme; the routing snapshot is rebuilt under the state lock after every change.
//!
//! Addresses: a port opened by a group whose host is an IP literal listens on that address only, and then
//! takes only groups of that same address; a port opened by any other group listens on the bind addresses
//! (all by default), and takes IP-literal groups whose address is among them, which routing keeps to
//! connections that arrived on that address (as HTTP.sys routes IP-bound prefixes). A group that does not
//! fit is refused (`ServerError::AddressConflict`); a port's addresses never change while it is open.

mod builder;
mod error;
mod listen;
mod tls;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) use builder::Config;
pub use builder::ServerBuilder;
pub use error::ServerError;

use crate::auth::Principals;
use crate::files::FileCache;
use crate::router::RouteTable;
use crate::serve::{Running, Site};
use crate::tls::PortTls;
use crate::url::{Host, Scheme, Url, UrlGroup, UrlPrefix};

/// The file server: URL groups, their listeners and the serve loop. Cheap to clone; all clones are the same
/// server, so one task can serve while another adds and removes groups and URLs.
#[derive(Debug, Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    files: Arc<FileCache>,
    /// What the serve loop reads: settings, the routing and TLS snapshots, authentication.
    pub(crate) site: Arc<Site>,
    state: Mutex<State>,
}

#[derive(Debug)]
pub(crate) struct State {
    groups: Vec<UrlGroup>,
    ports: HashMap<u16, Port>,
    tls: HashMap<u16, PortTls>,
    prebound: HashMap<u16, Vec<TcpListener>>,
    pub(crate) running: Option<Running>,
    /// `serve` was called: the listeners belong to that call, even after it returned.
    pub(crate) served: bool,
}

/// A port in use: its scheme, the addresses it listens on, and its sockets until the serve loop takes them.
#[derive(Debug)]
pub(crate) struct Port {
    scheme: Scheme,
    addrs: Vec<SocketAddr>,
    /// The address an IP-literal group narrowed the port to when it opened it.
    narrowed_to: Option<IpAddr>,
    pub(crate) sockets: Vec<TcpListener>,
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

impl Port {
    pub(crate) fn is_tls(&self) -> bool {
        self.scheme == Scheme::Https
    }

    /// Whether a group for `host` can be served from the addresses this port listens on. Never widened:
    /// a port narrowed to one address takes only groups of that address, rather than silently starting to
    /// listen on others.
    fn admits(&self, host: &Host) -> bool {
        match host {
            Host::Ip(ip) => listen::covers(self.addrs.iter().map(SocketAddr::ip), *ip),
            _ => self.narrowed_to.is_none(),
        }
    }
}

fn local_addrs(sockets: &[TcpListener]) -> Vec<SocketAddr> {
    sockets.iter().filter_map(|s| s.local_addr().ok()).collect()
}

fn address_conflict(prefix: &UrlPrefix, addrs: Vec<SocketAddr>) -> ServerError {
    ServerError::AddressConflict {
        port: prefix.port(),
        addrs,
        prefix: prefix.to_string(),
    }
}

impl Server {
    /// A builder with the documented defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }

    /// Creates a URL group (the original's CreateUrlGroup). Its port gets a listener now if it has none: on
    /// the prefix's address only if its host is an IP literal, else on the bind addresses. A group that the
    /// port's addresses cannot serve is refused (module docs).
    pub fn create_url_group(&self, prefix: &str) -> Result<UrlGroup, ServerError> {
        let prefix: UrlPrefix = prefix.parse()?;
        let mut state = self.state();
        if state.groups.iter().any(|g| *g.prefix() == prefix) {
            return Err(ServerError::GroupExists(prefix.to_string()));
        }
        let port = prefix.port();
        match state.ports.get(&port) {
            Some(p) if p.scheme != prefix.scheme() => {
                return Err(ServerError::SchemeConflict {
                    port,
                    existing: p.scheme,
                    requested: prefix.scheme(),
                })
            }
            Some(p) if !p.admits(prefix.host()) => {
                return Err(address_conflict(&prefix, p.addrs.clone()))
            }
            Some(_) => {}
            None => {
                let (sockets, narrowed_to) = self.open_port(&mut state, &prefix)?;
                let addrs = local_addrs(&sockets);
                let mut p = Port {
                    scheme: prefix.scheme(),
                    addrs,
                    narrowed_to,
                    sockets,
                    stop: tokio_util::sync::CancellationToken::new(),
                };
                if let Some(running) = &state.running {
                    let sockets = std::mem::take(&mut p.sockets);
                    running.start_port(port, p.is_tls(), sockets, &p.stop);
                }
                state.ports.insert(port, p);
            }
        }
        if prefix.scheme() == Scheme::Https
            && !state.tls.get(&port).is_some_and(|t| t.default.is_some())
        {
            tracing::warn!(
                port,
                "https group created on a port with no certificate bound; handshakes fail until one is"
            );
        }
        let domain = self.shared.config.domain.clone();
        let group = UrlGroup::new(prefix, self.shared.files.clone(), domain);
        state.groups.push(group.clone());
        self.publish_routes(&state);
        Ok(group)
    }

    /// The listening sockets for the port of `prefix`, which has none yet, and the address they were
    /// narrowed to if `prefix` names an IP.
    fn open_port(
        &self,
        state: &mut State,
        prefix: &UrlPrefix,
    ) -> Result<(Vec<TcpListener>, Option<IpAddr>), ServerError> {
        let port = prefix.port();
        let bind = &self.shared.config.bind;
        if let Some(adopted) = state.prebound.get(&port) {
            // Listeners the caller bound are used as they are; routing keeps an IP-literal group to its
            // address, which must be among theirs.
            let addrs = local_addrs(adopted);
            if let Host::Ip(ip) = prefix.host() {
                if !listen::covers(addrs.iter().map(SocketAddr::ip), *ip) {
                    return Err(address_conflict(prefix, addrs));
                }
            }
            return Ok((state.prebound.remove(&port).unwrap_or_default(), None));
        }
        let Host::Ip(ip) = prefix.host() else {
            return Ok((listen::bind(bind, port)?, None));
        };
        // SECURITY: an IP literal is how HTTP.sys users keep a prefix to one address (often 127.0.0.1, to
        // stay local). Listening on every address and relying on routing alone would still accept
        // connections from every network, and a `+` group added later on the port would be served to them;
        // so the port listens on that address only.
        if !listen::covers(bind.iter().copied(), *ip) {
            let bind: Vec<String> = bind.iter().map(ToString::to_string).collect();
            return Err(ServerError::Config(vec![format!(
                "{prefix} names {ip}, which is not among the bind addresses ({})",
                bind.join(", ")
            )]));
        }
        Ok((listen::bind(&[*ip], port)?, Some(*ip)))
    }

    /// Deletes a URL group (the original's DeleteUrlGroup). Its URLs stop being served at once; a port left
    /// with no group is closed. Transfers already under way finish.
    pub fn delete_url_group(&self, prefix: &str) -> Result<(), ServerError> {
        let prefix: UrlPrefix = prefix.parse()?;
        let mut state = self.state();
        let at = state
            .groups
            .iter()
            .position(|g| *g.prefix() == prefix)
            .ok_or_else(|| ServerError::GroupNotFound(prefix.to_string()))?;
        state.groups.remove(at);
        let port = prefix.port();
        if !state.groups.iter().any(|g| g.prefix().port() == port) {
            if let Some(p) = state.ports.remove(&port) {
                p.stop.cancel();
            }
        }
        self.publish_routes(&state);
        Ok(())
    }

    /// The group with this prefix (the original's GetUrlGroup).
    pub fn url_group(&self, prefix: &str) -> Result<UrlGroup, ServerError> {
        let prefix: UrlPrefix = prefix.parse()?;
        self.state()
            .groups
            .iter()
            .find(|g| *g.prefix() == prefix)
            .cloned()
            .ok_or_else(|| ServerError::GroupNotFound(prefix.to_string()))
    }

    /// All groups, in creation order (the original's EnumerateUrlGroups).
    pub fn url_groups(&self) -> Vec<UrlGroup> {
        self.state().groups.clone()
    }

    /// Publishes `file` as `prefix` + `suffix`, creating the group if it does not exist (the original's
    /// CreateUrl).
    pub fn create_url(
        &self,
        prefix: &str,
        suffix: &str,
        file: impl AsRef<Path>,
        sddl: Option<&str>,
    ) -> Result<Url, ServerError> {
        let group = match self.url_group(prefix) {
            Ok(group) => group,
            Err(ServerError::GroupNotFound(_)) => self.create_url_group(prefix)?,
            Err(e) => return Err(e),
        };
        Ok(group.add_url(suffix, file, sddl)?)
    }

    /// The local addresses listening for `port`; empty if no group uses it.
    pub fn local_addrs(&self, port: u16) -> Vec<SocketAddr> {
        self.state()
            .ports
            .get(&port)
            .map(|p| p.addrs.clone())
            .unwrap_or_default()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests in flight finish for up to the
    /// drain timeout, and cuts what is left. Groups created while serving are served at once.
    pub async fn serve(&self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let running = Running::new(self.shared.site.clone());
        {
            let mut state = self.state();
            if state.running.is_some() || state.served {
                return Err(ServerError::AlreadyServing);
            }
            for (port, p) in &mut state.ports {
                let sockets = std::mem::take(&mut p.sockets);
                running.start_port(*port, p.is_tls(), sockets, &p.stop);
            }
            state.running = Some(running.clone());
            state.served = true;
        }
        running.run(shutdown).await;
        self.state().running = None;
        Ok(())
    }

    /// Sets the users and groups that Basic, NTLM and client-certificate mapping use; applies to the next
    /// request. Default is none: no password is accepted.
    pub fn set_principals(&self, principals: Principals) {
        self.shared
            .site
            .auth
            .principals
            .store(Some(Arc::new(principals)));
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    fn publish_routes(&self, state: &State) {
        self.shared
            .site
            .routes
            .store(Arc::new(RouteTable::new(&state.groups)));
    }
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
