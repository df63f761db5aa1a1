//! What `bcs host` prints: the URLs (text or JSON) and the certificate.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use bits_compact::{Host, ServerCertificate, Url, UrlPrefix};

use crate::cert::Kept;

/// The host names to print for wildcard prefixes.
pub(crate) struct PrintHosts {
    main: String,
    local: Option<String>,
}

impl PrintHosts {
    pub(crate) fn new(bind: &[IpAddr]) -> Self {
        let any = bind.is_empty() || bind.iter().any(IpAddr::is_unspecified);
        let main = match bind.first() {
            Some(ip) if !any => host_literal(*ip),
            _ => gethostname::gethostname().to_string_lossy().into_owned(),
        };
        let v4_local = bind.is_empty()
            || bind.iter().any(|ip| {
                *ip == IpAddr::V4(Ipv4Addr::UNSPECIFIED) || *ip == IpAddr::V4(Ipv4Addr::LOCALHOST)
            });
        let local = v4_local.then(|| "127.0.0.1".to_owned());
        PrintHosts { main, local }
    }

    /// The URL through the machine's name, and the loopback form when it differs.
    fn locations(&self, url: &Url) -> (String, Option<String>) {
        let main = url.location(&self.main);
        let local = self
            .local
            .as_ref()
            .map(|h| url.location(h))
            .filter(|l| *l != main);
        (main, local)
    }
}

fn host_literal(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    }
}

pub(crate) fn print_text(group: &bits_compact::UrlGroup, urls: &[Url], hosts: &PrintHosts) {
    let prefix = group.prefix();
    let n = urls.len();
    let plural = if n == 1 { "" } else { "s" };
    say!("Serving {n} file{plural} under {prefix}");
    let (downloads, rate) = (group.connection_limit(), group.bandwidth_limit());
    if downloads.get().is_some() || !rate.is_unlimited() {
        say!("Limits: {downloads} downloads at once, {rate} shared");
    }
    for url in urls {
        match hosts.locations(url) {
            (main, Some(local)) => say!("  {main}  (local: {local})"),
            (main, None) => say!("  {main}"),
        }
    }
}

/// The last line of the banner, with what limits who reaches the URLs: an IP-literal prefix is served on
/// that local address only (whatever host clients name), a host name only to clients that name it.
pub(crate) fn print_stop_hint(prefix: &UrlPrefix) {
    match prefix.host() {
        Host::Ip(_) => say!("Press Ctrl-C to stop. Listening on {} only.", prefix.host()),
        Host::Name(_) => say!(
            "Press Ctrl-C to stop. Clients must name host {}.",
            prefix.host()
        ),
        _ => say!("Press Ctrl-C to stop."),
    }
}

pub(crate) fn print_json(prefix: &UrlPrefix, urls: &[Url], hosts: &PrintHosts) {
    #[derive(serde::Serialize)]
    struct Published<'a> {
        prefix: String,
        urls: Vec<Entry<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Entry<'a> {
        suffix: &'a str,
        file: &'a Path,
        size: Option<u64>,
        url: String,
        local_url: Option<String>,
    }
    let published = Published {
        prefix: prefix.to_string(),
        urls: urls
            .iter()
            .map(|u| {
                let (url, local_url) = hosts.locations(u);
                Entry {
                    suffix: u.suffix(),
                    file: u.path(),
                    size: std::fs::metadata(u.path()).ok().map(|m| m.len()),
                    url,
                    local_url,
                }
            })
            .collect(),
    };
    match serde_json::to_string_pretty(&published) {
        Ok(text) => say!("{text}"),
        Err(e) => note!("bcs: error: cannot print JSON: {e}"),
    }
}

/// The certificate; for a self-signed one where it is kept, and the pin clients can check.
pub(crate) fn print_certificate(cert: &ServerCertificate, kept: Option<&Kept>) {
    let info = cert.info();
    let dir = || {
        let file = kept.and_then(Kept::cert_file);
        file.and_then(Path::parent)
            .map_or_else(String::new, |d| d.display().to_string())
    };
    let kind = match kept {
        None => "loaded".to_owned(),
        Some(Kept::Reused(_)) => format!("self-signed, kept in {}", dir()),
        Some(Kept::Made(_)) => format!("self-signed, made now and kept in {}", dir()),
        Some(Kept::Ephemeral) => "self-signed, made now; it lasts until bcs stops".to_owned(),
    };
    say!("TLS certificate ({kind}): {}", info.subject);
    say!("  SHA-256 fingerprint: {}", info.sha256_fingerprint);
    say!("  SHA-1 thumbprint:    {}", info.sha1_thumbprint);
    say!("  Valid until:         {}", info.not_after);
    say!("  Public-key pin:      {}", info.spki_pin);
    if kept.is_some() {
        say!(
            "  clients can pin it:  curl --pinnedpubkey '{}' -k URL",
            info.spki_pin
        );
    }
}
