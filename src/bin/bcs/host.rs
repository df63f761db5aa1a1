//! `bcs host`: publish files under one URL group and serve them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bits_compact::{
    AuthScheme, ByteRate, ClientCertMode, ClientCertificates, ConnectionLimit, Host, Principals,
    Server, ServerCertificate, UrlPrefix, UrlScheme,
};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::check::Access;
use crate::observe::{serve_metrics, AccessLogArgs};
use crate::print::{Banner, PrintHosts, Skipped};
use crate::selfsigned::Kept;
use crate::{CliError, Signals};

#[derive(Args)]
pub(crate) struct HostArgs {
    /// Files to publish, and directories whose regular files are published (recursively; symbolic links
    /// inside directories are skipped).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// The URL group prefix, in HTTP.sys syntax. An IP address as host listens on that address only.
    /// Default: http://+:8080/<name>/, where name is the single directory's name, else "files".
    #[arg(long, value_name = "PREFIX")]
    url: Option<UrlPrefix>,
    /// Listen on this local address only (repeatable): an IP address (IPv6 with or without brackets, as
    /// [::1]), or localhost (127.0.0.1, and ::1 where the machine has IPv6). Default: all IPv4 and IPv6
    /// addresses.
    #[arg(long = "bind", value_name = "ADDR")]
    bind: Vec<BindAddress>,
    /// The most downloads served at once from the group; one more is told to come back later (503 with
    /// Retry-After). Default: unlimited.
    #[arg(long, value_name = "N")]
    max_downloads: Option<ConnectionLimit>,
    /// The bandwidth shared by all downloads of the group, e.g. 4MiB/s, 500KB/s, 1G/s. Units count bytes,
    /// never bits, and ignore case: K, KB, M, MB, G, GB are powers of 1000 (500kb/s is 500 000 bytes a
    /// second), KiB, MiB, GiB powers of 1024; no unit or B is bytes. The /s may be left out (4MiB is
    /// 4MiB/s). At least 1024 bytes a second. Default: unlimited.
    #[arg(long, value_name = "RATE")]
    rate: Option<ByteRate>,
    /// The certificate chain (PEM) for an https --url; with --key. Without --cert or --pfx, https uses a
    /// self-signed certificate for the prefix's host name, else this machine's, made once (valid a year)
    /// and kept in the user's state directory ($XDG_STATE_HOME/bcs, else ~/.local/state/bcs), so that its
    /// fingerprint and pin stay the same across restarts; they are printed.
    #[arg(long, value_name = "FILE", requires = "key", conflicts_with = "pfx")]
    cert: Option<PathBuf>,
    /// The private key (PEM) for --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// A PKCS#12 file with the certificate and key; the password comes from BCS_PFX_PASSWORD, else a prompt.
    #[arg(long, value_name = "FILE")]
    pfx: Option<PathBuf>,
    /// Replace the kept self-signed certificate with a new one (a new key, so a new pin).
    #[arg(long, conflicts_with_all = ["cert", "pfx"])]
    new_cert: bool,
    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long, value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// Ask clients for a certificate: optional or required (needs --client-ca).
    #[arg(
        long,
        value_name = "MODE",
        requires = "client_ca",
        default_value = "off"
    )]
    client_cert: ClientCertMode,
    /// A certificate revocation list (PEM) for client certificates (repeatable).
    #[arg(long, value_name = "FILE", requires = "client_ca")]
    crl: Vec<PathBuf>,
    /// Authentication schemes, comma-separated: negotiate (Kerberos in builds with the negotiate feature,
    /// and NTLM under Negotiate), ntlm, basic, client-cert. With any, anonymous callers are challenged.
    /// Default: none (everyone is anonymous).
    #[arg(long, value_name = "SCHEMES", value_delimiter = ',')]
    auth: Vec<AuthScheme>,
    /// The keytab with the HTTP/host service key, for --auth negotiate (else KRB5_KTNAME, else the
    /// system's).
    #[arg(long, value_name = "FILE")]
    pub(crate) keytab: Option<PathBuf>,
    /// Refuse Kerberos principals missing from --users (default: they are Authenticated Users).
    #[arg(long)]
    refuse_unknown_principals: bool,
    /// The principals file with users, groups and password hashes (see `bcs user add`).
    #[arg(long, value_name = "FILE")]
    users: Option<PathBuf>,
    /// An SDDL access rule for every published file, e.g. "D:(A;;GR;;;AU)".
    #[arg(long, value_name = "SDDL")]
    sddl: Option<String>,
    /// Accept Basic credentials over plain HTTP (they are then readable on the network).
    #[arg(long)]
    allow_basic_over_http: bool,
    /// Print the published URLs as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also print a QR code of the first URL, for a phone.
    #[arg(long, conflicts_with = "json")]
    qr: bool,
    /// Seconds a client may take to send request headers (also ends silent keep-alive connections).
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a connection may go without any byte moving.
    #[arg(long, value_name = "SECONDS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// The most connections served at once.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Do not answer the group's root (`/Segment/`) with the list of its files.
    #[arg(long)]
    no_index: bool,
    /// Read files and write them out on plain HTTP/1.1 too, instead of sending them from the file to the
    /// socket inside the kernel (`sendfile`). Which is faster depends on the machine: measure with
    /// benches/compare_nginx.sh.
    #[arg(long)]
    no_sendfile: bool,
    /// The most downloads one client address (an IPv6 /64) runs at once; one more gets 503.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    max_downloads_per_client: u32,
    /// Worker threads that serve connections (default: one per CPU core). One is enough for a few
    /// clients; more than the cores rarely helps.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) workers: Option<u16>,
    #[command(flatten)]
    access_log: AccessLogArgs,
    /// Serves Prometheus metrics at http://ADDR/metrics, a plain-HTTP listener of its own without
    /// authentication: keep it on loopback (127.0.0.1:9100) or a monitoring network. Any other address
    /// prints a warning at start.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

