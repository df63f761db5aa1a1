//! `bcs serve`: the file server as a long-running service whose configuration persists in its state
//! directory, managed through the local socket (and optionally a remote TLS port) with the `bcs group`,
//! `url`, `auth`, `limit`, `cert`, `user`, `export` and `apply` commands; it also runs download jobs (`bcs job`)
//! that persist in the same database and write under `--download-root`.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use bits_compact::authz::SecurityDescriptor;
use bits_compact::client::PeerGuard;
use bits_compact::jobs::JobManager;
use bits_compact::service::store::{JobKey, SqliteEndedJobs, SqliteJobStore, SqliteStore};
use bits_compact::service::{self, AdminAccess, JobAllow, JobPolicy, Managed, ServiceJobs};
use bits_compact::tls::ClientCertMode;
use bits_compact::{ClientCertificates, Server, ServerCertificate};
use clap::Args;
use tokio_util::sync::CancellationToken;

use crate::fleet_node as fleet;
use crate::host::BindAddress;
use crate::observe::AccessLogArgs;
use crate::print::shell_word;
use crate::state_lock::StateLock;
use crate::{CliError, Signals};

#[derive(Args)]
pub(crate) struct ServeArgs {
    // (The fleet's flags are read by `crate::fleet`, in every build: without the feature, `--etcd` is
    // an error that names it.)
    /// Where the configuration store, the management socket and the admin certificate live. Default:
    /// $BCS_STATE, else /var/lib/bcs as root, else $XDG_STATE_HOME/bcs (~/.local/state/bcs).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// The addresses URL groups listen on (repeatable; default: all). `localhost` is the loopback
    /// addresses.
    #[arg(long = "bind", value_name = "ADDR")]
    bind: Vec<BindAddress>,
    /// Also serve the management API to remote administrators at this https prefix, e.g.
    /// https://+:9443/ (its host: `+` for the bind addresses, or one IP address).
    #[arg(long, value_name = "URL")]
    admin_url: Option<AdminUrl>,
    /// The admin port's certificate chain (PEM); without it a self-signed one is kept in the state
    /// directory.
    #[arg(long, value_name = "FILE", requires = "admin_key")]
    admin_cert: Option<PathBuf>,
    /// The admin certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "admin_cert")]
    admin_key: Option<PathBuf>,
    /// CA certificates (PEM) whose client certificates administrators may authenticate with.
    #[arg(long, value_name = "FILE")]
    admin_client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM) for administrators' client certificates (repeatable).
    #[arg(long, value_name = "FILE", requires = "admin_client_ca")]
    admin_client_crl: Vec<PathBuf>,
    /// Who may manage remotely, in SDDL: read access for GET, write access for changes. `BA` is the
    /// principals group `BA` (or `Administrators`).
    #[arg(long, value_name = "SDDL", default_value = "D:(A;;GA;;;BA)")]
    admin_sddl: String,
    /// The most downloads one client address (an IPv6 /64) runs at once; one more gets 503.
    #[arg(long, value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    max_downloads_per_client: u32,
    /// Where download jobs may write their files (created mode 0700). Default: downloads/ in the state
    /// directory.
    #[arg(long, value_name = "DIR")]
    download_root: Option<PathBuf>,
    /// Lets the download jobs of callers who are not administrators reach this host (as URLs name it),
    /// address or network (`127.0.0.0/8`), which they may not by default when it is loopback, link-local,
    /// unspecified or one of this machine's addresses (repeatable).
    #[arg(long = "job-allow", value_name = "HOST|CIDR")]
    job_allow: Vec<JobAllow>,
    /// How long a final job (ACKNOWLEDGED, CANCELLED) stays listed, across restarts, unless deleted:
    /// seconds, or a number with s, m, h or d.
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    job_retention: Retention,
    /// Download jobs that transfer at once.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    max_job_transfers: u16,
    /// Join a fleet: the client URLs of its etcd cluster (comma-separated, or repeated). The fleet's
    /// configuration replaces this state directory's; changes made through any node reach every node.
    /// Needs a bcs built with the `fleet` feature.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    pub(crate) etcd: Vec<String>,
    /// The fleet's name (with --etcd): letters, digits, '-', '_', '.'.
    #[arg(long, value_name = "NAME")]
    pub(crate) fleet: Option<String>,
    /// This node's name in the fleet (with --etcd); one process at a time may hold it.
    #[arg(long, value_name = "NAME")]
    pub(crate) node: Option<String>,
    /// The CA certificates (PEM) to check etcd's TLS certificate against (https:// --etcd URLs).
    #[arg(long, value_name = "FILE")]
    pub(crate) etcd_ca: Option<PathBuf>,
    /// This node's client certificate (PEM) for etcd.
    #[arg(long, value_name = "FILE", requires = "etcd_key")]
    pub(crate) etcd_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_cert")]
    pub(crate) etcd_key: Option<PathBuf>,
    /// A fleet's node: serve this node's verified copies to its peers at http://ADDR:PORT/bcs-content/
    /// (NTLM, as the fleet's own account, whose secret is kept in etcd), and publish files by their
    /// content (every node then serves its own verified copy). Without it the node pulls content
    /// published elsewhere but serves none to its peers, and the files it publishes must exist at the
    /// same path on every node.
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) fleet_peer: Option<SocketAddr>,
    /// A fleet's node: the most bytes per second each content pull takes (e.g. 50MB); default: no
    /// limit.
    #[arg(long, value_name = "RATE")]
    pub(crate) fleet_pull_rate: Option<bits_compact::ByteRate>,
    /// Worker threads that serve connections (default: one per CPU core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) workers: Option<u16>,
    #[command(flatten)]
    access_log: AccessLogArgs,
}

