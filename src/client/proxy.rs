//! Which proxy a request goes through (BITS' proxy usage): the environment's `http_proxy`, `https_proxy` and
//! `no_proxy` (PRECONFIG), an explicit proxy with its bypass list (OVERRIDE), or none (NO_PROXY). Sans-IO:
//! the environment is read once, into a [`Proxies`] value, and matching is a pure function.

use http::Uri;
use serde::{Deserialize, Serialize};

use super::ClientError;

/// A job's proxy usage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProxySetting {
    /// The environment's `http_proxy`/`https_proxy`/`no_proxy` (either case), read when a transfer starts.
    #[default]
    Preconfig,
    /// Direct connections only.
    NoProxy,
    /// This proxy (`http://host:port`) for every scheme, except hosts matching `bypass` (no_proxy syntax).
    Override {
        /// The proxy.
        proxy: String,
        /// Hosts reached directly.
        #[serde(default)]
        bypass: Vec<String>,
    },
}

/// The proxies in effect for one transfer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Proxies {
    http: Option<Endpoint>,
    https: Option<Endpoint>,
    bypass: Vec<String>,
}

/// A proxy's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Proxies {
    /// Resolves a setting, reading the environment through `env` for PRECONFIG.
    pub(crate) fn resolve(
        setting: &ProxySetting,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Proxies, ClientError> {
        let either = |name: &str| {
            env(name)
                .or_else(|| env(&name.to_uppercase()))
                .filter(|v| !v.trim().is_empty())
        };
        match setting {
            ProxySetting::NoProxy => Ok(Proxies::default()),
            ProxySetting::Override { proxy, bypass } => {
                let endpoint = Endpoint::parse(proxy)?;
                Ok(Proxies {
                    http: Some(endpoint.clone()),
                    https: Some(endpoint),
                    bypass: bypass.clone(),
                })
            }
            ProxySetting::Preconfig => Ok(Proxies {
                http: either("http_proxy")
                    .map(|p| Endpoint::parse(&p))
                    .transpose()?,
                https: either("https_proxy")
                    .map(|p| Endpoint::parse(&p))
                    .transpose()?,
                bypass: either("no_proxy")
                    .map(|v| v.split(',').map(|s| s.trim().to_owned()).collect())
                    .unwrap_or_default(),
            }),
        }
    }

    /// The proxy for `url`, or `None` to connect directly.
    pub(crate) fn for_url(&self, url: &Uri) -> Option<&Endpoint> {
        let host = url.host()?;
        let port = url.port_u16();
        if self.bypass.iter().any(|rule| bypassed(rule, host, port)) {
            return None;
        }
        match url.scheme_str() {
            Some("https") => self.https.as_ref(),
            _ => self.http.as_ref(),
        }
    }
}

impl Endpoint {
    /// `http://host:port`, `host:port` or `host` (port 80, curl's default is 1080 but HTTP proxies live on
    /// 80/3128/8080: a port is best given). Only HTTP proxies: an `https://` or `socks` proxy is refused.
    pub(crate) fn parse(text: &str) -> Result<Endpoint, ClientError> {
        // SECURITY: `user:password@` in a proxy URL is common in corporate environments; errors (printed,
        // and kept with the job) never repeat it.
        let shown = match text.rsplit_once('@') {
            Some((before, host)) => {
                let scheme = before.split_once("://").map_or("", |(s, _)| s);
                let scheme = if scheme.is_empty() {
                    String::new()
                } else {
                    format!("{scheme}://")
                };
                format!("{scheme}***@{host}")
            }
            None => text.to_owned(),
        };
        let bad = |reason: &str| ClientError::Proxy {
            input: shown.chars().take(200).collect(),
            reason: reason.to_owned(),
        };
        let with_scheme = if text.contains("://") {
            text.to_owned()
        } else {
            format!("http://{text}")
        };
        let uri: Uri = with_scheme.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(bad("only http:// proxies are supported"));
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(bad("proxy credentials are not supported"));
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        Ok(Endpoint {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: uri.port_u16().unwrap_or(80),
        })
    }
}

