//! `bcs`: ad-hoc file hosting from a terminal. It parses arguments, converts them into library calls, and
//! turns errors into one line and an exit code; the serving is all `bits_compact`.

/// Writes a line to stdout. Unlike `println!`, a closed or failing stdout is ignored: what bcs prints is
/// for the operator, and a reader that went away (`bcs host … | head -1`) is no reason to stop serving,
/// let alone to panic.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::write_line(&mut std::io::stdout(), format_args!($($arg)*))
    };
}

/// Writes a line to stderr, ignoring a closed stderr as `say!` does for stdout (`bcs … 2>&1 | head -1`).
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::write_line(&mut std::io::stderr(), format_args!($($arg)*))
    };
}

/// `say!` for a line that holds what a server sent (names, descriptions, file names, errors): control
/// characters and bidirectional overrides escaped (see `print::terminal_safe`).
macro_rules! say_safe {
    ($($arg:tt)*) => {
        say!("{}", $crate::print::terminal_safe(format_args!($($arg)*)))
    };
}

/// `note!` for a line that holds what a server sent, escaped as `say_safe!` escapes it.
macro_rules! note_safe {
    ($($arg:tt)*) => {
        note!("{}", $crate::print::terminal_safe(format_args!($($arg)*)))
    };
}

mod check;
mod completions;
mod download;
mod fleet_node;
mod host;
mod manage;
mod manpages;
mod observe;
mod password_prompt;
mod print;
mod selfsigned;
mod serve;
mod state_lock;
mod users_file;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::signal::unix::{signal, Signal, SignalKind};

use host::HostArgs;
use serve::ServeArgs;
use users_file::UserAddArgs;

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
    /// Run as a service: serve what the stored configuration holds, and take changes from the management
    /// commands (local socket) or API (optional remote port), keeping each one.
    Serve(Box<ServeArgs>),
    /// Download files (http or https URLs) as one job, in the foreground with a progress bar; run the same
    /// command again after an interruption to resume from the bytes already on disk.
    #[command(after_help = download::EXIT_CODES)]
    Download(Box<download::DownloadArgs>),
    /// Manage users: in a principals file (--users), or on the service.
    #[command(subcommand)]
    User(UserCommand),
    #[command(flatten)]
    Manage(manage::ManageCommand),
    /// Print the shell completion script for bash, zsh or fish (e.g. `source <(bcs completions bash)`).
    Completions(completions::CompletionsArgs),
    /// Write the man pages into a directory (for packaging).
    #[command(hide = true)]
    Manpages(manpages::ManpagesArgs),
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create or update a user; the password is read from a prompt, or from stdin when it is not a
    /// terminal (never from an argument).
    #[command(after_help = manage::EXIT_CODES)]
    Add(UserAddArgs),
    /// Remove a user from the service.
    #[command(after_help = manage::EXIT_CODES)]
    Remove(manage::user::NameArgs),
    /// List the service's users: groups, password or not.
    #[command(after_help = manage::EXIT_CODES)]
    List(manage::ApiArgs),
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
    #[error("{0}")]
    Serve(String),
    #[error("cannot read the password")]
    Password(#[source] std::io::Error),
    #[error(
        "--pfx needs its password: set BCS_PFX_PASSWORD (there is no terminal to ask on: {0})"
    )]
    NoTerminal(std::io::Error),
    // The parse error is in the text, not a source: its Display already repeats its own source.
    #[error("invalid BCS_LOG {value:?}: {reason} (tracing-subscriber's syntax: warn, info,bcs=debug, ...)")]
    Log { value: String, reason: String },
    #[error(transparent)]
    Manage(#[from] manage::ManageError),
    #[error(transparent)]
    Download(#[from] download::DownloadError),
    #[error(transparent)]
    StateLock(#[from] state_lock::StateLockError),
    #[error("cannot write {path:?}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// The management commands say what went wrong through the status, from the error's kind (see
    /// `manage`); `bcs download` has its own (see `download`). Everything else is 2 for a bad argument,
    /// as clap's own refusals are (text given on the command line that the library cannot parse: an
    /// SDDL, a prefix, a suffix, a limit, a scheme; an option that needs another), and 1 for the rest,
    /// library errors included: a missing or unreadable file, a port in use.
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Manage(e) => ExitCode::from(e.exit_code()),
            CliError::Download(e) => e.exit_code(),
            CliError::NeedsHttps(_) => ExitCode::from(2),
            CliError::Library(e) if is_bad_argument(e) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// Whether a library error comes from parsing text that only the command line gives (its kind alone
/// cannot say: a file that cannot be read is `Invalid` too, and is 1).
fn is_bad_argument(e: &bits_compact::Error) -> bool {
    use bits_compact::authz::SddlError;
    use bits_compact::url::{PrefixError, SegmentError};
    use bits_compact::{Error, LimitError};
    // The library's error is transparent: its source is the source of what it wraps.
    if matches!(
        e,
        Error::Sddl(_) | Error::Prefix(_) | Error::Segment(_) | Error::Limit(_) | Error::Scheme(_)
    ) {
        return true;
    }
    let mut next = std::error::Error::source(e);
    while let Some(e) = next {
        if e.is::<SddlError>()
            || e.is::<PrefixError>()
            || e.is::<SegmentError>()
            || e.is::<LimitError>()
            || e.is::<bits_compact::auth::UnknownScheme>()
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Every library error is a `CliError` through `bits_compact::Error` (which converts from each of them).
macro_rules! library_errors {
    ($($e:ty),*) => {$(
        impl From<$e> for CliError {
            fn from(e: $e) -> Self {
                CliError::Library(e.into())
            }
        }
    )*};
}

library_errors!(
    bits_compact::ServerError,
    bits_compact::TlsError,
    bits_compact::UrlError,
    bits_compact::AuthError,
    bits_compact::JobError
);

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    match init_logging().and_then(|()| run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            note!("bcs: error: {}", chain(&e));
            e.exit_code()
        }
    }
}

/// Help and version as clap prints them; any other parse error as one line like bcs's own errors, with
/// clap's exit code (2, a usage error).
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let code = u8::try_from(e.exit_code()).unwrap_or(2);
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
        }
        _ => note!("bcs: error: {}", one_line(&e.render().to_string())),
    }
    ExitCode::from(code)
}

