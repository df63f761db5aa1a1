//! Warnings about a configuration that would refuse every caller, given before it is served.

use bits_compact::authz::{AccessMask, AceType, SecurityDescriptor, Sid};
use bits_compact::AuthScheme;

/// What decides who may download: the group's schemes and rule, and what lets a caller authenticate.
pub(crate) struct Access<'a> {
    /// The `--sddl` rule, if any.
    pub(crate) sddl: Option<&'a str>,
    /// The schemes enabled on the group.
    pub(crate) schemes: &'a [AuthScheme],
    /// Whether the prefix is https.
    pub(crate) https: bool,
    pub(crate) allow_basic_over_http: bool,
    /// Whether a principals file was given (Basic and NTLM know no one without one).
    pub(crate) users: bool,
    /// Whether the port asks clients for certificates (`--client-cert`).
    pub(crate) client_certificates: bool,
    pub(crate) refuse_unknown_principals: bool,
}

/// The group's rule when `--sddl` is absent and schemes are enabled (the library's default, IIS's).
const AUTHENTICATED_USERS: &str = "D:(A;;GA;;;AU)";

impl Access<'_> {
    /// One line per problem, each saying what to add.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.basic_refused() {
            out.push(
                "--auth basic is not offered on an http --url (passwords would cross the network \
                 readable); add --allow-basic-over-http, or use an https --url"
                    .to_owned(),
            );
        }
        if let Some(problem) = self.nobody_granted() {
            out.push(problem);
        }
        out
    }

    fn basic_refused(&self) -> bool {
        self.schemes.contains(&AuthScheme::Basic) && !self.https && !self.allow_basic_over_http
    }

    /// Whether some enabled scheme can authenticate somebody at all: Basic and NTLM (also under Negotiate)
    /// only the principals file's users, Kerberos also principals the file does not list (unless refused),
    /// client certificates whoever the CAs vouch for.
    fn can_authenticate(&self) -> bool {
        self.schemes.iter().any(|scheme| match scheme {
            AuthScheme::Basic => self.users && !self.basic_refused(),
            AuthScheme::Ntlm => self.users,
            AuthScheme::Negotiate => {
                self.users || (cfg!(feature = "negotiate") && !self.refuse_unknown_principals)
            }
            AuthScheme::ClientCertificate => self.https && self.client_certificates,
            _ => false,
        })
    }

    /// What would let the enabled schemes authenticate somebody.
    fn what_authenticates(&self) -> Vec<&'static str> {
        let mut fixes = Vec::new();
        let password = [AuthScheme::Basic, AuthScheme::Ntlm, AuthScheme::Negotiate];
        if !self.users && self.schemes.iter().any(|s| password.contains(s)) {
            fixes.push("add --users FILE (see bcs user add)");
        }
        if self.users && self.basic_refused() {
            fixes.push("add --allow-basic-over-http, or use an https --url");
        }
        if self.schemes.contains(&AuthScheme::ClientCertificate) && !self.client_certificates {
            fixes.push("add --client-ca FILE and --client-cert optional, with an https --url");
        }
        fixes
    }

    /// Checks the rule against representative tokens: the anonymous caller's (WD, NU, AN), and when some
    /// scheme can authenticate, an authenticated user's (WD, NU, AU) alone and with each SID the rule
    /// names, as a user or a group. It cannot know which SIDs the principals file gives, so it warns only
    /// when no caller of any kind could be granted read.
    fn nobody_granted(&self) -> Option<String> {
        let rule = match self.sddl {
            Some(sddl) => sddl,
            None if !self.schemes.is_empty() => AUTHENTICATED_USERS,
            None => return None,
        };
        // A rule that does not parse is refused, with its reason, when the URLs are added.
        let sd = SecurityDescriptor::parse(rule, None).ok()?;
        let grants = |token: &[Sid]| sd.access_check(token, AccessMask::FILE_READ_DATA).allowed;
        let anonymous = [Sid::everyone(), Sid::network(), Sid::anonymous()];
        if grants(&anonymous) {
            return None;
        }
        let authenticated = self.can_authenticate();
        if authenticated {
            let base = [Sid::everyone(), Sid::network(), Sid::authenticated_users()];
            let named = sd.dacl.iter().flat_map(|acl| &acl.aces);
            let named = named.filter(|ace| ace.kind == AceType::Allow);
            if grants(&base)
                || named
                    .map(|ace| [&base[..], std::slice::from_ref(&ace.sid)].concat())
                    .any(|t| grants(&t))
            {
                return None;
            }
        }
        let what = match self.sddl {
            Some(sddl) => format!("--sddl {sddl:?}"),
            None => format!("the rule of a group with --auth ({AUTHENTICATED_USERS})"),
        };
        Some(if authenticated {
            format!(
                "{what} grants read to no caller, anonymous (WD, NU, AN) or authenticated (AU, a user \
                 or a group); every download will be refused; allow GR to AU, a user's or a group's SID"
            )
        } else if self.schemes.is_empty() {
            format!(
                "{what} grants read to no anonymous caller (WD, NU, AN), and without --auth every \
                 caller is anonymous; every download will be refused; add --auth (with --users), or \
                 allow GR to WD"
            )
        } else {
            format!(
                "{what} grants read to no anonymous caller (WD, NU, AN), and no --auth scheme here can \
                 authenticate anyone; every download will be refused; {}",
                self.what_authenticates().join(", or ")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access<'a>(sddl: Option<&'a str>, schemes: &'a [AuthScheme], users: bool) -> Access<'a> {
        Access {
            sddl,
            schemes,
            https: true,
            allow_basic_over_http: false,
            users,
            client_certificates: false,
            refuse_unknown_principals: false,
        }
    }

    #[test]
    fn rules_someone_can_pass_give_no_warning() {
        let ntlm = [AuthScheme::Ntlm];
        for (sddl, schemes, users) in [
            (None, &[][..], false),
            (Some("D:(A;;GR;;;WD)"), &[][..], false),
            (Some("D:(A;;GR;;;AN)"), &[][..], false),
            (Some("D:NO_ACCESS_CONTROL"), &[][..], false),
            (Some("D:(A;;GR;;;AU)"), &ntlm[..], true),
            (None, &ntlm[..], true),
            (Some("D:(A;;GA;;;BA)"), &ntlm[..], true),
            (
                Some("D:(D;;GA;;;S-1-5-21-1-2-3-1002)(A;;GR;;;AU)"),
                &ntlm[..],
                true,
            ),
            (Some("D:(A;;GR;;;S-1-5-21-1-2-3-1100)"), &ntlm[..], true),
        ] {
            let w = access(sddl, schemes, users).warnings();
            assert!(w.is_empty(), "{sddl:?} {schemes:?}: {w:?}");
        }
    }

    #[test]
    fn an_authenticated_users_rule_without_a_scheme_says_add_auth() {
        let w = access(Some("D:(A;;GR;;;AU)"), &[], false).warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("without --auth") && w[0].contains("add --auth"),
            "{w:?}"
        );
    }

    #[test]
    fn schemes_that_know_nobody_say_add_users() {
        let w = access(None, &[AuthScheme::Ntlm], false).warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("add --users"), "{w:?}");
        // Client certificates need no principals file.
        let mut certs = access(None, &[AuthScheme::ClientCertificate], false);
        certs.client_certificates = true;
        assert!(certs.warnings().is_empty());
    }

    #[test]
    fn rules_that_grant_nobody_warn_whatever_the_schemes() {
        for sddl in ["D:", "D:(D;;GA;;;WD)(A;;GA;;;WD)", "D:(A;;GW;;;AU)"] {
            let w = access(Some(sddl), &[AuthScheme::Basic], true).warnings();
            assert_eq!(w.len(), 1, "{sddl}: {w:?}");
            assert!(w[0].contains("grants read to no caller"), "{w:?}");
        }
    }

    #[test]
    fn basic_over_http_warns_and_says_what_to_add() {
        let mut a = access(Some("D:(A;;GR;;;AU)"), &[AuthScheme::Basic], true);
        a.https = false;
        let w = a.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("add --allow-basic-over-http"), "{w:?}");
        assert!(w[1].contains("add --allow-basic-over-http"), "{w:?}");
        a.allow_basic_over_http = true;
        assert!(a.warnings().is_empty());
    }
}
