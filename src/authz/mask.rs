//! `AccessMask`: the 32 bits of rights in an ACE (MS-DTYP §2.4.3), the SDDL right codes, and the file
//! generic mapping the access check uses.

use std::fmt;

/// A set of access rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AccessMask(pub u32);

impl AccessMask {
    /// FILE_READ_DATA: what GET and HEAD ask for (a specific bit, so a deny of GW cannot block reads).
    pub const FILE_READ_DATA: AccessMask = AccessMask(0x0000_0001);
    /// FILE_WRITE_DATA: what a management change asks of the admin SDDL.
    pub const FILE_WRITE_DATA: AccessMask = AccessMask(0x0000_0002);
    /// READ_CONTROL.
    pub const READ_CONTROL: AccessMask = AccessMask(0x0002_0000);
    /// WRITE_DAC.
    pub const WRITE_DAC: AccessMask = AccessMask(0x0004_0000);
    /// GENERIC_READ.
    pub const GENERIC_READ: AccessMask = AccessMask(0x8000_0000);
    /// GENERIC_WRITE.
    pub const GENERIC_WRITE: AccessMask = AccessMask(0x4000_0000);
    /// GENERIC_EXECUTE.
    pub const GENERIC_EXECUTE: AccessMask = AccessMask(0x2000_0000);
    /// GENERIC_ALL.
    pub const GENERIC_ALL: AccessMask = AccessMask(0x1000_0000);
    /// FILE_GENERIC_READ.
    pub const FILE_GENERIC_READ: AccessMask = AccessMask(0x0012_0089);
    /// FILE_GENERIC_WRITE.
    pub const FILE_GENERIC_WRITE: AccessMask = AccessMask(0x0012_0116);
    /// FILE_GENERIC_EXECUTE.
    pub const FILE_GENERIC_EXECUTE: AccessMask = AccessMask(0x0012_00A0);
    /// FILE_ALL_ACCESS.
    pub const FILE_ALL_ACCESS: AccessMask = AccessMask(0x001F_01FF);

    /// Generic bits replaced by the file rights they stand for (the file object's GENERIC_MAPPING).
    pub fn map_generic_file(self) -> AccessMask {
        let mut m = self.0 & 0x0FFF_FFFF;
        for (generic, specific) in [
            (Self::GENERIC_READ, Self::FILE_GENERIC_READ),
            (Self::GENERIC_WRITE, Self::FILE_GENERIC_WRITE),
            (Self::GENERIC_EXECUTE, Self::FILE_GENERIC_EXECUTE),
            (Self::GENERIC_ALL, Self::FILE_ALL_ACCESS),
        ] {
            if self.0 & generic.0 != 0 {
                m |= specific.0;
            }
        }
        AccessMask(m)
    }

    /// Whether every bit of `other` is set here.
    pub fn contains(self, other: AccessMask) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether no bit is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// SDDL right codes (MS-DTYP §2.5.1.1), in the order canonical printing tries them: whole-object rights
/// first, so that a mask prints as few codes as possible.
pub(crate) const RIGHTS: &[(&str, u32)] = &[
    ("GA", 0x1000_0000),
    ("GR", 0x8000_0000),
    ("GW", 0x4000_0000),
    ("GX", 0x2000_0000),
    ("FA", 0x001F_01FF),
    ("KA", 0x000F_003F),
    ("FR", 0x0012_0089),
    ("FW", 0x0012_0116),
    ("FX", 0x0012_00A0),
    ("KR", 0x0002_0019),
    ("KW", 0x0002_0006),
    ("KX", 0x0002_0019),
    ("RC", 0x0002_0000),
    ("SD", 0x0001_0000),
    ("WD", 0x0004_0000),
    ("WO", 0x0008_0000),
    ("CR", 0x0000_0100),
    ("LO", 0x0000_0080),
    ("DT", 0x0000_0040),
    ("WP", 0x0000_0020),
    ("RP", 0x0000_0010),
    ("SW", 0x0000_0008),
    ("LC", 0x0000_0004),
    ("DC", 0x0000_0002),
    ("CC", 0x0000_0001),
    ("NX", 0x0000_0004),
    ("NR", 0x0000_0002),
    ("NW", 0x0000_0001),
];

/// The mask of one right code.
pub(crate) fn right(code: &str) -> Option<u32> {
    RIGHTS.iter().find(|(c, _)| *c == code).map(|(_, m)| *m)
}

impl fmt::Display for AccessMask {
    /// Canonical SDDL: codes when the mask is exactly a union of whole codes (greedy over the table of rights, never
    /// using a code that sets a bit outside the mask), else `0x` hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.0;
        let mut codes = String::new();
        for (code, bits) in RIGHTS
            .iter()
            .filter(|(c, _)| !matches!(*c, "KX" | "NX" | "NR" | "NW"))
        {
            if self.0 & bits == *bits && left & bits != 0 {
                codes.push_str(code);
                left &= !bits;
            }
        }
        if left == 0 && !codes.is_empty() {
            f.write_str(&codes)
        } else {
            write!(f, "0x{:x}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_mapping_for_files() {
        assert_eq!(
            AccessMask::GENERIC_READ.map_generic_file(),
            AccessMask::FILE_GENERIC_READ
        );
        assert_eq!(
            AccessMask::GENERIC_ALL.map_generic_file(),
            AccessMask::FILE_ALL_ACCESS
        );
        assert!(AccessMask::FILE_GENERIC_READ.contains(AccessMask::FILE_READ_DATA));
        assert!(!AccessMask::FILE_GENERIC_WRITE.contains(AccessMask::FILE_READ_DATA));
        assert_eq!(
            AccessMask(0x8000_0001).map_generic_file(),
            AccessMask::FILE_GENERIC_READ
        );
    }

    #[test]
    fn canonical_printing() {
        assert_eq!(AccessMask(0x8000_0000).to_string(), "GR");
        assert_eq!(AccessMask(0x0012_0089).to_string(), "FR");
        assert_eq!(AccessMask(0x001F_01FF).to_string(), "FA");
        assert_eq!(AccessMask(0x0006_0000).to_string(), "RCWD");
        assert_eq!(AccessMask(0x0000_0001).to_string(), "CC");
        assert_eq!(AccessMask(0x0000_0200).to_string(), "0x200");
        assert_eq!(AccessMask(0).to_string(), "0x0");
    }
}
