//! `bcs user add`: the principals file from the terminal, or (without `--users`) the service's users.

use std::path::PathBuf;

use bits_compact::auth::Password;
use bits_compact::Principals;
use clap::Args;

use crate::manage::ApiArgs;
use crate::CliError;

#[derive(Args)]
pub(crate) struct UserAddArgs {
    /// The user name.
    name: String,
    /// The principals file; created (mode 0600) when missing. Without it, the user is set on the service.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["json", "server", "state", "user", "client_cert"])]
    users: Option<PathBuf>,
    /// A group the user belongs to (repeatable); created when missing. Added to the user's groups, never
    /// replacing them.
    #[arg(long = "group", value_name = "GROUP")]
    groups: Vec<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// `bcs user add`: creates the user, or gives an existing one (names ignore case) a new password; groups
/// given are added to those it has, never dropped. In the principals file given with `--users`, else on
/// the service.
pub(crate) fn add(args: &UserAddArgs, runtime: &tokio::runtime::Runtime) -> Result<(), CliError> {
    let Some(users) = &args.users else {
        return runtime.block_on(crate::manage::user::add(
            &args.name,
            &args.groups,
            &args.api,
        ));
    };
    add_to_file(args, users)
}

/// `bcs user add --users FILE`: the principals file from the terminal.
fn add_to_file(args: &UserAddArgs, users: &std::path::Path) -> Result<(), CliError> {
    let mut principals = if users.exists() {
        Principals::load(users)?
    } else {
        Principals::default()
    };
    let password = read_new_password(&args.name)?;
    let created = principals.set_user(&args.name, &password, &args.groups)?;
    principals.save(users)?;
    let what = if created {
        "added"
    } else {
        "has a new password"
    };
    if let Some((name, user)) = principals.user(&args.name) {
        let groups = match user.groups.is_empty() {
            true => "no groups".to_owned(),
            false => format!("groups: {}", user.groups.join(", ")),
        };
        let file = users.display();
        note!("bcs: user {name} {what} in {file} ({groups})");
    }
    Ok(())
}

/// The new password for the principals file.
fn read_new_password(name: &str) -> Result<Password, CliError> {
    crate::password_prompt::read_new_password_text(name).map(|text| Password::from(text.as_str()))
}
