//! What `bcs apply` changes: the service's configuration now against the file's, compared as the
//! service merges them (see `Managed::apply`), so that `apply` can say what it added, changed and
//! removed, and `apply --dry-run` the same without changing anything.
//!
//! A group the file names replaces the service's group of that prefix whole: its settings and exactly
//! its URLs (a URL the file's group does not list is removed, with or without `--prune`). A TLS binding
//! the file names replaces the port's binding whole (secrets left empty keep the service's). Users and
//! principal groups the file names replace those of the same name (no password in the file keeps the
//! user's). `--prune` also removes the groups, bindings and (when the file has `[principals]`) users
//! and principal groups the file does not name. Computed here, from `GET /v1/config`: the service's
//! answer says only whether something changed. A URL removed while downloads of it are under way says
//! how many (from `GET /v1/groups`): they finish, and nothing new starts.

use std::collections::HashMap;

use bits_compact::config::{GroupConfig, TlsBinding, UrlConfig};
use bits_compact::service::store::Stored;
use bits_compact::service::GroupView;
use bits_compact::Principals;
use serde::Serialize;

/// One change, as `apply` prints it and as `--json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Change {
    /// `added`, `changed` or `removed`.
    pub(crate) action: &'static str,
    /// `group`, `URL`, `certificate`, `user` or `principal group`.
    pub(crate) what: &'static str,
    /// Which one: a prefix, a URL, a port, a name.
    pub(crate) name: String,
    /// What about it changed, or why it goes.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) detail: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.action, self.what, self.name)?;
        match self.detail.is_empty() {
            true => Ok(()),
            false => write!(f, ": {}", self.detail),
        }
    }
}

fn change(action: &'static str, what: &'static str, name: String, detail: String) -> Change {
    Change {
        action,
        what,
        name,
        detail,
    }
}

/// The downloads under way of each URL the service has, by the URL's name (its group's prefix and its
/// suffix, as the service shows them).
#[derive(Debug, Default)]
pub(crate) struct UnderWay(HashMap<String, u64>);

impl UnderWay {
    pub(crate) fn of(groups: &[GroupView]) -> UnderWay {
        let names = groups.iter().flat_map(|g| {
            g.urls
                .iter()
                .map(move |u| (format!("{}{}", g.prefix, u.suffix), u.downloads_under_way))
        });
        UnderWay(names.filter(|(_, n)| *n > 0).collect())
    }

    fn of_url(&self, group: &GroupConfig, url: &UrlConfig) -> u64 {
        self.0.get(&url_name(group, url)).copied().unwrap_or(0)
    }

    fn of_group(&self, group: &GroupConfig) -> u64 {
        group.urls.iter().map(|u| self.of_url(group, u)).sum()
    }
}

/// What applying `wanted` to a service holding `now` (whose URLs have `under_way` downloads) changes,
/// groups first, then certificates, then principals.
pub(crate) fn changes(
    now: &Stored,
    wanted: &Stored,
    prune: bool,
    under_way: &UnderWay,
) -> Vec<Change> {
    let mut out = Vec::new();
    groups(&now.groups, &wanted.groups, prune, under_way, &mut out);
    bindings(&now.tls, &wanted.tls, prune, &mut out);
    if let Some(wanted) = &wanted.principals {
        let empty = Principals::default();
        principals(
            now.principals.as_ref().unwrap_or(&empty),
            wanted,
            prune,
            &mut out,
        );
    }
    out
}

