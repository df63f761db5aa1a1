//! `bcs completions SHELL`: the completion script for bash, zsh, fish (or elvish, PowerShell), from the
//! command line's own definition, so it never lags behind it.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

/// `bcs completions`.
#[derive(Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

/// Prints the script on stdout.
pub(crate) fn print(args: &CompletionsArgs) {
    let mut command = crate::Cli::command();
    clap_complete::generate(args.shell, &mut command, "bcs", &mut std::io::stdout());
}
