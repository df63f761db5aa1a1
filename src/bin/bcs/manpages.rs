//! `bcs manpages DIR` (hidden: for packagers): a roff man page per command, `bcs.1`, `bcs-serve.1`,
//! `bcs-group-create.1` and so on, from the command line's own definition.

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};

use crate::CliError;

/// `bcs manpages`.
#[derive(Args)]
pub(crate) struct ManpagesArgs {
    /// The directory to write the pages into (created if missing).
    dir: PathBuf,
}

/// Writes the pages; prints nothing.
pub(crate) fn write(args: &ManpagesArgs) -> Result<(), CliError> {
    std::fs::create_dir_all(&args.dir).map_err(|source| CliError::Write {
        path: args.dir.clone(),
        source,
    })?;
    let mut command = crate::Cli::command();
    // Built, each subcommand knows its whole name (`bcs group create`) for its synopsis.
    command.build();
    page(&args.dir, &command)
}

/// The page of `command`, named after its display name (`bcs-group-create`, as a built command has it),
/// then those of its visible subcommands.
fn page(dir: &Path, command: &clap::Command) -> Result<(), CliError> {
    let name = command.get_display_name().unwrap_or(command.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut roff = Vec::new();
    let rendered = clap_mangen::Man::new(command.clone()).render(&mut roff);
    rendered
        .and_then(|()| std::fs::write(&path, roff))
        .map_err(|source| CliError::Write { path, source })?;
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        page(dir, sub)?;
    }
    Ok(())
}
