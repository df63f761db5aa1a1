//! Asking for a new password: from a prompt typed twice, or one line of stdin when it is not a terminal.

use zeroize::Zeroizing;

use crate::CliError;

/// SECURITY: from a prompt (typed twice), or one line of stdin when it is not a terminal; never an argument.
pub(crate) fn read_new_password_text(name: &str) -> Result<Zeroizing<String>, CliError> {
    use std::io::IsTerminal;
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("Password for {name}: "))
            .map_err(CliError::Password)?;
        let again = rpassword::prompt_password("Again: ").map_err(CliError::Password)?;
        if first != again {
            return Err(CliError::BadPassword("the two passwords differ"));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(CliError::Password)?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    let password = Zeroizing::new(password);
    if password.is_empty() {
        return Err(CliError::BadPassword("the password is empty"));
    }
    Ok(password)
}
