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

mod apply;
mod bind;
mod builder;
mod error;
mod http;
mod tls_bindings;

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

pub(crate) use builder::Config;
pub use builder::ServerBuilder;
pub use error::ServerError;

use self::http::{Running, Site};
use crate::auth::Principals;
use crate::change::{Change, Events};
use crate::files::FileCache;
use crate::lock::Recover;
use crate::metrics::Metrics;
use crate::router::RouteTable;
use crate::tls::PortTls;
use crate::url::{Host, PrefixError, ServerStatus, Url, UrlGroup, UrlPrefix, UrlScheme};

/// The file server: URL groups, their listeners and the serve loop. Cheap to clone; all clones are the same
/// server, so one task can serve while another adds and removes groups and URLs.
///
/// Build one, create a URL group (its port is bound there and then), publish a file, then `serve`:
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bits_compact::Server;
///
/// let dir = tempfile::tempdir()?;
/// let file = dir.path().join("setup.exe");
/// std::fs::write(&file, b"MZ...")?;
/// # let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
/// let server = Server::builder().build()?;
/// let group = server.create_url_group(format!("http://127.0.0.1:{port}/Demo/"))?;
/// let url = group.add_url("setup.exe", &file, None)?;
/// assert_eq!(url.location("127.0.0.1"), format!("http://127.0.0.1:{port}/Demo/setup.exe"));
///
/// // `serve` answers until the future it is given completes (here at once), then drains.
/// let runtime = tokio::runtime::Runtime::new()?;
/// runtime.block_on(server.serve(async {}))?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    files: Arc<FileCache>,
    /// Every change goes through this record, in order, and is told to the listener.
    events: Arc<Events>,
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
    scheme: UrlScheme,
    addrs: Vec<SocketAddr>,
    /// The address an IP-literal group narrowed the port to when it opened it.
    narrowed_to: Option<IpAddr>,
    pub(crate) sockets: Vec<TcpListener>,
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

impl Port {
    pub(crate) fn is_tls(&self) -> bool {
        self.scheme == UrlScheme::Https
    }
}

/// Whether a port of `scheme` listening on `addrs` (narrowed to one address by the group that opened it,
/// or not) can serve a group for `prefix`. Never widened: a port narrowed to one address takes only groups
/// of that address, rather than silently starting to listen on others.
fn port_serves(
    scheme: UrlScheme,
    addrs: &[SocketAddr],
    narrowed_to: Option<IpAddr>,
    prefix: &UrlPrefix,
) -> Result<(), ServerError> {
    if scheme != prefix.scheme() {
        return Err(ServerError::SchemeConflict {
            port: prefix.port(),
            existing: scheme,
            requested: prefix.scheme(),
        });
    }
    let admitted = match prefix.host() {
        Host::Ip(ip) => bind::covers(addrs.iter().map(SocketAddr::ip), *ip),
        _ => narrowed_to.is_none(),
    };
    if !admitted {
        return Err(address_conflict(prefix, addrs.to_vec()));
    }
    Ok(())
}

/// Removes a group from the server's state (its port closes if no group is left on it) and marks its
/// handles deleted.
fn remove_group(state: &mut State, prefix: &UrlPrefix) -> Result<UrlGroup, ServerError> {
    let at = state
        .groups
        .iter()
        .position(|g| g.prefix() == prefix)
        .ok_or_else(|| ServerError::GroupNotFound(prefix.to_string()))?;
    let group = state.groups.remove(at);
    group.mark_deleted();
    let port = prefix.port();
    if !state.groups.iter().any(|g| g.prefix().port() == port) {
        if let Some(p) = state.ports.remove(&port) {
            p.stop.cancel();
        }
    }
    Ok(group)
}

/// What names a URL group: its prefix as text (parsed here) or already parsed.
pub trait IntoPrefix {
    /// The prefix, or why the text is not one.
    fn into_prefix(self) -> Result<UrlPrefix, PrefixError>;
}

impl IntoPrefix for &str {
    fn into_prefix(self) -> Result<UrlPrefix, PrefixError> {
        self.parse()
    }
}

impl IntoPrefix for String {
    fn into_prefix(self) -> Result<UrlPrefix, PrefixError> {
        self.parse()
    }
}

