//! [`PeerGuard`]: which addresses a restricted job's connections may be made to, asked about the address
//! actually connected to — after DNS resolution, before connecting — for the first request and for every
//! redirect, so that neither a redirect nor a name that resolves elsewhere when the job runs than when it
//! was checked (DNS rebinding) leads a job somewhere its owner may not reach.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// Decides whether a connection to a host (as the URL or the proxy names it, without an IPv6 literal's
/// brackets) at one of its resolved addresses may be made. Through a proxy, the proxy is what is
/// connected to, and what is asked about.
#[derive(Clone)]
pub struct PeerGuard(Arc<Allows>);

/// Whether a connection to a host at an address may be made.
type Allows = dyn Fn(&str, IpAddr) -> bool + Send + Sync;

impl PeerGuard {
    /// A guard that allows a connection to `host` at `ip` when `allows(host, ip)` is true.
    pub fn new(allows: impl Fn(&str, IpAddr) -> bool + Send + Sync + 'static) -> PeerGuard {
        PeerGuard(Arc::new(allows))
    }

    /// Whether a connection to `host` at `ip` may be made.
    pub fn allows(&self, host: &str, ip: IpAddr) -> bool {
        (self.0)(host, ip)
    }
}

impl fmt::Debug for PeerGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerGuard").finish_non_exhaustive()
    }
}
