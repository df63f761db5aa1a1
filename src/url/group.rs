//! `UrlGroup` and `Url`: the files published under one prefix.
//!
//! A group is a cheap handle (`Arc`) shared by the server's routing table and by callers; URLs added or
//! removed through any handle take effect on the next request.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use http::HeaderValue;

use super::counters::{Counters, UrlStats};
use super::live::{DownloadStatus, GroupStatus};
use super::prefix::UrlPrefix;
use super::suffix::{SegmentError, UrlSuffix};
use crate::auth::{AuthError, AuthScheme, GroupAuth};
use crate::authz::{SddlError, SecurityDescriptor, Sid};
use crate::change::{Change, Events};
use crate::config::ContentRecord;
use crate::files::{FileCache, FileSource, Unpublishable};
use crate::limits::{ByteRate, ConnectionLimit, GroupLimits, LimitError};
use crate::lock::Recover;
use crate::metrics::GroupSeries;

/// Why a URL could not be added to a group.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The suffix breaks a segment rule.
    #[error("invalid URL suffix {suffix:?}")]
    Suffix {
        /// The suffix as given.
        suffix: String,
        /// The rule it broke.
        #[source]
        source: SegmentError,
    },
    /// The local file cannot be opened for reading.
    #[error("cannot publish {path:?}")]
    File {
        /// The path as given.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },
    /// The path exists but is not a regular file.
    #[error("cannot publish {path:?}: not a regular file")]
    NotAFile {
        /// The path as given.
        path: PathBuf,
    },
    /// A URL's content record cannot be served: its hash is not 64 lowercase hex digits, or the server
    /// has no content directory ([`ServerBuilder::content_dir`](crate::ServerBuilder::content_dir)).
    #[error("cannot publish URL {suffix:?} by its content: {reason}")]
    Content {
        /// The suffix.
        suffix: String,
        /// Why.
        reason: &'static str,
    },
    /// The SDDL string does not parse.
    #[error("invalid SDDL for URL {suffix:?}")]
    Sddl {
        /// The suffix.
        suffix: String,
        /// What was wrong, where.
        #[source]
        source: SddlError,
    },
    /// The group already has a URL with this suffix (compared case-insensitively).
    #[error("the URL group {prefix} already has a URL {suffix:?}")]
    Exists {
        /// The group.
        prefix: String,
        /// The suffix.
        suffix: String,
    },
    /// The group was deleted from its server: its handle changes nothing any more.
    #[error("the URL group {0} was deleted")]
    GroupDeleted(String),
    /// A limit value was refused.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// An authentication setting was refused.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The group's default SDDL does not parse.
    #[error("invalid default SDDL")]
    DefaultSddl(#[source] SddlError),
}

/// One published file: a suffix under a group, the local file, and its access rule.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let file = dir.path().join("app.msi");
/// # std::fs::write(&file, b"MSI")?;
/// # let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
/// let server = bits_compact::Server::builder().build()?;
/// let group = server.create_url_group(format!("http://+:{port}/Apps/"))?;
/// // Read access for Authenticated Users only (SDDL names SIDs; AU is a well-known one).
/// let url = group.add_url("tools/app.msi", &file, Some("D:(A;;GR;;;AU)"))?;
/// assert_eq!(url.suffix(), "tools/app.msi");
/// assert_eq!(url.sddl().map(|s| s.to_string()).as_deref(), Some("D:(A;;GR;;;AU)"));
/// // A wildcard host (`+`) is shown as the host a client should use.
/// assert_eq!(url.location("files.example"), format!("http://files.example:{port}/Apps/tools/app.msi"));
/// assert_eq!(url.stats().requests, 0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Url {
    entry: Arc<UrlEntry>,
}

#[derive(Debug)]
pub(crate) struct UrlEntry {
    pub(crate) prefix: UrlPrefix,
    pub(crate) suffix: UrlSuffix,
    pub(crate) sddl: Option<SecurityDescriptor>,
    pub(crate) source: Arc<FileSource>,
    pub(crate) counters: Arc<Counters>,
    /// The file as configured: the one served, or for a content URL the origin's path.
    pub(crate) file: PathBuf,
    /// A content URL's identity (served from the content directory by hash).
    pub(crate) content: Option<ContentRecord>,
}

