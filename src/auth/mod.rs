//! Authentication: who a request comes from, as an `Identity` whose token of SIDs the SDDL access check
//! reads (as Windows does).
//!
//! Every token holds Everyone (`WD`) and Network (`NU`, all callers come over the network), and either
//! Authenticated Users (`AU`) with the identity's own SIDs, or Anonymous (`AN`).

mod authenticator;
// The parsers and the NTLM acceptor are public only for the fuzz targets (fuzz/): not part of the API.
#[doc(hidden)]
pub mod basic;
mod caller;
mod checks;
mod handshake;
mod limiter;
#[doc(hidden)]
pub mod ntlm;
mod password;
mod principals;
mod refusal;
#[doc(hidden)]
pub mod spnego;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

pub(crate) use authenticator::Authenticator;
pub(crate) use caller::{Caller, ConnectionAuth, Granted};
pub(crate) use checks::{PasswordChecks, TooManyChecks};
pub(crate) use limiter::{FailureLimiter, Source};
pub use password::{HashError, NtHash, Password, PasswordHash};
pub use principals::{Group, Principals, PrincipalsError, User};
pub(crate) use refusal::Refusal;

use crate::authz::Sid;
use crate::tls::ClientIdentity;

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The principals file cannot be read.
    #[error("cannot read the principals file {path:?}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The principals file cannot be written.
    #[error("cannot write the principals file {path:?}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The principals file is not valid.
    #[error("invalid principals file {path:?}")]
    Principals {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: PrincipalsError,
    },
    /// A password could not be hashed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// No SID could be made under the machine SID.
    #[error("cannot make a SID under the machine SID")]
    Sid,
    /// The scheme is not available in this build.
    #[error("the {0} authentication scheme is not available yet")]
    Unsupported(AuthScheme),
}

/// An authentication scheme a group may enable (the original's Set/GetAuthentication, extended).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthScheme {
    /// Negotiate (SPNEGO: Kerberos, NTLM as fallback).
    Negotiate,
    /// NTLM (NTLMv2 only).
    Ntlm,
    /// Basic, over TLS unless the group allows plain HTTP.
    Basic,
    /// TLS client certificates: a verified certificate is the caller's identity.
    ClientCertificate,
}

impl AuthScheme {
    /// Every scheme, in the order challenges are offered.
    pub const ALL: [AuthScheme; 4] = [
        AuthScheme::Negotiate,
        AuthScheme::Ntlm,
        AuthScheme::Basic,
        AuthScheme::ClientCertificate,
    ];

    fn bit(self) -> u8 {
        match self {
            AuthScheme::Negotiate => 1,
            AuthScheme::Ntlm => 2,
            AuthScheme::Basic => 4,
            AuthScheme::ClientCertificate => 8,
        }
    }
}

impl std::fmt::Display for AuthScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthScheme::Negotiate => "negotiate",
            AuthScheme::Ntlm => "ntlm",
            AuthScheme::Basic => "basic",
            AuthScheme::ClientCertificate => "client-cert",
        })
    }
}

/// A scheme name, or number, that names no scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected negotiate, ntlm, basic or client-cert")]
pub struct UnknownScheme(pub String);

impl std::str::FromStr for AuthScheme {
    type Err = UnknownScheme;

    fn from_str(s: &str) -> Result<Self, UnknownScheme> {
        match s.to_ascii_lowercase().as_str() {
            "negotiate" => Ok(AuthScheme::Negotiate),
            "ntlm" => Ok(AuthScheme::Ntlm),
            "basic" => Ok(AuthScheme::Basic),
            "client-cert" | "client-certificate" => Ok(AuthScheme::ClientCertificate),
            _ => Err(UnknownScheme(s.to_owned())),
        }
    }
}

impl AuthScheme {
    /// The scheme of the original's COM interface (ICompactServerUrlGroup::SetAuthentication): 1
    /// Negotiate, 2 NTLM, 3 client certificate (reserved there, ours here). Basic has no COM number.
    pub fn from_com(n: u32) -> Result<Self, UnknownScheme> {
        match n {
            1 => Ok(AuthScheme::Negotiate),
            2 => Ok(AuthScheme::Ntlm),
            3 => Ok(AuthScheme::ClientCertificate),
            _ => Err(UnknownScheme(n.to_string())),
        }
    }

    /// The scheme of the original's WMI provider (BitsCompactServerUrlGroup.SetAuthentication): 0
    /// Negotiate, 1 NTLM.
    pub fn from_wmi(n: u32) -> Result<Self, UnknownScheme> {
        match n {
            0 => Ok(AuthScheme::Negotiate),
            1 => Ok(AuthScheme::Ntlm),
            _ => Err(UnknownScheme(n.to_string())),
        }
    }

