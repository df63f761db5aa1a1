//! The server's configuration as data: read it whole ([`Server::config`]), make a server match it
//! ([`Server::apply`]), or build a server from it ([`Server::from_config`]).
//!
//! `apply` is all-or-nothing: every prefix, SDDL, file, certificate and port is checked, opened or bound
//! before anything changes, so a configuration with one bad part leaves the server as it was. It is
//! idempotent: applying what `config` returned changes nothing that a client could see. Groups the
//! configuration does not name are deleted; groups it names keep their handles and get its settings and
//! URLs exactly.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use super::{local_addrs, remove_group, Config, Server, ServerError, State};
use crate::change::Change;
use crate::config::{
    ClientCertConfig, GroupConfig, ServerConfig, ServerSettings, TlsBinding, UrlConfig,
};
use crate::metrics::GroupSeries;
use crate::tls::{ClientCertificates, PortTls, ServerCertificate};
use crate::url::{Prepared, UrlGroup, UrlPrefix, UrlScheme};

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Config {
    /// These settings as data.
    pub(crate) fn settings(&self) -> ServerSettings {
        ServerSettings {
            bind: self.bind.clone(),
            domain_sid: self.domain.as_ref().map(ToString::to_string),
            refuse_unknown_principals: self.refuse_unknown_principals,
            header_timeout_ms: ms(self.serve.header_timeout),
            handshake_timeout_ms: ms(self.serve.handshake_timeout),
            idle_timeout_ms: ms(self.serve.idle_timeout),
            drain_timeout_ms: ms(self.serve.drain_timeout),
            min_send_rate: self.serve.min_send_rate,
            min_send_window_ms: ms(self.serve.min_send_window),
            max_connections: self.serve.max_connections,
            max_transfers_per_source: self.max_transfers_per_source,
            revalidate_ms: ms(self.revalidate),
            memory_cache_file_limit: self.cache_file_max,
            memory_cache_total: self.cache_total,
        }
    }
}

impl Server {
    /// A new server built with `config`'s settings and then made to match it (see [`Server::apply`]).
    pub fn from_config(config: &ServerConfig) -> Result<Server, ServerError> {
        let server = Server::builder().settings(&config.settings)?.build()?;
        server.apply(config)?;
        Ok(server)
    }

    /// The whole configuration: settings, groups (in creation order, URLs sorted by suffix), TLS per
    /// port, principals.
    ///
    /// SECURITY: it carries the secrets a server holds, so that it can be stored and applied again: a
    /// self-signed certificate's private key as PEM, PKCS#12 passwords, users' argon2 and NT hashes. Keep
    /// what is written from it private, as the principals file; to show or log it, use
    /// [`ServerConfig::without_secrets`].
    pub fn config(&self) -> ServerConfig {
        let state = self.state();
        let mut tls: Vec<TlsBinding> = state
            .tls
            .iter()
            .map(|(port, t)| tls_binding(*port, t))
            .collect();
        tls.sort_by_key(|t| t.port);
        ServerConfig {
            settings: self.shared.config.settings(),
            groups: state.groups.iter().map(group_config).collect(),
            tls,
            principals: self.principals(),
        }
    }

    /// One group's configuration, with its URLs.
    pub fn group_config(&self, prefix: impl super::IntoPrefix) -> Result<GroupConfig, ServerError> {
        Ok(group_config(&self.url_group(prefix)?))
    }

    /// One https port's TLS settings, if it has any.
    pub fn tls_binding(&self, port: u16) -> Option<TlsBinding> {
        self.state().tls.get(&port).map(|t| tls_binding(port, t))
    }

    /// Makes the server match `config`: creates, changes and deletes groups, URLs and TLS bindings, and
    /// sets the principals. All or nothing: on any error nothing has changed. The settings must be the
    /// server's own (they are fixed when it is built). Listeners get one [`Change::Applied`].
    pub fn apply(&self, config: &ServerConfig) -> Result<(), ServerError> {
        self.shared.events.record(
            || {
                let mut state = self.state();
                let plan = self.plan(&mut state, config)?;
                self.commit(&mut state, plan);
                Ok(())
            },
            |()| Some(Change::Applied),
        )
    }

