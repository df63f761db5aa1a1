//! Publish a file to signed-in users only, with NTLM (and Negotiate) and SDDL, until Ctrl-C or SIGTERM.
//!
//! ```text
//! bcs user add alice --users users.toml      # asks for a password; bob likewise
//! bcs user add bob --users users.toml
//! cargo run --example ntlm_sddl -- http://127.0.0.1:8082/team/ users.toml bob Cargo.toml
//! ```
//!
//! The file is published twice: under `all/` for every authenticated user, and under `except-USER/` for
//! every authenticated user but the one named. A request without credentials gets 401 and a challenge;
//! a user the SDDL refuses gets 403.

use std::path::Path;

use bits_compact::{AuthScheme, Principals, Server, UrlPrefix};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [prefix, users, denied, file] = args.as_slice() else {
        return Err("usage: ntlm_sddl PREFIX USERS.toml DENIED_USER FILE".into());
    };
    let prefix: UrlPrefix = prefix.parse()?;
    let name = Path::new(file)
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{file}: no file name"))?;

    // The users, their groups, SIDs and NT hashes (what NTLM checks a response against).
    let principals = Principals::load(users)?;
    // SDDL names accounts by SID, never by name: look the user's up in the principals file.
    let denied_sid = principals
        .user(denied)
        .ok_or_else(|| format!("{denied} is not in {users}"))?
        .1
        .sid
        .to_string();

    let server = Server::builder().build()?;
    server.set_principals(principals);
    let group = server.create_url_group(&prefix)?;
    // NTLM for clients that speak it directly (curl --ntlm, Python's requests_ntlm); Negotiate for Windows
    // clients such as BITS, which wrap NTLM in SPNEGO (or use Kerberos, with the `negotiate` feature).
    group.set_authentication(AuthScheme::Ntlm, true)?;
    group.set_authentication(AuthScheme::Negotiate, true)?;

    // AU is the well-known "Authenticated Users": anyone who proved a password, and no anonymous caller.
    let everyone_signed_in = "D:(A;;GR;;;AU)";
    // The deny ACE comes first: the access check reads ACEs in order, and a deny covering a right not yet
    // granted refuses, so the denied user never reaches the allow.
    let all_but_one = format!("D:(D;;GA;;;{denied_sid})(A;;GR;;;AU)");
    for (suffix, sddl) in [
        (format!("all/{name}"), everyone_signed_in.to_owned()),
        (format!("except-{denied}/{name}"), all_but_one),
    ] {
        let url = group.add_url(&suffix, file, Some(&sddl))?;
        println!("{}", url.location("127.0.0.1"));
    }
    println!("serving; press Ctrl-C to stop");

    server.serve(shutdown()).await?;
    Ok(())
}

/// Ctrl-C (SIGINT) or SIGTERM, which is how service managers stop a program; `serve` then gives transfers
/// in flight the drain timeout (30 s by default) to finish.
async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
