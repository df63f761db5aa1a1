//! SDDL per URL, end to end with curl: the URL's descriptor against the caller's token.

use crate::support::{curl, have, write_file, TestServer};
use bits_compact::UrlError;

#[test]
fn sddl_decides_for_anonymous_callers() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "f.txt", b"guarded");
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    let cases = [
        ("none", None, 200),
        ("null", Some("D:NO_ACCESS_CONTROL"), 200),
        ("empty", Some("D:"), 403),
        ("everyone", Some("D:(A;;GR;;;WD)"), 200),
        ("anonymous", Some("D:(A;;FR;;;AN)"), 200),
        ("authenticated", Some("D:(A;;GR;;;AU)"), 403),
        ("admins", Some("D:(A;;GA;;;BA)"), 403),
        ("deny-anonymous", Some("D:(D;;GA;;;AN)(A;;GR;;;WD)"), 403),
        ("deny-write-only", Some("D:(D;;GW;;;WD)(A;;GR;;;WD)"), 200),
        ("inherit-only", Some("D:(A;IO;GR;;;WD)"), 403),
    ];
    for (suffix, sddl, _) in cases {
        group.add_url(suffix, &file, sddl).unwrap();
    }
    for (suffix, sddl, status) in cases {
        let r = curl(&[&srv.url(&format!("/G/{suffix}"))]);
        assert_eq!(r.status, status, "{suffix}: {sddl:?}");
        if status == 200 {
            assert_eq!(r.body, b"guarded");
        } else {
            assert!(
                !r.body.windows(7).any(|w| w == b"guarded"),
                "{suffix} leaked"
            );
        }
        // HEAD is checked the same way.
        assert_eq!(
            curl(&["-I", &srv.url(&format!("/G/{suffix}"))]).status,
            status,
            "HEAD {suffix}"
        );
    }
}

#[test]
fn invalid_sddl_is_refused_when_the_url_is_added() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "f.txt", b"x");
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    let e = group
        .add_url("f", &file, Some("D:(A;;GQ;;;WD)"))
        .unwrap_err();
    assert!(matches!(e, UrlError::Sddl { .. }), "{e}");
    let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert_eq!(
        chain,
        "invalid SDDL for URL \"f\": invalid SDDL \"D:(A;;GQ;;;WD)\" at byte 6: expected rights: codes such as GR or FA, or a number such as 0x1200a9"
    );
    assert!(!group.contains_url("f"));
    // Domain-relative aliases need the server's domain SID.
    let e = group
        .add_url("f", &file, Some("D:(A;;GR;;;DU)"))
        .unwrap_err();
    assert!(
        std::error::Error::source(&e)
            .unwrap()
            .to_string()
            .contains("domain"),
        "{e}"
    );
}

#[test]
fn a_group_default_sddl_applies_to_urls_added_without_one() {
    if !have("curl") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write_file(dir.path(), "f.txt", b"x");
    let srv = TestServer::start();
    let group = srv.server.create_url_group(srv.prefix("G")).unwrap();
    group.add_url("before", &file, None).unwrap();
    group.set_default_sddl(Some("D:")).unwrap();
    group.add_url("defaulted", &file, None).unwrap();
    group.add_url("own", &file, Some("D:(A;;GR;;;WD)")).unwrap();
    assert!(group.set_default_sddl(Some("D:(A;;GQ;;;WD)")).is_err());
    assert_eq!(curl(&[&srv.url("/G/before")]).status, 200);
    assert_eq!(curl(&[&srv.url("/G/defaulted")]).status, 403);
    assert_eq!(curl(&[&srv.url("/G/own")]).status, 200);
    group.set_default_sddl(None).unwrap();
    group.add_url("after", &file, None).unwrap();
    assert_eq!(curl(&[&srv.url("/G/after")]).status, 200);
}
