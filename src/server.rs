//! `Server`: the composition root. It owns the URL groups, the routing snapshot, the listeners (one per
//! port, on each bind address) and the serve loop, and is the library's equivalent of the original
//! `ICompactServer`.
//!
//! Invariants: every port used by a group has a bound listener (bound when the first group on it is
//! created, so "port in use" is an error there and then); a port left with no group is closed; one port
//! carries one scheme; the routing snapshot is rebuilt under the state lock after every change.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};

use crate::auth::{FailureLimiter, Principals};
use crate::authz::Sid;
use crate::files::FileCache;
use crate::router::RouteTable;
use crate::serve::{self, Running};
use crate::tls::{
    CertificateInfo, ClientCertificates, PortConfigs, PortTls, ServerCertificate, TlsError,
};
use crate::url::{PrefixError, Scheme, Url, UrlError, UrlGroup, UrlPrefix};

/// Why a server operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The builder was given settings that cannot work; every problem is listed.
    #[error("invalid server configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// The prefix does not parse.
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    /// A group with this prefix exists already.
    #[error("the URL group {0} exists already")]
    GroupExists(String),
    /// No group has this prefix.
    #[error("no URL group {0}")]
    GroupNotFound(String),
    /// http and https cannot share a port.
    #[error("port {port} already serves {existing} URL groups, so it cannot serve {requested}")]
    SchemeConflict {
        /// The port.
        port: u16,
        /// The scheme already on it.
        existing: Scheme,
        /// The scheme asked for.
        requested: Scheme,
    },
    /// A certificate, key or CA file could not be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A certificate binding names a port that serves plain http.
    #[error("port {0} serves http URL groups; certificates bind to https ports")]
    NotHttps(u16),
    /// A listening socket could not be set up.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (often: the port is in use).
        #[source]
        source: std::io::Error,
    },
    /// `serve` was called before on this server (its listeners closed when it returned).
    #[error("serve was already called on this server")]
    AlreadyServing,
    /// Publishing a URL failed.
    #[error(transparent)]
    Url(#[from] UrlError),
}

/// Settings fixed when the server is built.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) bind: Vec<IpAddr>,
    pub(crate) domain: Option<Sid>,
    pub(crate) refuse_unknown_principals: bool,
    /// NTLM target (NetBIOS domain) and computer names, uppercase.
    pub(crate) ntlm_names: (String, String),
    pub(crate) header_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) drain_timeout: Duration,
    pub(crate) min_send_rate: u64,
    pub(crate) min_send_window: Duration,
    pub(crate) max_connections: usize,
    pub(crate) revalidate: Duration,
    pub(crate) cache_file_max: u64,
    pub(crate) cache_total: u64,
}

/// Builds a [`Server`]; every setter documents its default.
#[derive(Debug)]
pub struct ServerBuilder {
    config: Config,
    listeners: Vec<TcpListener>,
}

impl ServerBuilder {
    /// The local addresses each port listens on. Default is all IPv4 and all IPv6 addresses
    /// (`0.0.0.0` and `::`, the latter IPv6-only; skipped where the machine has no IPv6).
    pub fn bind_addresses(mut self, addrs: impl IntoIterator<Item = IpAddr>) -> Self {
        self.config.bind = addrs.into_iter().collect();
        self
    }

    /// The domain (or machine) SID that domain-relative SDDL aliases (DA, DU, LA, ...) resolve against.
    /// Default is none: such aliases are refused when a URL is added.
    pub fn domain_sid(mut self, sid: Sid) -> Self {
        self.config.domain = Some(sid);
        self
    }

    /// Refuses Kerberos principals that the principals file does not list. Default is off: an unknown
    /// principal is an Authenticated User with a SID derived from its name.
    pub fn refuse_unknown_principals(mut self, refuse: bool) -> Self {
        self.config.refuse_unknown_principals = refuse;
        self
    }

    /// Adopts an already bound listener: a group on its port uses it instead of binding. Useful to listen on
    /// port 0 in tests or to receive sockets from a service manager. Default is none.
    pub fn listener(mut self, listener: TcpListener) -> Self {
        self.listeners.push(listener);
        self
    }

