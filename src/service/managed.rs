//! [`Managed`]: a server whose every change is stored. One writer at a time: a change is made on the
//! server (the same calls the library offers, each all-or-nothing), then committed to the store with who
//! made it; when the commit fails the server change is undone, so a failed call changes nothing and an
//! acknowledged one survives a crash.
//!
//! It is long (some 960 lines before its tests) because it is one method per management call, each a few
//! lines around the one `change` that stores it, plus `apply`'s merge and diff of whole configurations
//! and a fleet node's `follow`: split, the calls would no longer sit beside the invariant they share. What
//! could move out is the part-by-part serving that `start` and `follow` share (`serve_in_parts`,
//! `servable`).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::content::{ContentError, ContentStore};
use super::error::MgmtError;
use super::fleet_view::FleetView;
use super::service_jobs::ServiceJobs;
use super::settings::GroupSettings;
use crate::auth::{AuthScheme, Password, Principals};
use crate::config::{
    ContentRecord, GroupConfig, PreviousContent, ServerConfig, TlsBinding, UrlConfig,
};
use crate::lock::Recover;
use crate::service::store::{Audit, Delta, Store, StoreError, Stored};
use crate::tls::{CertificateSource, ServerCertificate};
use crate::url::{GroupProperty, UrlGroup, UrlPrefix};
use crate::Server;

/// A server and the store that keeps its configuration.
pub struct Managed {
    server: Server,
    store: Mutex<Box<dyn Store>>,
    /// Directories whose files are never published (the service's own state).
    private: Vec<std::path::PathBuf>,
    /// The download jobs the service runs, if any.
    jobs: Option<ServiceJobs>,
    /// The fleet this node belongs to, if any.
    fleet: Option<std::sync::Arc<dyn FleetView>>,
    /// What of the fleet's configuration this node cannot serve, and why.
    unserved: Mutex<Vec<String>>,
    /// The ports whose TLS binding (as the fleet holds it) this node cannot load, each with why.
    unserved_tls: Mutex<Vec<(u16, String)>>,
    /// A fleet's node publishes files by their content: copied into this store, named by hash.
    content: Option<Publisher>,
}

/// Where and as whom a node publishes by content.
struct Publisher {
    store: std::sync::Arc<ContentStore>,
    node: String,
}

/// How many times a change overtaken by another node's is tried (on the newer configuration each time).
const CONFLICT_ATTEMPTS: u32 = 5;

/// How long a change overtaken by another node's waits for this node to take that newer configuration.
const CONFLICT_WAIT: Duration = Duration::from_secs(3);

impl std::fmt::Debug for Managed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Managed")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// What to undo on the server when the store refuses a change.
enum Undo {
    /// Nothing was changed.
    Nothing,
    /// Put the whole configuration back (rare calls: groups, TLS, principals, apply).
    Config(Box<ServerConfig>),
    /// Remove a URL just added.
    RemoveUrl(UrlPrefix, String),
    /// Put back the URL a replacement took the place of.
    PutBackUrl(UrlGroup, crate::Url),
    /// Publish again, exactly as it was, a URL just removed.
    RestoreUrl(UrlGroup, crate::Url),
}

impl Managed {
    /// Loads the store and makes `server` serve what it holds. What can no longer be served (a file that
    /// was deleted, a port now taken) is left out with a warning, each returned, and stays stored: restore
    /// it and restart, or remove it. No file below a `private` directory (the service's own state: its
    /// store holds password hashes) is ever published, whatever asks for it.
    pub fn start(
        server: Server,
        mut store: Box<dyn Store>,
        private: &[std::path::PathBuf],
    ) -> Result<(Managed, Vec<String>), MgmtError> {
        let private: Vec<std::path::PathBuf> = private
            .iter()
            .map(|dir| dir.canonicalize().unwrap_or_else(|_| dir.clone()))
            .collect();
        let stored = store.load()?;
        let mut warnings = Vec::new();
        // SECURITY: a stored URL naming a private file (written elsewhere: another node, a copied
        // database) is left out.
        let servable = servable(&stored, &private, &mut warnings);
        let mut config = server.config();
        config.groups = servable.groups.clone();
        config.tls = servable.tls.clone();
        config.principals = servable.principals.clone();
        if let Err(whole) = server.apply(&config) {
            warnings.push(format!("the stored configuration cannot be served whole ({whole}); starting with what can be"));
            serve_in_parts(&server, &servable, &mut warnings);
        }
        for w in &warnings {
            tracing::warn!(target: "bits_compact::service", "{w}");
        }
        let managed = Managed {
            server,
            store: Mutex::new(store),
            private,
            jobs: None,
            fleet: None,
            unserved: Mutex::new(warnings.clone()),
            unserved_tls: Mutex::new(Vec::new()),
            content: None,
        };
        Ok((managed, warnings))
    }

    /// Runs download jobs too (`/v1/jobs`).
    pub fn with_jobs(mut self, jobs: ServiceJobs) -> Managed {
        let collector = super::job_metrics::JobsCollector(jobs.manager().clone());
        self.server
            .metrics()
            .register_collector(Box::new(collector));
        self.jobs = Some(jobs);
        self
    }

    /// Publishes files by their content (a fleet's node, whose server serves `store`'s directory): each
    /// file a URL is added or replaced with is hashed and copied into `store` first, and the URL records
    /// the content's identity with this `node` as its origin, so that every node can serve the same
    /// bytes (see [`ContentStore`]).
    pub fn with_content(mut self, store: std::sync::Arc<ContentStore>, node: &str) -> Managed {
        self.content = Some(Publisher {
            store,
            node: node.to_owned(),
        });
        self
    }

    /// The content record of `file`, published into the content store, when this node publishes by
    /// content; `None` otherwise.
    fn publish(&self, file: &std::path::Path) -> Result<Option<ContentRecord>, MgmtError> {
        let Some(p) = &self.content else {
            return Ok(None);
        };
        // A copy made for a call that is then refused is left to the fleet's clean-up, which removes
        // copies no URL names once they are a few minutes old: never removed here, where another call
        // may be naming the same bytes.
        let record = p.store.publish(file, &p.node).map_err(|e| match e {
            ContentError::Changing(_) => MgmtError::Conflict {
                code: "file_changing",
                message: e.to_string(),
            },
            ContentError::Io {
                what: "reading", ..
            } => MgmtError::Invalid {
                code: "file_unreadable",
                message: e.to_string(),
            },
            e => MgmtError::Internal(e.to_string()),
        })?;
        Ok(Some(record))
    }

    /// After a call that published `record`: when it succeeded, a URL names the copy, and its
    /// publication is over (see [`ContentStore::settled`]); when it failed, the copy is left to expire.
    fn settle<T>(&self, record: Option<&ContentRecord>, done: &Result<T, MgmtError>) {
        if let (Some(p), Some(r), Ok(_)) = (&self.content, record, done) {
            p.store.settled(&r.sha256);
        }
    }