/// A `--bind` value, parsed once: the addresses it stands for.
#[derive(Clone, Debug)]
pub(crate) struct BindAddress(pub(crate) Vec<IpAddr>);

impl FromStr for BindAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("localhost") {
            // RFC 6761 §6.3: localhost is the loopback addresses. ::1 only where it can be bound, so that
            // --bind localhost works in a container without IPv6 as well.
            let v6 = std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok();
            let v6 = v6.then_some(IpAddr::V6(Ipv6Addr::LOCALHOST));
            let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
            return Ok(BindAddress([v4].into_iter().chain(v6).collect()));
        }
        let ip = match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            Some(v6) => v6.parse::<Ipv6Addr>().map(IpAddr::V6),
            None => text.parse::<IpAddr>(),
        };
        ip.map(|ip| BindAddress(vec![ip])).map_err(|_| {
            "expected an IP address (as 127.0.0.1, ::1 or [::1]) or localhost".to_owned()
        })
    }
}

pub(crate) async fn run(args: HostArgs) -> Result<(), CliError> {
    let (files, skipped) = collect_files(&args.paths)?;
    let prefix = match args.url.clone() {
        Some(prefix) => prefix,
        None => default_prefix(&args.paths)?,
    };
    let bind: Vec<IpAddr> = args.bind.iter().flat_map(|b| b.0.iter().copied()).collect();
    let mut builder = Server::builder()
        .header_timeout(Duration::from_secs(args.header_timeout))
        .idle_timeout(Duration::from_secs(args.idle_timeout))
        .max_connections(usize::try_from(args.max_connections).unwrap_or(usize::MAX))
        .max_transfers_per_source(args.max_downloads_per_client)
        .refuse_unknown_principals(args.refuse_unknown_principals)
        .zero_copy(!args.no_sendfile);
    if !bind.is_empty() {
        builder = builder.bind_addresses(bind.iter().copied());
    }
    let server = args.access_log.apply(builder).build()?;
    args.access_log.reopen_on_hangup(&server, Vec::new())?;
    let stop_metrics = CancellationToken::new();
    if let Some(addr) = args.metrics {
        serve_metrics(addr, &server, stop_metrics.clone()).await?;
    }
    let tls = tls_settings(&args, &prefix)?;
    if let Some(tls) = &tls {
        server.set_ssl_certificate(prefix.port(), tls.cert.clone())?;
        server.set_client_certificates(prefix.port(), tls.clients.clone())?;
    }
    if let Some(path) = &args.users {
        server.set_principals(Principals::load(path)?);
    }
    let group = server.create_url_group(&prefix)?;
    let mut schemes = args.auth.clone();
    if args.client_cert != ClientCertMode::Off {
        // A certificate the operator asked clients for is meant to identify them.
        schemes.push(AuthScheme::ClientCertificate);
    }
    for scheme in &schemes {
        group.set_authentication(*scheme, true)?;
    }
    group.allow_basic_over_http(args.allow_basic_over_http)?;
    // The root lists what each caller may download, as miniserve and dufs users expect.
    group.set_index(!args.no_index)?;
    group.set_connection_limit(args.max_downloads.unwrap_or_default())?;
    group.set_bandwidth_limit(args.rate.unwrap_or_default())?;
    let mut urls = Vec::with_capacity(files.len());
    for (suffix, path) in &files {
        urls.push(group.add_url(suffix, path, args.sddl.as_deref())?);
    }
    let access = Access {
        sddl: args.sddl.as_deref(),
        schemes: &schemes,
        https: prefix.scheme() == UrlScheme::Https,
        allow_basic_over_http: args.allow_basic_over_http,
        users: args.users.is_some(),
        client_certificates: args.client_cert != ClientCertMode::Off,
        refuse_unknown_principals: args.refuse_unknown_principals,
    };
    for warning in access.warnings() {
        note!("bcs: warning: {warning}");
    }
    // Signal handlers go in before the URLs are printed, so a signal right after is never lost.
    let signals = Signals::install().map_err(CliError::Runtime)?;
    let banner = Banner {
        group: &group,
        urls: &urls,
        hosts: PrintHosts::new(&bind),
        skipped,
    };
    if args.json {
        banner.print_json();
    } else {
        banner.print_text();
        if let Some(tls) = &tls {
            banner.print_certificate(&tls.cert, tls.kept.as_ref());
        }
        let self_signed = tls.as_ref().and_then(|t| Some((&t.cert, t.kept.as_ref()?)));
        banner.print_downloads(self_signed);
        if args.qr {
            banner.print_qr();
        }
        banner.print_stop_hint();
    }
    let served = server.serve(signals.wait()).await;
    stop_metrics.cancel();
    served?;
    banner.print_summary(args.json);
    note!("bcs: stopped");
    Ok(())
}

