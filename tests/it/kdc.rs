//! A real MIT KDC on loopback in a temporary directory: realm BCS.TEST, users alice and bob, the service
//! principal HTTP/localhost and its keytab. Dropping it stops the KDC it started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::support::free_port;

pub const REALM: &str = "BCS.TEST";

/// Held by every test that sets the process's KRB5_* variables (the in-process server's and client's
/// GSS-API read them): one such test at a time.
pub static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`ENV`] (a panicking holder leaves it usable).
pub fn env_lock() -> std::sync::MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Kdc {
    pub dir: tempfile::TempDir,
    kdc: Child,
}

impl Kdc {
    /// Whether the MIT KDC tools are installed (skip with a reason outside CI, fail under CI).
    pub fn available() -> bool {
        ["krb5kdc", "kdb5_util", "kadmin.local", "kinit"]
            .iter()
            .all(|tool| crate::support::have(tool))
    }

    pub fn start() -> Kdc {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let port = free_port();
        std::fs::write(
            d.join("krb5.conf"),
            format!(
                "[libdefaults]\n default_realm = {REALM}\n dns_lookup_realm = false\n dns_lookup_kdc = false\n\
                 rdns = false\n udp_preference_limit = 1\n\
                 [realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{port}\n }}\n\
                 [domain_realm]\n localhost = {REALM}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("kdc.conf"),
            format!(
                "[kdcdefaults]\n kdc_ports = {port}\n kdc_tcp_ports = {port}\n\
                 [realms]\n {REALM} = {{\n  database_name = {db}\n  key_stash_file = {stash}\n\
                   acl_file = {acl}\n  supported_enctypes = aes256-cts:normal aes128-cts:normal\n }}\n\
                 [logging]\n kdc = FILE:{log}\n",
                db = d.join("principal").display(),
                stash = d.join("stash").display(),
                acl = d.join("kadm5.acl").display(),
                log = d.join("kdc.log").display(),
            ),
        )
        .unwrap();
        std::fs::write(d.join("kadm5.acl"), "").unwrap();
        let kdc_env = |cmd: &mut Command| {
            cmd.env("KRB5_CONFIG", d.join("krb5.conf"))
                .env("KRB5_KDC_PROFILE", d.join("kdc.conf"));
        };
        let run = |program: &str, args: &[&str]| {
            let mut cmd = Command::new(program);
            cmd.args(args);
            kdc_env(&mut cmd);
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{program} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(
            "kdb5_util",
            &["-r", REALM, "create", "-s", "-P", "master-key-pw"],
        );
        for q in [
            "addprinc -pw alice-pw alice".to_owned(),
            "addprinc -pw bob-pw bob".to_owned(),
            "addprinc -randkey HTTP/localhost".to_owned(),
            format!(
                "ktadd -k {} HTTP/localhost",
                d.join("http.keytab").display()
            ),
        ] {
            run("kadmin.local", &["-r", REALM, "-q", &q]);
        }
        let mut cmd = Command::new("krb5kdc");
        cmd.args(["-n", "-r", REALM, "-P", d.join("kdc.pid").to_str().unwrap()]);
        kdc_env(&mut cmd);
        let kdc = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until it answers on TCP.
        crate::support::wait_for_port(port, "the KDC");
        Kdc { dir, kdc }
    }

    pub fn krb5_conf(&self) -> PathBuf {
        self.dir.path().join("krb5.conf")
    }

    pub fn keytab(&self) -> PathBuf {
        self.dir.path().join("http.keytab")
    }

    /// A credential cache with a ticket for `user`, got with kinit and the password on stdin.
    pub fn kinit(&self, user: &str, password: &str) -> PathBuf {
        let cache = self.dir.path().join(format!("{user}.ccache"));
        let mut cmd = Command::new("kinit");
        cmd.arg(user)
            .env("KRB5_CONFIG", self.krb5_conf())
            .env("KRB5CCNAME", format!("FILE:{}", cache.display()));
        let out = crate::support::with_stdin(&mut cmd, password);
        assert!(
            out.status.success(),
            "kinit {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cache
    }

    /// Environment for a client process: the realm's config and a credential cache (or none).
    pub fn client_env<'a>(&self, cmd: &'a mut Command, cache: Option<&Path>) -> &'a mut Command {
        cmd.env("KRB5_CONFIG", self.krb5_conf());
        match cache {
            Some(c) => cmd.env("KRB5CCNAME", format!("FILE:{}", c.display())),
            None => cmd.env(
                "KRB5CCNAME",
                format!("FILE:{}", self.dir.path().join("none.ccache").display()),
            ),
        }
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        let _ = self.kdc.kill();
        let _ = self.kdc.wait();
    }
}
