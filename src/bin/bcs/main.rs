//! `bcs`: ad-hoc file hosting from a terminal. It parses arguments, converts them into library calls, and
//! turns errors into one line and an exit code; the serving is all `bits_compact`.

mod host;
mod print;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, Signal, SignalKind};

use host::HostArgs;
use user::UserAddArgs;

#[derive(Parser)]
#[command(
    name = "bcs",
    version,
    about = "Small, secure ad-hoc file hosting (after BITS Compact Server)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish files under one URL group and serve them until Ctrl-C or SIGTERM.
    Host(Box<HostArgs>),
    /// Manage the principals file (users, groups, password hashes).
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create or update a user; the password is read from a prompt, or from stdin when it is not a
    /// terminal (never from an argument).
    Add(UserAddArgs),
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Library(#[from] bits_compact::Error),
    #[error("cannot publish {path:?}")]
    Path {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot publish {0:?}: not a file or directory")]
    NotAFile(PathBuf),
    #[error("nothing to publish: {0}")]
    Empty(String),
    #[error("{suffix:?} would be published twice: {first:?} and {second:?}")]
    Duplicate {
        suffix: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("cannot start")]
    Runtime(#[source] std::io::Error),
    #[error("{0} needs an https --url")]
    NeedsHttps(&'static str),
    #[error("{0}")]
    BadPassword(&'static str),
    #[error("cannot read the password")]
    Password(#[source] std::io::Error),
}

impl From<bits_compact::ServerError> for CliError {
    fn from(e: bits_compact::ServerError) -> Self {
        CliError::Library(e.into())
    }
}

impl From<bits_compact::TlsError> for CliError {
    fn from(e: bits_compact::TlsError) -> Self {
        CliError::Library(e.into())
    }
}

impl From<bits_compact::UrlError> for CliError {
    fn from(e: bits_compact::UrlError) -> Self {
        CliError::Library(e.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bcs: error: {}", chain(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Host(args) = &cli.command {
        if let Some(keytab) = &args.keytab {
            // Set before any thread exists: GSS-API reads the keytab's name from here.
            std::env::set_var("KRB5_KTNAME", keytab);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    match cli.command {
        Command::Host(args) => runtime.block_on(host::run(*args)),
        Command::User(UserCommand::Add(args)) => user::add(&args),
    }
}

/// Ctrl-C and SIGTERM, installed up front.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        eprintln!("bcs: shutting down");
    }
}

/// Access log and our own events at info; rustls's notes about client quirks (an IP address sent as SNI,
/// say) are not the operator's to act on, so only its errors show.
const DEFAULT_LOG: &str = "info,rustls=error";

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BCS_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
