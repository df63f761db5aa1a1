//! Routing a request to a URL group with HTTP.sys rules (as HTTP.sys does).
//!
//! Host categories are tried in order: strong wildcard `+`, explicit host name (against the request's host),
//! IP-bound (against the local address the connection arrived on), weak wildcard `*`. The first category
//! with a match wins; within it the longest whole-segment path prefix wins, which with one-segment prefixes
//! means the group whose segment equals the request's first segment (case-insensitively).
//!
//! The table is an immutable snapshot rebuilt whenever groups change, so the request path never locks.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use crate::url::{Host, UrlGroup};

/// All groups, indexed by port and host category.
#[derive(Debug, Default)]
pub(crate) struct RouteTable {
    ports: HashMap<u16, PortRoutes>,
}

#[derive(Debug, Default)]
struct PortRoutes {
    strong: Vec<UrlGroup>,
    named: Vec<UrlGroup>,
    ip: Vec<UrlGroup>,
    weak: Vec<UrlGroup>,
}

impl RouteTable {
    pub(crate) fn new(groups: &[UrlGroup]) -> Self {
        let mut ports: HashMap<u16, PortRoutes> = HashMap::new();
        for group in groups {
            let routes = ports.entry(group.prefix().port()).or_default();
            let list = match group.prefix().host() {
                Host::StrongWildcard => &mut routes.strong,
                Host::Name(_) => &mut routes.named,
                Host::Ip(_) => &mut routes.ip,
                Host::WeakWildcard => &mut routes.weak,
            };
            list.push(group.clone());
        }
        RouteTable { ports }
    }

    /// Whether a group on the port authenticates connections (NTLM, Negotiate), so that the port must speak
    /// HTTP/1.1 only.
    pub(crate) fn connection_bound(&self, port: u16) -> bool {
        self.ports.get(&port).is_some_and(|r| {
            [&r.strong, &r.named, &r.ip, &r.weak]
                .into_iter()
                .flatten()
                .any(|g| g.auth().is_connection_bound())
        })
    }

    /// The group for a request that arrived on `local_ip:port`, naming `host` (lowercase, no port), whose
    /// first path segment is `segment_key` (decoded, lowercase).
    pub(crate) fn route(
        &self,
        port: u16,
        host: Option<&str>,
        local_ip: IpAddr,
        segment_key: &str,
    ) -> Option<&UrlGroup> {
        let routes = self.ports.get(&port)?;
        let segment_matches = |g: &&UrlGroup| g.prefix().segment_key() == segment_key;
        routes
            .strong
            .iter()
            .find(segment_matches)
            .or_else(|| {
                routes
                    .named
                    .iter()
                    .filter(|g| host_matches(g, host))
                    .find(segment_matches)
            })
            .or_else(|| {
                routes
                    .ip
                    .iter()
                    .filter(|g| ip_matches(g, local_ip))
                    .find(segment_matches)
            })
            .or_else(|| routes.weak.iter().find(segment_matches))
    }

    /// The groups that a request on `port` naming `host`, arrived at `local_ip`, can reach whatever its
    /// path: for each segment, the one [`RouteTable::route`] picks. Empty when no group serves the host.
    pub(crate) fn reachable(
        &self,
        port: u16,
        host: Option<&str>,
        local_ip: IpAddr,
    ) -> Vec<&UrlGroup> {
        let Some(routes) = self.ports.get(&port) else {
            return Vec::new();
        };
        let mut segments = HashSet::new();
        routes
            .strong
            .iter()
            .chain(routes.named.iter().filter(|g| host_matches(g, host)))
            .chain(routes.ip.iter().filter(|g| ip_matches(g, local_ip)))
            .chain(&routes.weak)
            .filter(|g| segments.insert(g.prefix().segment_key()))
            .collect()
    }
}

/// Whether a group's prefix names the request's host.
fn host_matches(group: &UrlGroup, host: Option<&str>) -> bool {
    match (group.prefix().host(), host) {
        (Host::Name(name), Some(host)) => name == host,
        _ => false,
    }
}

