//! The SDDL table and the access-check cases, each naming the rule it follows.

use super::*;

const DOMAIN: &str = "S-1-5-21-1004336348-1177238915-682003330";

fn domain() -> Sid {
    DOMAIN.parse().unwrap()
}

fn parse(s: &str) -> Result<SecurityDescriptor, SddlError> {
    SecurityDescriptor::parse(s, Some(&domain()))
}

/// Valid descriptors and their canonical form (`None`: the input is canonical already).
const VALID: &[(&str, Option<&str>)] = &[
    ("D:(A;;GR;;;AU)", None),
    ("D:(A;;GA;;;BA)", None),
    ("D:(A;;GA;;;WD)", None),
    ("D:(D;;GA;;;AN)(A;;GR;;;WD)", None),
    ("D:", None),
    ("D:P", None),
    ("D:AI", None),
    ("D:PAI(A;;FA;;;SY)", None),
    ("D:ARAI(A;;FA;;;SY)", None),
    ("D:AIARP(A;;FA;;;SY)", Some("D:PARAI(A;;FA;;;SY)")),
    ("D:NO_ACCESS_CONTROL", None),
    ("O:BAG:SYD:(A;;FR;;;BU)", None),
    ("G:SYO:BAD:(A;;FR;;;BU)", Some("O:BAG:SYD:(A;;FR;;;BU)")),
    ("O:BA", Some("O:BAD:NO_ACCESS_CONTROL")),
    ("D:(A;;0x1;;;WD)", Some("D:(A;;CC;;;WD)")),
    ("D:(A;;0x120089;;;WD)", Some("D:(A;;FR;;;WD)")),
    ("D:(A;;0x80000000;;;WD)", Some("D:(A;;GR;;;WD)")),
    ("D:(A;;0x200;;;WD)", None),
    ("D:(A;;1179785;;;WD)", Some("D:(A;;FR;;;WD)")),
    ("D:(A;;0400;;;WD)", Some("D:(A;;CR;;;WD)")),
    ("D:(A;;GRGW;;;WD)", None),
    ("D:(A;;GWGR;;;WD)", Some("D:(A;;GRGW;;;WD)")),
    ("D:(A;;RCSDWDWO;;;WD)", None),
    ("D:(A;OICI;FA;;;SY)", None),
    ("D:(A;CIOI;FA;;;SY)", Some("D:(A;OICI;FA;;;SY)")),
    ("D:(A;OICIIOID;GA;;;CO)", None),
    ("D:(A;NP;FR;;;WD)", None),
    ("D:(A;;FR;;;S-1-5-32-545)", Some("D:(A;;FR;;;BU)")),
    ("D:(A;;FR;;;S-1-5-21-1-2-3-1001)", None),
    (
        "D:(A;;FR;;;DU)",
        Some("D:(A;;FR;;;S-1-5-21-1004336348-1177238915-682003330-513)"),
    ),
    (
        "D:(A;;FR;;;LA)",
        Some("D:(A;;FR;;;S-1-5-21-1004336348-1177238915-682003330-500)"),
    ),
    ("D:(A;;FR;;;NU)(A;;FR;;;IU)(A;;FR;;;NS)(A;;FR;;;LS)", None),
    ("D:(A;;FR;;;S-1-0x123456789ABC-7)", None),
    ("D:(A; ;FR;;; WD )", Some("D:(A;;FR;;;WD)")),
    ("D:(A;;FR;;;WD)S:(AU;SAFA;FA;;;WD)", None),
    (
        "S:(ML;;NW;;;LW)",
        Some("D:NO_ACCESS_CONTROLS:(ML;;CC;;;LW)"),
    ),
    ("D:(A;;FR;;;OW)", None),
    // An empty rights field is an ACE granting nothing: `ace-rights = *text-rights-string` (MS-DTYP §2.5.1.1).
    ("D:(A;;;;;WD)", None),
    ("D:(D;;;;;WD)(A;;FR;;;WD)", None),
    ("D:(A;;0x0;;;WD)", Some("D:(A;;;;;WD)")),
    ("D:(A;;0;;;WD)", Some("D:(A;;;;;WD)")),
    // Aliases of MS-DTYP §2.5.1.1 and sddl.h.
    (
        "D:(A;;FR;;;S-1-5-32-575)(A;;FR;;;S-1-5-32-576)(A;;FR;;;S-1-5-32-577)(A;;FR;;;S-1-18-1)",
        Some("D:(A;;FR;;;RA)(A;;FR;;;ES)(A;;FR;;;MS)(A;;FR;;;AS)"),
    ),
    ("O:RAG:ESD:(A;;FR;;;MS)(A;;FR;;;AS)(A;;FR;;;SS)", None),
    ("D:(A;;FR;;;HO)(A;;FR;;;SH)", None),
    ("O:S-1-5-21-9-9-9-500D:(A;;FA;;;S-1-5-21-9-9-9-500)", None),
];

