//! Basic authentication with curl, principals made by the real `bcs user add`, and SDDL decisions for
//! authenticated identities.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use bits_compact::{AuthScheme, Principals, ServerCertificate};

use crate::pki::Ca;
use crate::support::{have, run, status_with_header, with_stdin, write_file, Reply, TestServer};

const BCS: &str = env!("CARGO_BIN_EXE_bcs");

/// Runs `bcs user add NAME --users FILE --group G...` with the password on stdin.
pub(crate) fn user_add(file: &Path, name: &str, password: &str, groups: &[&str]) {
    let mut cmd = Command::new(BCS);
    cmd.args(["user", "add", name, "--users", file.to_str().unwrap()]);
    for g in groups {
        cmd.args(["--group", g]);
    }
    let out = with_stdin(&mut cmd, password);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Site {
    srv: TestServer,
    dir: tempfile::TempDir,
    ca: String,
}

/// An https server whose group enables Basic, with alice (deploy, admins) and bob (deploy) as users.
fn site() -> Site {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let users = d.join("users.toml");
    user_add(&users, "alice", "alice-RIGHT", &["deploy"]);
    user_add(&users, "bob", "bob-RIGHT", &["deploy"]);
    // BUILTIN\Administrators is a well-known SID: add it as a group by hand, as an operator would.
    let mut text = std::fs::read_to_string(&users).unwrap();
    text = text.replacen(
        "groups = [\"deploy\"]",
        "groups = [\"deploy\", \"admins\"]",
        1,
    );
    text.push_str("\n[groups.admins]\nsid = \"S-1-5-32-544\"\n");
    std::fs::write(&users, text).unwrap();
    let principals = Principals::load(&users).unwrap();

    let ca = Ca::new("CA");
    let ca_file = ca.write(d, "ca.pem");
    let leaf = ca.server(d, "server", &["127.0.0.1"]);
    let srv = TestServer::start();
    srv.server.set_principals(principals);
    let cert = ServerCertificate::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    srv.server.set_ssl_certificate(srv.port, cert).unwrap();
    let group = srv
        .server
        .create_url_group(format!("https://+:{}/A/", srv.port))
        .unwrap();
    group.set_authentication(AuthScheme::Basic, true).unwrap();
    let file = write_file(d, "f.txt", b"secret data");
    for (suffix, sddl) in [
        ("au", Some("D:(A;;GR;;;AU)")),
        ("not-bob", None),
        ("admins", Some("D:(A;;GA;;;BA)")),
        ("empty", Some("D:")),
        ("null", Some("D:NO_ACCESS_CONTROL")),
        ("none", None),
    ] {
        let sddl = match suffix {
            "not-bob" => {
                let bob = Principals::load(&users)
                    .unwrap()
                    .user("bob")
                    .unwrap()
                    .1
                    .sid
                    .clone();
                Some(format!("D:(D;;GA;;;{bob})(A;;GR;;;AU)"))
            }
            _ => sddl.map(str::to_owned),
        };
        group.add_url(suffix, &file, sddl.as_deref()).unwrap();
    }
    Site {
        srv,
        ca: ca_file.to_str().unwrap().to_owned(),
        dir,
    }
}

impl Site {
    fn get(&self, suffix: &str, user: Option<&str>) -> Reply {
        let url = format!("https://127.0.0.1:{}/A/{suffix}", self.srv.port);
        let mut args = vec!["-s", "-i", "--cacert", &self.ca];
        if let Some(user) = user {
            args.extend(["-u", user]);
        }
        args.push(&url);
        Reply::parse(&run("curl", &args).stdout).expect("a response")
    }
}

#[test]
fn basic_over_https_right_and_wrong_passwords() {
    if !have("curl") {
        return;
    }
    let s = site();
    let r = s.get("au", Some("alice:alice-RIGHT"));
    assert_eq!((r.status, r.body.as_slice()), (200, &b"secret data"[..]));
    let r = s.get("au", Some("alice:WRONG"));
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .starts_with("Basic realm="));
    let r = s.get("au", None);
    assert_eq!(r.status, 401);
    assert!(!r.body.windows(6).any(|w| w == b"secret"));
    // DOMAIN\user and user@domain name the same user.
    assert_eq!(s.get("au", Some("CORP\\alice:alice-RIGHT")).status, 200);
    assert_eq!(
        s.get("au", Some("alice@corp.example:alice-RIGHT")).status,
        200
    );
    assert_eq!(s.get("au", Some("nobody:alice-RIGHT")).status, 401);
}

