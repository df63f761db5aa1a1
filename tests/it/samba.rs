//! Differential test: our SDDL parser, canonical form and access check against an independent
//! implementation, Samba's (Debian's python3-samba), on a seeded, generated corpus that one Python process
//! reads as JSON.
//!
//! Each well-formed descriptor is compared on acceptance, on meaning (owner, group, DACL flags, and each
//! ACE's type, flags, mask and SID), on canonical form (our printed SDDL, read back by us and by Samba,
//! means the same) and on access decisions for generated tokens and masks. Each malformed one (one targeted
//! mutation that the MS-DTYP §2.5.1.1 grammar does not allow) must be refused by us and is compared with
//! Samba's verdict.
//!
//! Where Samba 4.17 itself departs from MS-DTYP, the class is named below with the rule, Samba's answer on
//! it is not compared, and ours is checked against the specification instead:
//! - it reads `FA` as 0x1FF, where MS-DTYP §2.5.1.1 has FILE_ALL_ACCESS 0x1F01FF;
//! - it lacks the right codes KA, KR, KW, KX, NR, NW and NX of MS-DTYP §2.5.1.1;
//! - it reads rights only as codes or `0x` hex, where MS-DTYP §2.5.1.1 allows `0X` hex, octal and
//!   decimal numbers too (others read as no rights);
//! - its alias table predates HO and SH, which sddl.h has added;
//! - it has no `NO_ACCESS_CONTROL` (MS-DTYP §2.5.1.1), and denies where a descriptor has no DACL,
//!   where MS-DTYP §2.5.3.2 says any access check succeeds;
//! - it accepts some malformed strings: a lowercase ACE type (read as allow), an ACE type with extra
//!   letters (read by its first letters), lowercase ACE flags and right codes (ignored), a number that is
//!   not one (read as no rights), a SID revision other than 1 (MS-DTYP §2.4.2.1 has only 1), and a seventh
//!   field on an allow or deny ACE (ignored).
//!
//! For the first four, the descriptor Samba reads is rewritten to the value the specification gives (a
//! number in `0x` hex, a literal SID), so our reading of the original is compared with Samba's reading of
//! the specified value; so are components out of the grammar's order, which we accept and Samba sometimes
//! misreads. Without a DACL our decisions are checked against the rule instead of Samba's, and for the
//! malformed strings Samba accepts, our refusal is checked against the grammar.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use bits_compact::authz::{AccessMask, AceType, SecurityDescriptor, Sid};
use serde_json::{json, Value};

use crate::support::have_module_in;

/// The system interpreter: python3-samba installs there (a `python3` earlier on PATH may lack it).
const PYTHON: &str = "/usr/bin/python3";
const SEED: u64 = 0x5DD1_0016_5A4B_A000;
const WELL_FORMED: usize = 4000;
const MALFORMED: usize = 1000;
const CHECKS_PER_DESCRIPTOR: usize = 4;
const DOMAIN: &str = "S-1-5-21-1004336348-1177238915-682003330";

/// Every right code of MS-DTYP §2.5.1.1 with its value: the test's own copy of the specification.
const RIGHTS: &[(&str, u32)] = &[
    ("GA", 0x1000_0000),
    ("GR", 0x8000_0000),
    ("GW", 0x4000_0000),
    ("GX", 0x2000_0000),
    ("RC", 0x0002_0000),
    ("SD", 0x0001_0000),
    ("WD", 0x0004_0000),
    ("WO", 0x0008_0000),
    ("RP", 0x0000_0010),
    ("WP", 0x0000_0020),
    ("CC", 0x0000_0001),
    ("DC", 0x0000_0002),
    ("LC", 0x0000_0004),
    ("SW", 0x0000_0008),
    ("LO", 0x0000_0080),
    ("DT", 0x0000_0040),
    ("CR", 0x0000_0100),
    ("FA", 0x001F_01FF),
    ("FR", 0x0012_0089),
    ("FW", 0x0012_0116),
    ("FX", 0x0012_00A0),
    ("KA", 0x000F_003F),
    ("KR", 0x0002_0019),
    ("KW", 0x0002_0006),
    ("KX", 0x0002_0019),
    ("NR", 0x0000_0002),
    ("NW", 0x0000_0001),
    ("NX", 0x0000_0004),
];

/// Right codes Samba 4.17 does not have.
const SAMBA_LACKS: &[&str] = &["KA", "KR", "KW", "KX", "NR", "NW", "NX"];

