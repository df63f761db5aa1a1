//! `SecurityDescriptor` from SDDL (MS-DTYP §2.5.1), sans-IO and total, and its canonical SDDL form.
//!
//! Supported: owner `O:`, group `G:`, DACL `D:` and SACL `S:` (any order, each once); ACL flags `P`, `AI`,
//! `AR`, and `NO_ACCESS_CONTROL` (a NULL DACL); allow and deny ACEs; audit, alarm and mandatory-label ACEs
//! in a SACL (kept, not enforced); ACE flags; rights as codes or numbers; SID aliases and literal SIDs.
//! Object ACEs (`OA`, `OD`, ...) and conditional ACEs (`XA`, `XD`, ...) are refused with a clear error,
//! since this server has no object types or claims to give them meaning.

use std::fmt;

use super::mask::{right, AccessMask};
use super::sid::{alias, alias_of, Alias, Sid};

/// A parsed security descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityDescriptor {
    /// The owner.
    pub owner: Option<Sid>,
    /// The primary group.
    pub group: Option<Sid>,
    /// The DACL; `None` is a NULL DACL (everyone has every right).
    pub dacl: Option<Acl>,
    /// The SACL, kept for display.
    pub sacl: Option<Acl>,
}

/// An access-control list and its SDDL flags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    /// `P`: protected from inheritance.
    pub protected: bool,
    /// `AI`: inherited automatically.
    pub auto_inherited: bool,
    /// `AR`: auto-inheritance requested.
    pub auto_inherit_req: bool,
    /// The entries, in order.
    pub aces: Vec<Ace>,
}

/// The type of an ACE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AceType {
    /// `A`: ACCESS_ALLOWED.
    Allow,
    /// `D`: ACCESS_DENIED.
    Deny,
    /// `AU`: SYSTEM_AUDIT (SACL only).
    Audit,
    /// `AL`: SYSTEM_ALARM (SACL only).
    Alarm,
    /// `ML`: SYSTEM_MANDATORY_LABEL (SACL only).
    MandatoryLabel,
}

/// One access-control entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ace {
    /// Allow, deny, or a SACL type.
    pub kind: AceType,
    /// ACE flags as the `ACE_HEADER` bits (OI 0x1, CI 0x2, NP 0x4, IO 0x8, ID 0x10, SA 0x40, FA 0x80).
    pub flags: u8,
    /// The rights.
    pub mask: AccessMask,
    /// Whom it is about.
    pub sid: Sid,
}

impl Ace {
    /// INHERIT_ONLY: the ACE only passes to children and does not apply to this object.
    pub const INHERIT_ONLY: u8 = 0x08;

    /// Whether the ACE applies to the object itself.
    pub fn is_inherit_only(&self) -> bool {
        self.flags & Self::INHERIT_ONLY != 0
    }
}

const ACE_FLAGS: &[(&str, u8)] = &[
    ("OI", 0x01),
    ("CI", 0x02),
    ("NP", 0x04),
    ("IO", 0x08),
    ("ID", 0x10),
    ("SA", 0x40),
    ("FA", 0x80),
];

const ACE_TYPES: &[(&str, AceType)] = &[
    ("A", AceType::Allow),
    ("D", AceType::Deny),
    ("AU", AceType::Audit),
    ("AL", AceType::Alarm),
    ("ML", AceType::MandatoryLabel),
];

/// What the parser expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SddlErrorKind {
    /// An empty string.
    #[error("an empty security descriptor")]
    Empty,
    /// Not `O:`, `G:`, `D:` or `S:`.
    #[error("expected O:, G:, D: or S:")]
    Component,
    /// The same component twice.
    #[error("this component appears twice")]
    Duplicate,
    /// Not a SID alias or `S-1-...`.
    #[error("expected a SID: a two-letter alias or S-1-...")]
    Sid,
    /// A domain-relative alias with no domain SID configured.
    #[error("this SID alias is relative to a domain, and no domain SID is configured")]
    NeedsDomain,
    /// An unknown ACL flag.
    #[error("expected ACL flags (P, AI, AR, NO_ACCESS_CONTROL) or an ACE in parentheses")]
    AclFlags,
    /// A malformed ACE.
    #[error("expected an ACE: (type;flags;rights;;;sid)")]
    Ace,
    /// An ACE whose `)` is missing: reported where the text ends.
    #[error("the ACE is not closed: expected `)`")]
    Unclosed,
    /// An ACE type we do not have.
    #[error("unknown ACE type")]
    AceType,
    /// Object or conditional ACEs.
    #[error("object and conditional ACEs are not supported")]
    Unsupported,
    /// An audit ACE in a DACL, or an allow ACE in a SACL.
    #[error("this ACE type does not belong in this ACL")]
    WrongAcl,
    /// Unknown ACE flag.
    #[error("unknown ACE flag")]
    AceFlags,
    /// Unknown right code or bad number.
    #[error("expected rights: codes such as GR or FA, or a number such as 0x1200a9")]
    Rights,
    /// An object GUID where none may be.
    #[error("object GUIDs are not supported")]
    Guid,
}