fn groups(
    now: &[GroupConfig],
    wanted: &[GroupConfig],
    prune: bool,
    under_way: &UnderWay,
    out: &mut Vec<Change>,
) {
    for group in wanted {
        match now.iter().find(|g| g.prefix == group.prefix) {
            None => {
                let detail = count(group.urls.len() as u64, "URL", "URLs");
                out.push(change("added", "group", group.prefix.to_string(), detail));
                for url in &group.urls {
                    out.push(change(
                        "added",
                        "URL",
                        url_name(group, url),
                        url_detail(url),
                    ));
                }
            }
            Some(old) => {
                let detail = settings_changed(old, group).join(", ");
                if !detail.is_empty() {
                    out.push(change("changed", "group", old.prefix.to_string(), detail));
                }
                urls(old, group, under_way, out);
            }
        }
    }
    if prune {
        for group in now
            .iter()
            .filter(|g| !wanted.iter().any(|w| w.prefix == g.prefix))
        {
            let mut detail = format!(
                "not in the file (--prune), with its {}",
                count(group.urls.len() as u64, "URL", "URLs")
            );
            let downloads = under_way.of_group(group);
            if downloads > 0 {
                detail.push_str(&format!(
                    " ({} under way: they finish, nothing new starts)",
                    count(downloads, "download", "downloads")
                ));
            }
            out.push(change("removed", "group", group.prefix.to_string(), detail));
        }
    }
}

/// The settings that differ, as `name old → new`.
fn settings_changed(old: &GroupConfig, new: &GroupConfig) -> Vec<String> {
    let schemes = |g: &GroupConfig| {
        let mut names: Vec<String> = g.auth.iter().map(ToString::to_string).collect();
        names.sort();
        match names.is_empty() {
            true => "none".to_owned(),
            false => names.join(","),
        }
    };
    let optional = |v: Option<String>| v.unwrap_or_else(|| "none".to_owned());
    let pairs = [
        ("auth", schemes(old), schemes(new)),
        (
            "allow_basic_over_http",
            old.allow_basic_over_http.to_string(),
            new.allow_basic_over_http.to_string(),
        ),
        (
            "default_sddl",
            optional(old.default_sddl.clone()),
            optional(new.default_sddl.clone()),
        ),
        (
            "connection_limit",
            old.connection_limit.to_string(),
            new.connection_limit.to_string(),
        ),
        (
            "bandwidth_limit",
            old.bandwidth_limit.to_string(),
            new.bandwidth_limit.to_string(),
        ),
        (
            "cache_max_age_secs",
            optional(old.cache_max_age_secs.map(|s| s.to_string())),
            optional(new.cache_max_age_secs.map(|s| s.to_string())),
        ),
        ("index", old.index.to_string(), new.index.to_string()),
    ];
    pairs
        .into_iter()
        .filter(|(_, old, new)| old != new)
        .map(|(name, old, new)| format!("{name} {old} → {new}"))
        .collect()
}

/// The URLs of a group the file names: exactly the file's. Suffixes ignore case, as the server's do;
/// URLs are named under the service's prefix.
fn urls(old: &GroupConfig, new: &GroupConfig, under_way: &UnderWay, out: &mut Vec<Change>) {
    let same = |a: &UrlConfig, b: &UrlConfig| a.suffix.to_lowercase() == b.suffix.to_lowercase();
    for url in &new.urls {
        match old.urls.iter().find(|u| same(u, url)) {
            None => out.push(change("added", "URL", url_name(old, url), url_detail(url))),
            Some(before) if before != url => {
                let mut detail = Vec::new();
                if before.file != url.file {
                    detail.push(format!(
                        "file {} → {}",
                        before.file.display(),
                        url.file.display()
                    ));
                }
                if before.sddl != url.sddl {
                    let sddl = |s: &Option<String>| s.clone().unwrap_or_else(|| "none".into());
                    detail.push(format!("sddl {} → {}", sddl(&before.sddl), sddl(&url.sddl)));
                }
                out.push(change(
                    "changed",
                    "URL",
                    url_name(old, before),
                    detail.join(", "),
                ));
            }
            Some(_) => {}
        }
    }
    for url in old
        .urls
        .iter()
        .filter(|u| !new.urls.iter().any(|n| same(n, u)))
    {
        let detail = match under_way.of_url(old, url) {
            0 => "not in the file's group (downloads under way finish; new requests, resumes too, get 404)".to_owned(),
            n => format!(
                "not in the file's group, {} (they finish; new requests, resumes too, get 404)",
                count(n, "download under way", "downloads under way")
            ),
        };
        out.push(change("removed", "URL", url_name(old, url), detail));
    }
}