impl Url {
    /// The suffix, as registered.
    pub fn suffix(&self) -> &str {
        self.entry.suffix.as_str()
    }

    /// The local file (absolute); for a URL published by its content, the file it was published from
    /// on the origin (what is served is [`Url::content`]'s copy in the content directory).
    pub fn path(&self) -> &Path {
        &self.entry.file
    }

    /// The content's identity, for a URL published by its content (see [`UrlGroup::add_content_url`]).
    pub fn content(&self) -> Option<&ContentRecord> {
        self.entry.content.as_ref()
    }

    /// What this URL has served since it was published.
    pub fn stats(&self) -> UrlStats {
        self.entry.counters.stats()
    }

    /// The SDDL string given when the URL was added, if any.
    pub fn sddl(&self) -> Option<&SecurityDescriptor> {
        self.entry.sddl.as_ref()
    }

    /// The URL a client uses: the group's base URL (see [`UrlPrefix::base_url`]) and the encoded suffix.
    pub fn location(&self, wildcard_host: &str) -> String {
        format!(
            "{}{}",
            self.entry.prefix.base_url(wildcard_host),
            self.entry.suffix.encoded()
        )
    }
}

/// The numeric properties of a group, as the original's Set/GetProperty named them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupProperty {
    /// "ConnectionLimit": simultaneous transfers.
    ConnectionLimit,
    /// "BandwidthLimit": bytes per second for the whole group.
    BandwidthLimit,
}

/// A group's settings and URLs, checked and opened, ready to replace what a group has.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) schemes: Vec<AuthScheme>,
    pub(crate) basic_over_http: bool,
    pub(crate) default_sddl: Option<SecurityDescriptor>,
    pub(crate) connection_limit: ConnectionLimit,
    pub(crate) bandwidth_limit: ByteRate,
    pub(crate) cache_max_age: Option<Duration>,
    pub(crate) index: bool,
    pub(crate) urls: Vec<Arc<UrlEntry>>,
}

/// A URL group: a prefix and the URLs published under it.
///
/// A group's settings apply to all its URLs and change while it serves: transfers in flight keep going
/// under the new limits.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bits_compact::{AuthScheme, ByteRate, ConnectionLimit, GroupProperty};
///
/// # let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
/// let server = bits_compact::Server::builder().build()?;
/// let group = server.create_url_group(format!("http://127.0.0.1:{port}/Updates/"))?;
/// // Two transfers at once (a third is answered 503 with Retry-After), sharing 2 MiB/s.
/// group.set_connection_limit("2".parse::<ConnectionLimit>()?)?;
/// group.set_bandwidth_limit("2MiB/s".parse::<ByteRate>()?)?;
/// assert_eq!(group.property(GroupProperty::BandwidthLimit), 2 << 20);
/// // Callers prove who they are with NTLM; URLs without their own SDDL get the group's default.
/// group.set_authentication(AuthScheme::Ntlm, true)?;
/// group.set_default_sddl(Some("D:(A;;GR;;;AU)"))?;
/// assert_eq!(group.authentication_schemes(), [AuthScheme::Ntlm]);
/// assert!(group.urls().is_empty());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct UrlGroup {
    inner: Arc<GroupInner>,
}

#[derive(Debug)]
pub(crate) struct GroupInner {
    prefix: UrlPrefix,
    cache: Arc<FileCache>,
    domain: Option<Sid>,
    urls: RwLock<HashMap<String, Arc<UrlEntry>>>,
    limits: GroupLimits,
    auth: GroupAuth,
    default_sddl: RwLock<Option<SecurityDescriptor>>,
    /// Set when the server deletes the group; its handles then refuse every change.
    deleted: AtomicBool,
    /// Seconds responses may be cached (`Cache-Control: max-age`); `u64::MAX`: `no-cache`.
    cache_max_age: AtomicU64,
    /// Answer `GET /Segment/` with the list of URLs the caller may read.
    index: AtomicBool,
    /// The server's record of changes: every change goes through it.
    events: Arc<Events>,
    /// This group's metric series, resolved when it was created.
    series: GroupSeries,
}