pub(crate) async fn run(args: ServeArgs) -> Result<(), CliError> {
    // Arguments first: a bad rule is a usage error before anything is created or started.
    let admin_sddl = SecurityDescriptor::parse(&args.admin_sddl, None)
        .map_err(|e| CliError::Library(e.into()))?;
    let fleet_args = fleet::FleetArgs::parse(&args)?;
    let signals = Signals::install().map_err(CliError::Runtime)?;
    let state = match args.state.clone().or_else(service::default_state_dir) {
        Some(dir) => dir,
        None => {
            return Err(CliError::Serve(
                "no state directory: pass --state DIR".into(),
            ))
        }
    };
    make_private_dir(&state)?;
    // Before anything else: a second service on this directory stops here, saying whose it is.
    let _lock = StateLock::take(&state)?;
    let bind: Vec<IpAddr> = args.bind.iter().flat_map(|b| b.0.clone()).collect();
    let mut builder = Server::builder().max_transfers_per_source(args.max_downloads_per_client);
    if !bind.is_empty() {
        builder = builder.bind_addresses(bind.clone());
    }
    let (content, builder) = fleet::Content::open(&fleet_args, &state, args.fleet_peer, builder)?;
    let server = args.access_log.apply(builder).build()?;
    let peer_log = content.peer_server().into_iter().collect();
    args.access_log.reopen_on_hangup(&server, peer_log)?;
    let store = SqliteStore::open(service::database_path(&state)).map_err(store_error)?;
    let (store, fleet) = fleet::join(fleet_args, store, &state, &bind).await?;
    let (managed, warnings) = Managed::start(server.clone(), store, std::slice::from_ref(&state))
        .map_err(|e| CliError::Serve(e.message()))?;
    for w in &warnings {
        note!("bcs: warning: {w}");
    }
    let jobs = start_jobs(&args, &state).await?;
    let manager = jobs.manager().clone();
    let managed = fleet::attach(&fleet, &content, managed.with_jobs(jobs));
    let router = service::router(managed.clone());
    let stop = CancellationToken::new();
    let peer = content.peer_server();
    let following = fleet::run(
        fleet,
        content,
        &state,
        args.fleet_pull_rate,
        &managed,
        &stop,
    )
    .await?;
    if let Some(peer) = peer {
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Err(e) = peer.serve(stop.cancelled_owned()).await {
                note!("bcs: warning: the fleet's peer path stopped: {e}");
            }
        });
    }

    let socket = service::socket_path(&state);
    let local = {
        let (router, stop, socket) = (router.clone(), stop.clone(), socket.clone());
        let listener = service::bind_local(&socket)
            .map_err(|e| CliError::Serve(format!("cannot listen on {}: {e}", socket.display())))?;
        tokio::spawn(async move { service::serve_local(listener, &socket, router, stop).await })
    };
    if let Some(url) = &args.admin_url {
        let (listeners, access) =
            admin_listeners(&args, url, &bind, &server, &state, admin_sddl).await?;
        for listener in listeners {
            let addr = listener.local_addr().map_err(CliError::Runtime)?;
            say!("bcs: management API for administrators at https://{addr}/v1/");
            let (access, router) = (access.clone(), router.clone());
            tokio::spawn(service::serve_remote(
                listener,
                access,
                router,
                stop.clone(),
            ));
        }
    }
    let groups = managed.groups();
    let urls: usize = groups.iter().map(|g| g.urls.len()).sum();
    say!(
        "bcs: serving {} URL group(s), {urls} URL(s); state in {}; manage with `{}` (socket {})",
        groups.len(),
        state.display(),
        manage_command(&args, &state),
        socket.display()
    );
    // systemd (Type=notify): ready once every listener is up. Without NOTIFY_SOCKET this does nothing.
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    let served = server.serve(signals.wait()).await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    stop.cancel();
    let _ = local.await;
    // Bounded: the lease is returned within etcd's call timeout, or it expires by itself.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(3), following).await;
    manager.shutdown().await;
    served?;
    Ok(())
}