    /// The download jobs, if the service runs them.
    pub fn jobs(&self) -> Option<&ServiceJobs> {
        self.jobs.as_ref()
    }

    /// SECURITY: a file below a private directory is refused, whatever path names it.
    fn refuse_private(&self, file: &std::path::Path) -> Result<(), MgmtError> {
        if is_private(&self.private, file) {
            return Err(MgmtError::Invalid {
                code: "private_path",
                message: format!(
                    "{}: the service's own files are never published",
                    file.display()
                ),
            });
        }
        Ok(())
    }

    /// SECURITY: a TLS change on a port whose binding this node cannot load (a certificate missing
    /// here) is refused: made here, it would start from this node's empty binding and replace the whole
    /// binding fleet-wide, losing its other (SNI) certificates.
    fn refuse_unserved_tls(&self, port: u16) -> Result<(), MgmtError> {
        let unserved = self.unserved_tls.lock().recover();
        match unserved.iter().find(|(p, _)| *p == port) {
            Some((_, why)) => Err(MgmtError::Conflict {
                code: "tls_unserved_here",
                message: format!("this node cannot load the certificate the fleet holds for port {port} ({why}); a TLS change made here would replace that port's whole binding on every node: make it through a node that serves port {port}"),
            }),
            None => Ok(()),
        }
    }

    /// The server.
    pub fn server(&self) -> &Server {
        &self.server
    }

