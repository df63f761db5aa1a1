//! The whole configuration of a server as data: what [`Server::config`](crate::Server::config) returns and
//! [`Server::apply`](crate::Server::apply) makes a server match, serialisable with serde (TOML, JSON) so
//! that it can be stored, sent and re-applied.
//!
//! Values that have a text form (prefixes, limits, rates, schemes, SIDs, SDDL) are that text in the data,
//! checked when the configuration is applied: applying is all-or-nothing, so a configuration with one bad
//! part changes nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::auth::{AuthScheme, Principals};
pub use crate::change::Change;
use crate::limits::{ByteRate, ConnectionLimit};
use crate::tls::{CertificateSource, ClientCertMode};
use crate::url::UrlPrefix;

/// Everything a server is configured with.
///
/// What [`Server::config`](crate::Server::config) returns is data: write it as TOML, read it back, and
/// build a second server from it (or [`Server::apply`](crate::Server::apply) it to a running one).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use bits_compact::{Server, ServerConfig};
///
/// # let dir = tempfile::tempdir()?;
/// # let file = dir.path().join("a.bin");
/// # std::fs::write(&file, b"data")?;
/// # let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
/// let first = Server::builder().build()?;
/// let group = first.create_url_group(format!("http://127.0.0.1:{port}/Demo/"))?;
/// group.add_url("a.bin", &file, Some("D:(A;;GR;;;WD)"))?;
///
/// let text = toml::to_string(&first.config())?;
/// drop((group, first)); // frees the port for the second server
/// let config: ServerConfig = toml::from_str(&text)?;
/// let second = Server::from_config(&config)?;
/// assert_eq!(second.config(), config);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// What is fixed when the server is built (addresses, timeouts, caches).
    pub settings: ServerSettings,
    /// The URL groups, in creation order.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// TLS per https port.
    #[serde(default)]
    pub tls: Vec<TlsBinding>,
    /// Users and groups for Basic, NTLM and certificate mapping; none accepts no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principals: Option<Principals>,
}

impl ServerConfig {
    /// The same configuration without its secrets, to show or to log: users keep their names, groups and
    /// SIDs but lose their password and NT hashes; PKCS#12 passwords and PEM private keys become empty.
    ///
    /// SECURITY: [`Server::config`](crate::Server::config) returns the secrets, since a stored configuration
    /// must be able to load again (a self-signed certificate's key as PEM, argon2 and NT hashes); anything
    /// that leaves the process for someone to read should get this copy instead.
    pub fn without_secrets(&self) -> ServerConfig {
        ServerConfig {
            settings: self.settings.clone(),
            groups: self.groups.clone(),
            tls: self.tls.iter().map(TlsBinding::without_secrets).collect(),
            principals: self.principals.as_ref().map(Principals::without_secrets),
        }
    }
}

impl TlsBinding {
    /// The same binding without its secrets (see [`CertificateSource::without_secrets`]).
    pub fn without_secrets(&self) -> TlsBinding {
        TlsBinding {
            certificate: self
                .certificate
                .as_ref()
                .map(CertificateSource::without_secrets),
            sni: (self.sni.iter())
                .map(|(name, source)| (name.clone(), source.without_secrets()))
                .collect(),
            ..self.clone()
        }
    }
}

/// The settings a server is built with ([`ServerBuilder`](crate::ServerBuilder)); `apply` refuses to
/// change them, since listeners and caches are made from them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// The addresses each port listens on.
    pub bind: Vec<IpAddr>,
    /// The domain SID that domain-relative SDDL aliases resolve against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_sid: Option<String>,
    /// Refuse Kerberos principals the principals file does not list.
    #[serde(default)]
    pub refuse_unknown_principals: bool,
    /// Header wait, in milliseconds.
    pub header_timeout_ms: u64,
    /// TLS handshake deadline, in milliseconds.
    pub handshake_timeout_ms: u64,
    /// Idle connection deadline, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Drain deadline at shutdown, in milliseconds.
    pub drain_timeout_ms: u64,
    /// Minimum send rate in bytes per second (0: off).
    pub min_send_rate: u64,
    /// The window over which the minimum send rate is measured, in milliseconds.
    pub min_send_window_ms: u64,
    /// The most connections at once.
    pub max_connections: usize,
    /// The most downloads one client source runs at once.
    pub max_transfers_per_source: u32,
    /// How long a file's version is trusted without a stat, in milliseconds.
    pub revalidate_ms: u64,
    /// Files up to this size are kept in memory.
    pub memory_cache_file_limit: u64,
    /// Memory for small files, in all.
    pub memory_cache_total: u64,
}