/// Every SID alias of MS-DTYP §2.5.1.1 and sddl.h, fixed and domain-relative.
const ALIASES: &[&str] = &[
    "AA", "AC", "AN", "AO", "AP", "AS", "AU", "BA", "BG", "BO", "BU", "CA", "CD", "CG", "CN", "CO",
    "CY", "DA", "DC", "DD", "DG", "DU", "EA", "ED", "EK", "ER", "ES", "HA", "HI", "HO", "IS", "IU",
    "KA", "LA", "LG", "LS", "LU", "LW", "ME", "MP", "MS", "MU", "NO", "NS", "NU", "OW", "PA", "PO",
    "PS", "PU", "RA", "RC", "RD", "RE", "RM", "RO", "RS", "RU", "SA", "SH", "SI", "SO", "SS", "SU",
    "SY", "UD", "WD", "WR",
];

/// Aliases sddl.h added after Samba 4.17's table, with the SIDs sddl.h gives them.
const NEWER_ALIASES: &[(&str, &str)] = &[("HO", "S-1-5-32-584"), ("SH", "S-1-5-32-585")];

const ACE_FLAGS: &[&str] = &["OI", "CI", "NP", "IO", "ID", "SA", "FA"];

/// Bits requested, and combined into numeric rights: every specific and standard right a file has, a bit
/// no code names, and the generic rights.
const MASK_BITS: &[u32] = &[
    0x1,
    0x2,
    0x4,
    0x8,
    0x10,
    0x20,
    0x40,
    0x80,
    0x100,
    0x200,
    0x1_0000,
    0x2_0000,
    0x4_0000,
    0x8_0000,
    0x10_0000,
    0x1000_0000,
    0x2000_0000,
    0x4000_0000,
    0x8000_0000,
];

/// Mutations the grammar of MS-DTYP §2.5.1.1 does not allow, and whether Samba 4.17 accepts them anyway
/// (its leniency, not a rule: ours must refuse every one).
const MUTATIONS: &[(&str, bool)] = &[
    ("lowercase ACE type", true),
    ("unknown ACE type", false),
    ("ACE type with extra letters", true),
    ("lowercase ACE flag", true),
    ("unknown ACE flag", false),
    ("lowercase right code", true),
    ("unknown right code", false),
    ("invalid number", true),
    ("unknown alias", false),
    ("lowercase alias", false),
    ("SID revision other than 1", true),
    ("malformed SID", false),
    ("missing field", false),
    ("seventh field", true),
    ("unclosed ACE", false),
    ("trailing text", false),
    ("unknown ACL flag", false),
    ("duplicate component", false),
    ("lowercase component letter", false),
];

/// Reads SDDL with Samba, maps generic rights through the file mapping (as Samba and Windows do when a
/// descriptor is assigned to a file; our access check does it itself), and runs its access check.
const DRIVER: &str = r#"
import json, sys
from samba import NTSTATUSError
from samba.dcerpc import security
from samba.security import access_check

def file_mapping(mask):
    out = mask & 0x0FFFFFFF
    for bit, specific in ((0x80000000, 0x120089), (0x40000000, 0x120116),
                          (0x20000000, 0x1200A0), (0x10000000, 0x1F01FF)):
        if mask & bit:
            out |= specific
    return out

def meaning(sd):
    dacl = None
    if sd.dacl is not None:
        dacl = {
            "flags": [bool(sd.type & f) for f in (security.SEC_DESC_DACL_PROTECTED,
                      security.SEC_DESC_DACL_AUTO_INHERITED, security.SEC_DESC_DACL_AUTO_INHERIT_REQ)],
            "aces": [[a.type, a.flags, a.access_mask, str(a.trustee)] for a in sd.dacl.aces],
        }
    return {
        "owner": None if sd.owner_sid is None else str(sd.owner_sid),
        "group": None if sd.group_sid is None else str(sd.group_sid),
        "dacl": dacl,
    }