    /// How long a client may take to send a request's headers, counted from when the server starts
    /// waiting for a request (so it also bounds silent keep-alive connections). Default is 120 s (HTTP.sys).
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.config.header_timeout = timeout;
        self
    }

    /// How long a TLS handshake may take; it runs in the connection's own task, so a stalled client only
    /// holds its own connection. Default is 10 s.
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How long a connection may go without a byte moving in either direction. Default is 120 s (HTTP.sys).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// The slowest a client may accept a response, in bytes per second, measured over `window` while the
    /// response waits on the client (its socket is full); a slower client is disconnected. 0 turns the check
    /// off. Default is 150 bytes/s (HTTP.sys's MinSendRate) over 10 s.
    pub fn min_send_rate(mut self, bytes_per_second: u64, window: Duration) -> Self {
        self.config.min_send_rate = bytes_per_second;
        self.config.min_send_window = window;
        self
    }

    /// How long shutdown waits for requests in flight before cutting them. Default is 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// The most connections served at once, over all ports; further clients wait in the listen backlog.
    /// Default is 10 000.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// How long what is known of a file (its length, validators and, for small files, its bytes) is trusted
    /// before a request checks the file again with a `stat`. Every response is built from one consistent
    /// version; a file changed on disk is served changed at most this long after. Zero checks on every
    /// request. Default is 1 s (nginx's `open_file_cache_valid` defaults to 60 s).
    pub fn revalidate_interval(mut self, interval: Duration) -> Self {
        self.config.revalidate = interval;
        self
    }

    /// Files up to this size are kept in memory once read. Default is 256 KiB.
    pub fn memory_cache_file_limit(mut self, bytes: u64) -> Self {
        self.config.cache_file_max = bytes;
        self
    }

    /// The most bytes of small files kept in memory over all URLs. Default is 64 MiB.
    pub fn memory_cache_total(mut self, bytes: u64) -> Self {
        self.config.cache_total = bytes;
        self
    }

    /// Checks the settings and builds the server; reports every problem at once.
    pub fn build(self) -> Result<Server, ServerError> {
        let c = &self.config;
        let mut problems = Vec::new();
        if c.bind.is_empty() {
            problems.push("no bind address".to_owned());
        }
        for (name, d) in [
            ("header timeout", c.header_timeout),
            ("idle timeout", c.idle_timeout),
            ("TLS handshake timeout", c.handshake_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("the {name} must be more than zero"));
            }
        }
        if c.min_send_rate > 0 && c.min_send_window.is_zero() {
            problems.push("the minimum send rate needs a window of more than zero".to_owned());
        }
        if c.max_connections == 0 {
            problems.push("the connection limit must be at least 1".to_owned());
        }
        let mut prebound: HashMap<u16, Vec<TcpListener>> = HashMap::new();
        for listener in self.listeners {
            match listener.local_addr().and_then(|a| {
                listener.set_nonblocking(true)?;
                Ok(a)
            }) {
                Ok(addr) => prebound.entry(addr.port()).or_default().push(listener),
                Err(e) => problems.push(format!("an adopted listener is not usable: {e}")),
            }
        }
        if !problems.is_empty() {
            return Err(ServerError::Config(problems));
        }
        let files = FileCache::new(c.revalidate, c.cache_file_max, c.cache_total);
        Ok(Server {
            shared: Arc::new(Shared {
                config: self.config,
                files,
                routes: ArcSwap::from_pointee(RouteTable::default()),
                tls: ArcSwap::from_pointee(HashMap::new()),
                principals: ArcSwapOption::empty(),
                failures: FailureLimiter::default(),
                #[cfg(feature = "negotiate")]
                kerberos: std::sync::OnceLock::new(),
                state: Mutex::new(State {
                    groups: Vec::new(),
                    ports: HashMap::new(),
                    tls: HashMap::new(),
                    prebound,
                    running: None,
                    served: false,
                }),
            }),
        })
    }
}

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
    pub(crate) routes: ArcSwap<RouteTable>,
    /// The rustls configuration of each port that has TLS settings, rebuilt on every change.
    pub(crate) tls: ArcSwap<HashMap<u16, PortConfigs>>,
    /// Users and groups for Basic, NTLM and certificate mapping.
    pub(crate) principals: ArcSwapOption<Principals>,
    /// Failed authentications per client address.
    pub(crate) failures: FailureLimiter,
    /// The Kerberos acceptor credential, from the keytab, acquired on first use.
    #[cfg(feature = "negotiate")]
    kerberos: std::sync::OnceLock<Result<libgssapi::credential::Cred, String>>,
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
    pub(crate) sockets: Vec<TcpListener>,
    pub(crate) stop: tokio_util::sync::CancellationToken,
}