/// clap's rendered error on one line: the message (whose lines may wrap a list), its tips, and the help
/// to read when clap names the command in a `Usage:` line.
fn one_line(rendered: &str) -> String {
    let mut blocks = rendered.trim().split("\n\n");
    let message = blocks.next().unwrap_or_default();
    let message = message.strip_prefix("error: ").unwrap_or(message);
    let mut text = message.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let mut help = String::new();
    for line in blocks.flat_map(str::lines).map(str::trim) {
        if let Some(tip) = line.strip_prefix("tip: ") {
            text.push_str(&format!(" ({tip})"));
        } else if let Some(usage) = line.strip_prefix("Usage: ") {
            let words = usage
                .split(' ')
                .take_while(|w| !w.starts_with(['[', '<', '-']));
            help = format!("; see {} --help", words.collect::<Vec<_>>().join(" "));
        }
    }
    text + &help
}

/// Writes one line, ignoring errors (see `say!`).
fn write_line(out: &mut impl std::io::Write, args: std::fmt::Arguments<'_>) {
    let _ = out.write_fmt(args).and_then(|()| out.write_all(b"\n"));
}

/// Whether colour is allowed: NO_COLOR, "when present and not an empty string, prevents the addition of
/// ANSI color" (no-color.org).
fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn run(cli: Cli) -> Result<(), CliError> {
    // Printed from the definition alone: no runtime needed.
    match &cli.command {
        Command::Completions(args) => {
            completions::print(args);
            return Ok(());
        }
        Command::Manpages(args) => return manpages::write(args),
        _ => {}
    }
    if let Command::Host(args) = &cli.command {
        if let Some(keytab) = &args.keytab {
            // Set before any thread exists: GSS-API reads the keytab's name from here.
            std::env::set_var("KRB5_KTNAME", keytab);
        }
    }
    let workers = match &cli.command {
        Command::Host(args) => args.workers,
        Command::Serve(args) => args.workers,
        _ => None,
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(n) = workers {
        runtime.worker_threads(usize::from(n));
    }
    let runtime = runtime.build().map_err(CliError::Runtime)?;
    match cli.command {
        Command::Host(args) => runtime.block_on(host::run(*args)),
        Command::Serve(args) => runtime.block_on(serve::run(*args)),
        Command::Download(args) => runtime.block_on(download::run(*args)),
        Command::User(UserCommand::Add(args)) => users_file::add(&args, &runtime),
        Command::User(UserCommand::Remove(args)) => runtime.block_on(manage::user::remove(&args)),
        Command::User(UserCommand::List(api)) => runtime.block_on(manage::user::list(&api)),
        Command::Manage(command) => runtime.block_on(manage::run(command)),
        Command::Completions(_) | Command::Manpages(_) => Ok(()),
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
        note!("bcs: shutting down");
    }
}

/// Access log and our own events at info; rustls's notes about client quirks (an IP address sent as SNI,
/// say) are not the operator's to act on, so only its errors show.
const DEFAULT_LOG: &str = "info,rustls=error";

/// The log filter from BCS_LOG (unset or empty: the default); one that does not parse is an error rather
/// than silently the default.
fn init_logging() -> Result<(), CliError> {
    use tracing_subscriber::EnvFilter;
    let value = std::env::var_os("BCS_LOG").filter(|v| !v.is_empty());
    let filter = match value.map(|v| v.to_string_lossy().into_owned()) {
        Some(value) => EnvFilter::builder()
            .parse(&value)
            .map_err(|e| CliError::Log {
                value,
                reason: e.to_string(),
            })?,
        None => EnvFilter::new(DEFAULT_LOG),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()) && colour_allowed())
        .init();
    Ok(())
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
    // Errors name files and URLs, which may come from a server: never raw control characters.
    print::terminal_safe(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks of every command (unique names, valid defaults), which it otherwise makes only
    /// when a command is first parsed.
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