fn url_name(group: &GroupConfig, url: &UrlConfig) -> String {
    format!("{}{}", group.prefix, url.suffix)
}

fn url_detail(url: &UrlConfig) -> String {
    format!("→ {}", url.file.display())
}

fn bindings(now: &[TlsBinding], wanted: &[TlsBinding], prune: bool, out: &mut Vec<Change>) {
    for binding in wanted {
        let name = format!("port {}", binding.port);
        match now.iter().find(|b| b.port == binding.port) {
            None => out.push(change("added", "certificate", name, String::new())),
            Some(old) => {
                let detail = binding_changed(old, binding).join(", ");
                if !detail.is_empty() {
                    out.push(change("changed", "certificate", name, detail));
                }
            }
        }
    }
    if prune {
        for binding in now
            .iter()
            .filter(|b| !wanted.iter().any(|w| w.port == b.port))
        {
            let name = format!("port {}", binding.port);
            out.push(change(
                "removed",
                "certificate",
                name,
                "not in the file (--prune)".into(),
            ));
        }
    }
}

/// What of a binding differs, secrets aside: an empty secret in the file keeps the service's, and the
/// service never shows its own.
fn binding_changed(old: &TlsBinding, new: &TlsBinding) -> Vec<String> {
    let plain = |s: Option<&bits_compact::tls::CertificateSource>| s.map(|s| s.without_secrets());
    let mut what = Vec::new();
    if plain(old.certificate.as_ref()) != plain(new.certificate.as_ref()) {
        what.push("certificate".to_owned());
    }
    let names = old.sni.keys().chain(new.sni.keys());
    let mut sni: Vec<&String> = names
        .filter(|n| plain(old.sni.get(*n)) != plain(new.sni.get(*n)))
        .collect();
    sni.dedup();
    what.extend(sni.into_iter().map(|n| format!("SNI {n}")));
    if old.client_certificates != new.client_certificates {
        what.push("client certificates".to_owned());
    }
    if old.http2 != new.http2 {
        what.push(format!("http2 {} → {}", old.http2, new.http2));
    }
    what
}

fn principals(now: &Principals, wanted: &Principals, prune: bool, out: &mut Vec<Change>) {
    let find = |p: &Principals, name: &str| p.user(name).map(|(_, u)| u.clone());
    for (name, user) in wanted.users() {
        match find(now, name) {
            None => out.push(change("added", "user", name.to_owned(), String::new())),
            Some(old) => {
                let mut what = Vec::new();
                if old.sid != user.sid {
                    what.push("sid".to_owned());
                }
                if old.groups != user.groups {
                    what.push(format!(
                        "groups {} → {}",
                        list(&old.groups),
                        list(&user.groups)
                    ));
                }
                if old.certificates != user.certificates {
                    what.push("certificates".to_owned());
                }
                if user.password.is_some() || user.nt_hash.is_some() {
                    what.push("password".to_owned());
                }
                if !what.is_empty() {
                    out.push(change("changed", "user", name.to_owned(), what.join(", ")));
                }
            }
        }
    }
    let named = |p: &Principals, name: &str| p.users().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let group_named =
        |p: &Principals, name: &str| p.groups().any(|(n, _)| n.eq_ignore_ascii_case(name));
    for (name, group) in wanted.groups() {
        let old = now.groups().find(|(n, _)| n.eq_ignore_ascii_case(name));
        match old {
            None => out.push(change(
                "added",
                "principal group",
                name.to_owned(),
                String::new(),
            )),
            Some((_, old)) if old != group => out.push(change(
                "changed",
                "principal group",
                name.to_owned(),
                "sid".into(),
            )),
            Some(_) => {}
        }
    }
    if prune {
        for (name, _) in now.users().filter(|(n, _)| !named(wanted, n)) {
            let detail = "not in the file's [principals] (--prune)".to_owned();
            out.push(change("removed", "user", name.to_owned(), detail));
        }
        for (name, _) in now.groups().filter(|(n, _)| !group_named(wanted, n)) {
            let detail = "not in the file's [principals] (--prune)".to_owned();
            out.push(change(
                "removed",
                "principal group",
                name.to_owned(),
                detail,
            ));
        }
    }
}