    fn writer(&self) -> MutexGuard<'_, Box<dyn Store>> {
        self.store.lock().recover()
    }

    /// Makes one change: `op` changes the server and says what to store; the store commits it with the
    /// audit line, or the change is undone. A fleet's node first waits (bounded) until it serves the
    /// fleet's latest configuration, so that a change made through it sees the changes made through
    /// others just before. When a fleet's store refuses it because another node changed the
    /// configuration first, the change is undone, this node waits until it has taken that newer
    /// configuration, and `op` runs again on it (a few times at most).
    fn change<T>(
        &self,
        who: &str,
        what: String,
        mut op: impl FnMut(&Server) -> Result<(T, Vec<Delta>, Undo), MgmtError>,
    ) -> Result<T, MgmtError> {
        let audit = Audit {
            who: who.to_owned(),
            what,
        };
        let latest = self.writer().latest();
        match latest {
            Ok(Some(revision)) => self.await_revision(revision),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(target: "bits_compact::service", who, what = %audit.what, error = %e, "the store cannot take changes now");
                return Err(e.into());
            }
        }
        let mut attempt = 1;
        loop {
            let mut store = self.writer();
            let (value, deltas, undo) = op(&self.server)?;
            let started = std::time::Instant::now();
            let committed = store.commit(&deltas, &audit);
            self.server.metrics().commit_took(started.elapsed());
            let e = match committed {
                Ok(()) => {
                    tracing::info!(target: "bits_compact::service", who, what = %audit.what, "changed");
                    return Ok(value);
                }
                Err(e) => e,
            };
            self.undo(undo);
            match e {
                StoreError::Conflict { revision } if attempt < CONFLICT_ATTEMPTS => {
                    drop(store);
                    tracing::info!(target: "bits_compact::service", who, what = %audit.what, revision, attempt, "another node changed the configuration first; trying again on the newer one");
                    self.await_revision(revision);
                    attempt += 1;
                }
                e => {
                    tracing::error!(target: "bits_compact::service", who, what = %audit.what, error = %e, "the store refused a change; undoing it");
                    return Err(e.into());
                }
            }
        }
    }

    /// Waits (bounded) until the store holds `revision` of the shared configuration: the fleet's follower
    /// takes it through [`Managed::follow`], which needs the writer lock this does not hold.
    fn await_revision(&self, revision: i64) {
        let deadline = std::time::Instant::now() + CONFLICT_WAIT;
        while std::time::Instant::now() < deadline {
            if self.writer().revision().is_some_and(|r| r >= revision) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Makes the server serve `wanted`, the whole configuration as the fleet holds it at `revision`, and
    /// keeps it in the store's local copy: the other nodes' changes (and this node's own, which it has
    /// taken already) arriving in revision order. A revision the store holds already changes nothing.
    /// What this node cannot serve (a file or certificate missing here) is left out with a warning, kept
    /// for [`Managed::unserved`]; the rest is served. Returns whether the server changed.
    pub fn follow(&self, wanted: Stored, revision: i64) -> Result<bool, MgmtError> {
        let mut store = self.writer();
        // A store that follows nothing refuses before the server is touched: a refused call changes nothing.
        let Some(held) = store.revision() else {
            return Err(StoreError::NotShared.into());
        };
        if held >= revision {
            return Ok(false);
        }
        let before = self.server.config();
        let mut warnings = Vec::new();
        // SECURITY: this node's own state is checked here too: a URL added through another node may
        // name a file below this node's state directory.
        let servable = servable(&wanted, &self.private, &mut warnings);
        let mut target = before.clone();
        target.groups = servable.groups.clone();
        target.tls = servable.tls.clone();
        target.principals = servable.principals.clone();
        let changed = target != before;
        if changed {
            if let Err(whole) = self.server.apply(&target) {
                // Part by part from what is served now, nothing torn down: what cannot be taken keeps
                // being served as it was, with a warning.
                warnings.push(format!("the fleet's configuration at revision {revision} cannot be served whole ({whole}); serving what can be"));
                serve_in_parts(&self.server, &servable, &mut warnings);
            }
        }
        for w in &warnings {
            tracing::warn!(target: "bits_compact::service", revision, "{w}");
        }
        let unserved_tls = wanted
            .tls
            .iter()
            .filter(|t| !servable.tls.iter().any(|s| s.port == t.port))
            .map(|t| {
                let why = warnings
                    .iter()
                    .find(|w| w.starts_with(&format!("TLS on port {} ", t.port)))
                    .cloned()
                    .unwrap_or_default();
                (t.port, why)
            })
            .collect();
        *self.unserved.lock().recover() = warnings;
        *self.unserved_tls.lock().recover() = unserved_tls;
        store.follow(&wanted, revision)?;
        let changed = changed && self.server.config() != before;
        if changed {
            tracing::info!(target: "bits_compact::service", revision, "took the fleet's configuration");
        }
        Ok(changed)
    }

    /// What this node leaves out of the fleet's configuration, and why (a file or a certificate that
    /// cannot be loaded here); empty when it serves all of it.
    pub fn unserved(&self) -> Vec<String> {
        self.unserved.lock().recover().clone()
    }

    /// The revision of the shared configuration this node serves, when it is a fleet's node.
    pub fn revision(&self) -> Option<i64> {
        self.writer().revision()
    }

    /// Answers `GET /v1/fleet` through `view` (the fleet this node belongs to).
    pub fn with_fleet(mut self, view: std::sync::Arc<dyn FleetView>) -> Managed {
        self.fleet = Some(view);
        self
    }

    /// The fleet this node belongs to, if any.
    pub fn fleet(&self) -> Option<&std::sync::Arc<dyn FleetView>> {
        self.fleet.as_ref()
    }

    fn undo(&self, undo: Undo) {
        let result = match undo {
            Undo::Nothing => Ok(()),
            Undo::Config(config) => self.server.apply(&config).map_err(MgmtError::from),
            Undo::RemoveUrl(prefix, suffix) => self
                .server
                .url_group(&prefix)
                .map_err(MgmtError::from)
                .and_then(|g| g.remove_url(&suffix).map(drop).map_err(MgmtError::from)),
            Undo::RestoreUrl(group, url) => group.restore_url(&url).map_err(MgmtError::from),
            Undo::PutBackUrl(group, url) => {
                group.replace_url(&url).map(drop).map_err(MgmtError::from)
            }
        };
        if let Err(e) = result {
            tracing::error!(target: "bits_compact::service", error = %e, "a change the store refused could not be undone");
        }
    }

    /// Every group, with its URLs.
    pub fn groups(&self) -> Vec<GroupConfig> {
        self.server.config().groups
    }

    /// One group, with its URLs.
    pub fn group(&self, prefix: &UrlPrefix) -> Result<GroupConfig, MgmtError> {
        Ok(self.server.group_config(prefix)?)
    }

    /// Creates a group (the original's CreateUrlGroup) with these settings.
    pub fn create_group(
        &self,
        who: &str,
        prefix: &UrlPrefix,
        settings: &GroupSettings,
    ) -> Result<GroupConfig, MgmtError> {
        let settings = settings.parse()?;
        self.change(who, format!("create URL group {prefix}"), |server| {
            let group = server.create_url_group(prefix)?;
            if let Err(e) = settings.set_on(&group) {
                let _ = server.delete_url_group(prefix);
                return Err(e);
            }
            let config = server.group_config(prefix)?;
            let undo = Undo::Config(Box::new(without_group(server.config(), prefix)));
            Ok((config.clone(), vec![Delta::PutGroup(config)], undo))
        })
    }

    /// Changes a group's settings; all given or none.
    pub fn change_group(
        &self,
        who: &str,
        prefix: &UrlPrefix,
        settings: &GroupSettings,
    ) -> Result<GroupConfig, MgmtError> {
        let settings = settings.parse()?;
        self.change(who, format!("change URL group {prefix}"), |server| {
            let group = server.url_group(prefix)?;
            let before = server.config();
            if let Err(e) = settings.set_on(&group) {
                let _ = server.apply(&before);
                return Err(e);
            }
            let config = server.group_config(prefix)?;
            Ok((
                config.clone(),
                vec![Delta::PutGroup(config)],
                Undo::Config(Box::new(before)),
            ))
        })
    }

    /// Deletes a group and its URLs (the original's DeleteUrlGroup).
    pub fn delete_group(&self, who: &str, prefix: &UrlPrefix) -> Result<(), MgmtError> {
        self.change(who, format!("delete URL group {prefix}"), |server| {
            let before = server.config();
            let own = server.url_group(prefix)?.prefix().clone();
            server.delete_url_group(prefix)?;
            Ok((
                (),
                vec![Delta::DeleteGroup(own)],
                Undo::Config(Box::new(before)),
            ))
        })
    }

    /// One URL of a group (the original's IsUrlInUrlGroup, with what it serves).
    pub fn url(&self, prefix: &UrlPrefix, suffix: &str) -> Result<UrlConfig, MgmtError> {
        let group = self.server.url_group(prefix)?;
        let url = group
            .url(suffix)
            .ok_or_else(|| url_not_found(prefix, suffix))?;
        Ok(url_config(&url))
    }

    /// Publishes a file (the original's AddUrl). The file's path must be absolute: the service's working
    /// directory means nothing to the caller.
    pub fn add_url(
        &self,
        who: &str,
        prefix: &UrlPrefix,
        url: &UrlConfig,
    ) -> Result<UrlConfig, MgmtError> {
        check_absolute(&url.file)?;
        let what = format!("add URL {prefix}{} -> {}", url.suffix, url.file.display());
        self.refuse_private(&url.file)?;
        // Checked before the file is copied: a refused call leaves nothing behind.
        let group = self.server.url_group(prefix)?;
        if group.contains_url(&url.suffix) {
            return Err(crate::url::UrlError::Exists {
                prefix: group.prefix().to_string(),
                suffix: url.suffix.clone(),
            }
            .into());
        }
        let record = self.publish(&url.file)?;
        let added = self.change(who, what, |server| {
            let group = server.url_group(prefix)?;
            let added = match &record {
                Some(r) => group.add_content_url(&url.suffix, &url.file, r, url.sddl.as_deref())?,
                None => group.add_url(&url.suffix, &url.file, url.sddl.as_deref())?,
            };
            let added = url_config(&added);
            // The group's own prefix, not the caller's spelling of it (the segment ignores case).
            let prefix = group.prefix().clone();
            let undo = Undo::RemoveUrl(prefix.clone(), added.suffix.clone());
            Ok((added.clone(), vec![Delta::PutUrl(prefix, added)], undo))
        });
        self.settle(record.as_ref(), &added);
        added
    }

    /// Publishes a URL again (`PUT`): its file (re-read: a fleet's node hashes and copies it again, so
    /// every node moves to the new bytes) and, when `url.sddl` is given, its SDDL; without one it keeps
    /// its own. Requests see the old URL or the new one, never neither.
    pub fn replace_url(
        &self,
        who: &str,
        prefix: &UrlPrefix,
        url: &UrlConfig,
    ) -> Result<UrlConfig, MgmtError> {
        check_absolute(&url.file)?;
        let what = format!(
            "publish URL {prefix}{} again -> {}",
            url.suffix,
            url.file.display()
        );
        self.refuse_private(&url.file)?;
        if self.server.url_group(prefix)?.url(&url.suffix).is_none() {
            return Err(url_not_found(prefix, &url.suffix));
        }
        let record = self.publish(&url.file)?;
        let replaced = self.change(who, what, |server| {
            let group = server.url_group(prefix)?;
            let old = group
                .url(&url.suffix)
                .ok_or_else(|| url_not_found(prefix, &url.suffix))?;
            let sddl = url
                .sddl
                .clone()
                .or_else(|| old.sddl().map(ToString::to_string));
            // Other nodes serve the version before until they hold this one.
            let record = record.clone().map(|mut r| {
                r.previous =
                    old.content()
                        .filter(|c| c.sha256 != r.sha256)
                        .map(|c| PreviousContent {
                            sha256: c.sha256.clone(),
                            version: c.version,
                        });
                r
            });
            let new = group.prepared(old.suffix(), &url.file, record.as_ref(), sddl.as_deref())?;
            let before = group.replace_url(&new)?;
            let config = url_config(&new);
            let delta = Delta::PutUrl(group.prefix().clone(), config.clone());
            Ok((config, vec![delta], Undo::PutBackUrl(group, before)))
        });
        self.settle(record.as_ref(), &replaced);
        replaced
    }

    /// Unpublishes a URL (the original's RemoveUrl).
    pub fn remove_url(&self, who: &str, prefix: &UrlPrefix, suffix: &str) -> Result<(), MgmtError> {
        self.change(who, format!("remove URL {prefix}{suffix}"), |server| {
            let group = server.url_group(prefix)?;
            let url = group
                .url(suffix)
                .ok_or_else(|| url_not_found(prefix, suffix))?;
            if !group.remove_url(suffix)? {
                return Err(url_not_found(prefix, suffix));
            }
            let delta = Delta::DeleteUrl(group.prefix().clone(), url.suffix().to_owned());
            Ok(((), vec![delta], Undo::RestoreUrl(group, url)))
        })
    }

    /// Enables or disables a scheme on a group (the original's SetAuthentication).
    pub fn set_authentication(
        &self,
        who: &str,
        prefix: &UrlPrefix,
        scheme: AuthScheme,
        enable: bool,
    ) -> Result<GroupConfig, MgmtError> {
        let on = if enable { "on" } else { "off" };
        self.change(who, format!("set {scheme} {on} on {prefix}"), |server| {
            let group = server.url_group(prefix)?;
            let before = server.config();
            group.set_authentication(scheme, enable)?;
            let config = server.group_config(prefix)?;
            Ok((
                config.clone(),
                vec![Delta::PutGroup(config)],
                Undo::Config(Box::new(before)),
            ))
        })
    }

    /// Sets ConnectionLimit or BandwidthLimit (the original's SetProperty; `0xFFFFFFFF` is unlimited).
    pub fn set_property(
        &self,
        who: &str,
        prefix: &UrlPrefix,
        property: GroupProperty,
        value: u32,
    ) -> Result<GroupConfig, MgmtError> {
        self.change(
            who,
            format!("set {property:?} {value} on {prefix}"),
            |server| {
                let group = server.url_group(prefix)?;
                let before = server.config();
                group.set_property(property, value)?;
                let config = server.group_config(prefix)?;
                Ok((
                    config.clone(),
                    vec![Delta::PutGroup(config)],
                    Undo::Config(Box::new(before)),
                ))
            },
        )
    }

    /// The TLS bindings, by port.
    pub fn tls_bindings(&self) -> Vec<TlsBinding> {
        self.server.config().tls
    }

    /// One port's TLS binding.
    pub fn tls_binding(&self, port: u16) -> Result<TlsBinding, MgmtError> {
        self.server
            .tls_binding(port)
            .ok_or_else(|| certificate_not_found(port, None))
    }

    /// Binds a certificate to a port (the original's SetSslCertificate), or to one SNI name on it.
    pub fn set_certificate(
        &self,
        who: &str,
        port: u16,
        sni: Option<&str>,
        source: &CertificateSource,
    ) -> Result<TlsBinding, MgmtError> {
        let on = sni.map_or(String::new(), |n| format!(" for {n}"));
        self.refuse_unserved_tls(port)?;
        // Loaded before the writer lock: reading files takes time no other change should wait for.
        let cert = ServerCertificate::from_source(source)?;
        self.change(
            who,
            format!("set certificate on port {port}{on}"),
            |server| {
                let before = server.config();
                match sni {
                    Some(name) => server.set_sni_certificate(port, name, cert.clone())?,
                    None => server.set_ssl_certificate(port, cert.clone())?,
                }
                let binding = self.tls_binding(port)?;
                Ok((
                    binding.clone(),
                    vec![Delta::PutTls(binding)],
                    Undo::Config(Box::new(before)),
                ))
            },
        )
    }

    /// Removes a port's certificate (the original's RemoveSslCertificate), or one SNI name's.
    pub fn remove_certificate(
        &self,
        who: &str,
        port: u16,
        sni: Option<&str>,
    ) -> Result<(), MgmtError> {
        let on = sni.map_or(String::new(), |n| format!(" for {n}"));
        self.refuse_unserved_tls(port)?;
        self.change(
            who,
            format!("remove certificate on port {port}{on}"),
            |server| {
                let before = server.config();
                let had = match sni {
                    Some(name) => server.remove_sni_certificate(port, name)?,
                    None => server.remove_ssl_certificate(port)?,
                };
                if !had {
                    return Err(certificate_not_found(port, sni));
                }
                let delta = match server.tls_binding(port) {
                    Some(b) if b.certificate.is_some() || !b.sni.is_empty() => Delta::PutTls(b),
                    _ => Delta::DeleteTls(port),
                };
                Ok(((), vec![delta], Undo::Config(Box::new(before))))
            },
        )
    }

    /// The users and groups (with their secrets: callers must not pass these on).
    pub fn principals(&self) -> Principals {
        self.server.principals().unwrap_or_default()
    }

    /// Creates or updates a user (see [`Principals::upsert_user`]).
    pub fn put_user(
        &self,
        who: &str,
        name: &str,
        password: Option<&Password>,
        groups: &[String],
        certificates: &[String],
    ) -> Result<(), MgmtError> {
        check_name(name, "invalid_user")?;
        for g in groups {
            check_name(g, "invalid_group")?;
        }
        self.change_principals(who, format!("set user {name}"), |p| {
            p.upsert_user(name, password, groups, certificates)?;
            Ok(())
        })
    }

    /// Removes a user.
    pub fn remove_user(&self, who: &str, name: &str) -> Result<(), MgmtError> {
        self.change_principals(who, format!("remove user {name}"), |p| {
            match p.remove_user(name) {
                true => Ok(()),
                false => Err(MgmtError::NotFound {
                    code: "user_not_found",
                    message: format!("no user {name}"),
                }),
            }
        })
    }

    /// Creates a principals group (an existing one is left as it is); returns whether it is new.
    pub fn add_principal_group(&self, who: &str, name: &str) -> Result<bool, MgmtError> {
        check_name(name, "invalid_group")?;
        self.change_principals(who, format!("add group {name}"), |p| {
            Ok(p.ensure_group(name)?.1)
        })
    }

    /// Removes a principals group and every membership of it.
    pub fn remove_principal_group(&self, who: &str, name: &str) -> Result<(), MgmtError> {
        self.change_principals(who, format!("remove group {name}"), |p| {
            match p.remove_group(name) {
                true => Ok(()),
                false => Err(MgmtError::NotFound {
                    code: "principal_group_not_found",
                    message: format!("no group {name}"),
                }),
            }
        })
    }

    /// Changes the principals with `edit` and stores them.
    fn change_principals<T>(
        &self,
        who: &str,
        what: String,
        mut edit: impl FnMut(&mut Principals) -> Result<T, MgmtError>,
    ) -> Result<T, MgmtError> {
        self.change(who, what, |server| {
            let before = server.principals();
            let mut principals = before.clone().unwrap_or_default();
            let value = edit(&mut principals)?;
            server.set_principals(principals.clone());
            let mut undo = server.config();
            undo.principals = before;
            Ok((
                value,
                vec![Delta::PutPrincipals(Some(principals))],
                Undo::Config(Box::new(undo)),
            ))
        })
    }

    /// What is managed, whole (with secrets: callers redact before passing it on).
    pub fn export(&self) -> Stored {
        let config = self.server.config();
        Stored {
            groups: config.groups,
            tls: config.tls,
            principals: config.principals,
        }
    }

    /// Makes the server match `wanted`: its groups (with exactly their URLs), TLS bindings and users are
    /// created or replaced; with `prune`, groups, bindings and users it does not name are removed. All or
    /// nothing. Returns whether anything changed.
    pub fn apply(&self, who: &str, wanted: Stored, prune: bool) -> Result<bool, MgmtError> {
        let mode = if prune { " (prune)" } else { "" };
        for binding in &wanted.tls {
            self.refuse_unserved_tls(binding.port)?;
        }
        self.change(who, format!("apply a configuration{mode}"), |server| {
            let before = server.config();
            let target = merged(&before, wanted.clone(), prune)?;
            // SECURITY: a whole configuration may not publish the service's own files either.
            for group in &target.groups {
                for url in &group.urls {
                    self.refuse_private(&url.file)?;
                }
            }
            if target == before {
                return Ok((false, Vec::new(), Undo::Nothing));
            }
            server.apply(&target)?;
            let after = server.config();
            let deltas = diff(&before, &after);
            Ok((true, deltas, Undo::Config(Box::new(before))))
        })
    }
}

/// The file's path must be absolute: the service's working directory means nothing to the caller.
fn check_absolute(file: &std::path::Path) -> Result<(), MgmtError> {
    if !file.is_absolute() {
        return Err(MgmtError::Invalid {
            code: "relative_path",
            message: format!("{file:?}: the file's path must be absolute"),
        });
    }
    Ok(())
}

/// A user or group name: not empty, no `:` (Basic's separator) and no control characters.
fn check_name(name: &str, code: &'static str) -> Result<(), MgmtError> {
    if name.trim().is_empty() || name.chars().any(|c| c.is_control() || c == ':') {
        return Err(MgmtError::Invalid {
            code,
            message: format!("{name:?}: a name is not empty and has no ':' or control characters"),
        });
    }
    Ok(())
}

/// Moves the server towards `wanted` piece by piece, from what it serves now, through `apply` (so each
/// part is taken exactly as given, all or nothing): the principals, the groups `wanted` no longer has
/// removed, then each group, then each TLS binding; a part that fails keeps being served as it was, with a
/// warning. Nothing is torn down first, so a part that cannot be taken does not take the others with it.
fn serve_in_parts(server: &Server, wanted: &Stored, warnings: &mut Vec<String>) {
    let mut config = server.config();
    config.principals = wanted.principals.clone();
    if let Err(e) = server.apply(&config) {
        warnings.push(format!("the principals are not set: {e}"));
        config.principals = server.principals();
    }
    let mut fewer = config.clone();
    fewer
        .groups
        .retain(|g| wanted.groups.iter().any(|w| w.prefix == g.prefix));
    fewer
        .tls
        .retain(|t| wanted.tls.iter().any(|w| w.port == t.port));
    if fewer != config {
        match server.apply(&fewer) {
            Ok(()) => config = fewer,
            Err(e) => warnings.push(format!(
                "groups and TLS bindings removed elsewhere are still served here: {e}"
            )),
        }
    }
    for group in &wanted.groups {
        let mut candidate = config.clone();
        match candidate
            .groups
            .iter_mut()
            .find(|g| g.prefix == group.prefix)
        {
            Some(old) => *old = group.clone(),
            None => candidate.groups.push(group.clone()),
        }
        if candidate == config {
            continue;
        }
        match server.apply(&candidate) {
            Ok(()) => config = candidate,
            Err(e) => warnings.push(format!("URL group {} is not served: {e}", group.prefix)),
        }
    }
    for binding in &wanted.tls {
        let mut candidate = config.clone();
        match candidate.tls.iter_mut().find(|t| t.port == binding.port) {
            Some(old) => *old = binding.clone(),
            None => candidate.tls.push(binding.clone()),
        }
        if candidate == config {
            continue;
        }
        match server.apply(&candidate) {
            Ok(()) => config = candidate,
            Err(e) => warnings.push(format!("TLS on port {} is not set: {e}", binding.port)),
        }
    }
}

/// SECURITY: whether `file` lies below one of the `private` directories, whatever path names it (links
/// and `..` resolved when the file exists).
fn is_private(private: &[std::path::PathBuf], file: &std::path::Path) -> bool {
    let real = file.canonicalize().unwrap_or_else(|_| file.to_owned());
    private.iter().any(|dir| real.starts_with(dir))
}

/// What of `stored` this node can serve: the URLs whose files it can open and the TLS bindings whose
/// certificates it can load; what it cannot is a warning each.
fn servable(stored: &Stored, private: &[std::path::PathBuf], warnings: &mut Vec<String>) -> Stored {
    let mut servable = stored.clone();
    for group in &mut servable.groups {
        group.urls.retain(|url| {
            // Served from the content directory by hash; `file` is the origin's, never opened here.
            if url.content.is_some() {
                return true;
            }
            if is_private(private, &url.file) {
                warnings.push(format!(
                    "URL {}{} is not served: {} is this service's own file, never published",
                    group.prefix,
                    url.suffix,
                    url.file.display()
                ));
                return false;
            }
            let ok = std::fs::metadata(&url.file).is_ok_and(|m| m.is_file());
            if !ok {
                warnings.push(format!(
                    "URL {}{} is not served here: {} is not a readable file on this node",
                    group.prefix,
                    url.suffix,
                    url.file.display()
                ));
            }
            ok
        });
    }
    servable.tls.retain(|binding| {
        let sources = binding.certificate.iter().chain(binding.sni.values());
        let failed = sources
            .filter_map(|source| ServerCertificate::from_source(source).err())
            .next();
        if let Some(e) = &failed {
            warnings.push(format!(
                "TLS on port {} is not set here: its certificate cannot be loaded on this node ({e})",
                binding.port
            ));
        }
        failed.is_none()
    });
    servable
}

fn without_group(mut config: ServerConfig, prefix: &UrlPrefix) -> ServerConfig {
    config.groups.retain(|g| g.prefix != *prefix);
    config
}

fn url_config(url: &crate::Url) -> UrlConfig {
    UrlConfig {
        suffix: url.suffix().to_owned(),
        file: url.path().to_owned(),
        sddl: url.sddl().map(ToString::to_string),
        content: url.content().cloned(),
    }
}

fn url_not_found(prefix: &UrlPrefix, suffix: &str) -> MgmtError {
    MgmtError::NotFound {
        code: "url_not_found",
        message: format!("no URL {suffix:?} in {prefix}"),
    }
}

fn certificate_not_found(port: u16, sni: Option<&str>) -> MgmtError {
    let on = sni.map_or(String::new(), |n| format!(" for {n}"));
    MgmtError::NotFound {
        code: "certificate_not_found",
        message: format!("no certificate on port {port}{on}"),
    }
}

/// `current` with `wanted` laid over it (see [`Managed::apply`]). Secrets `wanted` leaves out (exports
/// carry none) are kept from `current`: a user without hashes keeps its own; a PKCS#12 binding whose
/// password is empty, or a PEM binding whose key is empty, keeps the stored one of the same certificate.
fn merged(current: &ServerConfig, wanted: Stored, prune: bool) -> Result<ServerConfig, MgmtError> {
    for (i, g) in wanted.groups.iter().enumerate() {
        if wanted.groups[..i].iter().any(|o| o.prefix == g.prefix) {
            return Err(MgmtError::Invalid {
                code: "invalid_config",
                message: format!(
                    "the group {} is given twice (segments ignore case)",
                    g.prefix
                ),
            });
        }
    }
    let mut target = current.clone();
    if prune {
        target
            .groups
            .retain(|g| wanted.groups.iter().any(|w| w.prefix == g.prefix));
        target
            .tls
            .retain(|t| wanted.tls.iter().any(|w| w.port == t.port));
    }
    for group in wanted.groups {
        match target.groups.iter_mut().find(|g| g.prefix == group.prefix) {
            Some(existing) => *existing = group,
            None => target.groups.push(group),
        }
    }
    for mut binding in wanted.tls {
        let old = current.tls.iter().find(|t| t.port == binding.port);
        if let Some(old) = old {
            keep_secret(&mut binding.certificate, old.certificate.as_ref());
            for (name, source) in &mut binding.sni {
                let mut s = Some(source.clone());
                keep_secret(&mut s, old.sni.get(name));
                if let Some(s) = s {
                    *source = s;
                }
            }
        }
        match target.tls.iter_mut().find(|t| t.port == binding.port) {
            Some(existing) => *existing = binding,
            None => target.tls.push(binding),
        }
    }
    if let Some(wanted) = wanted.principals {
        let base = current.principals.clone().unwrap_or_default();
        target.principals = Some(base.merged_with(wanted, prune));
    }
    Ok(target)
}

/// A PKCS#12 source with an empty password takes the stored password of the same file.
fn keep_secret(source: &mut Option<CertificateSource>, old: Option<&CertificateSource>) {
    if let (
        Some(CertificateSource::Pkcs12File { file, password }),
        Some(CertificateSource::Pkcs12File {
            file: old_file,
            password: old_password,
        }),
    ) = (source.as_mut(), old)
    {
        if password.expose().is_empty() && file == old_file {
            *password = old_password.clone();
        }
    }
    if let (
        Some(CertificateSource::Pem { cert, key }),
        Some(CertificateSource::Pem {
            cert: old_cert,
            key: old_key,
        }),
    ) = (source.as_mut(), old)
    {
        if key.expose().is_empty() && cert == old_cert {
            *key = old_key.clone();
        }
    }
}

/// The deltas that take the store from `before` to `after`.
fn diff(before: &ServerConfig, after: &ServerConfig) -> Vec<Delta> {
    let part = |c: &ServerConfig| Stored {
        groups: c.groups.clone(),
        tls: c.tls.clone(),
        principals: c.principals.clone(),
    };
    diff_stored(&part(before), &part(after))
}

/// The deltas that take a store holding `before` to `after`.
pub(crate) fn diff_stored(before: &Stored, after: &Stored) -> Vec<Delta> {
    let mut deltas = Vec::new();
    for old in &before.groups {
        if !after.groups.iter().any(|g| g.prefix == old.prefix) {
            deltas.push(Delta::DeleteGroup(old.prefix.clone()));
        }
    }
    for group in &after.groups {
        let old = before.groups.iter().find(|g| g.prefix == group.prefix);
        let settings_differ = old.is_none_or(|o| o.settings_only() != group.settings_only());
        if settings_differ {
            deltas.push(Delta::PutGroup(group.clone()));
        }
        let old_urls = old.map_or(&[][..], |o| &o.urls[..]);
        for url in old_urls {
            if !group
                .urls
                .iter()
                .any(|u| u.suffix.to_lowercase() == url.suffix.to_lowercase())
            {
                deltas.push(Delta::DeleteUrl(group.prefix.clone(), url.suffix.clone()));
            }
        }
        for url in &group.urls {
            if !old_urls.contains(url) {
                deltas.push(Delta::PutUrl(group.prefix.clone(), url.clone()));
            }
        }
    }
    for old in &before.tls {
        if !after.tls.iter().any(|t| t.port == old.port) {
            deltas.push(Delta::DeleteTls(old.port));
        }
    }
    for binding in &after.tls {
        if !before.tls.contains(binding) {
            deltas.push(Delta::PutTls(binding.clone()));
        }
    }
    if before.principals != after.principals {
        deltas.push(Delta::PutPrincipals(after.principals.clone()));
    }
    deltas
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::store::StoreError;

    /// A store that keeps nothing and refuses every commit after the first `ok` ones.
    struct Refusing {
        ok: usize,
    }

    impl Store for Refusing {
        fn load(&mut self) -> Result<Stored, StoreError> {
            Ok(Stored::default())
        }

        fn commit(&mut self, _: &[Delta], _: &Audit) -> Result<(), StoreError> {
            if self.ok == 0 {
                return Err(StoreError::Corrupt {
                    what: "test",
                    reason: "the disk is full".into(),
                });
            }
            self.ok -= 1;
            Ok(())
        }
    }

    fn managed(ok: usize) -> (Managed, tempfile::TempDir, UrlPrefix) {
        let server = Server::builder()
            .bind_addresses(["127.0.0.1".parse().unwrap()])
            .build()
            .unwrap();
        let (m, warnings) = Managed::start(server, Box::new(Refusing { ok }), &[]).unwrap();
        assert!(warnings.is_empty());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.bin"), b"a").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let prefix: UrlPrefix = format!("http://127.0.0.1:{port}/t/").parse().unwrap();
        (m, dir, prefix)
    }

    fn url(dir: &tempfile::TempDir, suffix: &str) -> UrlConfig {
        UrlConfig {
            suffix: suffix.into(),
            file: dir.path().join("a.bin"),
            sddl: Some("D:(A;;GR;;;WD)".into()),
            content: None,
        }
    }

    /// A fleet's store in miniature: while `conflicts` is above 0, each commit is overtaken by another
    /// node's change at the next revision (which the follower has "taken" by then); then commits go
    /// through. `down` refuses every commit as etcd below quorum.
    struct Shared {
        conflicts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
        down: bool,
        revision: i64,
        followed: Option<(Stored, i64)>,
    }

    impl Store for Shared {
        fn load(&mut self) -> Result<Stored, StoreError> {
            Ok(Stored::default())
        }

        fn commit(&mut self, _: &[Delta], _: &Audit) -> Result<(), StoreError> {
            use std::sync::atomic::Ordering::SeqCst;
            if self.down {
                return Err(StoreError::Unavailable {
                    reason: "no quorum".into(),
                });
            }
            self.revision += 1;
            let overtaken = self
                .conflicts
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
            match overtaken {
                Ok(_) => Err(StoreError::Conflict {
                    revision: self.revision,
                }),
                Err(_) => Ok(()),
            }
        }

        fn revision(&self) -> Option<i64> {
            Some(self.revision)
        }

        fn latest(&mut self) -> Result<Option<i64>, StoreError> {
            if self.down {
                return Err(StoreError::Unavailable {
                    reason: "no quorum".into(),
                });
            }
            Ok(Some(self.revision))
        }

        fn follow(&mut self, stored: &Stored, revision: i64) -> Result<(), StoreError> {
            self.followed = Some((stored.clone(), revision));
            self.revision = revision;
            Ok(())
        }
    }

    type Conflicts = std::sync::Arc<std::sync::atomic::AtomicUsize>;

    fn shared(down: bool) -> (Managed, Conflicts) {
        let server = Server::builder()
            .bind_addresses(["127.0.0.1".parse().unwrap()])
            .build()
            .unwrap();
        let conflicts = Conflicts::default();
        let store = Shared {
            conflicts: conflicts.clone(),
            down,
            revision: 1,
            followed: None,
        };
        (
            Managed::start(server, Box::new(store), &[]).unwrap().0,
            conflicts,
        )
    }

    /// A change overtaken by another node's runs again on the newer configuration; overtaken every
    /// time, it is refused as the conflict, and the server is as it was.
    #[test]
    fn a_change_overtaken_by_another_nodes_is_tried_again_then_refused() {
        use std::sync::atomic::Ordering::SeqCst;
        let (_, dir, prefix) = managed(0);
        let (m, conflicts) = shared(false);
        m.create_group("t", &prefix, &GroupSettings::default())
            .unwrap();
        conflicts.store(2, SeqCst);
        m.add_url("t", &prefix, &url(&dir, "a.bin")).unwrap();
        assert_eq!(conflicts.load(SeqCst), 0, "not tried again");
        assert_eq!(m.group(&prefix).unwrap().urls.len(), 1);

        conflicts.store(usize::MAX, SeqCst);
        let e = m.add_url("t", &prefix, &url(&dir, "b.bin")).unwrap_err();
        assert_eq!(e.code(), "fleet_conflict", "{}", e.message());
        assert_eq!(e.status().as_u16(), 409);
        assert_eq!(
            usize::MAX - conflicts.load(SeqCst),
            CONFLICT_ATTEMPTS as usize
        );
        let urls = m.group(&prefix).unwrap().urls;
        assert_eq!(urls.len(), 1, "{urls:?}");
    }

    /// SECURITY: with the fleet's etcd below quorum a change is refused at once (no retry) and undone:
    /// no node serves what the fleet does not hold.
    #[test]
    fn a_change_the_fleet_cannot_take_is_undone_at_once() {
        let (_, dir, prefix) = managed(0);
        let (m, _) = shared(true);
        let started = std::time::Instant::now();
        let e = m
            .create_group("t", &prefix, &GroupSettings::default())
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!((e.code(), e.status().as_u16()), ("fleet_unavailable", 503));
        assert!(m.groups().is_empty());
        drop(dir);
    }

    /// The fleet's configuration is served as it comes, a revision the node holds changes nothing, and
    /// what cannot be served here (a missing file) is left out with a warning while the rest is served.
    #[test]
    fn follow_serves_newer_revisions_and_what_it_can() {
        let (_, dir, prefix) = managed(0);
        let (m, _) = shared(false);
        let mut group = GroupConfig::new(prefix.clone());
        group.urls = vec![url(&dir, "here.bin"), {
            let mut gone = url(&dir, "gone.bin");
            gone.file = dir.path().join("not-on-this-node.bin");
            gone
        }];
        let wanted = Stored {
            groups: vec![group],
            ..Stored::default()
        };
        assert!(m.follow(wanted.clone(), 5).unwrap());
        let served = m.group(&prefix).unwrap();
        assert_eq!(served.urls.len(), 1, "{served:?}");
        assert_eq!(served.urls[0].suffix, "here.bin");
        let unserved = m.unserved();
        assert!(
            unserved.len() == 1 && unserved[0].contains("not-on-this-node.bin"),
            "{unserved:?}"
        );
        assert_eq!(m.revision(), Some(5));
        // An older or equal revision: nothing to do, even if it says otherwise.
        assert!(!m.follow(Stored::default(), 5).unwrap());
        assert!(!m.follow(Stored::default(), 3).unwrap());
        assert_eq!(m.groups().len(), 1);
        // A newer one without the group removes it.
        assert!(m.follow(Stored::default(), 6).unwrap());
        assert!(m.groups().is_empty());
        assert!(m.unserved().is_empty());
    }

    /// SECURITY: a whole configuration naming a file below the state directory is refused (400) and
    /// changes nothing; a fleet's configuration naming one is served without it, listed as unserved.
    #[test]
    fn the_state_directory_is_never_published_by_apply_or_follow() {
        let (_, dir, prefix) = managed(usize::MAX);
        let state = tempfile::tempdir().unwrap();
        std::fs::write(state.path().join("config.db"), b"hashes").unwrap();
        let server = || {
            Server::builder()
                .bind_addresses(["127.0.0.1".parse().unwrap()])
                .build()
                .unwrap()
        };
        let private = [state.path().to_owned()];
        let (m, _) =
            Managed::start(server(), Box::new(Refusing { ok: usize::MAX }), &private).unwrap();
        let mut group = GroupConfig::new(prefix.clone());
        let mut db = url(&dir, "db");
        db.file = state.path().join("config.db");
        group.urls = vec![url(&dir, "a.bin"), db];
        let wanted = Stored {
            groups: vec![group],
            ..Stored::default()
        };
        let e = m.apply("t", wanted.clone(), false).unwrap_err();
        assert_eq!(e.status(), axum::http::StatusCode::BAD_REQUEST, "{e:?}");
        assert!(m.groups().is_empty());

        let store = Shared {
            conflicts: Conflicts::default(),
            down: false,
            revision: 1,
            followed: None,
        };
        let (f, _) = Managed::start(server(), Box::new(store), &private).unwrap();
        assert!(f.follow(wanted, 2).unwrap());
        let served = f.group(&prefix).unwrap();
        assert_eq!(served.urls.len(), 1, "{served:?}");
        assert_eq!(served.urls[0].suffix, "a.bin");
        let unserved = f.unserved();
        assert!(
            unserved.len() == 1 && unserved[0].contains("config.db"),
            "{unserved:?}"
        );
    }

    /// A store that follows no shared configuration refuses a fleet's configuration before the server
    /// is touched.
    #[test]
    fn follow_without_a_shared_store_changes_nothing() {
        let (m, dir, prefix) = managed(usize::MAX);
        let mut group = GroupConfig::new(prefix.clone());
        group.urls = vec![url(&dir, "a.bin")];
        let wanted = Stored {
            groups: vec![group],
            ..Stored::default()
        };
        let e = m.follow(wanted, 5).unwrap_err();
        assert!(format!("{e:?}").contains("NotShared"), "{e:?}");
        assert!(m.groups().is_empty());
        assert!(m.unserved().is_empty());
    }

    /// SECURITY: a TLS change on a port whose certificate this node cannot load is refused (409,
    /// naming the port and why), whichever call makes it: made here it would replace the port's whole
    /// binding fleet-wide.
    #[test]
    fn a_tls_change_on_a_port_this_node_cannot_load_is_refused() {
        let (m, _) = shared(false);
        let missing = CertificateSource::PemFiles {
            cert: "/nonexistent/fleet.pem".into(),
            key: "/nonexistent/fleet.key".into(),
        };
        let binding = TlsBinding {
            port: 8443,
            certificate: Some(missing.clone()),
            sni: [("other.example".to_owned(), missing.clone())].into(),
            client_certificates: None,
            http2: false,
        };
        let wanted = Stored {
            tls: vec![binding.clone()],
            ..Stored::default()
        };
        m.follow(wanted.clone(), 5).unwrap();
        assert!(m.tls_bindings().is_empty());
        let refused = [
            m.set_certificate("t", 8443, Some("new.example"), &missing)
                .unwrap_err(),
            m.remove_certificate("t", 8443, None).unwrap_err(),
            m.apply("t", wanted, false).unwrap_err(),
        ];
        for e in refused {
            assert_eq!((e.code(), e.status().as_u16()), ("tls_unserved_here", 409));
            assert!(
                e.message().contains("8443") && e.message().contains("fleet.pem"),
                "{}",
                e.message()
            );
        }
        // Another port is not refused for it (it fails on its own missing certificate).
        let e = m.set_certificate("t", 9443, None, &missing).unwrap_err();
        assert_ne!(e.code(), "tls_unserved_here");
    }

    /// SECURITY: a change the store cannot keep is undone, so what is served is what is stored.
    #[test]
    fn a_change_the_store_refuses_is_undone() {
        // The group, one URL without SDDL and then a default SDDL are stored; everything after is refused.
        let (m, dir, prefix) = managed(3);
        m.create_group("t", &prefix, &GroupSettings::default())
            .unwrap();
        let mut open = url(&dir, "kept.bin");
        open.sddl = None;
        m.add_url("t", &prefix, &open).unwrap();
        let default = GroupSettings {
            default_sddl: Some("D:(A;;GR;;;WD)".into()),
            ..GroupSettings::default()
        };
        m.change_group("t", &prefix, &default).unwrap();
        let before = m.server().config();
        assert_eq!(before.groups[0].urls[0].sddl, None);

        let err = m.add_url("t", &prefix, &url(&dir, "new.bin")).unwrap_err();
        assert_eq!(err.code(), "store_failed");
        assert_eq!(err.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            m.remove_url("t", &prefix, "kept.bin").unwrap_err().code(),
            "store_failed"
        );
        m.set_authentication("t", &prefix, AuthScheme::Basic, true)
            .unwrap_err();
        m.set_property("t", &prefix, GroupProperty::ConnectionLimit, 3)
            .unwrap_err();
        let change = GroupSettings {
            index: Some(true),
            default_sddl: Some("D:(A;;GA;;;BA)".into()),
            ..GroupSettings::default()
        };
        m.change_group("t", &prefix, &change).unwrap_err();
        m.put_user("t", "eve", Some(&Password::from("pw".to_owned())), &[], &[])
            .unwrap_err();
        m.delete_group("t", &prefix).unwrap_err();
        let other: UrlPrefix = format!("http://127.0.0.1:{}/u/", prefix.port())
            .parse()
            .unwrap();
        m.create_group("t", &other, &GroupSettings::default())
            .unwrap_err();
        let wanted = Stored {
            groups: vec![],
            tls: vec![],
            principals: None,
        };
        m.apply("t", wanted, true).unwrap_err();
        assert_eq!(
            m.server().config(),
            before,
            "a refused change was left in place"
        );
    }

    /// A failed call changes nothing, on the server as in the store.
    #[test]
    fn a_failed_call_changes_nothing() {
        let (m, dir, prefix) = managed(usize::MAX);
        m.create_group("t", &prefix, &GroupSettings::default())
            .unwrap();
        let before = m.server().config();
        let bad = GroupSettings {
            index: Some(true),
            auth: Some(vec!["ntlm".into()]),
            default_sddl: Some("D:(nonsense)".into()),
            ..GroupSettings::default()
        };
        assert_eq!(
            m.change_group("t", &prefix, &bad).unwrap_err().code(),
            "invalid_sddl"
        );
        let taken: UrlPrefix = "https://127.0.0.1:1/x/".parse().unwrap();
        assert!(m.create_group("t", &taken, &bad).is_err());
        assert_eq!(
            m.remove_url("t", &prefix, "none").unwrap_err().code(),
            "url_not_found"
        );
        let mut missing = url(&dir, "m");
        missing.file = dir.path().join("missing");
        assert_eq!(
            m.add_url("t", &prefix, &missing).unwrap_err().code(),
            "file_unreadable"
        );
        let mut relative = url(&dir, "r");
        relative.file = "a.bin".into();
        assert_eq!(
            m.add_url("t", &prefix, &relative).unwrap_err().code(),
            "relative_path"
        );
        assert_eq!(
            m.remove_user("t", "nobody").unwrap_err().code(),
            "user_not_found"
        );
        assert_eq!(
            m.remove_certificate("t", 1, None).unwrap_err().code(),
            "certificate_not_found"
        );
        assert_eq!(m.server().config(), before);
    }

    #[test]
    fn diff_takes_the_store_from_one_config_to_the_other() {
        let (m, dir, prefix) = managed(usize::MAX);
        m.create_group("t", &prefix, &GroupSettings::default())
            .unwrap();
        m.add_url("t", &prefix, &url(&dir, "a")).unwrap();
        let before = m.server().config();
        let mut after = before.clone();
        after.groups[0].index = true;
        after.groups[0].urls = vec![url(&dir, "A"), url(&dir, "b")];
        let deltas = diff(&before, &after);
        assert!(matches!(&deltas[0], Delta::PutGroup(g) if g.index));
        // "A" replaces "a" (suffixes ignore case): one upsert of the same row, no delete.
        assert!(!deltas.iter().any(|d| matches!(d, Delta::DeleteUrl(..))));
        assert!(deltas.contains(&Delta::PutUrl(prefix.clone(), url(&dir, "A"))));
        assert!(deltas.contains(&Delta::PutUrl(prefix.clone(), url(&dir, "b"))));
        assert!(diff(&after, &after).is_empty());
        let gone = ServerConfig {
            groups: vec![],
            ..after.clone()
        };
        assert_eq!(diff(&after, &gone), vec![Delta::DeleteGroup(prefix)]);
    }
}