/// An invalid SDDL string: the input, the byte offset and what was expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid SDDL {input:?} at byte {offset}: {kind}")]
pub struct SddlError {
    input: String,
    offset: usize,
    kind: SddlErrorKind,
}

impl SddlError {
    /// The text parsed.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Where the problem is.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// What was expected.
    pub fn reason(&self) -> &SddlErrorKind {
        &self.kind
    }
}

type Fail = (usize, SddlErrorKind);

impl SecurityDescriptor {
    /// Parses SDDL. `domain` resolves domain-relative aliases (DA, DU, LA, ...); without it they are errors.
    pub fn parse(input: &str, domain: Option<&Sid>) -> Result<Self, SddlError> {
        Parser { input, domain }
            .descriptor()
            .map_err(|(offset, kind)| SddlError {
                input: input.to_owned(),
                offset,
                kind,
            })
    }
}

impl std::str::FromStr for SecurityDescriptor {
    type Err = SddlError;

    fn from_str(s: &str) -> Result<Self, SddlError> {
        SecurityDescriptor::parse(s, None)
    }
}

struct Parser<'a> {
    input: &'a str,
    domain: Option<&'a Sid>,
}

/// Offsets of the start of each `X:` component marker.
fn component_starts(s: &str) -> Vec<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut starts = Vec::new();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b'O' | b'G' | b'D' | b'S' if depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                // A SID string "S-1-..." never has a colon after S, so this is a marker.
                starts.push(i);
            }
            _ => {}
        }
    }
    starts
}

impl Parser<'_> {
    fn descriptor(&self) -> Result<SecurityDescriptor, Fail> {
        let s = self.input;
        let trimmed = s.trim_end();
        if trimmed.trim_start().is_empty() {
            return Err((0, SddlErrorKind::Empty));
        }
        let starts = component_starts(trimmed);
        if starts.first() != Some(&0) {
            return Err((0, SddlErrorKind::Component));
        }
        let mut sd = SecurityDescriptor::default();
        let (mut seen_dacl, mut seen_sacl) = (false, false);
        for (i, &start) in starts.iter().enumerate() {
            let end = starts.get(i + 1).copied().unwrap_or(trimmed.len());
            let body = &trimmed[start + 2..end];
            let at = start + 2;
            match trimmed.as_bytes()[start] {
                b'O' if sd.owner.is_none() => sd.owner = Some(self.sid(body, at)?),
                b'G' if sd.group.is_none() => sd.group = Some(self.sid(body, at)?),
                b'D' if !seen_dacl => {
                    seen_dacl = true;
                    sd.dacl = self.acl(body, at, true)?;
                }
                b'S' if !seen_sacl => {
                    seen_sacl = true;
                    sd.sacl = self.acl(body, at, false)?;
                }
                _ => return Err((start, SddlErrorKind::Duplicate)),
            }
        }
        Ok(sd)
    }

    fn sid(&self, text: &str, at: usize) -> Result<Sid, Fail> {
        let t = text.trim();
        if t.len() == 2 && t.bytes().all(|b| b.is_ascii_uppercase()) {
            return match alias(t, self.domain) {
                Some(Alias::Fixed(sid)) => Ok(sid),
                Some(Alias::NeedsDomain) => Err((at, SddlErrorKind::NeedsDomain)),
                None => Err((at, SddlErrorKind::Sid)),
            };
        }
        t.parse().map_err(|_| (at, SddlErrorKind::Sid))
    }

    /// `flags (ace)(ace)...`; `None` for NO_ACCESS_CONTROL.
    fn acl(&self, body: &str, at: usize, dacl: bool) -> Result<Option<Acl>, Fail> {
        let flags_end = body.find('(').unwrap_or(body.len());
        let mut acl = Acl::default();
        let mut null = false;
        let mut flags = &body[..flags_end];
        while !flags.is_empty() {
            let offset = at + (flags_end - flags.len());
            if let Some(rest) = flags.strip_prefix("NO_ACCESS_CONTROL") {
                null = true;
                flags = rest;
            } else if let Some(rest) = flags.strip_prefix("AI") {
                acl.auto_inherited = true;
                flags = rest;
            } else if let Some(rest) = flags.strip_prefix("AR") {
                acl.auto_inherit_req = true;
                flags = rest;
            } else if let Some(rest) = flags.strip_prefix('P') {
                acl.protected = true;
                flags = rest;
            } else {
                return Err((offset, SddlErrorKind::AclFlags));
            }
        }
        let mut rest = &body[flags_end..];
        while !rest.is_empty() {
            let offset = at + (body.len() - rest.len());
            let inner = rest
                .strip_prefix('(')
                .ok_or((offset, SddlErrorKind::AclFlags))?;
            // A missing `)` is missed where the text ends, not where the ACE opened.
            let close = inner
                .find(')')
                .ok_or((at + body.len(), SddlErrorKind::Unclosed))?;
            acl.aces.push(self.ace(&inner[..close], offset + 1, dacl)?);
            rest = &inner[close + 1..];
        }
        if null && !acl.aces.is_empty() {
            // Windows ignores ACEs after NO_ACCESS_CONTROL; we refuse them rather than guess.
            return Err((at, SddlErrorKind::AclFlags));
        }
        Ok((!null).then_some(acl))
    }

    fn ace(&self, text: &str, at: usize, dacl: bool) -> Result<Ace, Fail> {
        let fields: Vec<&str> = text.split(';').collect();
        if fields.len() != 6 && fields.len() != 7 {
            return Err((at, SddlErrorKind::Ace));
        }
        let mut offset = at;
        let mut next = |i: usize| {
            let o = offset;
            offset += fields[i].len() + 1;
            (fields[i].trim(), o)
        };
        let (kind_text, kind_at) = next(0);
        let kind = ACE_TYPES
            .iter()
            .find(|(c, _)| *c == kind_text)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                let object = [
                    "OA", "OD", "OU", "OL", "XA", "XD", "XU", "ZA", "SP", "RA", "CA",
                ];
                let kind = if object.contains(&kind_text) {
                    SddlErrorKind::Unsupported
                } else {
                    SddlErrorKind::AceType
                };
                (kind_at, kind)
            })?;
        let in_dacl = matches!(kind, AceType::Allow | AceType::Deny);
        if in_dacl != dacl {
            return Err((kind_at, SddlErrorKind::WrongAcl));
        }
        let (flags_text, flags_at) = next(1);
        let flags = ace_flags(flags_text).ok_or((flags_at, SddlErrorKind::AceFlags))?;
        let (rights_text, rights_at) = next(2);
        let mask = rights(rights_text).ok_or((rights_at, SddlErrorKind::Rights))?;
        for i in [3, 4] {
            let (guid, guid_at) = next(i);
            if !guid.is_empty() {
                return Err((guid_at, SddlErrorKind::Guid));
            }
        }
        let (sid_text, sid_at) = next(5);
        let sid = self.sid(sid_text, sid_at)?;
        if fields.len() == 7 {
            return Err((offset, SddlErrorKind::Unsupported));
        }
        Ok(Ace {
            kind,
            flags,
            mask,
            sid,
        })
    }
}

