//! [`JobPolicy`]: what the download jobs of callers who are not administrators may reach, and
//! [`JobAllow`], a host or network an administrator lets them reach (`bcs serve --job-allow`).
//!
//! SECURITY: the threat is a caller who may create jobs (any account the remote listener authenticates)
//! using the service as a way into what only the service can reach — a URL group bound to loopback, the
//! management listeners, other local services, link-local cloud metadata (169.254.169.254) — and learning
//! which local ports are open from the errors. For such a caller every host a job names (each file's URL,
//! an overriding proxy) is resolved as the job will resolve it, and when any of its addresses is loopback,
//! link-local, unspecified (0.0.0.0/8, `::`), multicast, broadcast, or one of this machine's own
//! addresses (which is where the service's listeners are), the request is refused with
//! `refused_by_policy` before any connection is made: one answer, whether a port is open or not, whatever
//! the address class. Addresses are compared canonically (`::ffff:127.0.0.1` is 127.0.0.1); a name that
//! does not resolve is refused too (it cannot be checked). An administrator's jobs are not checked.
//!
//! The same rules hold while the job runs: such a caller's jobs are restricted, and the job manager's peer
//! guard ([`JobPolicy::allows`], given by `bcs serve`) checks the address each of their connections is
//! made to — the first request's and every redirect's, after the name is resolved again — so that neither
//! a redirect to a refused address nor a name that resolves elsewhere when the job runs than when it was
//! checked (DNS rebinding) is followed; that refusal is an ERROR `refused_by_policy` too, saying no more.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use http::Uri;

use crate::service::error::MgmtError;

/// How long resolving the hosts one request names may take before the request is refused.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A host or network that jobs of callers who are not administrators may reach although it is refused
/// by default: a host name (matched as the URL names it, ignoring case), an IP address, or a network in
/// CIDR notation (`127.0.0.0/8`, `fd00::/8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobAllow {
    /// A host name, lowercase.
    Host(String),
    /// The addresses whose first `prefix` bits are `address`'s.
    Network {
        /// The network's address.
        address: IpAddr,
        /// Its prefix length.
        prefix: u8,
    },
}

/// Text that is not a host name, an IP address or a CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a host name, an IP address or a network (ADDRESS/BITS): {reason}")]
pub struct JobAllowError {
    /// The text given.
    pub input: String,
    /// Why.
    pub reason: &'static str,
}

impl FromStr for JobAllow {
    type Err = JobAllowError;

    fn from_str(text: &str) -> Result<JobAllow, JobAllowError> {
        let bad = |reason| JobAllowError {
            input: text.chars().take(300).collect(),
            reason,
        };
        if let Some((address, bits)) = text.split_once('/') {
            let address: IpAddr = unbracketed(address)
                .parse()
                .map_err(|_| bad("the network's address is not an IP address"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            let prefix = bits
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad("the prefix length is not a number of bits the address has"))?;
            return Ok(JobAllow::Network {
                address: canonical(address),
                prefix,
            });
        }
        if let Ok(address) = unbracketed(text).parse::<IpAddr>() {
            let address = canonical(address);
            let prefix = if address.is_ipv4() { 32 } else { 128 };
            return Ok(JobAllow::Network { address, prefix });
        }
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if text.is_empty() || text.len() > 253 || !text.chars().all(name_char) {
            return Err(bad(
                "a host name has letters, digits, `.`, `-` and `_` only",
            ));
        }
        Ok(JobAllow::Host(text.to_ascii_lowercase()))
    }
}

impl fmt::Display for JobAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobAllow::Host(name) => f.write_str(name),
            JobAllow::Network { address, prefix } => write!(f, "{address}/{prefix}"),
        }
    }
}

impl JobAllow {
    fn contains(&self, ip: IpAddr) -> bool {
        let JobAllow::Network { address, prefix } = *self else {
            return false;
        };
        let (have, want, width) = match (canonical(ip), address) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                (u128::from(a.to_bits()), u128::from(b.to_bits()), 32)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => (a.to_bits(), b.to_bits(), 128),
            _ => return false,
        };
        // SECURITY: the fields are public, so a prefix longer than the address (`10.0.0.0/64`, built
        // without `FromStr`) contains nothing; it must never wrap into containing everything.
        let Some(shift) = u32::checked_sub(width, u32::from(prefix)) else {
            return false;
        };
        shift >= width || have >> shift == want >> shift
    }
}

