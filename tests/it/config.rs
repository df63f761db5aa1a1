//! The configuration as data: `config()` → TOML → `apply()` on a fresh server gives the same configuration
//! and the same answers to the same requests; a configuration with one bad part changes nothing; changes
//! reach a listener in order; a deleted group's handle refuses changes.

use std::sync::{Arc, Mutex};

use bits_compact::auth::Password;
use bits_compact::config::{Change, ServerConfig};
use bits_compact::{
    AuthScheme, ClientCertMode, ClientCertificates, Principals, Server, ServerCertificate,
    ServerError, UrlError,
};

use crate::pki::Ca;
use crate::support::{free_port, have, pattern, run, write_file, Reply, TestServer};

/// What a client sees for each of a few requests: status, and the body when it is a file's.
fn answers(http: u16, https: u16, ca: &str) -> Vec<(String, u16, Vec<u8>)> {
    let h = |p: &str| format!("http://127.0.0.1:{http}{p}");
    let s = |p: &str| format!("https://127.0.0.1:{https}{p}");
    let requests: Vec<(String, Vec<String>)> = vec![
        (h("/Pub/a.bin"), vec![]),
        (h("/Pub/a.bin"), vec!["-r".into(), "10-19".into()]),
        (h("/Pub/docs/b.txt"), vec![]),
        (h("/Pub/denied"), vec![]),
        (h("/Auth/a.bin"), vec![]),
        (
            h("/Auth/a.bin"),
            vec!["-u".into(), "alice:alice-RIGHT".into()],
        ),
        (h("/Auth/a.bin"), vec!["-u".into(), "bob:bob-RIGHT".into()]),
        (h("/Nope/x"), vec![]),
        (s("/Sec/b.txt"), vec!["--cacert".into(), ca.into()]),
    ];
    requests
        .into_iter()
        .map(|(url, extra)| {
            let mut args: Vec<&str> = vec!["-s", "-i", "--max-time", "20"];
            args.extend(extra.iter().map(String::as_str));
            args.push(&url);
            let r = Reply::parse(&run("curl", &args).stdout).expect("a response");
            let body = if r.status == 200 || r.status == 206 {
                r.body
            } else {
                Vec::new()
            };
            (url, r.status, body)
        })
        .collect()
}

#[test]
fn config_round_trips_through_toml_onto_a_fresh_server_that_answers_alike() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = write_file(d, "a.bin", &pattern(100_000, 5));
    let b = write_file(d, "b.txt", b"bravo");
    let ca = Ca::new("CA");
    let ca_file = ca.write(d, "ca.pem");
    let leaf = ca.server(d, "server", &["127.0.0.1", "localhost"]);

    let first = TestServer::start();
    let (http, https) = (first.port, free_port());
    let server = &first.server;
    let mut users = Principals::default();
    users
        .set_user("alice", &Password::from("alice-RIGHT"), &["deploy".into()])
        .unwrap();
    users
        .set_user("bob", &Password::from("bob-RIGHT"), &[])
        .unwrap();
    let deploy = users.user("alice").unwrap().1.groups[0].clone();
    assert_eq!(deploy, "deploy");
    server.set_principals(users);

    let public = server.create_url_group(first.prefix("Pub")).unwrap();
    public.add_url("a.bin", &a, None).unwrap();
    public
        .add_url("docs/b.txt", &b, Some("D:(A;;GR;;;WD)"))
        .unwrap();
    public.add_url("denied", &b, Some("D:")).unwrap();
    public.set_connection_limit("5".parse().unwrap()).unwrap();
    public
        .set_bandwidth_limit("64MiB/s".parse().unwrap())
        .unwrap();
    let auth = server.create_url_group(first.prefix("Auth")).unwrap();
    auth.set_authentication(AuthScheme::Basic, true).unwrap();
    auth.set_authentication(AuthScheme::Ntlm, true).unwrap();
    auth.allow_basic_over_http(true).unwrap();
    auth.set_default_sddl(Some("D:(D;;GA;;;S-1-5-21-1-2-3-4)(A;;GR;;;AU)"))
        .unwrap();
    auth.add_url("a.bin", &a, None).unwrap();
    let secure = server
        .create_url_group(format!("https://+:{https}/Sec/"))
        .unwrap();
    secure.add_url("b.txt", &b, None).unwrap();
    let cert = ServerCertificate::from_pem_files(&leaf.cert, &leaf.key).unwrap();
    server.set_ssl_certificate(https, cert).unwrap();
    let sni = ServerCertificate::self_signed(&["files.test".into()]).unwrap();
    server
        .set_sni_certificate(https, "Files.Test", sni)
        .unwrap();
    let clients =
        ClientCertificates::from_pem_files(ClientCertMode::Optional, &ca_file, &[]).unwrap();
    server.set_client_certificates(https, clients).unwrap();

    let config = server.config();
    assert_eq!(config.groups.len(), 3);
    assert_eq!(config.tls.len(), 1);
    let ca_path = ca_file.to_str().unwrap().to_owned();
    let before = answers(http, https, &ca_path);
    let statuses: Vec<u16> = before.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(statuses, [200, 206, 200, 403, 401, 200, 200, 404, 200]);

    let text = toml::to_string(&config).unwrap();
    assert!(
        !text.contains("alice-RIGHT"),
        "no password in the configuration"
    );
    let parsed: ServerConfig = toml::from_str(&text).unwrap();
    assert_eq!(parsed, config);
    drop(first);

    // A fresh server from the parsed configuration: same configuration, same answers.
    let second = Server::from_config(&parsed).unwrap();
    assert_eq!(second.config(), config);
    let serving = TestServer::serving(second, http);
    assert_eq!(answers(http, https, &ca_path), before);
    // Applying it again changes nothing.
    serving.server.apply(&parsed).unwrap();
    assert_eq!(serving.server.config(), config);
    assert_eq!(answers(http, https, &ca_path), before);
}

