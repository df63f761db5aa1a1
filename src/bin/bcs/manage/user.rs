//! `bcs user add` (without `--users`), `user remove`, `user list`: the service's principals.

use bits_compact::service::{PutUser, UserView};
use clap::Args;
use http::Method;

use super::connect::segment;
use super::{call, done, list_or_none, send, show, ApiArgs};
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
    let body = put_body(password.as_str(), groups);
    let path = format!("/v1/users/{}", segment(name));
    let user = send(api, Method::PUT, &path, &body).await?;
    show(api, &user, |user: UserView| {
        note_safe!("bcs: user {} set ({})", name, groups_of(&user))
    })?;
    Ok(())
}

/// `PUT /v1/users/{n}`'s body (a `PutUser`): the password, and the groups to add when any are given.
fn put_body(password: &str, groups: &[String]) -> PutUser {
    PutUser {
        password: Some(password.to_owned()),
        groups: (!groups.is_empty()).then(|| groups.to_vec()),
        certificates: None,
    }
}

pub(crate) async fn remove(args: &NameArgs) -> Result<(), CliError> {
    let path = format!("/v1/users/{}", segment(&args.name));
    call(&args.api, Method::DELETE, &path, None).await?;
    done(&args.api, || note_safe!("bcs: removed user {}", args.name));
    Ok(())
}

pub(crate) async fn list(api: &ApiArgs) -> Result<(), CliError> {
    let users = call(api, Method::GET, "/v1/users", None).await?;
    show(api, &users, |users: Vec<UserView>| {
        if users.is_empty() {
            note!("bcs: no users (add one with `bcs user add NAME`)");
        }
        for user in &users {
            say_safe!("{}", line(user));
        }
    })?;
    Ok(())
}

/// `alice  groups: admins, staff  password`.
fn line(user: &UserView) -> String {
    let password = match user.password {
        true => "password",
        false => "no password",
    };
    let certificates = match user.certificates.len() {
        0 => String::new(),
        1 => ", 1 certificate".to_owned(),
        n => format!(", {n} certificates"),
    };
    format!(
        "{}  {}  {password}{certificates}",
        user.name,
        groups_of(user)
    )
}

fn groups_of(user: &UserView) -> String {
    format!("groups: {}", list_or_none(&user.groups))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn user(value: Value) -> UserView {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn users_list_on_one_line_each() {
        let alice = user(
            json!({"name": "alice", "sid": "S-1-5-21-1-2-3-1001", "groups": ["staff"], "password": true, "certificates": []}),
        );
        assert_eq!(line(&alice), "alice  groups: staff  password");
        let bot = user(
            json!({"name": "bot", "sid": "S-1-5-21-1-2-3-1002", "groups": [], "password": false, "certificates": ["x"]}),
        );
        assert_eq!(line(&bot), "bot  groups: none  no password, 1 certificate");
    }

    /// What the CLI sends is the library's `PutUser`.
    #[test]
    fn put_bodies_are_put_users() {
        let body = serde_json::to_value(put_body("pw", &["staff".into()])).unwrap();
        assert_eq!(body, json!({"password": "pw", "groups": ["staff"]}));
        assert_eq!(
            serde_json::to_value(put_body("pw", &[])).unwrap(),
            json!({"password": "pw"})
        );
        let put: PutUser = serde_json::from_value(body).unwrap();
        assert_eq!(put.password.as_deref(), Some("pw"));
        assert_eq!(put.groups, Some(vec!["staff".to_owned()]));
    }
}