/// What the jobs of callers who are not administrators may reach: public addresses, and what an
/// administrator allowed. See the module's SECURITY note.
#[derive(Debug, Clone, Default)]
pub struct JobPolicy {
    allowed: Vec<JobAllow>,
}

impl JobPolicy {
    /// Refuses what the module's note says, except `allowed`.
    pub fn new(allowed: Vec<JobAllow>) -> JobPolicy {
        JobPolicy { allowed }
    }

    /// What an administrator allowed.
    pub fn allowed(&self) -> &[JobAllow] {
        &self.allowed
    }

    /// Whether a connection of a job of a caller who is not an administrator may be made to `host` (as
    /// the URL or the proxy names it) at `ip`, one of the addresses it resolved to: a host named in
    /// `--job-allow`, or an address that is not refused (see the module's note) or is allowed.
    pub fn allows(&self, host: &str, ip: IpAddr) -> bool {
        let name = JobAllow::Host(host.to_ascii_lowercase());
        self.allowed.contains(&name)
            || !is_refused(ip)
            || self.allowed.iter().any(|a| a.contains(ip))
    }

    /// Whether a job of a caller who is not an administrator may fetch each URL of `targets` (each with
    /// the field that names it), or use it as its proxy: `refused_by_policy` when its host is, or resolves
    /// to, an address refused and not allowed. A URL that does not parse passes: the job manager refuses
    /// it with its own error. Each host is resolved once, and all of them within [`RESOLVE_TIMEOUT`]: a
    /// request naming many slow names is refused, not left waiting.
    pub(crate) async fn check<'a>(
        &self,
        targets: impl IntoIterator<Item = (String, &'a str)>,
    ) -> Result<(), MgmtError> {
        let deadline = tokio::time::Instant::now() + RESOLVE_TIMEOUT;
        let mut checked = std::collections::HashSet::new();
        for (field, url) in targets {
            let Some((host, port)) = host_and_port(url) else {
                continue;
            };
            let name = JobAllow::Host(host.to_ascii_lowercase());
            if self.allowed.contains(&name) || !checked.insert((host.clone(), port)) {
                continue;
            }
            let lookup = tokio::net::lookup_host((host.as_str(), port));
            let resolved = match tokio::time::timeout_at(deadline, lookup).await {
                Ok(Ok(addresses)) => addresses.map(|a: SocketAddr| a.ip()).collect::<Vec<_>>(),
                _ => Vec::new(),
            };
            let refused =
                |ip: &IpAddr| is_refused(*ip) && !self.allowed.iter().any(|a| a.contains(*ip));
            if resolved.is_empty() || resolved.iter().any(refused) {
                return Err(MgmtError::Invalid {
                    code: "refused_by_policy",
                    message: format!(
                        "{field}: refused by policy: a job of a caller who is not an administrator may reach neither loopback, link-local or unspecified addresses nor this machine's own (an administrator may allow hosts with `bcs serve --job-allow`), and its host must resolve"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// The host (without an IPv6 literal's brackets) and port a URL (or a proxy, `http://host:port`) leads
/// to, parsed as the job manager parses it.
fn host_and_port(url: &str) -> Option<(String, u16)> {
    let uri: Uri = url.parse().ok()?;
    let host = uri.host().filter(|h| !h.is_empty())?;
    let host = unbracketed(host);
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Some((host.to_owned(), port))
}

/// An IPv6 literal without its brackets (`[::1]` is `::1`); anything else as it is.
fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Loopback, link-local, unspecified, multicast, broadcast, or this machine's own address.
fn is_refused(ip: IpAddr) -> bool {
    let special = match canonical(ip) {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_link_local()
                || v4.octets()[0] == 0
                || v4.is_multicast()
                || v4 == Ipv4Addr::BROADCAST
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                // IPv4-compatible (::a.b.c.d, deprecated): what it carries decides.
                || (v6.segments()[..6] == [0; 6] && is_refused(IpAddr::V4(compatible(v6))))
        }
    };
    special || is_own(ip)
}

fn compatible(v6: Ipv6Addr) -> Ipv4Addr {
    let o = v6.octets();
    Ipv4Addr::new(o[12], o[13], o[14], o[15])
}

/// Whether `ip` is one of this machine's addresses: only those can be bound to. (Where the system lets any
/// address be bound, every address is taken as its own: refused.)
fn is_own(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_entries_parse_and_print_back() {
        for (text, printed) in [
            ("127.0.0.0/8", "127.0.0.0/8"),
            ("10.1.2.3", "10.1.2.3/32"),
            ("[::1]", "::1/128"),
            ("::ffff:127.0.0.1", "127.0.0.1/32"),
            ("fd00::/8", "fd00::/8"),
            ("Build.Example", "build.example"),
        ] {
            let allow: JobAllow = text.parse().unwrap();
            assert_eq!(allow.to_string(), printed);
        }
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "a b",
            "host:80",
            "http://x/",
        ] {
            assert!(bad.parse::<JobAllow>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn networks_contain_what_their_prefix_covers() {
        let net: JobAllow = "127.0.0.0/8".parse().unwrap();
        assert!(net.contains("127.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!net.contains("128.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let all: JobAllow = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        // Built without parsing, a prefix longer than the address covers nothing.
        let hostile = JobAllow::Network {
            address: "10.0.0.0".parse().unwrap(),
            prefix: 64,
        };
        assert!(!hostile.contains("10.0.0.1".parse().unwrap()));
        assert!(!hostile.contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn loopback_link_local_unspecified_and_own_addresses_are_refused() {
        for refused in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "::",
            "169.254.169.254",
            "fe80::1",
            "224.0.0.1",
            "255.255.255.255",
            "ff02::1",
        ] {
            assert!(is_refused(refused.parse().unwrap()), "{refused}");
        }
        // This machine's own address toward the outside (a UDP "connection" sends nothing), when it has
        // one: where a service bound to all addresses listens.
        let probe = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        if probe.connect("192.0.2.1:9").is_ok() {
            let own = probe.local_addr().unwrap().ip();
            assert!(own.is_unspecified() || is_refused(own), "{own}");
        }
        for public in ["192.0.2.1", "8.8.8.8", "2001:db8::1"] {
            assert!(!is_refused(public.parse().unwrap()), "{public}");
        }
        assert_eq!(
            host_and_port("http://[::1]:8080/x"),
            Some(("::1".into(), 8080))
        );
        assert_eq!(host_and_port("https://h/x"), Some(("h".into(), 443)));
    }

    #[test]
    fn connections_are_allowed_by_the_same_rules() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let public: IpAddr = "192.0.2.1".parse().unwrap();
        let policy = JobPolicy::default();
        assert!(!policy.allows("localhost", loopback));
        assert!(!policy.allows("h", "::ffff:127.0.0.1".parse().unwrap()));
        assert!(policy.allows("h", public));
        let allowed = JobPolicy::new(vec![
            "Build.Example".parse().unwrap(),
            "127.0.0.2".parse().unwrap(),
        ]);
        assert!(allowed.allows("build.EXAMPLE", loopback));
        assert!(allowed.allows("h", "127.0.0.2".parse().unwrap()));
        assert!(!allowed.allows("h", loopback));
    }

    #[tokio::test]
    async fn names_are_resolved_before_they_are_checked() {
        let policy = JobPolicy::default();
        for url in [
            "http://localhost:1/",
            "http://127.1/",
            "http://[::ffff:7f00:1]/",
        ] {
            let err = policy.check(one(url)).await.unwrap_err();
            assert_eq!(err.code(), "refused_by_policy", "{url}");
        }
        policy.check(one("http://192.0.2.1/")).await.unwrap();
        let allowed = JobPolicy::new(vec!["localhost".parse().unwrap()]);
        allowed.check(one("http://LOCALHOST:1/")).await.unwrap();
        let refused = allowed.check(one("http://127.0.0.1:1/")).await;
        assert!(refused.is_err());
        // The field that named it is in the refusal.
        let many = [
            ("files[0].remote_url".to_owned(), "http://192.0.2.1/a"),
            ("files[1].remote_url".to_owned(), "http://[::1]/b"),
        ];
        let err = policy.check(many).await.unwrap_err();
        assert!(err
            .message()
            .starts_with("files[1].remote_url: refused by policy"));
    }

    fn one(url: &str) -> [(String, &str); 1] {
        [("remote_url".to_owned(), url)]
    }
}