/// One URL group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The prefix, in HTTP.sys syntax.
    pub prefix: UrlPrefix,
    /// The authentication schemes enabled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth: Vec<AuthScheme>,
    /// Basic over plain HTTP.
    #[serde(default)]
    pub allow_basic_over_http: bool,
    /// The SDDL that `UrlGroup::add_url` gives URLs added without one. The `urls` here are taken as
    /// written: a URL without SDDL has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_sddl: Option<String>,
    /// Transfers at once.
    #[serde(default)]
    pub connection_limit: ConnectionLimit,
    /// Bytes per second shared by the group's transfers.
    #[serde(default)]
    pub bandwidth_limit: ByteRate,
    /// Seconds responses may be cached (`Cache-Control: max-age`); none sends `no-cache`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_max_age_secs: Option<u64>,
    /// Answer `GET /Segment/` with an index of the URLs the caller may read.
    #[serde(default)]
    pub index: bool,
    /// The published files, sorted by suffix.
    #[serde(default)]
    pub urls: Vec<UrlConfig>,
}

impl GroupConfig {
    /// A group with the settings a new [`UrlGroup`](crate::UrlGroup) has (no authentication, no
    /// limits, no default SDDL, no index) and no URLs.
    pub fn new(prefix: UrlPrefix) -> GroupConfig {
        GroupConfig {
            prefix,
            auth: Vec::new(),
            allow_basic_over_http: false,
            default_sddl: None,
            connection_limit: ConnectionLimit::default(),
            bandwidth_limit: ByteRate::default(),
            cache_max_age_secs: None,
            index: false,
            urls: Vec::new(),
        }
    }

    /// The group's settings alone, with no URLs (what a store keeps per group), without copying the URLs.
    pub fn settings_only(&self) -> GroupConfig {
        GroupConfig {
            prefix: self.prefix.clone(),
            auth: self.auth.clone(),
            allow_basic_over_http: self.allow_basic_over_http,
            default_sddl: self.default_sddl.clone(),
            connection_limit: self.connection_limit,
            bandwidth_limit: self.bandwidth_limit,
            cache_max_age_secs: self.cache_max_age_secs,
            index: self.index,
            urls: Vec::new(),
        }
    }
}

/// One published file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlConfig {
    /// The suffix under the group's prefix.
    pub suffix: String,
    /// The local file.
    pub file: PathBuf,
    /// The access rule, in SDDL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sddl: Option<String>,
    /// The content's identity when the file was published into a content store (a fleet's): the URL is
    /// then served from the server's content directory (`ServerBuilder::content_dir`), by hash, with
    /// validators derived from the record; `file` is where the origin read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<ContentRecord>,
}

/// What identifies a published file's content on every node that serves it: its SHA-256 (the identity:
/// the name of its copy in each node's content directory), its size, the node it was published on and
/// that node's modification time of it (its version, sent as `Last-Modified`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentRecord {
    /// The SHA-256 of the bytes, 64 lowercase hex digits.
    pub sha256: String,
    /// The size in bytes.
    pub size: u64,
    /// The node the file was published on.
    pub origin: String,
    /// The file's modification time on the origin, in seconds since the Unix epoch.
    pub version: u64,
    /// The content the URL had before it was published again: served by a node until it holds this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PreviousContent>,
}

/// The content a URL published again had before (see [`ContentRecord::previous`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviousContent {
    /// Its SHA-256, 64 lowercase hex digits.
    pub sha256: String,
    /// Its version (see [`ContentRecord::version`]).
    pub version: u64,
}

/// The latest version a content record may carry: the last second of the year 9999, the last an HTTP
/// date can say.
pub const MAX_CONTENT_VERSION: u64 = 253_402_300_799;

impl ContentRecord {
    /// The hash as bytes, once the record is checked: the hash and the previous one's are 64 lowercase
    /// hex digits, the versions no later than [`MAX_CONTENT_VERSION`]. Why not, otherwise.
    pub fn check(&self) -> Result<[u8; 32], &'static str> {
        if self.version > MAX_CONTENT_VERSION
            || self
                .previous
                .as_ref()
                .is_some_and(|p| p.version > MAX_CONTENT_VERSION)
        {
            return Err("its version is after the year 9999");
        }
        if let Some(p) = &self.previous {
            hex_digest(&p.sha256).ok_or("its previous sha256 is not 64 lowercase hex digits")?;
        }
        self.digest()
            .ok_or("its sha256 is not 64 lowercase hex digits")
    }

    /// The hash as bytes; `None` unless it is exactly 64 lowercase hex digits (so that it is also a
    /// safe file name: no `/`, no `.`, nothing but `[0-9a-f]`).
    pub fn digest(&self) -> Option<[u8; 32]> {
        hex_digest(&self.sha256)
    }
}