    /// Checks everything, opens every file and binds every new port, changing nothing.
    fn plan(&self, state: &mut State, config: &ServerConfig) -> Result<Plan, ServerError> {
        if config.settings != self.shared.config.settings() {
            return Err(ServerError::FixedSettings);
        }
        let mut seen: Vec<&UrlPrefix> = Vec::new();
        let mut ports: HashMap<u16, PortPlan> = HashMap::new();
        let mut groups = Vec::with_capacity(config.groups.len());
        for g in &config.groups {
            if seen.contains(&&g.prefix) {
                return Err(ServerError::GroupExists(g.prefix.to_string()));
            }
            seen.push(&g.prefix);
            let existing = state
                .groups
                .iter()
                .find(|e| *e.prefix() == g.prefix)
                .cloned();
            if existing.is_none() {
                self.plan_port(state, &mut ports, &g.prefix)?;
            }
            let scratch = existing
                .clone()
                .unwrap_or_else(|| self.scratch_group(&g.prefix));
            groups.push((existing, g.prefix.clone(), prepare(&scratch, g)?));
        }
        let mut tls = HashMap::new();
        for binding in &config.tls {
            let https = state
                .ports
                .get(&binding.port)
                .map(|p| p.scheme)
                .or_else(|| ports.get(&binding.port).map(|p| p.scheme));
            if https.is_some_and(|s| s != UrlScheme::Https) {
                return Err(ServerError::NotHttps(binding.port));
            }
            let port_tls = port_tls(binding)?;
            let built = port_tls.build()?;
            if tls.insert(binding.port, (port_tls, built)).is_some() {
                return Err(ServerError::Config(vec![format!(
                    "port {} has two TLS bindings",
                    binding.port
                )]));
            }
        }
        Ok(Plan {
            groups,
            ports,
            tls,
            principals: config.principals.clone(),
        })
    }

    /// Checks a new group's port against the ports there are and those the plan opens; binds it if new.
    fn plan_port(
        &self,
        state: &mut State,
        ports: &mut HashMap<u16, PortPlan>,
        prefix: &UrlPrefix,
    ) -> Result<(), ServerError> {
        let (scheme, addrs, narrowed) =
            match (state.ports.get(&prefix.port()), ports.get(&prefix.port())) {
                (Some(p), _) => (p.scheme, p.addrs.clone(), p.narrowed_to),
                (None, Some(p)) => (p.scheme, local_addrs(&p.sockets), p.narrowed_to),
                (None, None) => {
                    let (sockets, narrowed_to) = self.open_port(state, prefix)?;
                    let plan = PortPlan {
                        scheme: prefix.scheme(),
                        sockets,
                        narrowed_to,
                    };
                    ports.insert(prefix.port(), plan);
                    return Ok(());
                }
            };
        super::port_serves(scheme, &addrs, narrowed, prefix)
    }

    /// A group not registered anywhere, to check and open a new group's URLs with.
    fn scratch_group(&self, prefix: &UrlPrefix) -> UrlGroup {
        UrlGroup::new(
            prefix.clone(),
            self.shared.files.clone(),
            self.shared.config.domain.clone(),
            Arc::default(),
            GroupSeries::detached(),
        )
    }

    /// Makes the planned changes; nothing here can fail.
    fn commit(&self, state: &mut State, mut plan: Plan) {
        let gone: Vec<UrlPrefix> = state
            .groups
            .iter()
            .map(|g| g.prefix().clone())
            .filter(|p| !plan.groups.iter().any(|(_, kept, _)| kept == p))
            .collect();
        for prefix in gone {
            let _ = remove_group(state, &prefix);
        }
        for (existing, prefix, prepared) in plan.groups {
            let group = match existing {
                Some(group) => group,
                None => {
                    let opened = plan
                        .ports
                        .remove(&prefix.port())
                        .map(|p| (p.sockets, p.narrowed_to));
                    match self.add_group(state, prefix.clone(), opened) {
                        Ok(group) => group,
                        Err(e) => {
                            // Checked in `plan`: cannot happen; never leave the rest half done for it.
                            tracing::error!(%prefix, error = %e, "a planned group could not be added");
                            continue;
                        }
                    }
                }
            };
            group.replace(prepared);
        }
        let mut configs = HashMap::new();
        state.tls.clear();
        for (port, (port_tls, built)) in plan.tls {
            state.tls.insert(port, port_tls);
            configs.insert(port, built);
        }
        self.shared.site.tls.store(Arc::new(configs));
        self.shared
            .site
            .auth
            .principals
            .store(plan.principals.map(Arc::new));
        self.publish_routes(state);
    }
}