/// Whether a no_proxy rule covers a host (curl's and Go's reading): `*` covers all; `example.com` and
/// `.example.com` cover the domain and its subdomains; an IP matches itself, or a CIDR range its
/// addresses; `host:port` only that port. Names compare without case.
pub(crate) fn bypassed(rule: &str, host: &str, port: Option<u16>) -> bool {
    let rule = rule.trim();
    if rule == "*" {
        return true;
    }
    if rule.is_empty() {
        return false;
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let (rule, rule_port) = split_port(rule);
    if rule_port.is_some() && rule_port != port {
        return false;
    }
    let rule = rule
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if let Some((net, bits)) = rule.split_once('/') {
        return in_cidr(&host, net, bits);
    }
    let name = rule.strip_prefix('.').unwrap_or(&rule);
    let name = name.strip_prefix("*.").unwrap_or(name);
    host == name
        || host
            .strip_suffix(name)
            .is_some_and(|rest| rest.ends_with('.'))
}

fn split_port(rule: &str) -> (&str, Option<u16>) {
    // An IPv6 address without brackets has colons of its own.
    if rule.matches(':').count() == 1 || rule.starts_with('[') {
        if let Some((h, p)) = rule.rsplit_once(':') {
            if let Ok(p) = p.parse() {
                return (h, Some(p));
            }
        }
    }
    (rule, None)
}

fn in_cidr(host: &str, net: &str, bits: &str) -> bool {
    use std::net::IpAddr;
    let (Ok(host), Ok(net), Ok(bits)) = (
        host.parse::<IpAddr>(),
        net.parse::<IpAddr>(),
        bits.parse::<u32>(),
    ) else {
        return false;
    };
    let (h, n, width) = match (host, net) {
        (IpAddr::V4(h), IpAddr::V4(n)) => (u128::from(u32::from(h)), u128::from(u32::from(n)), 32),
        (IpAddr::V6(h), IpAddr::V6(n)) => (u128::from(h), u128::from(n), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let shift = width - bits;
    shift >= 128 || (h >> shift) == (n >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_passwords_never_appear_in_errors() {
        let err = Endpoint::parse("http://user:Pr0xyPW@127.0.0.1:3128").unwrap_err();
        let text = err.to_string();
        assert!(!text.contains("Pr0xyPW"), "{text}");
        assert!(text.contains("***@127.0.0.1:3128"), "{text}");
    }

    #[test]
    fn no_proxy_rules() {
        let yes = [
            ("*", "anything.example"),
            ("example.com", "example.com"),
            ("example.com", "a.b.example.com"),
            (".example.com", "www.example.com"),
            (".example.com", "example.com"),
            ("*.example.com", "www.example.com"),
            ("EXAMPLE.com", "www.Example.COM"),
            ("127.0.0.1", "127.0.0.1"),
            ("10.0.0.0/8", "10.2.3.4"),
            ("::1", "[::1]"),
            ("fd00::/8", "[fd12::1]"),
            ("0.0.0.0/0", "192.0.2.1"),
        ];
        for (rule, host) in yes {
            assert!(bypassed(rule, host, Some(80)), "{rule} {host}");
        }
        let no = [
            ("example.com", "badexample.com"),
            ("example.com", "example.com.evil"),
            ("", "example.com"),
            ("10.0.0.0/8", "11.0.0.1"),
            ("10.0.0.0/40", "10.0.0.1"),
            ("10.0.0.0/8", "ten.example"),
            ("127.0.0.1", "127.0.0.2"),
        ];
        for (rule, host) in no {
            assert!(!bypassed(rule, host, Some(80)), "{rule} {host}");
        }
        assert!(bypassed("example.com:8080", "example.com", Some(8080)));
        assert!(!bypassed("example.com:8080", "example.com", Some(80)));
    }

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn preconfig_reads_the_environment_per_scheme() {
        let p = Proxies::resolve(
            &ProxySetting::Preconfig,
            env(&[
                ("http_proxy", "http://p:3128"),
                ("HTTPS_PROXY", "s:8080"),
                ("no_proxy", "localhost, .internal"),
            ]),
        )
        .unwrap();
        let at = |u: &str| {
            p.for_url(&u.parse().unwrap())
                .map(|e| (e.host.clone(), e.port))
        };
        assert_eq!(at("http://a.example/x"), Some(("p".into(), 3128)));
        assert_eq!(at("https://a.example/x"), Some(("s".into(), 8080)));
        assert_eq!(at("http://localhost:81/x"), None);
        assert_eq!(at("https://db.internal/x"), None);
        let none = Proxies::resolve(&ProxySetting::NoProxy, env(&[("http_proxy", "p:1")])).unwrap();
        assert_eq!(none.for_url(&"http://a/".parse().unwrap()), None);
    }

    #[test]
    fn override_uses_one_proxy_and_its_bypass_list() {
        let setting = ProxySetting::Override {
            proxy: "http://[::1]:3128".into(),
            bypass: vec!["files.example".into()],
        };
        let p = Proxies::resolve(&setting, |_| Some("http://ignored:1".into())).unwrap();
        let e = p.for_url(&"https://a/".parse().unwrap()).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 3128));
        assert!(p
            .for_url(&"http://files.example/".parse().unwrap())
            .is_none());
    }

    #[test]
    fn unusable_proxies_are_errors() {
        for bad in [
            "https://p:443",
            "socks5://p:1080",
            "http://u:pw@p:3128",
            "http://",
            "::",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Endpoint::parse("p").unwrap().port, 80);
    }
}