impl PreviousContent {
    /// The hash as bytes, if it is 64 lowercase hex digits.
    pub fn digest(&self) -> Option<[u8; 32]> {
        hex_digest(&self.sha256)
    }
}

/// 64 lowercase hex digits as 32 bytes.
pub(crate) fn hex_digest(text: &str) -> Option<[u8; 32]> {
    let hex = text.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// TLS on one https port: the original's per-port certificate binding, and our additions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsBinding {
    /// The port.
    pub port: u16,
    /// The certificate for clients that send no SNI name, or one without a certificate of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateSource>,
    /// Certificates per SNI host name (lowercase).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sni: BTreeMap<String, CertificateSource>,
    /// Client certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificates: Option<ClientCertConfig>,
    /// Offer HTTP/2 through ALPN.
    pub http2: bool,
}

/// Where client certificates are checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertConfig {
    /// Optional or required.
    pub mode: ClientCertMode,
    /// The CA certificates (PEM file).
    pub ca: PathBuf,
    /// Certificate revocation lists (PEM files).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crls: Vec<PathBuf>,
}

/// Serde through the type's text form (`Display` and `FromStr`), as in the configuration's TOML and JSON.
macro_rules! serde_as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

serde_as_text!(
    UrlPrefix,
    ConnectionLimit,
    ByteRate,
    AuthScheme,
    ClientCertMode
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Password;
    use crate::tls::SecretText;

    #[test]
    fn a_content_hash_is_64_lowercase_hex_digits_or_nothing() {
        let record = |sha256: &str| ContentRecord {
            sha256: sha256.into(),
            size: 1,
            origin: "a".into(),
            version: 0,
            previous: None,
        };
        let good = "0123456789abcdef".repeat(4);
        let digest = record(&good).digest().unwrap();
        assert_eq!(digest[0], 0x01);
        assert_eq!(digest[31], 0xef);
        let upper = good.to_uppercase();
        let traversal = format!("../{}", &good[3..]);
        let long = format!("{good}0");
        let multibyte = format!("{}é", &good[..62]);
        for bad in ["", &upper, &traversal, &long, &good[1..], &multibyte] {
            assert!(record(bad).digest().is_none(), "{bad:?}");
            assert!(record(bad).check().is_err(), "{bad:?}");
        }
        let mut late = record(&good);
        late.version = MAX_CONTENT_VERSION + 1;
        assert!(late.check().is_err());
        late.version = MAX_CONTENT_VERSION;
        assert_eq!(late.check(), Ok(digest));
        late.previous = Some(PreviousContent {
            sha256: traversal.clone(),
            version: 1,
        });
        assert!(late.check().is_err());
        late.previous = Some(PreviousContent {
            sha256: good.clone(),
            version: u64::MAX,
        });
        assert!(late.check().is_err());
    }

    #[test]
    fn without_secrets_keeps_everything_but_the_secrets() {
        let server = crate::Server::builder().build().unwrap();
        let mut config = server.config();
        let pem = |key: &str| CertificateSource::Pem {
            cert: "CERT".into(),
            key: SecretText::new(key),
        };
        config.tls.push(TlsBinding {
            port: 8443,
            certificate: Some(pem("PRIVATE-KEY-A")),
            sni: BTreeMap::from([("a.test".to_owned(), pem("PRIVATE-KEY-B"))]),
            client_certificates: None,
            http2: true,
        });
        let mut principals = Principals::default();
        (principals.set_user("alice", &Password::from("hunter2-secret"), &[])).unwrap();
        config.principals = Some(principals);

        let shown = config.without_secrets();
        let text = toml::to_string(&shown).unwrap();
        assert!(!text.contains("PRIVATE-KEY"), "{text}");
        assert!(!text.contains("argon2"), "{text}");
        let (_, alice) = shown.principals.as_ref().unwrap().user("alice").unwrap();
        assert!(alice.password.is_none() && alice.nt_hash.is_none());
        assert_eq!(shown.tls[0].sni.len(), 1);
        assert_eq!(shown.settings, config.settings);
        // The original still has them: a stored configuration must load again.
        assert!(toml::to_string(&config).unwrap().contains("PRIVATE-KEY-A"));
    }
}