/// The management command that reaches this service from another shell: `bcs group list`, with
/// `--state DIR` (absolute) unless the state directory is the default one.
fn manage_command(args: &ServeArgs, state: &std::path::Path) -> String {
    let given =
        args.state.is_some() || std::env::var_os("BCS_STATE").is_some_and(|v| !v.is_empty());
    if !given {
        return "bcs group list".to_owned();
    }
    let state = std::fs::canonicalize(state).unwrap_or_else(|_| state.to_owned());
    format!(
        "bcs group list --state {}",
        shell_word(&state.display().to_string())
    )
}

/// The download jobs: a manager whose jobs live in the service's database (credentials sealed with the
/// key in the state directory), writing under the download root.
async fn start_jobs(args: &ServeArgs, state: &std::path::Path) -> Result<ServiceJobs, CliError> {
    let key = JobKey::load_or_create(&service::job_key_path(state)).map_err(store_error)?;
    let store = SqliteJobStore::open(service::database_path(state), key).map_err(store_error)?;
    let ended = SqliteEndedJobs::open(service::database_path(state)).map_err(store_error)?;
    // The jobs of callers who are not administrators are checked at each connection as they were when
    // they were made.
    let policy = JobPolicy::new(args.job_allow.clone());
    let manager = JobManager::builder()
        .peer_guard(PeerGuard::new(move |host, ip| policy.allows(host, ip)))
        .store(store)
        .max_transfers(usize::from(args.max_job_transfers))
        // The download root is canonical and job paths are checked link-free: no link is ever followed.
        .no_symlinks(true)
        .start()
        .await
        .map_err(|e| CliError::Serve(format!("cannot start the jobs: {}", crate::chain(&e))))?;
    let root = args
        .download_root
        .clone()
        .unwrap_or_else(|| service::default_download_root(state));
    ServiceJobs::new(manager, &root, state)
        .map_err(|e| CliError::Serve(format!("the download root {}: {e}", root.display())))?
        .job_allow(args.job_allow.clone())
        .keep_ended(ended, args.job_retention.0)
        .map_err(store_error)
}