req = json.load(sys.stdin)
domain = security.dom_sid(req["domain"])
out = []
for item in req["items"]:
    try:
        sd = security.descriptor.from_sddl(item["sddl"], domain)
    except TypeError:
        out.append(None)
        continue
    answer = {"meaning": meaning(sd), "decisions": []}
    if item["checks"] and sd.dacl is not None:
        acl = sd.dacl
        aces = acl.aces
        for ace in aces:
            ace.access_mask = file_mapping(ace.access_mask)
        acl.aces = aces
        sd.dacl = acl
        for sids, mask in item["checks"]:
            token = security.token()
            token.sids = [security.dom_sid(s) for s in sids]
            token.num_sids = len(sids)
            try:
                access_check(sd, token, file_mapping(mask))
                answer["decisions"].append(True)
            except NTSTATUSError:
                answer["decisions"].append(False)
    out.append(answer)
json.dump(out, sys.stdout)
"#;

/// splitmix64: a fixed seed gives the same corpus everywhere, with no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn word(&mut self, words: &[&'static str]) -> &'static str {
        words[self.below(words.len())]
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// SIDs tokens are made of, and that ACEs name literally.
fn principals() -> Vec<String> {
    let mut p: Vec<String> = [
        "S-1-1-0",
        "S-1-5-11",
        "S-1-5-7",
        "S-1-5-2",
        "S-1-5-4",
        "S-1-5-18",
        "S-1-5-32-544",
        "S-1-5-32-545",
        "S-1-5-32-575",
        "S-1-5-32-584",
        "S-1-18-1",
    ]
    .map(String::from)
    .into();
    p.extend([512, 513, 1001, 1002].map(|rid| format!("{DOMAIN}-{rid}")));
    p
}

/// A descriptor as components: the letter, then the SID (O, G) or the ACL flags (D), then the ACEs' fields.
#[derive(Clone)]
struct Draft(Vec<(char, String, Vec<Vec<String>>)>);

impl Draft {
    fn render(&self) -> String {
        let mut s = String::new();
        for (letter, head, aces) in &self.0 {
            s.push(*letter);
            s.push(':');
            s.push_str(head);
            for ace in aces {
                s.push('(');
                s.push_str(&ace.join(";"));
                s.push(')');
            }
        }
        s
    }
}

fn gen_mask(rng: &mut Rng) -> u32 {
    (0..1 + rng.below(4)).fold(0, |m, _| m | *rng.pick(MASK_BITS))
}

fn gen_sid(rng: &mut Rng, principals: &[String]) -> String {
    match rng.below(10) {
        0..=5 => rng.pick(ALIASES).to_string(),
        6..=8 => rng.pick(principals).clone(),
        _ => format!(
            "S-1-5-21-{}-{}-{}-{}",
            rng.below(5),
            rng.below(5),
            rng.below(5),
            500 + rng.below(600)
        ),
    }
}

fn gen_rights(rng: &mut Rng) -> String {
    match rng.below(100) {
        0..=49 => (0..1 + rng.below(3)).map(|_| rng.pick(RIGHTS).0).collect(),
        50..=69 => format!("0x{:x}", gen_mask(rng)),
        70..=77 => gen_mask(rng).to_string(),
        78..=84 => format!("0{:o}", gen_mask(rng)),
        85..=89 => format!("0X{:X}", gen_mask(rng)),
        _ => String::new(),
    }
}