impl UrlGroup {
    pub(crate) fn new(
        prefix: UrlPrefix,
        cache: Arc<FileCache>,
        domain: Option<Sid>,
        events: Arc<Events>,
        series: GroupSeries,
    ) -> Self {
        UrlGroup {
            inner: Arc::new(GroupInner {
                prefix,
                cache,
                domain,
                urls: RwLock::new(HashMap::new()),
                limits: GroupLimits::default(),
                auth: GroupAuth::default(),
                default_sddl: RwLock::new(None),
                deleted: AtomicBool::new(false),
                cache_max_age: AtomicU64::new(u64::MAX),
                index: AtomicBool::new(false),
                events,
                series,
            }),
        }
    }

    /// This group's metric series.
    pub(crate) fn series(&self) -> &GroupSeries {
        &self.inner.series
    }

    /// Whether the server deleted this group (a deleted group's handle refuses every change).
    pub fn is_deleted(&self) -> bool {
        self.inner.deleted.load(Ordering::Acquire)
    }

    /// Called by the server, inside its record of the deletion.
    pub(crate) fn mark_deleted(&self) {
        self.inner.deleted.store(true, Ordering::Release);
        self.inner.series.unregister();
    }

    fn alive(&self) -> Result<(), UrlError> {
        if self.is_deleted() {
            return Err(UrlError::GroupDeleted(self.inner.prefix.to_string()));
        }
        Ok(())
    }

    /// Makes a change to this group through the server's record of changes.
    fn change<T>(
        &self,
        change: impl FnOnce() -> Result<T, UrlError>,
        what: impl FnOnce(&T, String) -> Option<Change>,
    ) -> Result<T, UrlError> {
        self.inner.events.record(
            || {
                self.alive()?;
                change()
            },
            |done| what(done, self.inner.prefix.to_string()),
        )
    }

    fn settings_changed(
        &self,
        change: impl FnOnce() -> Result<(), UrlError>,
    ) -> Result<(), UrlError> {
        self.change(change, |_, prefix| Some(Change::GroupChanged(prefix)))
    }

    /// The group's prefix (the original's GetUrlPrefix).
    pub fn prefix(&self) -> &UrlPrefix {
        &self.inner.prefix
    }

    /// Publishes `file` under `suffix` (the original's AddUrl). `sddl` is the URL's access rule; `None` means
    /// no per-URL check.
    ///
    /// Fails if the suffix is invalid, already used in this group (case-insensitively), or the file is not a
    /// readable regular file.
    pub fn add_url(
        &self,
        suffix: &str,
        file: impl AsRef<Path>,
        sddl: Option<&str>,
    ) -> Result<Url, UrlError> {
        self.change(
            || {
                let entry = self.prepare(suffix, file.as_ref(), None, sddl, true)?;
                self.insert(entry)
            },
            |url, prefix| {
                Some(Change::UrlAdded {
                    prefix,
                    suffix: url.suffix().to_owned(),
                })
            },
        )
    }

    /// Publishes the content `record` names under `suffix`: served from the server's content directory
    /// (`ServerBuilder::content_dir`) as `DIR/SHA256`, with an ETag from the hash, `Last-Modified` from
    /// the record's version and `Repr-Digest` from the hash, the same on every server holding those
    /// bytes; until that file exists, requests are answered 503 with `Retry-After`, never with other
    /// bytes. `file` is where the origin read it (kept for the configuration, never opened here).
    pub fn add_content_url(
        &self,
        suffix: &str,
        file: impl AsRef<Path>,
        record: &ContentRecord,
        sddl: Option<&str>,
    ) -> Result<Url, UrlError> {
        self.change(
            || {
                let entry = self.prepare(suffix, file.as_ref(), Some(record), sddl, true)?;
                self.insert(entry)
            },
            |url, prefix| {
                Some(Change::UrlAdded {
                    prefix,
                    suffix: url.suffix().to_owned(),
                })
            },
        )
    }

