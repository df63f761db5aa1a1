//! `Sid`: a Windows security identifier (MS-DTYP §2.4.2), its string form, and the SDDL aliases.

use std::fmt;
use std::str::FromStr;

/// A security identifier such as `S-1-5-32-544`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    authority: u64,
    sub: Vec<u32>,
}

/// The most sub-authorities a SID may have (MS-DTYP §2.4.2.2).
pub(crate) const MAX_SUB_AUTHORITIES: usize = 15;

impl Sid {
    /// A SID from its identifier authority (48 bits) and sub-authorities (at most 15).
    pub fn new(authority: u64, sub: &[u32]) -> Option<Sid> {
        (authority < 1 << 48 && sub.len() <= MAX_SUB_AUTHORITIES).then(|| Sid {
            authority,
            sub: sub.to_vec(),
        })
    }

    /// This SID with one more sub-authority (a RID), e.g. a user of a domain.
    pub fn with_rid(&self, rid: u32) -> Option<Sid> {
        let mut sub = self.sub.clone();
        sub.push(rid);
        Sid::new(self.authority, &sub)
    }

    /// The sub-authorities.
    pub fn sub_authorities(&self) -> &[u32] {
        &self.sub
    }

    fn literal(authority: u64, sub: &[u32]) -> Sid {
        Sid {
            authority,
            sub: sub.to_vec(),
        }
    }

    /// Everyone (`WD`, S-1-1-0).
    pub fn everyone() -> Sid {
        Sid::literal(1, &[0])
    }

    /// Anonymous Logon (`AN`, S-1-5-7).
    pub fn anonymous() -> Sid {
        Sid::literal(5, &[7])
    }

    /// Authenticated Users (`AU`, S-1-5-11).
    pub fn authenticated_users() -> Sid {
        Sid::literal(5, &[11])
    }

    /// Network logon (`NU`, S-1-5-2).
    pub fn network() -> Sid {
        Sid::literal(5, &[2])
    }

    /// OWNER RIGHTS (`OW`, S-1-3-4).
    pub fn owner_rights() -> Sid {
        Sid::literal(3, &[4])
    }
}

/// Why a SID string is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid SID: {0}")]
pub struct SidError(&'static str);

impl FromStr for Sid {
    type Err = SidError;

    /// `S-1-<authority>-<sub>...`: revision 1, the authority in decimal (or `0x` hex) below 2^48, up to 15
    /// decimal sub-authorities that fit in 32 bits.
    fn from_str(s: &str) -> Result<Sid, SidError> {
        let mut parts = s.split('-');
        if !parts.next().is_some_and(|p| p.eq_ignore_ascii_case("S")) {
            return Err(SidError("it must start with S-"));
        }
        if parts.next() != Some("1") {
            return Err(SidError("the revision must be 1"));
        }
        let authority = parts.next().ok_or(SidError("no identifier authority"))?;
        let authority = match authority
            .strip_prefix("0x")
            .or(authority.strip_prefix("0X"))
        {
            Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u64::from_str_radix(hex, 16).ok()
            }
            Some(_) => None,
            None => digits(authority).and_then(|d| d.parse().ok()),
        }
        .filter(|a| *a < 1 << 48)
        .ok_or(SidError(
            "the identifier authority must be a number below 2^48",
        ))?;
        let sub = parts
            .map(|p| digits(p).and_then(|d| d.parse::<u32>().ok()))
            .collect::<Option<Vec<u32>>>()
            .ok_or(SidError(
                "each sub-authority must be a 32-bit decimal number",
            ))?;
        if sub.len() > MAX_SUB_AUTHORITIES {
            return Err(SidError("more than 15 sub-authorities"));
        }
        Ok(Sid { authority, sub })
    }
}