/// Invalid descriptors, with the byte offset of the problem and what was expected.
const INVALID: &[(&str, usize, SddlErrorKind)] = &[
    ("", 0, SddlErrorKind::Empty),
    ("   ", 0, SddlErrorKind::Empty),
    ("X:(A;;GA;;;WD)", 0, SddlErrorKind::Component),
    ("(A;;GA;;;WD)", 0, SddlErrorKind::Component),
    ("D:(A;;GA;;;WD)D:", 14, SddlErrorKind::Duplicate),
    ("O:BAO:SY", 4, SddlErrorKind::Duplicate),
    ("O:XX", 2, SddlErrorKind::Sid),
    ("O:S-2-5", 2, SddlErrorKind::Sid),
    ("D:(A;;GA;;;S-1-5-x)", 11, SddlErrorKind::Sid),
    ("D:(A;;GA;;;ZZ)", 11, SddlErrorKind::Sid),
    ("D:(A;;GA;;;wd)", 11, SddlErrorKind::Sid),
    ("D:X(A;;GA;;;WD)", 2, SddlErrorKind::AclFlags),
    ("D:PX", 3, SddlErrorKind::AclFlags),
    (
        "D:NO_ACCESS_CONTROL(A;;GA;;;WD)",
        2,
        SddlErrorKind::AclFlags,
    ),
    ("D:(A;;GA;;;WD", 13, SddlErrorKind::Unclosed),
    ("D:(A;;GA;;;WD)(A;;GR;;;AU", 25, SddlErrorKind::Unclosed),
    ("D:(A;;GA;;WD)", 3, SddlErrorKind::Ace),
    ("D:(A;;GA;;;WD)x", 14, SddlErrorKind::AclFlags),
    ("D:(Q;;GA;;;WD)", 3, SddlErrorKind::AceType),
    (
        "D:(OA;;RP;bf967aba-0de6-11d0-a285-00aa003049e2;;WD)",
        3,
        SddlErrorKind::Unsupported,
    ),
    ("D:(OD;;CR;;;WD)", 3, SddlErrorKind::Unsupported),
    (
        "D:(XA;;FR;;;WD;(Member_of {SID(BA)}))",
        3,
        SddlErrorKind::Unsupported,
    ),
    ("D:(A;;FR;;;WD;(x))", 14, SddlErrorKind::Unsupported),
    ("D:(AU;SA;FA;;;WD)", 3, SddlErrorKind::WrongAcl),
    ("S:(A;;FA;;;WD)", 3, SddlErrorKind::WrongAcl),
    ("D:(A;QQ;GA;;;WD)", 5, SddlErrorKind::AceFlags),
    ("D:(A;;GQ;;;WD)", 6, SddlErrorKind::Rights),
    ("D:(A;;G;;;WD)", 6, SddlErrorKind::Rights),
    ("D:(A;;0xZZ;;;WD)", 6, SddlErrorKind::Rights),
    ("D:(A;;0x100000000;;;WD)", 6, SddlErrorKind::Rights),
    ("D:(A;;09;;;WD)", 6, SddlErrorKind::Rights),
    ("D:(A;;GA;x;;WD)", 9, SddlErrorKind::Guid),
];

