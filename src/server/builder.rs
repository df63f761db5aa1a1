//! `ServerBuilder` and the settings fixed when a server is built, with their documented defaults.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::http::{Settings, Site};
use super::{Server, ServerError, Shared, State};
use crate::access_log::{AccessLog, AccessLogSink, AccessLogTarget};
use crate::auth::Authenticator;
use crate::authz::Sid;
use crate::files::FileCache;
use crate::limits::{SourceTransfers, PER_SOURCE};
use crate::metrics::Metrics;
use crate::router::RouteTable;

/// Settings fixed when the server is built.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) bind: Vec<IpAddr>,
    pub(crate) domain: Option<Sid>,
    pub(crate) refuse_unknown_principals: bool,
    /// NTLM target (NetBIOS domain) and computer names, uppercase.
    pub(crate) ntlm_names: (String, String),
    /// Connection deadlines and bounds, as the serve loop takes them.
    pub(crate) serve: Settings,
    pub(crate) max_transfers_per_source: u32,
    pub(crate) revalidate: Duration,
    pub(crate) cache_file_max: u64,
    pub(crate) cache_total: u64,
    pub(crate) zero_copy: bool,
    pub(crate) access_log: Option<AccessLog>,
    pub(crate) content_dir: Option<std::path::PathBuf>,
}

/// Builds a [`Server`]; every setter documents its default.
#[derive(Debug)]
pub struct ServerBuilder {
    config: Config,
    listeners: Vec<TcpListener>,
}