/// Everything `apply` will do, checked and prepared.
struct Plan {
    /// Each configured group: its handle if it exists, its prefix, and what it will hold.
    groups: Vec<(Option<UrlGroup>, UrlPrefix, Prepared)>,
    /// New ports, bound.
    ports: HashMap<u16, PortPlan>,
    tls: HashMap<u16, (PortTls, crate::tls::PortConfigs)>,
    principals: Option<crate::auth::Principals>,
}

struct PortPlan {
    scheme: UrlScheme,
    sockets: Vec<TcpListener>,
    narrowed_to: Option<IpAddr>,
}

/// A group's settings and URLs, checked, with every file opened.
fn prepare(scratch: &UrlGroup, g: &GroupConfig) -> Result<Prepared, ServerError> {
    let mut urls = Vec::with_capacity(g.urls.len());
    let mut suffixes = HashSet::new();
    for u in &g.urls {
        let entry = scratch.prepare(
            &u.suffix,
            &u.file,
            u.content.as_ref(),
            u.sddl.as_deref(),
            false,
        )?;
        if !suffixes.insert(entry.suffix.key()) {
            return Err(crate::url::UrlError::Exists {
                prefix: g.prefix.to_string(),
                suffix: u.suffix.clone(),
            }
            .into());
        }
        urls.push(entry);
    }
    Ok(Prepared {
        schemes: g.auth.clone(),
        basic_over_http: g.allow_basic_over_http,
        default_sddl: scratch.parse_default_sddl(g.default_sddl.as_deref())?,
        connection_limit: g.connection_limit,
        bandwidth_limit: g.bandwidth_limit,
        cache_max_age: g.cache_max_age_secs.map(Duration::from_secs),
        index: g.index,
        urls,
    })
}

fn port_tls(binding: &TlsBinding) -> Result<PortTls, ServerError> {
    let mut t = PortTls {
        http2: binding.http2,
        ..PortTls::default()
    };
    if let Some(source) = &binding.certificate {
        t.default = Some(ServerCertificate::from_source(source)?);
    }
    for (name, source) in &binding.sni {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        t.by_name
            .insert(name, ServerCertificate::from_source(source)?);
    }
    if let Some(c) = &binding.client_certificates {
        t.clients = ClientCertificates::from_pem_files(c.mode, &c.ca, &c.crls)?;
    }
    Ok(t)
}

fn group_config(g: &UrlGroup) -> GroupConfig {
    GroupConfig {
        prefix: g.prefix().clone(),
        auth: g.authentication_schemes(),
        allow_basic_over_http: g.basic_over_http(),
        default_sddl: g.default_sddl().map(|sd| sd.to_string()),
        connection_limit: g.connection_limit(),
        bandwidth_limit: g.bandwidth_limit(),
        cache_max_age_secs: g.cache_max_age().map(|d| d.as_secs()),
        index: g.index(),
        urls: g
            .urls()
            .iter()
            .map(|u| UrlConfig {
                suffix: u.suffix().to_owned(),
                file: u.path().to_owned(),
                sddl: u.sddl().map(ToString::to_string),
                content: u.content().cloned(),
            })
            .collect(),
    }
}

fn tls_binding(port: u16, t: &PortTls) -> TlsBinding {
    TlsBinding {
        port,
        certificate: t.default.as_ref().map(|c| c.source().clone()),
        sni: t
            .by_name
            .iter()
            .map(|(name, c)| (name.clone(), c.source().clone()))
            .collect::<BTreeMap<_, _>>(),
        client_certificates: t.clients.ca_file().map(|ca| ClientCertConfig {
            mode: t.clients.mode(),
            ca: ca.to_owned(),
            crls: t.clients.crl_files().to_vec(),
        }),
        http2: t.http2,
    }
}