    /// Replaces the URL with `url`'s suffix by `url` in one step (a request sees the old URL or the new
    /// one, never none); fails when there is none.
    #[cfg(feature = "service")]
    pub(crate) fn replace_url(&self, url: &Url) -> Result<Url, UrlError> {
        self.change(
            || {
                let key = url.entry.suffix.key();
                let mut urls = self.inner.urls.write().recover();
                match urls.get_mut(&key) {
                    Some(slot) => Ok(Url {
                        entry: std::mem::replace(slot, url.entry.clone()),
                    }),
                    None => Err(UrlError::Content {
                        suffix: url.suffix().to_owned(),
                        reason: "no URL with this suffix to replace",
                    }),
                }
            },
            |_, prefix| {
                Some(Change::UrlAdded {
                    prefix,
                    suffix: url.suffix().to_owned(),
                })
            },
        )
    }

    /// A URL checked and opened, not yet published: what [`UrlGroup::replace_url`] takes.
    #[cfg(feature = "service")]
    pub(crate) fn prepared(
        &self,
        suffix: &str,
        file: &Path,
        content: Option<&ContentRecord>,
        sddl: Option<&str>,
    ) -> Result<Url, UrlError> {
        self.prepare(suffix, file, content, sddl, false)
            .map(|entry| Url { entry })
    }

    /// Checks a URL and opens its file (by content when `content` is given) without publishing it.
    ///
    /// With `use_default`, a URL without SDDL gets the group's default (what `add_url` does); without it,
    /// none is none (what a configuration says is taken as written: SECURITY: filling in today's default
    /// for a URL published before it was set would change who may read it).
    pub(crate) fn prepare(
        &self,
        suffix: &str,
        file: &Path,
        content: Option<&ContentRecord>,
        sddl: Option<&str>,
        use_default: bool,
    ) -> Result<Arc<UrlEntry>, UrlError> {
        let suffix = UrlSuffix::new(suffix).map_err(|source| UrlError::Suffix {
            suffix: suffix.to_owned(),
            source,
        })?;
        let sddl = sddl
            .map(|text| SecurityDescriptor::parse(text, self.inner.domain.as_ref()))
            .transpose()
            .map_err(|source| UrlError::Sddl {
                suffix: suffix.to_string(),
                source,
            })?
            .or_else(|| {
                if !use_default {
                    return None;
                }
                let default = self.inner.default_sddl.read().recover();
                default.clone()
            });
        let content_type = mime_guess::from_path(suffix.as_str()).first_raw().map_or(
            HeaderValue::from_static("application/octet-stream"),
            HeaderValue::from_static,
        );
        let path = file;
        let unpublishable = |e| {
            let path = path.to_owned();
            match e {
                Unpublishable::Io(source) => UrlError::File { path, source },
                Unpublishable::NotAFile => UrlError::NotAFile { path },
            }
        };
        let source = match content {
            None => FileSource::open(path, content_type, self.inner.cache.clone())
                .map_err(unpublishable)?,
            Some(record) => {
                let refuse = |reason| UrlError::Content {
                    suffix: suffix.to_string(),
                    reason,
                };
                let digest = record.check().map_err(refuse)?;
                let dir = (self.inner.cache.content_dir())
                    .ok_or_else(|| refuse("this server has no content directory"))?;
                let open = |digest: &[u8; 32], version: u64| {
                    let cache = self.inner.cache.clone();
                    FileSource::open_content(dir, digest, version, content_type.clone(), cache)
                        .map_err(unpublishable)
                };
                let mut source = open(&digest, record.version)?;
                // Served until this version is held here (checked above).
                if let Some(p) = &record.previous {
                    if let Some(d) = p.digest() {
                        source = source.after(open(&d, p.version)?);
                    }
                }
                source
            }
        };
        let source = Arc::new(source);
        source.hash_soon();
        let file = match content {
            Some(_) => path.to_owned(),
            None => source.path().to_owned(),
        };
        Ok(Arc::new(UrlEntry {
            prefix: self.inner.prefix.clone(),
            suffix,
            sddl,
            source,
            counters: Arc::default(),
            file,
            content: content.cloned(),
        }))
    }