/// An https prefix's certificate (and how a self-signed one is kept) and client-certificate policy.
struct Tls {
    cert: ServerCertificate,
    /// `Some` for a self-signed certificate.
    kept: Option<Kept>,
    clients: ClientCertificates,
}

/// The certificate and client-certificate policy for an https prefix, loaded now so that a bad file is an
/// error before anything listens.
fn tls_settings(args: &HostArgs, prefix: &UrlPrefix) -> Result<Option<Tls>, CliError> {
    if prefix.scheme() != UrlScheme::Https {
        let given = [
            (args.cert.is_some(), "--cert"),
            (args.pfx.is_some(), "--pfx"),
            (args.client_ca.is_some(), "--client-ca"),
            (args.new_cert, "--new-cert"),
        ];
        return match given.iter().find(|(set, _)| *set) {
            Some((_, flag)) => Err(CliError::NeedsHttps(flag)),
            None => Ok(None),
        };
    }
    let (cert, kept) = match (&args.cert, &args.key, &args.pfx) {
        (Some(cert), Some(key), _) => (ServerCertificate::from_pem_files(cert, key)?, None),
        (_, _, Some(pfx)) => (
            ServerCertificate::from_pkcs12_file(pfx, &pfx_password()?)?,
            None,
        ),
        _ => {
            let (cert, kept) =
                crate::selfsigned::self_signed(&self_signed_names(prefix), args.new_cert)?;
            (cert, Some(kept))
        }
    };
    let clients = match &args.client_ca {
        Some(ca) => ClientCertificates::from_pem_files(args.client_cert, ca, &args.crl)?,
        None => ClientCertificates::off(),
    };
    Ok(Some(Tls {
        cert,
        kept,
        clients,
    }))
}