#[test]
fn a_configuration_with_one_bad_part_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    group.add_url("a.txt", &a, None).unwrap();
    let before = srv.server.config();

    // Everything else in it is fine: a new group on a new port, a changed limit, a removed URL.
    let spare = free_port();
    let mut bad = before.clone();
    bad.groups[0].urls.clear();
    bad.groups[0].connection_limit = "2".parse().unwrap();
    let mut extra = before.groups[0].clone();
    extra.prefix = format!("http://127.0.0.1:{spare}/New/").parse().unwrap();
    extra.urls[0].file = dir.path().join("missing.txt");
    bad.groups.push(extra);
    let err = srv.server.apply(&bad).unwrap_err();
    assert!(
        matches!(err, ServerError::Url(UrlError::File { .. })),
        "{err}"
    );
    assert_eq!(srv.server.config(), before);
    assert!(srv.server.local_addrs(spare).is_empty());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", spare)).is_err(),
        "the new port was closed again"
    );
    let r = crate::support::curl(&[&srv.url("/G/a.txt")]);
    assert_eq!(r.body, b"alpha");

    // Other bad parts: a bad SDDL, two groups with one prefix, other settings, a scheme conflict.
    let mut bad = before.clone();
    bad.groups[0].urls[0].sddl = Some("D:(X;;GA;;;WD)".into());
    assert!(srv.server.apply(&bad).is_err());
    let mut bad = before.clone();
    bad.groups.push(before.groups[0].clone());
    assert!(matches!(
        srv.server.apply(&bad),
        Err(ServerError::GroupExists(_))
    ));
    let mut bad = before.clone();
    bad.settings.max_connections += 1;
    assert!(matches!(
        srv.server.apply(&bad),
        Err(ServerError::FixedSettings)
    ));
    let mut bad = before.clone();
    let mut https = before.groups[0].clone();
    https.prefix = format!("https://+:{}/S/", srv.port).parse().unwrap();
    bad.groups.push(https);
    assert!(matches!(
        srv.server.apply(&bad),
        Err(ServerError::SchemeConflict { .. })
    ));
    // A bad prefix does not even parse.
    let text = toml::to_string(&before).unwrap().replace("/G/", "/G/H/");
    assert!(toml::from_str::<ServerConfig>(&text).is_err());
    assert_eq!(srv.server.config(), before);
}

#[test]
fn changes_reach_the_listener_in_order_and_a_deleted_group_refuses_changes() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_file(dir.path(), "a.txt", b"alpha");
    let srv = TestServer::start();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    srv.server
        .on_change(move |c| sink.lock().unwrap().push(c.clone()));
    let prefix = srv.prefix("G");
    let group = srv.server.create_url_group(&prefix).unwrap();
    group.add_url("a.txt", &a, None).unwrap();
    group.set_authentication(AuthScheme::Basic, true).unwrap();
    let same = srv.server.url_group(&prefix).unwrap();
    assert!(same.remove_url("A.TXT").unwrap());
    srv.server.delete_url_group(&prefix).unwrap();
    let canonical = group.prefix().to_string();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            Change::GroupCreated(canonical.clone()),
            Change::UrlAdded {
                prefix: canonical.clone(),
                suffix: "a.txt".into()
            },
            Change::GroupChanged(canonical.clone()),
            Change::UrlRemoved {
                prefix: canonical.clone(),
                suffix: "a.txt".into()
            },
            Change::GroupDeleted(canonical.clone()),
        ]
    );
    // Every handle of the deleted group refuses, and says why.
    assert!(group.is_deleted() && same.is_deleted());
    let err = group.add_url("a.txt", &a, None).unwrap_err();
    assert!(matches!(err, UrlError::GroupDeleted(_)), "{err}");
    assert!(matches!(
        same.set_connection_limit("1".parse().unwrap()),
        Err(UrlError::GroupDeleted(_))
    ));
    assert_eq!(
        seen.lock().unwrap().len(),
        5,
        "refused changes are not recorded"
    );
}