fn gen_flags(rng: &mut Rng, flags: &[&'static str], percent: u64) -> String {
    let mut chosen: Vec<&str> = flags
        .iter()
        .filter(|_| rng.percent(percent))
        .copied()
        .collect();
    rng.shuffle(&mut chosen);
    chosen.concat()
}

fn gen_ace(rng: &mut Rng, principals: &[String]) -> Vec<String> {
    let mut flags = gen_flags(rng, ACE_FLAGS, 15);
    if rng.percent(20) && !flags.contains("IO") {
        flags.push_str("IO");
    }
    // OWNER RIGHTS more often than its share of the aliases, so that owners meet it.
    let sid = if rng.percent(8) {
        "OW".to_owned()
    } else {
        gen_sid(rng, principals)
    };
    vec![
        if rng.percent(55) { "A" } else { "D" }.to_string(),
        flags,
        gen_rights(rng),
        String::new(),
        String::new(),
        sid,
    ]
}

/// A well-formed descriptor: owner, group and DACL each optional (not all absent), usually in canonical
/// order.
fn gen_draft(rng: &mut Rng, principals: &[String], needs_ace: bool) -> Draft {
    let mut parts = Vec::new();
    if rng.percent(60) {
        parts.push(('O', gen_sid(rng, principals), Vec::new()));
    }
    if rng.percent(40) {
        parts.push(('G', gen_sid(rng, principals), Vec::new()));
    }
    if needs_ace || parts.is_empty() || rng.percent(90) {
        let mut flags = gen_flags(rng, &["P", "AI", "AR"], 30);
        let mut aces = Vec::new();
        if !needs_ace && rng.percent(6) {
            flags.push_str("NO_ACCESS_CONTROL");
        } else {
            let n = rng.below(6).max(usize::from(needs_ace));
            aces = (0..n).map(|_| gen_ace(rng, principals)).collect();
        }
        parts.push(('D', flags, aces));
    }
    if rng.percent(15) {
        rng.shuffle(&mut parts);
    }
    Draft(parts)
}

/// One mutation the grammar does not allow, applied to a draft with a DACL of at least one ACE.
fn mutate(rng: &mut Rng, mut draft: Draft, kind: &str) -> String {
    // The DACL last, so that text appended or removed at the end is in it.
    let d = draft.0.iter().position(|(l, _, _)| *l == 'D').unwrap();
    let dacl = draft.0.remove(d);
    draft.0.push(dacl);
    let (_, acl_flags, aces) = draft.0.last_mut().unwrap();
    let i = rng.below(aces.len());
    let ace = &mut aces[i];
    match kind {
        "lowercase ACE type" => ace[0] = ace[0].to_lowercase(),
        "unknown ACE type" => ace[0] = rng.word(&["Q", "X", "Z"]).to_string(),
        "ACE type with extra letters" => ace[0] = rng.word(&["DD", "AX", "AA"]).to_string(),
        "lowercase ACE flag" => ace[1].insert_str(0, &rng.pick(ACE_FLAGS).to_lowercase()),
        "unknown ACE flag" => ace[1].push_str(rng.word(&["QQ", "O", "XY"])),
        "lowercase right code" => ace[2] = rng.pick(RIGHTS).0.to_lowercase(),
        "unknown right code" => ace[2] = rng.word(&["QQ", "G", "GRX", "XY"]).to_string(),
        "invalid number" => {
            ace[2] = rng
                .word(&["0x100000000", "0xZZ", "09", "4294967296", "0x", "0x1G"])
                .to_string()
        }
        "unknown alias" => ace[5] = rng.word(&["ZZ", "QX", "XX"]).to_string(),
        "lowercase alias" => ace[5] = rng.pick(ALIASES).to_lowercase(),
        "SID revision other than 1" => {
            ace[5] = rng
                .word(&["S-2-5-18", "S-0-5-32-544", "S-3-1-0"])
                .to_string()
        }
        "malformed SID" => {
            ace[5] = rng
                .word(&[
                    "S-1-5-x",
                    "S-1-5-4294967296",
                    "S-1-5-21-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15",
                    "S-1-",
                    "S-1-5--1",
                    "S1-5-18",
                ])
                .to_string()
        }
        "missing field" => {
            let f = rng.below(6);
            ace.remove(f);
        }
        "seventh field" => ace.push(rng.word(&["x", "", "1"]).to_string()),
        "unknown ACL flag" => acl_flags.insert_str(0, rng.word(&["X", "Q", "p", "ai", "PX"])),
        "duplicate component" => {
            let again = draft.0[rng.below(draft.0.len())].clone();
            draft.0.push(again);
        }
        "lowercase component letter" => draft.0.last_mut().unwrap().0 = 'd',
        "unclosed ACE" | "trailing text" => {}
        _ => unreachable!("{kind}"),
    }
    let mut s = draft.render();
    match kind {
        "unclosed ACE" => {
            s.pop();
        }
        "trailing text" => s.push_str(rng.word(&["x", ")", "(", ";", "(A;;FR;;;WD"])),
        _ => {}
    }
    s
}

/// `(start, letter)` of each top-level `X:` component marker.
fn components(s: &str) -> Vec<(usize, char)> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut out = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b'O' | b'G' | b'D' | b'S' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                out.push((i, *b as char))
            }
            _ => {}
        }
    }
    out
}

/// The value of a rights field by MS-DTYP §2.5.1.1: codes, `0x`/`0X` hex, leading-`0` octal or decimal.
fn spec_rights(text: &str) -> u32 {
    if text.is_empty() {
        0
    } else if let Some(hex) = text.strip_prefix("0x").or(text.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).unwrap()
    } else if text.len() > 1 && text.starts_with('0') {
        u32::from_str_radix(&text[1..], 8).unwrap()
    } else if text.as_bytes()[0].is_ascii_digit() {
        text.parse().unwrap()
    } else {
        (0..text.len())
            .step_by(2)
            .map(|i| {
                RIGHTS
                    .iter()
                    .find(|(c, _)| *c == &text[i..i + 2])
                    .unwrap()
                    .1
            })
            .fold(0, |m, b| m | b)
    }
}