    fn insert(&self, entry: Arc<UrlEntry>) -> Result<Url, UrlError> {
        let key = entry.suffix.key();
        let mut urls = self.inner.urls.write().recover();
        if urls.contains_key(&key) {
            return Err(UrlError::Exists {
                prefix: self.inner.prefix.to_string(),
                suffix: entry.suffix.to_string(),
            });
        }
        urls.insert(key, entry.clone());
        Ok(Url { entry })
    }

    /// Publishes again, exactly as it was, a URL this group removed (its SDDL, its opened file): what
    /// undoing a removal needs, where `add_url` would apply today's default SDDL.
    #[cfg(feature = "service")]
    pub(crate) fn restore_url(&self, url: &Url) -> Result<(), UrlError> {
        self.change(
            || self.insert(url.entry.clone()),
            |url, prefix| {
                Some(Change::UrlAdded {
                    prefix,
                    suffix: url.suffix().to_owned(),
                })
            },
        )
        .map(drop)
    }

    /// Unpublishes the URL with this suffix (the original's RemoveUrl); returns whether it existed.
    /// Transfers already under way finish.
    pub fn remove_url(&self, suffix: &str) -> Result<bool, UrlError> {
        self.change(
            || {
                let mut urls = self.inner.urls.write().recover();
                Ok(urls.remove(&suffix.to_lowercase()))
            },
            |removed, prefix| {
                removed.as_ref().map(|entry| Change::UrlRemoved {
                    prefix,
                    suffix: entry.suffix.to_string(),
                })
            },
        )
        .map(|removed| removed.is_some())
    }

    /// Whether a URL with this suffix is published (the original's IsUrlInUrlGroup / CheckUrl).
    pub fn contains_url(&self, suffix: &str) -> bool {
        self.url(suffix).is_some()
    }

    /// The URL with this suffix (case-insensitive), if published.
    pub fn url(&self, suffix: &str) -> Option<Url> {
        self.lookup(&suffix.to_lowercase())
            .map(|entry| Url { entry })
    }

    /// All URLs of the group, sorted by suffix.
    pub fn urls(&self) -> Vec<Url> {
        let urls = self.inner.urls.read().recover();
        let mut list: Vec<Url> = urls
            .values()
            .map(|entry| Url {
                entry: entry.clone(),
            })
            .collect();
        list.sort_by(|a, b| a.suffix().cmp(b.suffix()));
        list
    }

    /// The most transfers (GET requests being answered) the group serves at once; one more is answered 503
    /// with Retry-After. Default is unlimited.
    pub fn connection_limit(&self) -> ConnectionLimit {
        self.inner.limits.transfers.limit()
    }

    /// Sets the connection limit; it applies to the next request (transfers already running finish).
    pub fn set_connection_limit(&self, limit: ConnectionLimit) -> Result<(), UrlError> {
        self.settings_changed(|| {
            self.inner.limits.transfers.set_limit(limit);
            Ok(())
        })
    }

    /// How many transfers are running now.
    pub fn active_transfers(&self) -> u32 {
        self.inner.limits.transfers.active()
    }

    /// The group's downloads in progress (at most `max` listed, oldest first per URL) and its limits.
    pub fn status(&self, max: usize) -> GroupStatus {
        let mut downloads_in_progress = 0;
        let mut downloads: Vec<DownloadStatus> = Vec::new();
        for entry in self.entries() {
            let room = max.saturating_sub(downloads.len());
            let (count, listed) = entry.counters.live().snapshot(entry.suffix.as_str(), room);
            downloads_in_progress += count;
            downloads.extend(listed);
        }
        GroupStatus {
            prefix: self.inner.prefix.to_string(),
            transfers: self.active_transfers(),
            connection_limit: self.connection_limit().get(),
            bandwidth_limit: self.bandwidth_limit().get(),
            rate: downloads.iter().map(|d| d.rate).sum(),
            downloads_in_progress,
            downloads,
        }
    }