#[test]
fn sddl_decisions_for_basic_identities() {
    if !have("curl") {
        return;
    }
    let s = site();
    let alice = Some("alice:alice-RIGHT");
    let bob = Some("bob:bob-RIGHT");
    let cases = [
        ("au", alice, 200),
        ("au", bob, 200),
        ("au", None, 401),
        ("not-bob", alice, 200),
        ("not-bob", bob, 403),
        ("admins", alice, 200),
        ("admins", bob, 403),
        ("admins", None, 401),
        ("empty", alice, 403),
        ("null", alice, 200),
        // The SDDL decides for anonymous callers too: a NULL DACL grants everyone (IIS's model).
        ("null", None, 200),
        ("none", bob, 200),
    ];
    for (suffix, user, status) in cases {
        let r = s.get(suffix, user);
        assert_eq!(r.status, status, "{suffix} as {user:?}");
        assert_eq!(
            r.body == b"secret data",
            status == 200,
            "{suffix} as {user:?}"
        );
    }
}

#[test]
fn basic_over_plain_http_is_refused_unless_allowed() {
    if !have("curl") {
        return;
    }
    let s = site();
    let users = Principals::load(s.dir.path().join("users.toml")).unwrap();
    let http = TestServer::start();
    http.server.set_principals(users);
    let group = http.server.create_url_group(http.prefix("H")).unwrap();
    group.set_authentication(AuthScheme::Basic, true).unwrap();
    group
        .add_url(
            "f",
            write_file(s.dir.path(), "h.txt", b"plain"),
            Some("D:(A;;GR;;;AU)"),
        )
        .unwrap();
    let url = http.url("/H/f");
    let get = |user: Option<&str>| {
        let mut args = vec!["-s", "-i"];
        if let Some(u) = user {
            args.extend(["-u", u]);
        }
        args.push(&url);
        Reply::parse(&run("curl", &args).stdout).unwrap()
    };
    let r = get(Some("alice:alice-RIGHT"));
    assert_eq!(r.status, 403);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "403 Forbidden: Basic authentication needs HTTPS\n"
    );
    let r = get(None);
    assert_eq!(r.status, 403, "no challenge is offered over plain HTTP");
    assert!(r.header("www-authenticate").is_none());

    group.allow_basic_over_http(true).unwrap();
    assert_eq!(get(None).status, 401);
    assert_eq!(get(Some("alice:alice-RIGHT")).body, b"plain");
}

#[test]
fn malformed_authorization_headers_are_400_and_guessing_is_limited() {
    if !have("curl") {
        return;
    }
    let s = site();
    let url = format!("https://127.0.0.1:{}/A/au", s.srv.port);
    let status = |header: &str| status_with_header(&url, header, &["--cacert", &s.ca]);
    assert_eq!(status("Authorization: Basic !!!notbase64"), "400");
    assert_eq!(status("Authorization: Basic"), "400");
    assert_eq!(status("Authorization: Basic YWJj"), "400");
    // Oversized: our parser's 400 over HTTP/1.1, or HTTP/2's own 431 before it.
    let huge = status(&format!("Authorization: Basic {}", "A".repeat(20_000)));
    assert!(huge == "400" || huge == "431", "{huge}");
    // A scheme the group does not offer is ignored: the caller is anonymous, and challenged.
    assert_eq!(status("Authorization: Bearer abc"), "401");
    assert_eq!(status("Authorization: NTLM TlRMTVNTUAABAAAA"), "401");

    for _ in 0..10 {
        assert_eq!(s.get("au", Some("alice:WRONG")).status, 401);
    }
    let r = s.get("au", Some("alice:alice-RIGHT"));
    assert_eq!(
        r.status, 429,
        "the 11th try within a minute is refused unchecked"
    );
    // Retry-After is what is left of the minute that began with the first failure.
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

#[test]
fn bcs_user_add_writes_a_private_principals_file_and_keeps_sids() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.toml");
    user_add(&users, "carol", "first", &["ops"]);
    let mode = std::fs::metadata(&users).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = Principals::load(&users).unwrap();
    let sid = before.user("carol").unwrap().1.sid.clone();
    user_add(&users, "carol", "second", &["ops", "web"]);
    let after = Principals::load(&users).unwrap();
    let carol = after.user("carol").unwrap().1;
    assert_eq!(carol.sid, sid, "an updated user keeps its SID");
    assert_eq!(carol.groups, ["ops", "web"]);
    // SECURITY: a new password for `Carol` (the same account: names ignore case) without --group keeps
    // her groups, so SDDL group rules keep granting what they did.
    user_add(&users, "Carol", "third", &[]);
    let again = Principals::load(&users).unwrap();
    let (name, carol) = again.user("carol").unwrap();
    assert_eq!((name, &carol.sid), ("carol", &sid));
    assert_eq!(carol.groups, ["ops", "web"]);
    assert!(again.user("Carol").is_some_and(|(n, _)| n == "carol"));
    let text = std::fs::read_to_string(&users).unwrap();
    assert_eq!(text.matches("[users.").count(), 1, "{text}");
    assert!(
        !text.contains("second") && !text.contains("first") && !text.contains("third"),
        "no plain password on disk"
    );
    assert!(text.contains("$argon2id$") && text.contains("nt_hash"));
    // An empty password is refused.
    let mut child = Command::new(BCS)
        .args(["user", "add", "dave", "--users", users.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the password is empty"));
}