impl ServerBuilder {
    /// The local addresses each port listens on. Default is all IPv4 and all IPv6 addresses
    /// (`0.0.0.0` and `::`, the latter IPv6-only; skipped where the machine has no IPv6). A port opened by
    /// a prefix whose host is an IP literal listens on that address only, which must be one of these or
    /// fall under a wildcard among them.
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
        self.config.serve.header_timeout = timeout;
        self
    }

    /// How long a TLS handshake may take; it runs in the connection's own task, so a stalled client only
    /// holds its own connection. Default is 10 s.
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.serve.handshake_timeout = timeout;
        self
    }

    /// How long a connection may go without a byte moving in either direction. Default is 120 s (HTTP.sys).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.serve.idle_timeout = timeout;
        self
    }

    /// The slowest a client may accept a response, in bytes per second, measured over `window` while the
    /// response waits on the client (its socket is full); a slower client is disconnected. 0 turns the check
    /// off. Default is 150 bytes/s (HTTP.sys's MinSendRate) over 10 s.
    pub fn min_send_rate(mut self, bytes_per_second: u64, window: Duration) -> Self {
        self.config.serve.min_send_rate = bytes_per_second;
        self.config.serve.min_send_window = window;
        self
    }

    /// How long shutdown waits for requests in flight before cutting them. Default is 30 s.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.serve.drain_timeout = timeout;
        self
    }

    /// The most connections served at once, over all ports; further clients wait in the listen backlog.
    /// Default is 10 000.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.serve.max_connections = n;
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

    /// Where content-addressed files are: URLs whose configuration carries a
    /// [`ContentRecord`](crate::config::ContentRecord) are served from `dir/SHA256` (the hash in hex),
    /// with validators from the record, and answered 503 with `Retry-After` until that file exists. A
    /// fleet's node keeps its verified copies there; whatever writes it must put a file there only once
    /// its hash is checked, by a rename. Default: none, and such URLs are refused.
    pub fn content_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.config.content_dir = Some(dir.into());
        self
    }

    /// The most bytes of small files kept in memory over all URLs. Default is 64 MiB.
    pub fn memory_cache_total(mut self, bytes: u64) -> Self {
        self.config.cache_total = bytes;
        self
    }

    /// The most downloads (GET requests being answered) one client source (an IPv4 address or an IPv6 /64)
    /// runs at once, over all groups; one more gets 503 with Retry-After. Default is 128. SECURITY: this
    /// is what keeps one client from holding every file descriptor and the whole read budget.
    pub fn max_transfers_per_source(mut self, n: u32) -> Self {
        self.config.max_transfers_per_source = n;
        self
    }

    /// Whether file bodies on plain HTTP/1.1 connections are sent with `sendfile(2)`, from the file to the
    /// socket inside the kernel, instead of being read into memory and written out. Default is on. TLS,
    /// HTTP/2 and groups with a bandwidth limit always read and write. [`Server::zero_copy_bytes`] counts
    /// what went by `sendfile`.
    pub fn zero_copy(mut self, enabled: bool) -> Self {
        self.config.zero_copy = enabled;
        self
    }

    /// Writes one access-log line per request, when its response body ends (or is cut), to a file or
    /// standard output, in the combined log format or as JSON lines; see [`crate::access_log`]. Lines are
    /// written off the request path and dropped (counted in the metrics) when the writer falls behind.
    /// Default is none: only the `bits_compact::access` tracing event.
    pub fn access_log(mut self, log: AccessLog) -> Self {
        self.config.access_log = Some(log);
        self
    }

    /// Takes every setting from `settings` (as [`Server::config`] reports them).
    pub fn settings(
        mut self,
        settings: &crate::config::ServerSettings,
    ) -> Result<Self, ServerError> {
        let s = settings;
        let ms = Duration::from_millis;
        let domain = s
            .domain_sid
            .as_deref()
            .map(str::parse::<Sid>)
            .transpose()
            .map_err(|e| ServerError::Config(vec![format!("domain_sid: {e}")]))?;
        self.config = Config {
            bind: s.bind.clone(),
            domain,
            refuse_unknown_principals: s.refuse_unknown_principals,
            serve: Settings {
                header_timeout: ms(s.header_timeout_ms),
                handshake_timeout: ms(s.handshake_timeout_ms),
                idle_timeout: ms(s.idle_timeout_ms),
                drain_timeout: ms(s.drain_timeout_ms),
                min_send_rate: s.min_send_rate,
                min_send_window: ms(s.min_send_window_ms),
                max_connections: s.max_connections,
            },
            max_transfers_per_source: s.max_transfers_per_source,
            revalidate: ms(s.revalidate_ms),
            cache_file_max: s.memory_cache_file_limit,
            cache_total: s.memory_cache_total,
            ..self.config
        };
        Ok(self)
    }

    /// Checks the settings and builds the server; reports every problem at once.
    pub fn build(self) -> Result<Server, ServerError> {
        let c = &self.config;
        let mut problems = Vec::new();
        if c.bind.is_empty() {
            problems.push("no bind address".to_owned());
        }
        for (name, d) in [
            ("header timeout", c.serve.header_timeout),
            ("idle timeout", c.serve.idle_timeout),
            ("TLS handshake timeout", c.serve.handshake_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("the {name} must be more than zero"));
            }
        }
        if c.serve.min_send_rate > 0 && c.serve.min_send_window.is_zero() {
            problems.push("the minimum send rate needs a window of more than zero".to_owned());
        }
        if c.max_transfers_per_source == 0 {
            problems.push("the transfers per source must be at least 1".to_owned());
        }
        if c.serve.max_connections == 0 {
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
        let files = FileCache::with_content_dir(
            c.revalidate,
            c.cache_file_max,
            c.cache_total,
            c.content_dir.clone(),
        );
        let zero_copy = c.zero_copy.then(Arc::default);
        let metrics = Arc::new(Metrics::new(zero_copy.clone()));
        let access_log = match &c.access_log {
            Some(log) => Some(
                AccessLogSink::start(log, metrics.access_log_dropped.clone()).map_err(
                    |source| ServerError::AccessLog {
                        path: match &log.target {
                            AccessLogTarget::File(path) => path.clone(),
                            AccessLogTarget::Stdout => "-".into(),
                        },
                        source,
                    },
                )?,
            ),
            None => None,
        };
        let site = Site {
            settings: c.serve.clone(),
            routes: ArcSwap::from_pointee(RouteTable::default()),
            tls: ArcSwap::from_pointee(HashMap::new()),
            auth: Authenticator::new(c.ntlm_names.clone(), c.refuse_unknown_principals),
            transfers: SourceTransfers::new(c.max_transfers_per_source),
            zero_copy,
            metrics,
            access_log,
        };
        Ok(Server {
            shared: Arc::new(Shared {
                config: self.config,
                files,
                events: Arc::default(),
                site: Arc::new(site),
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

impl Default for Config {
    fn default() -> Self {
        Config {
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
            serve: Settings {
                header_timeout: Duration::from_secs(120),
                handshake_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(120),
                drain_timeout: Duration::from_secs(30),
                min_send_rate: 150,
                min_send_window: Duration::from_secs(10),
                max_connections: 10_000,
            },
            max_transfers_per_source: PER_SOURCE,
            revalidate: Duration::from_secs(1),
            cache_file_max: 256 * 1024,
            cache_total: 64 * 1024 * 1024,
            zero_copy: true,
            access_log: None,
            content_dir: None,
        }
    }
}

impl ServerBuilder {
    pub(super) fn new() -> Self {
        ServerBuilder {
            config: Config::default(),
            listeners: Vec::new(),
        }
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