fn list(names: &[String]) -> String {
    match names.is_empty() {
        true => "none".to_owned(),
        false => names.join(","),
    }
}

/// `1 URL`, `2 URLs`.
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bits_compact::service::ConfigDocument;
    use serde_json::json;

    fn stored(value: serde_json::Value) -> Stored {
        let doc: ConfigDocument = serde_json::from_value(value).unwrap();
        doc.into_stored().unwrap()
    }

    fn lines(now: &Stored, wanted: &Stored, prune: bool) -> Vec<String> {
        changes(now, wanted, prune, &UnderWay::default())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_named_group_is_replaced_whole_and_prune_removes_the_rest() {
        let now = stored(json!({"groups": [
            {"prefix": "http://+:8080/app/", "connection_limit": "10", "urls": [
                {"suffix": "a.bin", "file": "/srv/a.bin"},
                {"suffix": "b.bin", "file": "/srv/b.bin"},
            ]},
            {"prefix": "http://+:8080/other/"},
        ]}));
        let wanted = stored(json!({"groups": [
            {"prefix": "http://+:8080/APP/", "connection_limit": "5", "urls": [
                {"suffix": "A.bin", "file": "/srv/a2.bin"},
                {"suffix": "c.bin", "file": "/srv/c.bin"},
            ]},
            {"prefix": "http://+:9090/new/"},
        ]}));
        let without = lines(&now, &wanted, false);
        assert_eq!(
            without,
            [
                "changed group http://+:8080/app/: connection_limit 10 → 5",
                "changed URL http://+:8080/app/a.bin: file /srv/a.bin → /srv/a2.bin",
                "added URL http://+:8080/app/c.bin: → /srv/c.bin",
                "removed URL http://+:8080/app/b.bin: not in the file's group (downloads under way finish; new requests, resumes too, get 404)",
                "added group http://+:9090/new/: 0 URLs",
            ],
            "{without:#?}"
        );
        let with = lines(&now, &wanted, true);
        assert_eq!(
            with.last().unwrap(),
            "removed group http://+:8080/other/: not in the file (--prune), with its 0 URLs"
        );
        assert!(lines(&now, &now, true).is_empty());
    }

    /// A URL removed while downloads of it are under way says how many; so does a pruned group.
    #[test]
    fn removing_a_url_being_downloaded_says_so() {
        let now = stored(json!({"groups": [
            {"prefix": "http://+:8080/app/", "urls": [
                {"suffix": "a.bin", "file": "/srv/a.bin"},
                {"suffix": "b.bin", "file": "/srv/b.bin"},
            ]},
        ]}));
        let groups: Vec<GroupView> = serde_json::from_value(json!([
            {"prefix": "http://+:8080/app/", "urls": [
                {"suffix": "a.bin", "file": "/srv/a.bin"},
                {"suffix": "b.bin", "file": "/srv/b.bin", "downloads_under_way": 2},
            ]},
        ]))
        .unwrap();
        let under_way = UnderWay::of(&groups);
        let wanted = stored(json!({"groups": [
            {"prefix": "http://+:8080/app/", "urls": [{"suffix": "a.bin", "file": "/srv/a.bin"}]},
        ]}));
        let removed: Vec<String> = changes(&now, &wanted, false, &under_way)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            removed,
            ["removed URL http://+:8080/app/b.bin: not in the file's group, 2 downloads under way (they finish; new requests, resumes too, get 404)"]
        );
        let pruned = changes(&now, &stored(json!({"groups": []})), true, &under_way);
        assert_eq!(
            pruned[0].detail,
            "not in the file (--prune), with its 2 URLs (2 downloads under way: they finish, nothing new starts)"
        );
    }
}