const FA_CLASS: &str = "FA, which Samba reads as 0x1ff (MS-DTYP 2.5.1.1: 0x1f01ff)";
const CODES_CLASS: &str = "KA KR KW KX NR NW NX, which Samba lacks (MS-DTYP 2.5.1.1)";
const NUMBER_CLASS: &str = "0X hex, octal or decimal rights (MS-DTYP 2.5.1.1)";
const ALIAS_CLASS: &str = "HO or SH, newer than Samba's aliases (sddl.h)";
const NULL_CLASS: &str = "NO_ACCESS_CONTROL, which Samba lacks (MS-DTYP 2.5.1.1)";
const ORDER_CLASS: &str = "components out of the grammar's order O, G, D (MS-DTYP 2.5.1.1)";

fn samba_rights(text: &str, classes: &mut BTreeSet<&'static str>) -> String {
    let numeric = text.as_bytes().first().is_some_and(u8::is_ascii_digit);
    if numeric && !text.starts_with("0x") {
        classes.insert(NUMBER_CLASS);
    } else if !numeric {
        let codes: Vec<&str> = (0..text.len())
            .step_by(2)
            .map(|i| &text[i..i + 2])
            .collect();
        if codes.contains(&"FA") {
            classes.insert(FA_CLASS);
        } else if codes.iter().any(|c| SAMBA_LACKS.contains(c)) {
            classes.insert(CODES_CLASS);
        } else {
            return text.to_owned();
        }
    } else {
        return text.to_owned();
    }
    format!("0x{:x}", spec_rights(text))
}

fn samba_sid(text: &str, classes: &mut BTreeSet<&'static str>) -> String {
    match NEWER_ALIASES.iter().find(|(code, _)| *code == text) {
        Some((_, sid)) => {
            classes.insert(ALIAS_CLASS);
            sid.to_string()
        }
        None => text.to_owned(),
    }
}

/// Well-formed SDDL (generated, or printed by us) rewritten where Samba departs from the specification, to
/// what the specification says it means; the classes rewritten are added to `classes`.
/// Components go in the grammar's order: we accept any order, and Samba misreads some others (a `D:` of
/// flags alone followed by `G:` takes the G for a flag).
fn samba_form(sddl: &str, classes: &mut BTreeSet<&'static str>) -> String {
    let starts = components(sddl);
    let letters: String = starts.iter().map(|s| s.1).collect();
    if !matches!(
        letters.as_str(),
        "O" | "G" | "D" | "OG" | "OD" | "GD" | "OGD"
    ) {
        classes.insert(ORDER_CLASS);
    }
    let mut parts = BTreeMap::new();
    for (n, &(start, letter)) in starts.iter().enumerate() {
        let end = starts.get(n + 1).map_or(sddl.len(), |s| s.0);
        let body = &sddl[start + 2..end];
        let part = match letter {
            'O' | 'G' => format!("{letter}:{}", samba_sid(body, classes)),
            'D' if body.contains("NO_ACCESS_CONTROL") => {
                // No equivalent in Samba: dropping D: keeps the meaning "no DACL" for the comparison.
                classes.insert(NULL_CLASS);
                continue;
            }
            'D' => {
                let flags_end = body.find('(').unwrap_or(body.len());
                let mut part = format!("D:{}", &body[..flags_end]);
                for ace in body[flags_end..].split_terminator(')') {
                    let mut fields: Vec<String> = ace[1..].split(';').map(String::from).collect();
                    fields[2] = samba_rights(&fields[2], classes);
                    fields[5] = samba_sid(&fields[5], classes);
                    part.push_str(&format!("({})", fields.join(";")));
                }
                part
            }
            _ => unreachable!("{sddl}"),
        };
        parts.insert(['O', 'G', 'D'].iter().position(|l| *l == letter), part);
    }
    parts.into_values().collect()
}