impl Port {
    pub(crate) fn is_tls(&self) -> bool {
        self.scheme == Scheme::Https
    }
}

impl Server {
    /// A builder with the documented defaults.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            config: Config {
                bind: vec![
                    IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                ],
                domain: None,
                refuse_unknown_principals: false,
                ntlm_names: {
                    let host = local_host_name();
                    (host.clone(), host)
                },
                header_timeout: Duration::from_secs(120),
                handshake_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(120),
                drain_timeout: Duration::from_secs(30),
                min_send_rate: 150,
                min_send_window: Duration::from_secs(10),
                max_connections: 10_000,
                revalidate: Duration::from_secs(1),
                cache_file_max: 256 * 1024,
                cache_total: 64 * 1024 * 1024,
            },
            listeners: Vec::new(),
        }
    }

    /// Creates a URL group (the original's CreateUrlGroup). Its port gets a listener now if it has none.
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
            Some(_) => {}
            None => {
                let sockets = match state.prebound.remove(&port) {
                    Some(adopted) => adopted,
                    None => bind(&self.shared.config.bind, port)?,
                };
                let addrs = sockets.iter().filter_map(|s| s.local_addr().ok()).collect();
                let mut p = Port {
                    scheme: prefix.scheme(),
                    addrs,
                    sockets,
                    stop: tokio_util::sync::CancellationToken::new(),
                };
                if let Some(running) = &state.running {
                    running.start_port(port, &mut p);
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
        serve::run(&self.shared, shutdown).await
    }

    /// Sets the users and groups that Basic, NTLM and client-certificate mapping use; applies to the next
    /// request. Default is none: no password is accepted.
    pub fn set_principals(&self, principals: Principals) {
        self.shared.principals.store(Some(Arc::new(principals)));
    }

    /// Binds the port's certificate (the original's SetSslCertificate), replacing any: new handshakes use it
    /// at once, connections in flight keep the old one. Clients that send no SNI, or a name with no
    /// certificate of its own, get this one.
    pub fn set_ssl_certificate(
        &self,
        port: u16,
        cert: ServerCertificate,
    ) -> Result<(), ServerError> {
        self.change_tls(port, |tls| tls.default = Some(cert))
    }

    /// The port's certificate (the original's GetSslCertificate).
    pub fn ssl_certificate(&self, port: u16) -> Option<CertificateInfo> {
        let state = self.state();
        let cert = state.tls.get(&port)?.default.as_ref()?;
        Some(cert.info().clone())
    }

    /// Removes the port's certificate (the original's RemoveSslCertificate); returns whether there was one.
    pub fn remove_ssl_certificate(&self, port: u16) -> Result<bool, ServerError> {
        let mut had = false;
        self.change_tls(port, |tls| had = tls.default.take().is_some())?;
        Ok(had)
    }

    /// Binds a certificate for one host name on the port, chosen by SNI (case-insensitive).
    pub fn set_sni_certificate(
        &self,
        port: u16,
        host: &str,
        cert: ServerCertificate,
    ) -> Result<(), ServerError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.change_tls(port, |tls| {
            tls.by_name.insert(host, cert);
        })
    }

    /// Removes a host name's certificate; returns whether there was one.
    pub fn remove_sni_certificate(&self, port: u16, host: &str) -> Result<bool, ServerError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let mut had = false;
        self.change_tls(port, |tls| had = tls.by_name.remove(&host).is_some())?;
        Ok(had)
    }

    /// Sets whether and how clients on the port present certificates. Default is off.
    pub fn set_client_certificates(
        &self,
        port: u16,
        clients: ClientCertificates,
    ) -> Result<(), ServerError> {
        self.change_tls(port, |tls| tls.clients = clients)
    }

    /// Whether the port offers HTTP/2 through ALPN. Default is on; ports whose groups authenticate the
    /// connection itself (NTLM, Negotiate) need HTTP/1.1 only.
    pub fn set_http2(&self, port: u16, enabled: bool) -> Result<(), ServerError> {
        self.change_tls(port, |tls| tls.http2 = enabled)
    }

    /// Applies a change to a port's TLS settings, rebuilds its rustls configuration and publishes it; on
    /// error nothing changes.
    fn change_tls(&self, port: u16, change: impl FnOnce(&mut PortTls)) -> Result<(), ServerError> {
        let mut state = self.state();
        if state.ports.get(&port).is_some_and(|p| !p.is_tls()) {
            return Err(ServerError::NotHttps(port));
        }
        let mut tls = state.tls.get(&port).cloned().unwrap_or_default();
        change(&mut tls);
        let config = tls.build()?;
        state.tls.insert(port, tls);
        let mut configs = HashMap::clone(&self.shared.tls.load());
        configs.insert(port, config);
        self.shared.tls.store(Arc::new(configs));
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared.state()
    }

    fn publish_routes(&self, state: &State) {
        self.shared
            .routes
            .store(Arc::new(RouteTable::new(&state.groups)));
    }
}