#[test]
fn valid_descriptors_parse_and_print_canonically() {
    let mut wrong = Vec::new();
    for (input, canonical) in VALID {
        let sd = match parse(input) {
            Ok(sd) => sd,
            Err(e) => {
                wrong.push(format!("{input}: {e}"));
                continue;
            }
        };
        let printed = sd.to_string();
        if printed != canonical.unwrap_or(input) {
            wrong.push(format!("{input}: printed {printed}"));
            continue;
        }
        // Canonical SDDL parses back to the same descriptor (without needing the domain).
        assert_eq!(
            printed.parse::<SecurityDescriptor>().unwrap(),
            sd,
            "{input}"
        );
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn invalid_descriptors_name_offset_and_expectation() {
    let mut wrong = Vec::new();
    for (input, offset, kind) in INVALID {
        match parse(input) {
            Ok(sd) => wrong.push(format!("{input}: parsed as {sd}")),
            Err(e) if (e.offset(), e.reason()) != (*offset, kind) => {
                wrong.push(format!("{input}: {e:?}"))
            }
            Err(e) => assert_eq!(e.input(), *input),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(VALID.len() + INVALID.len() >= 40);
}

#[test]
fn domain_aliases_need_a_domain() {
    let e = "D:(A;;FR;;;DA)".parse::<SecurityDescriptor>().unwrap_err();
    assert_eq!(e.reason(), &SddlErrorKind::NeedsDomain);
    assert_eq!(
        e.to_string(),
        "invalid SDDL \"D:(A;;FR;;;DA)\" at byte 11: this SID alias is relative to a domain, and no domain SID is configured"
    );
}

#[test]
fn total_on_every_prefix() {
    let tricky = "O:BAG:SYD:PAI(A;OICI;0x1200a9;;;S-1-5-21-1-2-3)(D;;GW;;;AN)S:(AU;SA;FA;;;WD)";
    for end in 0..=tricky.len() {
        let _ = parse(&tricky[..end]);
    }
}

// ---- access checks -------------------------------------------------------------------------------------

fn sids(list: &[&str]) -> Vec<Sid> {
    list.iter()
        .map(|s| match sid::alias(s, Some(&domain())) {
            Some(sid::Alias::Fixed(sid)) => sid,
            _ => s.parse().unwrap(),
        })
        .collect()
}

const ALICE: &str = "S-1-5-21-1004336348-1177238915-682003330-1001";
const BOB: &str = "S-1-5-21-1004336348-1177238915-682003330-1002";

/// (descriptor, token, desired, allowed, deciding ACE)
type Case = (
    &'static str,
    &'static [&'static str],
    u32,
    bool,
    Option<usize>,
);

const READ: u32 = AccessMask::FILE_READ_DATA.0;

const CASES: &[Case] = &[
    // A NULL DACL grants every right to everyone.
    ("D:NO_ACCESS_CONTROL", &["AN", "WD"], READ, true, None),
    // No D: component at all is a NULL DACL too.
    ("O:BA", &["AN", "WD"], READ, true, None),
    // An empty DACL grants nothing to anyone.
    ("D:", &["BA", "SY", "WD", "AU"], READ, false, None),
    // A protected empty DACL is still empty.
    ("D:P", &["SY"], READ, false, None),
    // Allow AU: an authenticated user reads.
    (
        "D:(A;;GR;;;AU)",
        &[ALICE, "WD", "AU", "NU"],
        READ,
        true,
        Some(0),
    ),
    // Allow AU: an anonymous caller (AN, not AU) does not.
    ("D:(A;;GR;;;AU)", &["AN", "WD", "NU"], READ, false, None),
    // Everyone includes anonymous callers.
    ("D:(A;;GR;;;WD)", &["AN", "WD", "NU"], READ, true, Some(0)),
    // Generic read maps to FILE_GENERIC_READ, which holds FILE_READ_DATA.
    ("D:(A;;GR;;;WD)", &["WD"], READ, true, Some(0)),
    // Generic all maps to FILE_ALL_ACCESS.
    ("D:(A;;GA;;;BA)", &["BA"], READ, true, Some(0)),
    // Generic write does not include reading data.
    ("D:(A;;GW;;;WD)", &["WD"], READ, false, None),
    // Generic execute maps to FILE_GENERIC_EXECUTE, which has no FILE_READ_DATA.
    ("D:(A;;GX;;;WD)", &["WD"], READ, false, None),
    // A specific right is enough.
    ("D:(A;;0x1;;;WD)", &["WD"], READ, true, Some(0)),
    // Rights that do not cover the request grant nothing.
    ("D:(A;;RC;;;WD)", &["WD"], READ, false, None),
    // BA only: an administrator reads...
    (
        "D:(A;;GA;;;BA)",
        &[ALICE, "BA", "AU", "WD"],
        READ,
        true,
        Some(0),
    ),
    // ...a plain user does not.
    (
        "D:(A;;GA;;;BA)",
        &[BOB, "BU", "AU", "WD"],
        READ,
        false,
        None,
    ),
    // Deny before allow, as written: the deny ACE decides.
    (
        "D:(D;;GA;;;S-1-5-21-1004336348-1177238915-682003330-1002)(A;;GA;;;AU)",
        &[BOB, "AU", "WD"],
        READ,
        false,
        Some(0),
    ),
    // Deny a named user, allow everyone else authenticated.
    (
        "D:(D;;GR;;;S-1-5-21-1004336348-1177238915-682003330-1002)(A;;GR;;;AU)",
        &[ALICE, "AU"],
        READ,
        true,
        Some(1),
    ),
    (
        "D:(D;;GR;;;S-1-5-21-1004336348-1177238915-682003330-1002)(A;;GR;;;AU)",
        &[BOB, "AU"],
        READ,
        false,
        Some(0),
    ),
    // ACE order matters: an allow written before a deny wins for the bits it already granted.
    (
        "D:(A;;GR;;;AU)(D;;GR;;;S-1-5-21-1004336348-1177238915-682003330-1002)",
        &[BOB, "AU"],
        READ,
        true,
        Some(0),
    ),
    // A deny that covers none of the requested bits does not deny (deny GW, read still allowed).
    ("D:(D;;GW;;;WD)(A;;GR;;;WD)", &["WD"], READ, true, Some(1)),
    // A deny that covers a still-missing requested bit denies.
    (
        "D:(A;;0x80;;;WD)(D;;0x1;;;WD)(A;;GA;;;WD)",
        &["WD"],
        READ | 0x80,
        false,
        Some(1),
    ),
    // Rights accumulate over several allow ACEs.
    (
        "D:(A;;0x1;;;BU)(A;;0x80;;;AU)",
        &["BU", "AU"],
        READ | 0x80,
        true,
        Some(1),
    ),
    // ...and are not granted when a part is missing.
    (
        "D:(A;;0x1;;;BU)(A;;0x80;;;AU)",
        &["BU"],
        READ | 0x80,
        false,
        None,
    ),
    // Inherit-only ACEs do not apply to the object itself.
    ("D:(A;IO;GA;;;WD)", &["WD"], READ, false, None),
    (
        "D:(D;OICIIO;GA;;;WD)(A;;GA;;;WD)",
        &["WD"],
        READ,
        true,
        Some(1),
    ),
    // Container/object inherit flags alone do not stop an ACE from applying.
    ("D:(A;OICI;GR;;;WD)", &["WD"], READ, true, Some(0)),
    // An inherited ACE (ID) applies like any other.
    ("D:AI(A;ID;FR;;;BU)", &["BU"], READ, true, Some(0)),
    // ACEs for SIDs the token lacks are skipped, allow or deny.
    (
        "D:(D;;GA;;;AN)(A;;GR;;;AU)",
        &[ALICE, "AU"],
        READ,
        true,
        Some(1),
    ),
    (
        "D:(D;;GA;;;AN)(A;;GR;;;WD)",
        &["AN", "WD"],
        READ,
        false,
        Some(0),
    ),
    // Network logon SID: a rule for NU applies to every HTTP caller.
    ("D:(A;;GR;;;NU)", &["AN", "WD", "NU"], READ, true, Some(0)),
    // Interactive users do not include network callers.
    ("D:(A;;GR;;;IU)", &[ALICE, "AU", "NU"], READ, false, None),
    // Group membership: a domain group SID in the token.
    (
        "D:(A;;GR;;;DU)",
        &[ALICE, "S-1-5-21-1004336348-1177238915-682003330-513"],
        READ,
        true,
        Some(0),
    ),
    // The owner is implicitly granted READ_CONTROL and WRITE_DAC...
    (
        "O:S-1-5-21-1004336348-1177238915-682003330-1001D:",
        &[ALICE],
        0x0002_0000,
        true,
        None,
    ),
    // ...but not data.
    (
        "O:S-1-5-21-1004336348-1177238915-682003330-1001D:",
        &[ALICE],
        READ,
        false,
        None,
    ),
    // An OWNER RIGHTS ACE replaces the implicit owner rights.
    (
        "O:S-1-5-21-1004336348-1177238915-682003330-1001D:(A;;0x1;;;OW)",
        &[ALICE],
        0x0002_0000,
        false,
        None,
    ),
    (
        "O:S-1-5-21-1004336348-1177238915-682003330-1001D:(A;;0x1;;;OW)",
        &[ALICE],
        READ,
        true,
        Some(0),
    ),
    // An inherit-only OWNER RIGHTS ACE does not control access to this object (MS-DTYP §2.4.4.1), so it
    // does not replace the owner's implicit READ_CONTROL and WRITE_DAC (MS-DTYP §2.5.3.2)...
    ("O:BAD:(A;IO;FR;;;OW)", &["BA"], 0x0002_0000, true, None),
    ("O:BAD:(A;IO;FR;;;OW)", &["BA"], 0x0004_0000, true, None),
    ("O:BAD:(D;OICIIO;GA;;;OW)", &["BA"], 0x0006_0000, true, None),
    // ...nor does it grant the owner anything here.
    ("O:BAD:(A;IO;FR;;;OW)", &["BA"], READ, false, None),
    // An effective OWNER RIGHTS ACE beside an inherit-only one still replaces them.
    (
        "O:BAD:(A;IO;FR;;;OW)(A;;0x1;;;OW)",
        &["BA"],
        0x0002_0000,
        false,
        None,
    ),
    // Requesting GENERIC_READ is mapped before the check.
    (
        "D:(A;;FR;;;WD)",
        &["WD"],
        AccessMask::GENERIC_READ.0,
        true,
        Some(0),
    ),
    (
        "D:(A;;0x1;;;WD)",
        &["WD"],
        AccessMask::GENERIC_READ.0,
        false,
        None,
    ),
    // An ACE with no rights grants nothing and denies nothing (MS-DTYP §2.5.1.1 allows the empty rights
    // field; §2.5.3.2 removes or checks only the bits an ACE holds).
    ("D:(A;;;;;WD)", &["WD"], READ, false, None),
    ("D:(D;;;;;WD)(A;;FR;;;WD)", &["WD"], READ, true, Some(1)),
    // SACL entries never grant or deny.
    (
        "D:(A;;GR;;;WD)S:(AU;SAFA;FA;;;WD)",
        &["WD"],
        READ,
        true,
        Some(0),
    ),
];

#[test]
fn access_checks_follow_windows_rules() {
    assert!(CASES.len() >= 30);
    for (sddl, token, desired, allowed, ace) in CASES {
        let sd = parse(sddl).unwrap_or_else(|e| panic!("{sddl}: {e}"));
        let decision = sd.access_check(&sids(token), AccessMask(*desired));
        assert_eq!(
            (decision.allowed, decision.ace),
            (*allowed, *ace),
            "{sddl} for {token:?} asking {desired:#x}"
        );
    }
}