fn digits(s: &str) -> Option<&str> {
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

impl fmt::Display for Sid {
    /// The string form: the authority in decimal below 2^32, else in hex (MS-DTYP §2.4.2.1).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.authority < 1 << 32 {
            write!(f, "S-1-{}", self.authority)?;
        } else {
            write!(f, "S-1-0x{:012X}", self.authority)?;
        }
        for s in &self.sub {
            write!(f, "-{s}")?;
        }
        Ok(())
    }
}

/// SDDL SID aliases that name a fixed SID: the `sid-token`s of MS-DTYP §2.5.1.1 and the SID string constants
/// of `sddl.h` (which adds AS, SS and, newer than the MS-DTYP list, HO and SH).
const FIXED: &[(&str, u64, &[u32])] = &[
    ("AA", 5, &[32, 579]),
    ("AC", 15, &[2, 1]),
    ("AN", 5, &[7]),
    ("AO", 5, &[32, 548]),
    ("AS", 18, &[1]),
    ("AU", 5, &[11]),
    ("BA", 5, &[32, 544]),
    ("BG", 5, &[32, 546]),
    ("BO", 5, &[32, 551]),
    ("BU", 5, &[32, 545]),
    ("CD", 5, &[32, 574]),
    ("CG", 3, &[1]),
    ("CO", 3, &[0]),
    ("CY", 5, &[32, 569]),
    ("ED", 5, &[9]),
    ("ER", 5, &[32, 573]),
    ("ES", 5, &[32, 576]),
    ("HA", 5, &[32, 578]),
    ("HI", 16, &[12288]),
    ("HO", 5, &[32, 584]),
    ("IS", 5, &[32, 568]),
    ("IU", 5, &[4]),
    ("LS", 5, &[19]),
    ("LU", 5, &[32, 559]),
    ("LW", 16, &[4096]),
    ("ME", 16, &[8192]),
    ("MP", 16, &[8448]),
    ("MS", 5, &[32, 577]),
    ("MU", 5, &[32, 558]),
    ("NO", 5, &[32, 556]),
    ("NS", 5, &[20]),
    ("NU", 5, &[2]),
    ("OW", 3, &[4]),
    ("PO", 5, &[32, 550]),
    ("PS", 5, &[10]),
    ("PU", 5, &[32, 547]),
    ("RA", 5, &[32, 575]),
    ("RC", 5, &[12]),
    ("RD", 5, &[32, 555]),
    ("RE", 5, &[32, 552]),
    ("RM", 5, &[32, 580]),
    ("RU", 5, &[32, 554]),
    ("SI", 16, &[16384]),
    ("SH", 5, &[32, 585]),
    ("SO", 5, &[32, 549]),
    ("SS", 18, &[2]),
    ("SU", 5, &[6]),
    ("SY", 5, &[18]),
    ("UD", 5, &[84, 0, 0, 0, 0, 0]),
    ("WD", 1, &[0]),
    ("WR", 5, &[33]),
];

/// SDDL aliases relative to the domain (or machine, or forest root) SID: the RID appended to the one domain
/// SID configured (MS-DTYP §2.5.1.1).
const DOMAIN_RELATIVE: &[(&str, u32)] = &[
    ("AP", 525),
    ("CA", 517),
    ("CN", 522),
    ("DA", 512),
    ("DC", 515),
    ("DD", 516),
    ("DG", 514),
    ("DU", 513),
    ("EA", 519),
    ("EK", 527),
    ("KA", 526),
    ("LA", 500),
    ("LG", 501),
    ("PA", 520),
    ("RO", 498),
    ("RS", 553),
    ("SA", 518),
];

/// What an alias stands for.
pub(crate) enum Alias {
    Fixed(Sid),
    /// Needs the domain SID, which was not configured.
    NeedsDomain,
}

