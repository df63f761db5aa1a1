//! The library examples in `examples/`, run as their readers would run them: as programs on a free loopback
//! port, driven by real clients. `cargo test` builds them with the package (`cargo test --test it` alone
//! does not: run `cargo build --examples` first). Needs the `cli` feature for `Running` and for
//! `bcs user add`, which makes the NTLM example's principals file.

use std::path::PathBuf;

use bits_compact::ServerCertificate;

use crate::cli::Running;
use crate::pki::Ca;
use crate::support::{curl, free_port, have, run, target_dir, write_file};

/// The built example, or a failure that says how to build it.
fn example(name: &str) -> PathBuf {
    let path = target_dir().join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built (cargo build --examples)",
        path.display()
    );
    path
}

#[test]
fn the_tls_example_serves_with_given_pem_files_or_a_self_signed_certificate() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Ca::new("Example CA");
    let ca_file = ca.write(d, "ca.pem");
    let leaf = ca.server(d, "server", &["127.0.0.1"]);
    let file = write_file(d, "notes.txt", b"over tls");
    let (cert, key, file) = (
        leaf.cert.to_str().unwrap(),
        leaf.key.to_str().unwrap(),
        file.to_str().unwrap(),
    );

    let port = free_port();
    let prefix = format!("https://127.0.0.1:{port}/secure/");
    let running = Running::spawn(&example("tls_files"), &[&prefix, "--pem", cert, key, file]);
    let lines = running.lines_until("Ctrl-C");
    let url = format!("{prefix}notes.txt");
    assert_eq!(lines[0], url);
    let loaded = ServerCertificate::from_pem_files(cert, key).unwrap();
    let fingerprint = format!("SHA-256 fingerprint: {}", loaded.info().sha256_fingerprint);
    assert!(lines.contains(&fingerprint), "{lines:?}");
    let ca_arg = ca_file.to_str().unwrap();
    assert_eq!(curl(&["--cacert", ca_arg, &url]).body, b"over tls");
    // Verified against the test CA, not accepted blindly: without it curl refuses the certificate.
    assert!(!run("curl", &["-s", &url]).status.success());
    let (code, stderr) = running.stop("-TERM");
    assert_eq!(code, Some(0), "{stderr}");

    // No --pem: a self-signed certificate, which curl accepts by the printed pin.
    let port = free_port();
    let prefix = format!("https://127.0.0.1:{port}/secure/");
    let running = Running::spawn(&example("tls_files"), &[&prefix, file]);
    let lines = running.lines_until("Ctrl-C");
    assert!(
        lines.contains(&"certificate: CN=127.0.0.1".to_owned()),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l.starts_with("SHA-256 fingerprint: ")));
    let pin = lines
        .iter()
        .find_map(|l| l.strip_prefix("curl --pinnedpubkey '"))
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no pin in {lines:?}"));
    let url = format!("{prefix}notes.txt");
    assert_eq!(curl(&["-k", "--pinnedpubkey", pin, &url]).body, b"over tls");
    let (code, stderr) = running.stop("-INT");
    assert_eq!(code, Some(0), "{stderr}");
}