impl IntoPrefix for &String {
    fn into_prefix(self) -> Result<UrlPrefix, PrefixError> {
        self.parse()
    }
}

impl IntoPrefix for UrlPrefix {
    fn into_prefix(self) -> Result<UrlPrefix, PrefixError> {
        Ok(self)
    }
}

impl IntoPrefix for &UrlPrefix {
    fn into_prefix(self) -> Result<UrlPrefix, PrefixError> {
        Ok(self.clone())
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
    pub fn create_url_group(&self, prefix: impl IntoPrefix) -> Result<UrlGroup, ServerError> {
        let prefix = prefix.into_prefix()?;
        self.shared.events.record(
            || {
                let mut state = self.state();
                let group = self.add_group(&mut state, prefix, None)?;
                self.publish_routes(&state);
                Ok(group)
            },
            |g| Some(Change::GroupCreated(g.prefix().to_string())),
        )
    }

    /// Adds a group under the state lock, opening its port if it has none: with `opened` (sockets that
    /// `apply` bound beforehand), else now.
    fn add_group(
        &self,
        state: &mut State,
        prefix: UrlPrefix,
        opened: Option<(Vec<TcpListener>, Option<IpAddr>)>,
    ) -> Result<UrlGroup, ServerError> {
        self.check_group(state, &prefix)?;
        let port = prefix.port();
        if !state.ports.contains_key(&port) {
            let (sockets, narrowed_to) = match opened {
                Some(opened) => opened,
                None => self.open_port(state, &prefix)?,
            };
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
        if prefix.scheme() == UrlScheme::Https
            && state.tls.get(&port).is_none_or(|t| t.default.is_none())
        {
            tracing::warn!(
                port,
                "https group created on a port with no certificate bound; handshakes fail until one is"
            );
        }
        let domain = self.shared.config.domain.clone();
        let events = self.shared.events.clone();
        let series = self.shared.site.metrics.group(&prefix.to_string());
        let group = UrlGroup::new(prefix, self.shared.files.clone(), domain, events, series);
        state.groups.push(group.clone());
        Ok(group)
    }

    /// Why a group with this prefix cannot be added now, if it cannot: it exists, or its port serves the
    /// other scheme or other addresses.
    fn check_group(&self, state: &State, prefix: &UrlPrefix) -> Result<(), ServerError> {
        if state.groups.iter().any(|g| g.prefix() == prefix) {
            return Err(ServerError::GroupExists(prefix.to_string()));
        }
        match state.ports.get(&prefix.port()) {
            Some(p) => port_serves(p.scheme, &p.addrs, p.narrowed_to, prefix),
            None => Ok(()),
        }
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
                if !bind::covers(addrs.iter().map(SocketAddr::ip), *ip) {
                    return Err(address_conflict(prefix, addrs));
                }
            }
            return Ok((state.prebound.remove(&port).unwrap_or_default(), None));
        }
        let Host::Ip(ip) = prefix.host() else {
            return Ok((bind::bind(bind, port)?, None));
        };
        // SECURITY: an IP literal is how HTTP.sys users keep a prefix to one address (often 127.0.0.1, to
        // stay local). Listening on every address and relying on routing alone would still accept
        // connections from every network, and a `+` group added later on the port would be served to them;
        // so the port listens on that address only.
        if !bind::covers(bind.iter().copied(), *ip) {
            let bind: Vec<String> = bind.iter().map(ToString::to_string).collect();
            return Err(ServerError::Config(vec![format!(
                "{prefix} names {ip}, which is not among the bind addresses ({})",
                bind.join(", ")
            )]));
        }
        Ok((bind::bind(&[*ip], port)?, Some(*ip)))
    }

    /// Deletes a URL group (the original's DeleteUrlGroup). Its URLs stop being served at once; a port left
    /// with no group is closed. Transfers already under way finish.
    pub fn delete_url_group(&self, prefix: impl IntoPrefix) -> Result<(), ServerError> {
        let prefix = prefix.into_prefix()?;
        self.shared.events.record(
            || {
                let mut state = self.state();
                remove_group(&mut state, &prefix)?;
                self.publish_routes(&state);
                Ok(())
            },
            |()| Some(Change::GroupDeleted(prefix.to_string())),
        )
    }