/// Whether a group's prefix is bound to the local address the request arrived at.
fn ip_matches(group: &UrlGroup, local_ip: IpAddr) -> bool {
    match group.prefix().host() {
        Host::Ip(ip) => *ip == local_ip,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(prefix: &str) -> UrlGroup {
        UrlGroup::new(
            prefix.parse().unwrap(),
            crate::files::FileCache::new(std::time::Duration::ZERO, 0, 0),
            None,
            Default::default(),
            crate::metrics::GroupSeries::detached(),
        )
    }

    fn routed(
        table: &RouteTable,
        port: u16,
        host: Option<&str>,
        ip: &str,
        seg: &str,
    ) -> Option<String> {
        table
            .route(port, host, ip.parse().unwrap(), seg)
            .map(|g| g.prefix().to_string())
    }

    #[test]
    fn categories_in_order() {
        let groups = [
            group("http://*:80/a/"),
            group("http://127.0.0.1:80/a/"),
            group("http://files:80/a/"),
            group("http://+:80/b/"),
            group("http://*:80/b/"),
            group("http://files:80/c/"),
            group("http://127.0.0.1:80/c/"),
            group("http://[::1]:80/d/"),
            group("http://*:80/d/"),
        ];
        let t = RouteTable::new(&groups);
        // Strong wildcard beats weak for the same segment.
        assert_eq!(
            routed(&t, 80, Some("x"), "10.0.0.1", "b").as_deref(),
            Some("http://+:80/b/")
        );
        // A named host beats IP-bound and weak.
        assert_eq!(
            routed(&t, 80, Some("files"), "127.0.0.1", "a").as_deref(),
            Some("http://files:80/a/")
        );
        // Another host falls through to the IP-bound group on that local address...
        assert_eq!(
            routed(&t, 80, Some("other"), "127.0.0.1", "a").as_deref(),
            Some("http://127.0.0.1:80/a/")
        );
        // ...and to the weak wildcard on another address.
        assert_eq!(
            routed(&t, 80, Some("other"), "10.0.0.1", "a").as_deref(),
            Some("http://*:80/a/")
        );
        assert_eq!(
            routed(&t, 80, None, "10.0.0.1", "a").as_deref(),
            Some("http://*:80/a/")
        );
        assert_eq!(
            routed(&t, 80, Some("files"), "10.0.0.1", "c").as_deref(),
            Some("http://files:80/c/")
        );
        assert_eq!(
            routed(&t, 80, Some("x"), "127.0.0.1", "c").as_deref(),
            Some("http://127.0.0.1:80/c/")
        );
        assert_eq!(
            routed(&t, 80, Some("x"), "::1", "d").as_deref(),
            Some("http://[::1]:80/d/")
        );
        assert_eq!(
            routed(&t, 80, Some("x"), "127.0.0.1", "d").as_deref(),
            Some("http://*:80/d/")
        );
    }

    #[test]
    fn no_match() {
        let t = RouteTable::new(&[group("http://files:80/a/"), group("http://127.0.0.1:80/b/")]);
        assert_eq!(routed(&t, 81, Some("files"), "127.0.0.1", "a"), None);
        assert_eq!(routed(&t, 80, Some("files"), "127.0.0.1", "z"), None);
        assert_eq!(routed(&t, 80, Some("nope"), "127.0.0.1", "a"), None);
        assert_eq!(routed(&t, 80, None, "127.0.0.1", "a"), None);
        assert_eq!(routed(&t, 80, Some("files"), "127.0.0.2", "b"), None);
    }

    #[test]
    fn reachable_groups_are_those_routing_would_pick() {
        let groups = [
            group("http://*:80/a/"),
            group("http://files:80/a/"),
            group("http://files:80/c/"),
            group("http://127.0.0.1:80/d/"),
            group("http://other:80/e/"),
        ];
        let t = RouteTable::new(&groups);
        let reachable = |host: Option<&str>, ip: &str| -> Vec<String> {
            let mut found: Vec<String> = t
                .reachable(80, host, ip.parse().unwrap())
                .iter()
                .map(|g| g.prefix().to_string())
                .collect();
            found.sort();
            found
        };
        assert_eq!(
            reachable(Some("files"), "127.0.0.1"),
            [
                "http://127.0.0.1:80/d/",
                "http://files:80/a/",
                "http://files:80/c/"
            ]
        );
        assert_eq!(reachable(None, "10.0.0.1"), ["http://*:80/a/"]);
        assert!(t
            .reachable(81, None, "127.0.0.1".parse().unwrap())
            .is_empty());
        let named = RouteTable::new(&[group("http://files:80/a/")]);
        assert!(named
            .reachable(80, Some("nope"), "127.0.0.1".parse().unwrap())
            .is_empty());
    }
}
