//! `bcs user add` (without `--users`), `user remove`, `user list`: the service's principals.

use clap::Args;
use http::Method;
use serde_json::{json, Value};

use super::connect::segment;
use super::{call, names, show, ApiArgs};
use crate::CliError;

#[derive(Args)]
pub(crate) struct NameArgs {
    /// The user name.
    name: String,
    #[command(flatten)]
    api: ApiArgs,
}

/// Creates the user on the service, or gives it a new password; `groups` are added to its groups. The
/// password is read as for the principals file (`crate::user`).
pub(crate) async fn add(name: &str, groups: &[String], api: &ApiArgs) -> Result<(), CliError> {
    let password = crate::password_prompt::read_new_password_text(name)?;
    let mut body = json!({ "password": password.as_str() });
    if !groups.is_empty() {
        body["groups"] = json!(groups);
    }
    let path = format!("/v1/users/{}", segment(name));
    let user = call(api, Method::PUT, &path, Some(&body)).await?;
    show(api, &user, |user| {
        note!("bcs: user {} set ({})", name, groups_of(user))
    });
    Ok(())
}

pub(crate) async fn remove(args: &NameArgs) -> Result<(), CliError> {
    let path = format!("/v1/users/{}", segment(&args.name));
    let body = call(&args.api, Method::DELETE, &path, None).await?;
    show(&args.api, &body, |_| {
        note!("bcs: removed user {}", args.name)
    });
    Ok(())
}

pub(crate) async fn list(api: &ApiArgs) -> Result<(), CliError> {
    let users = call(api, Method::GET, "/v1/users", None).await?;
    show(api, &users, |users| {
        for user in users.as_array().into_iter().flatten() {
            say!("{}", line(user));
        }
    });
    Ok(())
}

/// `alice  groups: admins, staff  password`.
fn line(user: &Value) -> String {
    let password = match user.get("password") {
        Some(Value::Bool(true)) => "password",
        _ => "no password",
    };
    let certificates = user
        .get("certificates")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let certificates = match certificates {
        0 => String::new(),
        1 => ", 1 certificate".to_owned(),
        n => format!(", {n} certificates"),
    };
    format!(
        "{}  {}  {password}{certificates}",
        super::field(user, "name"),
        groups_of(user)
    )
}

fn groups_of(user: &Value) -> String {
    format!("groups: {}", names(user, "groups"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_list_on_one_line_each() {
        let alice = json!({"name": "alice", "sid": "S-1-5-21-1-2-3-1001", "groups": ["staff"], "password": true, "certificates": []});
        assert_eq!(line(&alice), "alice  groups: staff  password");
        let bot = json!({"name": "bot", "groups": [], "password": false, "certificates": ["x"]});
        assert_eq!(line(&bot), "bot  groups: none  no password, 1 certificate");
    }
}