/// The remote management listeners (one per address: the `--admin-url`'s, else each bind address, else
/// all), with their certificate and rule.
async fn admin_listeners(
    args: &ServeArgs,
    url: &AdminUrl,
    bind: &[IpAddr],
    server: &Server,
    state: &std::path::Path,
    sddl: SecurityDescriptor,
) -> Result<(Vec<tokio::net::TcpListener>, Arc<AdminAccess>), CliError> {
    let addrs: Vec<SocketAddr> = match (url.host, bind) {
        (Some(ip), _) => vec![SocketAddr::new(ip, url.port)],
        // [::] takes IPv4 too where the system allows (Linux does by default).
        (None, []) => vec![SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), url.port)],
        (None, bind) => bind
            .iter()
            .map(|ip| SocketAddr::new(*ip, url.port))
            .collect(),
    };
    let mut listeners = Vec::new();
    for addr in &addrs {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            CliError::Serve(format!("cannot listen on {addr} for --admin-url: {e}"))
        })?;
        listeners.push(listener);
    }
    let certificate = match (&args.admin_cert, &args.admin_key) {
        (Some(cert), Some(key)) => ServerCertificate::from_pem_files(cert, key)?,
        _ => {
            // The names a client may reach it by: the machine's, loopback, and each address it listens on.
            let mut names = vec![
                gethostname::gethostname().to_string_lossy().into_owned(),
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
            ];
            for addr in &addrs {
                let ip = addr.ip().to_string();
                if !addr.ip().is_unspecified() && !names.contains(&ip) {
                    names.push(ip);
                }
            }
            let (cert, kept) =
                crate::selfsigned::self_signed_in(Some(state.to_owned()), &names, false)?;
            if let Some(file) = kept.cert_file() {
                let file = shell_word(&file.display().to_string());
                let server = format!("https://{}:{}/", names[0], url.port);
                note!(
                    "bcs: the admin port's self-signed certificate is {file} (SHA-256 {}); management commands trust it with --ca, as in `bcs group list --server {server} --ca {file}`",
                    cert.info().sha256_fingerprint
                );
            }
            cert
        }
    };
    let clients = match &args.admin_client_ca {
        Some(ca) => ClientCertificates::from_pem_files(
            ClientCertMode::Optional,
            ca,
            &args.admin_client_crl,
        )?,
        None => ClientCertificates::off(),
    };
    let access = AdminAccess::new(server, certificate, clients, sddl)?;
    Ok((listeners, Arc::new(access)))
}

/// Where the remote management API listens: `https://+:PORT/` (`+` or `*`: the bind addresses) or
/// `https://IP:PORT/`.
#[derive(Clone, Debug)]
pub(crate) struct AdminUrl {
    host: Option<IpAddr>,
    port: u16,
}

impl std::str::FromStr for AdminUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || format!("{text:?}: expected https://+:PORT/ or https://IP:PORT/");
        let rest = text.strip_prefix("https://").ok_or_else(expected)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = rest.rsplit_once(':').ok_or_else(expected)?;
        let port: u16 = port.parse().map_err(|_| expected())?;
        let host = match host {
            "+" | "*" => None,
            h => {
                let h = h
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(h);
                Some(h.parse::<IpAddr>().map_err(|_| expected())?)
            }
        };
        Ok(AdminUrl { host, port })
    }
}

/// How long final jobs stay listed: seconds, or a number with `s`, `m`, `h` or `d` (`7d`).
#[derive(Clone, Copy, Debug)]
struct Retention(std::time::Duration);

impl std::str::FromStr for Retention {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || format!("{text:?}: expected seconds, or a number with s, m, h or d (7d)");
        let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
            Some(at) => text.split_at(at),
            None => (text, "s"),
        };
        let scale = match unit {
            "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86_400,
            _ => return Err(expected()),
        };
        let seconds = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .ok_or_else(expected)?;
        Ok(Retention(std::time::Duration::from_secs(seconds)))
    }
}

/// Creates the state directory mode 0700, or checks an existing one: a directory, owned by this user,
/// that no one else may write to.
///
/// SECURITY: it holds the store (password hashes, and what is published) and the socket; were another
/// user able to write there, they could swap either and publish any file this service can read.
fn make_private_dir(dir: &std::path::Path) -> Result<(), CliError> {
    bits_compact::jobs::make_private_dir(dir)
        .map_err(|e| CliError::Serve(format!("the state directory {}: {e}", dir.display())))
}

fn store_error(e: bits_compact::service::store::StoreError) -> CliError {
    CliError::Serve(crate::chain(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_takes_seconds_or_a_unit() {
        for (text, seconds) in [
            ("7d", 604_800),
            ("12h", 43_200),
            ("30m", 1800),
            ("45s", 45),
            ("90", 90),
            ("0", 0),
        ] {
            assert_eq!(
                text.parse::<Retention>().unwrap().0.as_secs(),
                seconds,
                "{text}"
            );
        }
        for bad in ["", "d", "7w", "-1d", "1.5h", "99999999999999999999d"] {
            assert!(bad.parse::<Retention>().is_err(), "{bad:?}");
        }
    }
}