    /// This scheme's COM number, if it has one.
    pub fn com(self) -> Option<u32> {
        match self {
            AuthScheme::Negotiate => Some(1),
            AuthScheme::Ntlm => Some(2),
            AuthScheme::ClientCertificate => Some(3),
            AuthScheme::Basic => None,
        }
    }

    /// This scheme's WMI number, if it has one.
    pub fn wmi(self) -> Option<u32> {
        match self {
            AuthScheme::Negotiate => Some(0),
            AuthScheme::Ntlm => Some(1),
            _ => None,
        }
    }
}

/// A group's authentication settings.
#[derive(Debug, Default)]
pub(crate) struct GroupAuth {
    schemes: AtomicU8,
    basic_over_http: AtomicBool,
}

impl GroupAuth {
    pub(crate) fn set(&self, scheme: AuthScheme, enable: bool) -> Result<(), AuthError> {
        if enable {
            self.schemes.fetch_or(scheme.bit(), Ordering::AcqRel);
        } else {
            self.schemes.fetch_and(!scheme.bit(), Ordering::AcqRel);
        }
        Ok(())
    }

    pub(crate) fn any_enabled(&self) -> bool {
        self.schemes.load(Ordering::Acquire) != 0
    }

    pub(crate) fn is_enabled(&self, scheme: AuthScheme) -> bool {
        self.schemes.load(Ordering::Acquire) & scheme.bit() != 0
    }

    pub(crate) fn set_basic_over_http(&self, allow: bool) {
        self.basic_over_http.store(allow, Ordering::Release);
    }

    pub(crate) fn basic_over_http(&self) -> bool {
        self.basic_over_http.load(Ordering::Acquire)
    }

    /// Whether a scheme that authenticates the connection itself (NTLM, Negotiate) is enabled: such groups
    /// need HTTP/1.1 keep-alive, never HTTP/2.
    pub(crate) fn is_connection_bound(&self) -> bool {
        self.is_enabled(AuthScheme::Ntlm) || self.is_enabled(AuthScheme::Negotiate)
    }

    /// The WWW-Authenticate challenges for a 401 on a connection that is (or is not) TLS.
    pub(crate) fn challenges(&self, secure: bool, realm: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.is_enabled(AuthScheme::Negotiate) {
            out.push("Negotiate".to_owned());
        }
        if self.is_enabled(AuthScheme::Ntlm) {
            out.push("NTLM".to_owned());
        }
        if self.is_enabled(AuthScheme::Basic) && (secure || self.basic_over_http()) {
            out.push(format!("Basic realm=\"{realm}\", charset=\"UTF-8\""));
        }
        out
    }
}

/// The mechanism that established an identity (a certificate, a password, a handshake, or none); what a
/// group offers callers is an [`AuthScheme`], and Negotiate, for one, establishes Kerberos or NTLM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mechanism {
    /// No credentials.
    Anonymous,
    /// A TLS client certificate the port's CAs verified.
    ClientCertificate,
    /// A Basic user name and password.
    Basic,
    /// NTLMv2 on this connection.
    Ntlm,
    /// Kerberos through Negotiate on this connection.
    Kerberos,
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    name: String,
    scheme: Mechanism,
    user: Option<Sid>,
    groups: Vec<Sid>,
}

impl Identity {
    /// The anonymous caller.
    pub fn anonymous() -> Self {
        Identity {
            name: "anonymous".to_owned(),
            scheme: Mechanism::Anonymous,
            user: None,
            groups: Vec::new(),
        }
    }

    /// A caller known by a verified client certificate: the principals file's user it names (by UPN,
    /// e-mail, CN or thumbprint), else an Authenticated User with no SID of its own, named by the
    /// certificate (UPN, e-mail or CN).
    pub fn from_client_certificate(cert: &ClientIdentity, principals: Option<&Principals>) -> Self {
        let names: Vec<&str> = [
            cert.upn.as_deref(),
            cert.email.as_deref(),
            cert.common_name.as_deref(),
        ]
        .into_iter()
        .flatten()
        .chain([cert.sha1_thumbprint.as_str()])
        .collect();
        if let Some((name, user)) = principals.and_then(|p| p.user_by_certificate(&names)) {
            let groups = principals.map(|p| p.group_sids(user)).unwrap_or_default();
            return Identity::user(name, Mechanism::ClientCertificate, user.sid.clone(), groups);
        }
        Identity {
            name: cert.name().to_owned(),
            scheme: Mechanism::ClientCertificate,
            user: None,
            groups: Vec::new(),
        }
    }