/// Resolves a two-letter alias (uppercase, as SDDL writes them).
pub(crate) fn alias(code: &str, domain: Option<&Sid>) -> Option<Alias> {
    if let Some((_, authority, sub)) = FIXED.iter().find(|(c, _, _)| *c == code) {
        return Some(Alias::Fixed(Sid::literal(*authority, sub)));
    }
    let (_, rid) = DOMAIN_RELATIVE.iter().find(|(c, _)| *c == code)?;
    Some(match domain.and_then(|d| d.with_rid(*rid)) {
        Some(sid) => Alias::Fixed(sid),
        None => Alias::NeedsDomain,
    })
}

/// The alias that names exactly this SID without a domain, for canonical printing.
pub(crate) fn alias_of(sid: &Sid) -> Option<&'static str> {
    FIXED
        .iter()
        .find(|(_, authority, sub)| sid.authority == *authority && sid.sub == *sub)
        .map(|(code, _, _)| *code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        for s in [
            "S-1-5-32-544",
            "S-1-1-0",
            "S-1-5-21-1004336348-1177238915-682003330-512",
            "S-1-0x123456789ABC-1",
        ] {
            assert_eq!(s.parse::<Sid>().unwrap().to_string(), s);
        }
        assert_eq!("s-1-5-18".parse::<Sid>().unwrap().to_string(), "S-1-5-18");
        assert_eq!("S-1-0x5-18".parse::<Sid>().unwrap().to_string(), "S-1-5-18");
        assert_eq!(
            "S-1-5".parse::<Sid>().unwrap().sub_authorities(),
            &[] as &[u32]
        );
    }

    #[test]
    fn reject_bad_sids() {
        for s in [
            "",
            "S",
            "S-",
            "S-2-5-18",
            "S-1",
            "S-1-",
            "S-1-5-",
            "S-1-5--1",
            "S-1-5-x",
            "S-1-5-4294967296",
            "S-1-281474976710656-1",
            "S-1-0x-1",
            "S-1-5-1-2-3-4-5-6-7-8-9-10-11-12-13-14-15-16",
            "X-1-5-18",
            "S-1-+5-18",
            "S-1-5-18 ",
        ] {
            assert!(s.parse::<Sid>().is_err(), "{s:?}");
        }
    }

    #[test]
    fn aliases() {
        assert!(
            matches!(alias("BA", None), Some(Alias::Fixed(s)) if s.to_string() == "S-1-5-32-544")
        );
        assert!(matches!(alias("DA", None), Some(Alias::NeedsDomain)));
        let domain: Sid = "S-1-5-21-1-2-3".parse().unwrap();
        assert!(
            matches!(alias("DA", Some(&domain)), Some(Alias::Fixed(s)) if s.to_string() == "S-1-5-21-1-2-3-512")
        );
        assert!(alias("ZZ", None).is_none());
        // Aliases MS-DTYP §2.5.1.1 and sddl.h define that were once missing.
        for (code, sid) in [
            ("RA", "S-1-5-32-575"),
            ("ES", "S-1-5-32-576"),
            ("MS", "S-1-5-32-577"),
            ("AS", "S-1-18-1"),
            ("SS", "S-1-18-2"),
            ("HO", "S-1-5-32-584"),
            ("SH", "S-1-5-32-585"),
        ] {
            assert!(
                matches!(alias(code, None), Some(Alias::Fixed(s)) if s.to_string() == sid),
                "{code}"
            );
            assert_eq!(alias_of(&sid.parse().unwrap()), Some(code));
        }
        // One alias per SID, so canonical printing is unambiguous.
        for (i, (code, authority, sub)) in FIXED.iter().enumerate() {
            assert!(
                FIXED[i + 1..]
                    .iter()
                    .all(|(c, a, s)| c != code && (a, s) != (authority, sub))
                    && DOMAIN_RELATIVE.iter().all(|(c, _)| c != code),
                "{code}"
            );
        }
        assert_eq!(alias_of(&Sid::everyone()), Some("WD"));
        assert_eq!(alias_of(&"S-1-5-21-1-2-3-512".parse().unwrap()), None);
    }
}
