//! The fleet's key space in etcd, and the configuration as keys:
//!
//! | key | value |
//! |---|---|
//! | `/bcs/<fleet>/config/rev` | the last change's audit record; every change rewrites it, so its revision is the configuration's |
//! | `/bcs/<fleet>/config/group/<hex prefix>` | a group's settings (`GroupConfig` without URLs, JSON) |
//! | `/bcs/<fleet>/config/url/<hex prefix>/<hex suffix>` | one URL (`UrlConfig`, JSON) |
//! | `/bcs/<fleet>/config/tls/<port>` | a port's TLS binding (`TlsBinding`, JSON) |
//! | `/bcs/<fleet>/config/principals` | the users and groups (`Principals`, JSON) |
//! | `/bcs/<fleet>/nodes/<node>` | a live node's record, under its lease |
//! | `/bcs/<fleet>/known/<node>` | the same record, kept after the node is gone |
//!
//! Prefixes and suffixes are keyed lowercase (they compare ignoring case) and hex-encoded, so that no
//! `/` or byte of theirs changes the key's shape. Groups keep their creation order through their keys'
//! create revisions.

use std::collections::BTreeMap;

use etcd_client::{DeleteOptions, TxnOp};
use serde::{Deserialize, Serialize};

use super::name::{FleetName, NodeName};
use crate::auth::Principals;
use crate::config::{GroupConfig, TlsBinding, UrlConfig};
use crate::service::store::{Audit, Delta, Stored};
use crate::url::UrlPrefix;

/// The fleet's keys.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    root: String,
}

/// A configuration key's create revision and value, as read from etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) created: i64,
    pub(crate) value: Vec<u8>,
}

/// The configuration keys, as etcd holds them: what [`Keys::stored`] makes a [`Stored`] of.
pub(crate) type ConfigMap = BTreeMap<String, Entry>;

/// The record of each change, in `config/rev`.
#[derive(Debug, Serialize, Deserialize)]
struct ChangeRecord {
    node: String,
    who: String,
    what: String,
}

impl Keys {
    pub(crate) fn new(fleet: &FleetName) -> Keys {
        Keys {
            root: format!("/bcs/{fleet}/"),
        }
    }

    /// Every configuration key starts with this.
    pub(crate) fn config(&self) -> String {
        format!("{}config/", self.root)
    }

    /// The key every change rewrites.
    pub(crate) fn rev(&self) -> String {
        format!("{}config/rev", self.root)
    }

    fn group(&self, prefix: &UrlPrefix) -> String {
        format!(
            "{}config/group/{}",
            self.root,
            hex_lower(&prefix.to_string())
        )
    }

    fn urls_of(&self, prefix: &UrlPrefix) -> String {
        format!(
            "{}config/url/{}/",
            self.root,
            hex_lower(&prefix.to_string())
        )
    }

    fn url(&self, prefix: &UrlPrefix, suffix: &str) -> String {
        format!("{}{}", self.urls_of(prefix), hex_lower(suffix))
    }

    fn tls(&self, port: u16) -> String {
        format!("{}config/tls/{port:05}", self.root)
    }

    fn principals(&self) -> String {
        format!("{}config/principals", self.root)
    }

    /// The live nodes' records (leased) start with this.
    pub(crate) fn nodes(&self) -> String {
        format!("{}nodes/", self.root)
    }

    /// The records of every node that ever joined start with this.
    pub(crate) fn known(&self) -> String {
        format!("{}known/", self.root)
    }

    pub(crate) fn node(&self, node: &NodeName) -> String {
        format!("{}{node}", self.nodes())
    }

    pub(crate) fn known_node(&self, node: &NodeName) -> String {
        format!("{}{node}", self.known())
    }

    /// The operations that make one change: the deltas, then the change record in `config/rev`.
    /// A value that cannot be written as JSON is an error, never an empty value.
    pub(crate) fn ops(
        &self,
        deltas: &[Delta],
        audit: &Audit,
        node: &NodeName,
    ) -> Result<Vec<TxnOp>, String> {
        let mut ops = Vec::new();
        for delta in deltas {
            match delta {
                Delta::PutGroup(group) => {
                    ops.push(put(self.group(&group.prefix), &group.settings_only())?);
                }
                Delta::DeleteGroup(prefix) => {
                    ops.push(TxnOp::delete(self.group(prefix), None));
                    let urls = DeleteOptions::new().with_prefix();
                    ops.push(TxnOp::delete(self.urls_of(prefix), Some(urls)));
                }
                Delta::PutUrl(prefix, url) => ops.push(put(self.url(prefix, &url.suffix), url)?),
                Delta::DeleteUrl(prefix, suffix) => {
                    ops.push(TxnOp::delete(self.url(prefix, suffix), None));
                }
                Delta::PutTls(binding) => ops.push(put(self.tls(binding.port), binding)?),
                Delta::DeleteTls(port) => ops.push(TxnOp::delete(self.tls(*port), None)),
                Delta::PutPrincipals(Some(p)) => ops.push(put(self.principals(), p)?),
                Delta::PutPrincipals(None) => ops.push(TxnOp::delete(self.principals(), None)),
            }
        }
        let record = ChangeRecord {
            node: node.to_string(),
            who: audit.who.clone(),
            what: audit.what.clone(),
        };
        ops.push(put(self.rev(), &record)?);
        Ok(ops)
    }