    /// A caller the principals file does not know, authenticated by `scheme` under `principal` (for Kerberos
    /// the realm-qualified `user@REALM`): an Authenticated User with a SID derived from the name.
    ///
    /// The scheme: `S-1-5-21-0-0-0-a-b-c-d`, where `a`..`d` are the first 128 bits of SHA-256 of the name's
    /// UTF-8 bytes exactly as given (Kerberos principal names are case-sensitive), as four big-endian 32-bit
    /// sub-authorities. The `21-0-0-0` domain is no machine's or domain's, so a derived SID never equals a
    /// real account's. SECURITY: two principals sharing a SID would pass each other's SDDL rules; with 128
    /// bits of a cryptographic hash, a collision cannot be found or stumbled upon.
    pub fn derived(principal: &str, scheme: Mechanism) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, principal.as_bytes());
        let word = |i: usize| {
            let b = &digest.as_ref()[i * 4..i * 4 + 4];
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        };
        let sid = Sid::new(5, &[21, 0, 0, 0, word(0), word(1), word(2), word(3)])
            .unwrap_or_else(Sid::authenticated_users);
        Identity::user(principal, scheme, sid, Vec::new())
    }

    /// A user of the principals file.
    pub fn user(name: &str, scheme: Mechanism, sid: Sid, groups: Vec<Sid>) -> Self {
        Identity {
            name: name.to_owned(),
            scheme,
            user: Some(sid),
            groups,
        }
    }

    /// What a connection proved earlier, as the principals say now: a user that was removed is anonymous
    /// again (NTLM users all come from the principals), and a user's groups are those it has now.
    ///
    /// SECURITY: NTLM and Kerberos authenticate a connection once; without this, a user removed or taken
    /// out of a group kept its old rights for as long as it kept its connection alive.
    pub(crate) fn refreshed(self, principals: Option<&Principals>) -> Identity {
        let current = principals.and_then(|p| {
            let (name, user) = p.user(&self.name)?;
            Some((name, user, p.group_sids(user)))
        });
        match (current, self.scheme) {
            (Some((name, user, groups)), Mechanism::Ntlm | Mechanism::Kerberos) => {
                Identity::user(name, self.scheme, user.sid.clone(), groups)
            }
            (None, Mechanism::Ntlm) => Identity::anonymous(),
            _ => self,
        }
    }

    /// The name shown in logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's own SID, when the identity has one (a principals user, a Windows or Kerberos account).
    pub fn user_sid(&self) -> Option<&Sid> {
        self.user.as_ref()
    }

    /// How it was established.
    pub fn mechanism(&self) -> Mechanism {
        self.scheme
    }

    /// Whether the caller proved who they are.
    pub fn is_authenticated(&self) -> bool {
        self.scheme != Mechanism::Anonymous
    }

    /// The SIDs the access check matches ACEs against.
    pub fn token(&self) -> Vec<Sid> {
        let mut token: Vec<Sid> = self.user.iter().chain(&self.groups).cloned().collect();
        token.push(Sid::everyone());
        token.push(Sid::network());
        token.push(if self.is_authenticated() {
            Sid::authenticated_users()
        } else {
            Sid::anonymous()
        });
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens() {
        let anonymous = Identity::anonymous().token();
        assert!(anonymous.contains(&Sid::anonymous()) && anonymous.contains(&Sid::everyone()));
        assert!(!anonymous.contains(&Sid::authenticated_users()));
        let cert = ClientIdentity {
            common_name: Some("Alice".into()),
            email: None,
            upn: Some("alice@corp.example".into()),
            sha1_thumbprint: "00".into(),
        };
        let alice = Identity::from_client_certificate(&cert, None);
        assert_eq!(alice.name(), "alice@corp.example");
        let token = alice.token();
        assert!(token.contains(&Sid::authenticated_users()) && token.contains(&Sid::network()));
        assert!(!token.contains(&Sid::anonymous()));
    }

    #[test]
    fn derived_sids_are_stable_distinct_and_apart_from_real_accounts() {
        let sid = |name: &str| Identity::derived(name, Mechanism::Kerberos).token()[0].clone();
        assert_eq!(sid("alice@EXAMPLE.COM"), sid("alice@EXAMPLE.COM"));
        // Known answer: `printf alice@EXAMPLE.COM | sha256sum` is 5ed9ea00 7ebae07e 178b7455 56d508af ...
        assert_eq!(
            sid("alice@EXAMPLE.COM").to_string(),
            "S-1-5-21-0-0-0-1591339520-2126176382-395015253-1456801967"
        );
        // Names that differ in realm or case are different principals, and get different SIDs.
        assert_ne!(sid("alice@EXAMPLE.COM"), sid("alice@OTHER.COM"));
        assert_ne!(sid("alice@EXAMPLE.COM"), sid("Alice@EXAMPLE.COM"));
        // The old 31-bit FNV scheme collided within a few tens of thousands of names; 128 bits do not.
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000 {
            assert!(
                seen.insert(sid(&format!("user{i}@EXAMPLE.COM"))),
                "collision at {i}"
            );
        }
    }
}