    /// The bytes per second shared by all transfers of the group. Default is unlimited.
    pub fn bandwidth_limit(&self) -> ByteRate {
        self.inner.limits.bandwidth.rate()
    }

    /// Sets the bandwidth limit; transfers in flight follow it within a fraction of a second.
    pub fn set_bandwidth_limit(&self, rate: ByteRate) -> Result<(), UrlError> {
        self.settings_changed(|| {
            self.inner.limits.bandwidth.set_rate(rate);
            Ok(())
        })
    }

    /// The original's SetProperty: `ConnectionLimit` (at least 1) or `BandwidthLimit` (bytes per second,
    /// at least 1024); `0xFFFFFFFF` means unlimited.
    pub fn set_property(&self, property: GroupProperty, value: u32) -> Result<(), UrlError> {
        match (property, value) {
            (GroupProperty::ConnectionLimit, u32::MAX) => {
                self.set_connection_limit(ConnectionLimit::UNLIMITED)
            }
            (GroupProperty::ConnectionLimit, n) => {
                self.set_connection_limit(ConnectionLimit::new(n)?)
            }
            (GroupProperty::BandwidthLimit, u32::MAX) => {
                self.set_bandwidth_limit(ByteRate::UNLIMITED)
            }
            (GroupProperty::BandwidthLimit, n) => {
                self.set_bandwidth_limit(ByteRate::per_second(u64::from(n))?)
            }
        }
    }