fn our_meaning(sd: &SecurityDescriptor) -> Value {
    json!({
        "owner": sd.owner.as_ref().map(Sid::to_string),
        "group": sd.group.as_ref().map(Sid::to_string),
        "dacl": sd.dacl.as_ref().map(|acl| json!({
            "flags": [acl.protected, acl.auto_inherited, acl.auto_inherit_req],
            "aces": acl.aces.iter().map(|a| json!([
                match a.kind {
                    AceType::Allow => 0,
                    AceType::Deny => 1,
                    _ => 99,
                },
                a.flags,
                a.mask.0,
                a.sid.to_string(),
            ])).collect::<Vec<_>>(),
        })),
    })
}

/// Runs the whole corpus through Samba in one process.
fn samba(items: &[Value]) -> Vec<Value> {
    let mut child = Command::new(PYTHON)
        .args(["-c", DRIVER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = json!({ "domain": DOMAIN, "items": items }).to_string();
    let mut stdin = child.stdin.take().unwrap();
    // Written from a thread, so that a driver writing while we write cannot block both.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "the Samba driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers.len(), items.len());
    answers
}

struct WellFormed {
    sddl: String,
    /// Where what Samba reads was rewritten to the value the specification gives.
    classes: BTreeSet<&'static str>,
    ours: Result<SecurityDescriptor, String>,
    checks: Vec<(Vec<String>, u32)>,
    /// Indexes of the Samba items: the descriptor, and our canonical form of it.
    item: usize,
    canonical: Option<usize>,
}

#[derive(Default)]
struct Tally {
    counts: BTreeMap<String, usize>,
    disagreements: Vec<String>,
}

impl Tally {
    fn agree(&mut self, class: &str) {
        *self.counts.entry(class.to_owned()).or_default() += 1;
    }

    fn check(&mut self, class: &str, ok: bool, what: impl FnOnce() -> String) {
        if ok {
            self.agree(class);
        } else {
            self.disagreements.push(format!("{class}: {}", what()));
        }
    }
}

#[test]
fn sddl_and_access_check_agree_with_samba() {
    if !have_module_in(PYTHON, "samba.security") {
        return;
    }
    let started = Instant::now();
    let domain: Sid = DOMAIN.parse().unwrap();
    let principals = principals();
    let mut rng = Rng(SEED);
    let mut items: Vec<Value> = Vec::new();

    let mut well_formed = Vec::new();
    for _ in 0..WELL_FORMED {
        let sddl = gen_draft(&mut rng, &principals, false).render();
        let mut classes = BTreeSet::new();
        let samba_sddl = samba_form(&sddl, &mut classes);
        let ours = SecurityDescriptor::parse(&sddl, Some(&domain)).map_err(|e| e.to_string());
        let mut checks = Vec::new();
        let mut canonical = None;
        if let Ok(sd) = &ours {
            for _ in 0..CHECKS_PER_DESCRIPTOR {
                let mut token: Vec<String> = principals
                    .iter()
                    .filter(|_| rng.percent(30))
                    .cloned()
                    .collect();
                if let Some(owner) = sd.owner.as_ref().filter(|_| rng.percent(50)) {
                    token.push(owner.to_string());
                }
                let desired = (0..1 + rng.below(3)).fold(0, |m, _| m | *rng.pick(MASK_BITS));
                checks.push((token, desired));
            }
            items.push(json!({
                "sddl": samba_form(&sd.to_string(), &mut BTreeSet::new()),
                "checks": [],
            }));
            canonical = Some(items.len() - 1);
        }
        items.push(json!({ "sddl": samba_sddl, "checks": checks }));
        well_formed.push(WellFormed {
            sddl,
            classes,
            ours,
            checks,
            item: items.len() - 1,
            canonical,
        });
    }

    let mut malformed = Vec::new();
    for _ in 0..MALFORMED {
        let &(kind, samba_lenient) = rng.pick(MUTATIONS);
        let draft = gen_draft(&mut rng, &principals, true);
        let sddl = mutate(&mut rng, draft, kind);
        items.push(json!({ "sddl": sddl, "checks": [] }));
        malformed.push((sddl, kind, samba_lenient, items.len() - 1));
    }

    let answers = samba(&items);
    let mut tally = Tally::default();
    let mut checks_run = 0;
    for case in &well_formed {
        let sddl = &case.sddl;
        for class in &case.classes {
            tally.agree(&format!(
                "rewritten for Samba to the specified value: {class}"
            ));
        }
        let sd = match &case.ours {
            Ok(sd) => sd,
            Err(e) => {
                tally.check("parse: valid SDDL accepted", false, || {
                    format!("{sddl}: we refuse it: {e}")
                });
                continue;
            }
        };
        let theirs = &answers[case.item];
        tally.check(
            "parse: valid SDDL accepted by both",
            !theirs.is_null(),
            || format!("{sddl}: Samba refuses it"),
        );
        if theirs.is_null() {
            continue;
        }
        let meaning = our_meaning(sd);
        tally.check(
            "meaning: owner, group, DACL flags and ACEs",
            meaning == theirs["meaning"],
            || format!("{sddl}: ours {meaning}, Samba's {}", theirs["meaning"]),
        );

        // Canonical form: we read it back to the same descriptor, and Samba reads it as the original.
        let printed = sd.to_string();
        let again = printed.parse::<SecurityDescriptor>();
        let samba_again = &answers[case.canonical.unwrap()];
        tally.check(
            "canonical form: read back by us and by Samba",
            again.as_ref() == Ok(sd) && samba_again["meaning"] == theirs["meaning"],
            || format!("{sddl}: printed {printed}: ours {again:?}, Samba's {samba_again}"),
        );

        let decisions = theirs["decisions"].as_array().unwrap();
        for (n, (token, desired)) in case.checks.iter().enumerate() {
            checks_run += 1;
            let sids: Vec<Sid> = token.iter().map(|s| s.parse().unwrap()).collect();
            let ours = sd.access_check(&sids, AccessMask(*desired)).allowed;
            let what = || format!("{sddl} for {token:?} asking {desired:#x}: we say {ours}");
            if sd.dacl.is_none() {
                // Samba has no NO_ACCESS_CONTROL and denies without a DACL; MS-DTYP §2.5.3.2: with no
                // DACL any access check succeeds.
                tally.check(
                    "decision without a DACL (Samba denies): granted by MS-DTYP 2.5.3.2",
                    ours,
                    what,
                );
                continue;
            }
            let owner_rights = Sid::owner_rights();
            let ow_applies = sd.owner.as_ref().is_some_and(|o| sids.contains(o))
                && sd
                    .dacl
                    .as_ref()
                    .unwrap()
                    .aces
                    .iter()
                    .any(|a| a.sid == owner_rights);
            tally.check(
                if ow_applies {
                    "decision: token and mask, the owner with an OW ACE"
                } else {
                    "decision: token and mask"
                },
                decisions[n].as_bool() == Some(ours),
                || format!("{} (Samba: {})", what(), decisions[n]),
            );
        }
    }

    for (sddl, kind, samba_lenient, item) in &malformed {
        let ours = SecurityDescriptor::parse(sddl, Some(&domain));
        // Every mutation breaks the grammar of MS-DTYP §2.5.1.1: we refuse it whatever Samba says.
        tally.check(
            &format!("malformed ({kind}): refused by us"),
            ours.is_err(),
            || format!("{sddl}: we accept it as {}", ours.as_ref().unwrap()),
        );
        let samba_accepts = !answers[*item].is_null();
        if *samba_lenient && samba_accepts {
            tally.agree(&format!(
                "  Samba accepts it (its leniency, excluded): {kind}"
            ));
        } else {
            tally.check(
                &format!("malformed ({kind}): refused by Samba too"),
                !samba_accepts,
                || format!("{sddl}: Samba accepts it as {}", answers[*item]),
            );
        }
    }

    println!(
        "Samba differential: seed {SEED:#x}, {} descriptors ({WELL_FORMED} well-formed, {MALFORMED} \
         malformed), {checks_run} access checks, {} disagreements, {:.1} s",
        WELL_FORMED + MALFORMED,
        tally.disagreements.len(),
        started.elapsed().as_secs_f64()
    );
    for (class, n) in &tally.counts {
        println!("  {n:>6}  {class}");
    }
    assert!(
        tally.disagreements.is_empty(),
        "{} disagreements with Samba, the first ones:\n{}",
        tally.disagreements.len(),
        tally.disagreements[..tally.disagreements.len().min(25)].join("\n")
    );
    // The corpus reaches what it is for.
    for class in [
        "meaning: owner, group, DACL flags and ACEs",
        "decision: token and mask",
    ] {
        assert!(
            tally.counts.get(class).copied().unwrap_or(0) >= 1000,
            "{class}"
        );
    }
}