    /// The group with this prefix (the original's GetUrlGroup).
    pub fn url_group(&self, prefix: impl IntoPrefix) -> Result<UrlGroup, ServerError> {
        let prefix = prefix.into_prefix()?;
        self.state()
            .groups
            .iter()
            .find(|g| *g.prefix() == prefix)
            .cloned()
            .ok_or_else(|| ServerError::GroupNotFound(prefix.to_string()))
    }

    /// Bytes of file bodies sent with `sendfile(2)` since the server was built (0 when
    /// [`ServerBuilder::zero_copy`] is off): how an operator or a test sees that zero-copy is in use.
    pub fn zero_copy_bytes(&self) -> u64 {
        self.shared
            .site
            .zero_copy
            .as_ref()
            .map_or(0, |sent| sent.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// What the server is sending now: each group's downloads in progress (at most `max_downloads` listed
    /// in all, so the answer stays bounded however many there are) and limits, and the server-wide bounds.
    pub fn status(&self, max_downloads: usize) -> ServerStatus {
        let site = &self.shared.site;
        let (transfers, transfers_max) = site.transfers.in_use();
        let mut groups = Vec::new();
        let mut listed = 0;
        let mut in_progress = 0;
        for group in self.url_groups() {
            let status = group.status(max_downloads.saturating_sub(listed));
            listed += status.downloads.len();
            in_progress += status.downloads_in_progress;
            groups.push(status);
        }
        ServerStatus {
            transfers: transfers as u64,
            transfers_max: transfers_max as u64,
            transfers_per_source_max: site.transfers.per_source(),
            connections_max: site.settings.max_connections as u64,
            groups,
            downloads_listed: listed as u64,
            downloads_truncated: in_progress > listed as u64,
        }
    }

    /// This server's metrics (requests, bytes and downloads by group, refusals, connections, TLS
    /// handshakes, authentication failures); [`Metrics::render`] is what a Prometheus scrapes.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.site.metrics.clone()
    }

    /// Reopens the access-log file (after logrotate renamed it; `bcs` calls this on SIGHUP). Lines of
    /// requests that ended before go to the old file. Does nothing without an access log, or when it
    /// goes to standard output.
    pub fn reopen_access_log(&self) {
        if let Some(log) = &self.shared.site.access_log {
            log.reopen();
        }
    }

    /// All groups, in creation order (the original's EnumerateUrlGroups).
    pub fn url_groups(&self) -> Vec<UrlGroup> {
        self.state().groups.clone()
    }

    /// Publishes `file` as `prefix` + `suffix`, creating the group if it does not exist (the original's
    /// CreateUrl).
    pub fn create_url(
        &self,
        prefix: impl IntoPrefix,
        suffix: &str,
        file: impl AsRef<Path>,
        sddl: Option<&str>,
    ) -> Result<Url, ServerError> {
        let prefix = prefix.into_prefix()?;
        let group = match self.url_group(&prefix) {
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
            self.shared
                .site
                .metrics
                .watch_read_budget(running.read_budget());
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
        let _ = self.shared.events.record(
            || {
                let auth = &self.shared.site.auth;
                auth.principals.store(Some(Arc::new(principals)));
                Ok::<(), std::convert::Infallible>(())
            },
            |()| Some(Change::PrincipalsChanged),
        );
    }

    /// The users and groups set with [`Server::set_principals`], if any.
    pub fn principals(&self) -> Option<Principals> {
        let principals = self.shared.site.auth.principals.load_full();
        principals.map(|p| Principals::clone(&p))
    }

    /// Calls `listener` with each change made to the server from now on, through any handle, in the order
    /// made (replacing any listener set before). It runs while the change is recorded: keep it short, and
    /// make no change to the server from it.
    pub fn on_change(&self, listener: impl Fn(&Change) + Send + Sync + 'static) {
        self.shared.events.listen(Box::new(listener));
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    /// What the serve loop reads, authentication included (the management listener authenticates with it).
    #[cfg_attr(not(feature = "service"), allow(dead_code))]
    pub(crate) fn site(&self) -> &Arc<Site> {
        &self.shared.site
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
        self.state.lock().recover()
    }
}