    /// The original's GetProperty; `0xFFFFFFFF` means unlimited.
    pub fn property(&self, property: GroupProperty) -> u32 {
        match property {
            GroupProperty::ConnectionLimit => self.connection_limit().get().unwrap_or(u32::MAX),
            GroupProperty::BandwidthLimit => self
                .bandwidth_limit()
                .get()
                .map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX - 1)),
        }
    }

    /// Enables or disables an authentication scheme (the original's SetAuthentication). With none enabled
    /// every caller is anonymous; with any enabled, an anonymous caller is challenged (401) or, when no
    /// scheme can be offered to it, refused (403). Default is none.
    pub fn set_authentication(&self, scheme: AuthScheme, enable: bool) -> Result<(), UrlError> {
        self.settings_changed(|| Ok(self.inner.auth.set(scheme, enable)?))
    }

    /// The schemes enabled, in a fixed order (Negotiate, NTLM, Basic, client certificates).
    pub fn authentication_schemes(&self) -> Vec<AuthScheme> {
        AuthScheme::ALL
            .into_iter()
            .filter(|s| self.inner.auth.is_enabled(*s))
            .collect()
    }

    /// Whether a scheme is enabled (the original's GetAuthentication).
    pub fn authentication(&self, scheme: AuthScheme) -> bool {
        self.inner.auth.is_enabled(scheme)
    }

    /// Lets Basic credentials travel over plain HTTP. SECURITY: they are then readable on the network.
    /// Default is off: Basic is only offered and accepted over TLS.
    pub fn allow_basic_over_http(&self, allow: bool) -> Result<(), UrlError> {
        self.settings_changed(|| {
            self.inner.auth.set_basic_over_http(allow);
            Ok(())
        })
    }

    /// Whether Basic credentials may travel over plain HTTP.
    pub fn basic_over_http(&self) -> bool {
        self.inner.auth.basic_over_http()
    }

    /// The SDDL for URLs added without one, from now on; `None` removes it. URLs already published keep
    /// what they have. Default is none.
    pub fn set_default_sddl(&self, sddl: Option<&str>) -> Result<(), UrlError> {
        let parsed = self.parse_default_sddl(sddl)?;
        self.settings_changed(|| {
            self.put_default_sddl(parsed);
            Ok(())
        })
    }

    /// How long clients and caches may keep responses without asking again: `None` sends
    /// `Cache-Control: no-cache` (keep, but revalidate with the ETag each time), since a published file
    /// may change on disk; `Some(d)` sends `max-age`. Default is `None`.
    pub fn set_cache_max_age(&self, max_age: Option<Duration>) -> Result<(), UrlError> {
        self.settings_changed(|| {
            self.put_cache_max_age(max_age);
            Ok(())
        })
    }

    /// See [`UrlGroup::set_cache_max_age`].
    pub fn cache_max_age(&self) -> Option<Duration> {
        match self.inner.cache_max_age.load(Ordering::Acquire) {
            u64::MAX => None,
            secs => Some(Duration::from_secs(secs)),
        }
    }

    fn put_cache_max_age(&self, max_age: Option<Duration>) {
        let secs = max_age.map_or(u64::MAX, |d| d.as_secs().min(u64::MAX - 1));
        self.inner.cache_max_age.store(secs, Ordering::Release);
    }

    /// Whether `GET /Segment/` answers with an index of the group's URLs (HTML, or JSON for
    /// `Accept: application/json`), listing only those the caller may read. Default is off.
    pub fn set_index(&self, on: bool) -> Result<(), UrlError> {
        self.settings_changed(|| {
            self.inner.index.store(on, Ordering::Release);
            Ok(())
        })
    }

    /// See [`UrlGroup::set_index`].
    pub fn index(&self) -> bool {
        self.inner.index.load(Ordering::Acquire)
    }

    /// The group's `Cache-Control` value.
    pub(crate) fn cache_control(&self) -> http::HeaderValue {
        match self.cache_max_age() {
            None => http::HeaderValue::from_static("no-cache"),
            Some(d) => http::HeaderValue::try_from(format!("max-age={}", d.as_secs()))
                .unwrap_or(http::HeaderValue::from_static("no-cache")),
        }
    }

    /// All entries, for the index.
    pub(crate) fn entries(&self) -> Vec<Arc<UrlEntry>> {
        let urls = self.inner.urls.read().recover();
        let mut list: Vec<Arc<UrlEntry>> = urls.values().cloned().collect();
        list.sort_by(|a, b| a.suffix.as_str().cmp(b.suffix.as_str()));
        list
    }

    /// The SDDL for URLs added without one.
    pub fn default_sddl(&self) -> Option<SecurityDescriptor> {
        self.inner.default_sddl.read().recover().clone()
    }

    pub(crate) fn parse_default_sddl(
        &self,
        sddl: Option<&str>,
    ) -> Result<Option<SecurityDescriptor>, UrlError> {
        sddl.map(|text| SecurityDescriptor::parse(text, self.inner.domain.as_ref()))
            .transpose()
            .map_err(UrlError::DefaultSddl)
    }

    fn put_default_sddl(&self, sddl: Option<SecurityDescriptor>) {
        *self.inner.default_sddl.write().recover() = sddl;
    }

    /// Replaces the group's settings and URLs at once, for `Server::apply`, which checked everything and
    /// records the change itself.
    pub(crate) fn replace(&self, with: Prepared) {
        for scheme in AuthScheme::ALL {
            let _ = self.inner.auth.set(scheme, with.schemes.contains(&scheme));
        }
        self.inner.auth.set_basic_over_http(with.basic_over_http);
        self.put_default_sddl(with.default_sddl);
        self.inner.limits.transfers.set_limit(with.connection_limit);
        self.inner.limits.bandwidth.set_rate(with.bandwidth_limit);
        self.put_cache_max_age(with.cache_max_age);
        self.inner.index.store(with.index, Ordering::Release);
        let urls = with
            .urls
            .into_iter()
            .map(|entry| (entry.suffix.key(), entry))
            .collect();
        *self.inner.urls.write().recover() = urls;
    }

    pub(crate) fn auth(&self) -> &GroupAuth {
        &self.inner.auth
    }

    pub(crate) fn limits(&self) -> &GroupLimits {
        &self.inner.limits
    }

    /// Looks up a suffix key (already decoded and lowercased).
    pub(crate) fn lookup(&self, key: &str) -> Option<Arc<UrlEntry>> {
        let urls = self.inner.urls.read().recover();
        urls.get(key).cloned()
    }
}