impl Shared {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The acceptor credential from the default keytab (KRB5_KTNAME), acquired once.
    #[cfg(feature = "negotiate")]
    pub(crate) fn kerberos_credential(&self) -> Result<libgssapi::credential::Cred, String> {
        use libgssapi::credential::{Cred, CredUsage};
        self.kerberos
            .get_or_init(|| {
                Cred::acquire(None, None, CredUsage::Accept, None).map_err(|e| e.to_string())
            })
            .clone()
    }
}

impl State {
    /// The ports, for the serve loop to start and stop.
    pub(crate) fn ports_mut(&mut self) -> impl Iterator<Item = (&u16, &mut Port)> {
        self.ports.iter_mut()
    }
}

/// The machine's name, uppercase and cut to NetBIOS's 15 characters, for NTLM's target information.
fn local_host_name() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = name
        .trim()
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(15)
        .collect();
    if name.is_empty() {
        "BCS".to_owned()
    } else {
        name.to_ascii_uppercase()
    }
}

/// Binds `port` on each address. An IPv6 wildcard that the machine cannot bind (no IPv6) is skipped when
/// another address was bound.
fn bind(addrs: &[IpAddr], port: u16) -> Result<Vec<TcpListener>, ServerError> {
    let mut sockets = Vec::new();
    let mut skipped = None;
    for ip in addrs {
        let addr = SocketAddr::new(*ip, port);
        match bind_one(addr) {
            Ok(socket) => sockets.push(socket),
            Err(e) if ip.is_ipv6() && ip.is_unspecified() && no_ipv6(&e) => {
                skipped = Some((addr, e))
            }
            Err(source) => return Err(ServerError::Bind { addr, source }),
        }
    }
    match (sockets.is_empty(), skipped) {
        (true, Some((addr, source))) => Err(ServerError::Bind { addr, source }),
        (_, Some((addr, e))) => {
            tracing::warn!(%addr, error = %e, "IPv6 is not available; listening on IPv4 only");
            Ok(sockets)
        }
        _ => Ok(sockets),
    }
}

fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(97 /* EAFNOSUPPORT */) | Some(99 /* EADDRNOTAVAIL */)
    )
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // So that `::` and `0.0.0.0` can both be bound on one port.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