    /// The configuration the keys hold: groups in creation order with their URLs (sorted by suffix, as
    /// a server lists them), TLS bindings by port, the principals. A value that does not parse is left
    /// out, each named in the returned warnings.
    pub(crate) fn stored(&self, map: &ConfigMap) -> (Stored, Vec<String>) {
        let config = self.config();
        let mut warnings = Vec::new();
        let mut groups: Vec<(i64, String, GroupConfig)> = Vec::new();
        let mut urls: BTreeMap<String, Vec<UrlConfig>> = BTreeMap::new();
        let mut stored = Stored::default();
        for (key, entry) in map {
            let Some(rest) = key.strip_prefix(&config) else {
                continue;
            };
            let bad = |warnings: &mut Vec<String>, e: serde_json::Error| {
                warnings.push(format!(
                    "the fleet's key {key} is unreadable ({e}); left out"
                ));
            };
            if let Some(hex) = rest.strip_prefix("group/") {
                match serde_json::from_slice::<GroupConfig>(&entry.value) {
                    Ok(g) => groups.push((entry.created, hex.to_owned(), g)),
                    Err(e) => bad(&mut warnings, e),
                }
            } else if let Some(path) = rest.strip_prefix("url/") {
                let group = path.split('/').next().unwrap_or_default().to_owned();
                match serde_json::from_slice::<UrlConfig>(&entry.value) {
                    Ok(u) => urls.entry(group).or_default().push(u),
                    Err(e) => bad(&mut warnings, e),
                }
            } else if rest.starts_with("tls/") {
                match serde_json::from_slice::<TlsBinding>(&entry.value) {
                    Ok(t) => stored.tls.push(t),
                    Err(e) => bad(&mut warnings, e),
                }
            } else if rest == "principals" {
                match serde_json::from_slice::<Principals>(&entry.value) {
                    Ok(p) => stored.principals = Some(p),
                    Err(e) => bad(&mut warnings, e),
                }
            }
        }
        groups.sort_by_key(|(created, _, _)| *created);
        for (_, hex, mut group) in groups {
            let mut own = urls.remove(&hex).unwrap_or_default();
            own.sort_by(|a, b| a.suffix.cmp(&b.suffix));
            group.urls = own;
            stored.groups.push(group);
        }
        stored.tls.sort_by_key(|t| t.port);
        (stored, warnings)
    }
}

fn put(key: String, value: &impl Serialize) -> Result<TxnOp, String> {
    let value = serde_json::to_vec(value).map_err(|e| format!("{key} cannot be written: {e}"))?;
    Ok(TxnOp::put(key, value, None))
}

/// `text` lowercased, as hex: a key segment that holds any text.
fn hex_lower(text: &str) -> String {
    use std::fmt::Write;
    text.to_lowercase()
        .bytes()
        .fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&"prod".parse().unwrap())
    }

    #[test]
    fn prefixes_and_suffixes_cannot_change_the_keys_shape() {
        let k = keys();
        let p: UrlPrefix = "http://+:8080/App/".parse().unwrap();
        let same: UrlPrefix = "http://+:8080/app/".parse().unwrap();
        assert_eq!(k.group(&p), k.group(&same));
        let url = k.url(&p, "../../nodes/x");
        assert!(url.starts_with("/bcs/prod/config/url/"), "{url}");
        assert_eq!(url.matches('/').count(), 6, "{url}");
        assert!(url.chars().all(|c| c.is_ascii_alphanumeric() || c == '/'));
    }

    /// The keys a change writes read back as the configuration it made, groups in creation order.
    #[test]
    fn a_map_reads_back_as_the_configuration() {
        let k = keys();
        let mut map = ConfigMap::new();
        let mut created = 10;
        let mut add = |map: &mut ConfigMap, key: String, value: Vec<u8>| {
            created -= 1;
            map.insert(key, Entry { created, value });
        };
        let b: UrlPrefix = "http://+:8080/b/".parse().unwrap();
        let a: UrlPrefix = "http://+:8080/a/".parse().unwrap();
        for prefix in [&b, &a] {
            let g = GroupConfig::new(prefix.clone());
            add(&mut map, k.group(prefix), serde_json::to_vec(&g).unwrap());
        }
        let url = UrlConfig {
            suffix: "x.bin".into(),
            file: "/srv/x.bin".into(),
            sddl: None,
            content: None,
        };
        add(
            &mut map,
            k.url(&a, "x.bin"),
            serde_json::to_vec(&url).unwrap(),
        );
        add(&mut map, k.url(&b, "y"), b"{not json".to_vec());
        add(&mut map, k.rev(), b"{}".to_vec());
        let (stored, warnings) = k.stored(&map);
        // `a`'s key has the lower create revision: it was created first.
        let order: Vec<_> = stored.groups.iter().map(|g| g.prefix.clone()).collect();
        assert_eq!(order, [a.clone(), b.clone()]);
        assert_eq!(stored.groups[0].urls, [url]);
        assert!(stored.groups[1].urls.is_empty());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }
}
