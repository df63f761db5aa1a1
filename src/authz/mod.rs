//! Authorization: security descriptors from SDDL, and the access check with Windows semantics (as Windows does).
//!
//! SECURITY: the threat is a request reading a file its URL's SDDL does not grant. The access check follows
//! the Windows rules exactly and fails closed: generic rights are mapped through the file mapping, ACEs
//! are evaluated in order, a deny ACE covering any still-missing requested bit denies, inherit-only ACEs
//! do not apply, a NULL DACL allows everyone and an empty DACL allows no one, and anything not granted by
//! the end is denied. GET and HEAD ask for FILE_READ_DATA.

mod mask;
mod sddl;
pub(crate) mod sid;

pub use mask::AccessMask;
pub use sddl::{Ace, AceType, Acl, SddlError, SddlErrorKind, SecurityDescriptor};
pub use sid::{Sid, SidError};

/// The outcome of an access check, with the ACE that decided it (its index in the DACL) for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether every requested right was granted.
    pub allowed: bool,
    /// The deny ACE that refused, or the allow ACE that completed the grant; `None` when no single ACE
    /// decided (a NULL or empty DACL, or rights left ungranted at the end).
    pub ace: Option<usize>,
}

impl SecurityDescriptor {
    /// Checks whether a token holding `sids` is granted `desired` on a file with this descriptor.
    pub fn access_check(&self, sids: &[Sid], desired: AccessMask) -> Decision {
        let desired = desired.map_generic_file();
        let Some(dacl) = &self.dacl else {
            return Decision {
                allowed: true,
                ace: None,
            };
        };
        let mut granted = 0u32;
        // The owner is implicitly granted READ_CONTROL and WRITE_DAC, unless an OWNER RIGHTS ACE says
        // otherwise (MS-DTYP §2.5.3.2). An inherit-only ACE "does not control access to the object to which
        // it is attached" (MS-DTYP §2.4.4.1), so an inherit-only OWNER RIGHTS ACE does not take them away.
        let owner_rights = Sid::owner_rights();
        let is_owner = self.owner.as_ref().is_some_and(|o| sids.contains(o));
        if is_owner
            && !dacl
                .aces
                .iter()
                .any(|a| a.sid == owner_rights && !a.is_inherit_only())
        {
            granted |= (AccessMask::READ_CONTROL.0 | AccessMask::WRITE_DAC.0) & desired.0;
        }
        if granted == desired.0 && desired.0 != 0 {
            return Decision {
                allowed: true,
                ace: None,
            };
        }
        for (i, ace) in dacl.aces.iter().enumerate() {
            if ace.is_inherit_only() {
                continue;
            }
            let applies = sids.contains(&ace.sid) || (is_owner && ace.sid == owner_rights);
            if !applies {
                continue;
            }
            let mask = ace.mask.map_generic_file().0;
            match ace.kind {
                AceType::Deny if mask & desired.0 & !granted != 0 => {
                    return Decision {
                        allowed: false,
                        ace: Some(i),
                    };
                }
                AceType::Allow => {
                    granted |= mask & desired.0;
                    if granted == desired.0 {
                        return Decision {
                            allowed: true,
                            ace: Some(i),
                        };
                    }
                }
                _ => {}
            }
        }
        Decision {
            allowed: false,
            ace: None,
        }
    }
}

#[cfg(test)]
mod tests;