/// SECURITY: the password never comes from an argument (visible to other users in the process list).
fn pfx_password() -> Result<String, CliError> {
    if let Ok(password) = std::env::var("BCS_PFX_PASSWORD") {
        return Ok(password);
    }
    // rpassword asks on /dev/tty, which cannot be opened without a controlling terminal (a service, cron,
    // a container without -t); say then what to do instead.
    if let Err(e) = std::fs::File::open("/dev/tty") {
        return Err(CliError::NoTerminal(e));
    }
    rpassword::prompt_password("PKCS#12 password: ").map_err(CliError::Password)
}

/// The prefix's own host name, the machine's name, localhost and the loopback addresses, and the prefix's
/// IP address; the first becomes the subject's CN.
fn self_signed_names(prefix: &UrlPrefix) -> Vec<String> {
    let mut names = Vec::new();
    if let Host::Name(name) = prefix.host() {
        names.push(name.clone());
    }
    names.extend([
        gethostname::gethostname().to_string_lossy().into_owned(),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ]);
    if let Host::Ip(ip) = prefix.host() {
        names.push(ip.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_ascii_lowercase()));
    names
}

/// Each file given, and each regular file below each directory given, with its suffix; and what was left
/// out below the directories.
fn collect_files(paths: &[PathBuf]) -> Result<(Vec<(String, PathBuf)>, Skipped), CliError> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut skipped = Skipped::default();
    for path in paths {
        let md = std::fs::metadata(path).map_err(|source| CliError::Path {
            path: path.clone(),
            source,
        })?;
        if md.is_dir() {
            walk(path, "", &mut files, &mut skipped)?;
        } else if md.is_file() {
            let name = path.file_name().and_then(|n| n.to_str());
            let name = name.ok_or_else(|| CliError::NotAFile(path.clone()))?;
            files.push((name.to_owned(), path.clone()));
        } else {
            return Err(CliError::NotAFile(path.clone()));
        }
    }
    if files.is_empty() {
        return Err(CliError::Empty(
            "no regular files in the paths given".into(),
        ));
    }
    let mut seen = std::collections::HashMap::new();
    for (suffix, path) in &files {
        if let Some(first) = seen.insert(suffix.to_lowercase(), path) {
            return Err(CliError::Duplicate {
                suffix: suffix.clone(),
                first: first.clone(),
                second: path.clone(),
            });
        }
    }
    Ok((files, skipped))
}

/// Each skipped entry is logged at debug level (`BCS_LOG=info,bcs=debug`); the banner gives the counts.
fn walk(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<(String, PathBuf)>,
    skipped: &mut Skipped,
) -> Result<(), CliError> {
    let io_err = |source| CliError::Path {
        path: dir.to_owned(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io_err)?
        .collect::<Result<_, _>>()
        .map_err(io_err)?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::debug!(?path, "skipped: the name is not UTF-8");
            skipped.bad_names += 1;
            continue;
        };
        let suffix = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let kind = entry.file_type().map_err(io_err)?;
        if kind.is_dir() {
            walk(&path, &suffix, out, skipped)?;
        } else if kind.is_file() {
            if let Err(e) = bits_compact::url::UrlSuffix::new(&suffix) {
                tracing::debug!(?path, "skipped: {e}");
                skipped.bad_names += 1;
                continue;
            }
            out.push((suffix, path));
        } else if kind.is_symlink() {
            tracing::debug!(?path, "skipped: a symbolic link");
            skipped.links += 1;
        } else {
            tracing::debug!(
                ?path,
                "skipped: not a regular file (a socket, FIFO or device)"
            );
            skipped.special += 1;
        }
    }
    Ok(())
}

/// `http://+:8080/<name>/`: the single directory's name, else `files`.
fn default_prefix(paths: &[PathBuf]) -> Result<UrlPrefix, CliError> {
    let dir_name = match paths {
        [only] if only.is_dir() => std::fs::canonicalize(only)
            .ok()
            .and_then(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned)),
        _ => None,
    };
    let from_dir = dir_name.and_then(|name| format!("http://+:8080/{name}/").parse().ok());
    match from_dir {
        Some(prefix) => Ok(prefix),
        None => "http://+:8080/files/"
            .parse()
            .map_err(|e: bits_compact::PrefixError| CliError::Library(e.into())),
    }
}