fn ace_flags(mut text: &str) -> Option<u8> {
    let mut flags = 0u8;
    while !text.is_empty() {
        let (code, bit) = ACE_FLAGS.iter().find(|(c, _)| text.starts_with(c))?;
        flags |= bit;
        text = &text[code.len()..];
    }
    Some(flags)
}

/// Right codes (two letters each), or a number: `0x` hex, leading-`0` octal, or decimal. No codes at all is
/// no rights: the grammar's `ace-rights = *text-rights-string` allows zero (MS-DTYP §2.5.1.1).
fn rights(text: &str) -> Option<AccessMask> {
    if text.is_empty() {
        return Some(AccessMask(0));
    }
    if text.as_bytes()[0].is_ascii_digit() {
        let n = if let Some(hex) = text.strip_prefix("0x").or(text.strip_prefix("0X")) {
            u32::from_str_radix(hex, 16).ok()?
        } else if text.len() > 1 && text.starts_with('0') {
            u32::from_str_radix(&text[1..], 8).ok()?
        } else {
            text.parse().ok()?
        };
        return Some(AccessMask(n));
    }
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    let mut mask = 0u32;
    for i in (0..text.len()).step_by(2) {
        mask |= right(&text[i..i + 2])?;
    }
    Some(AccessMask(mask))
}

impl fmt::Display for SecurityDescriptor {
    /// Canonical SDDL: O:, G:, D:, S: in that order; aliases for well-known SIDs; rights as codes where
    /// they fit exactly. It parses back to an equal descriptor.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(owner) = &self.owner {
            write!(f, "O:{}", SidText(owner))?;
        }
        if let Some(group) = &self.group {
            write!(f, "G:{}", SidText(group))?;
        }
        match &self.dacl {
            Some(acl) => write!(f, "D:{acl}")?,
            None => f.write_str("D:NO_ACCESS_CONTROL")?,
        }
        if let Some(sacl) = &self.sacl {
            write!(f, "S:{sacl}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.protected {
            f.write_str("P")?;
        }
        if self.auto_inherit_req {
            f.write_str("AR")?;
        }
        if self.auto_inherited {
            f.write_str("AI")?;
        }
        for ace in &self.aces {
            write!(f, "{ace}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Ace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = ACE_TYPES
            .iter()
            .find(|(_, k)| *k == self.kind)
            .map_or("A", |(c, _)| *c);
        let flags: String = ACE_FLAGS
            .iter()
            .filter(|(_, bit)| self.flags & bit != 0)
            .map(|(c, _)| *c)
            .collect();
        // An ACE granting nothing prints an empty rights field, as the grammar allows (MS-DTYP §2.5.1.1).
        let mask = if self.mask.is_empty() {
            String::new()
        } else {
            self.mask.to_string()
        };
        write!(f, "({kind};{flags};{mask};;;{})", SidText(&self.sid))
    }
}

struct SidText<'a>(&'a Sid);

impl fmt::Display for SidText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match alias_of(self.0) {
            Some(code) => f.write_str(code),
            None => write!(f, "{}", self.0),
        }
    }
}
