//! Authentication: who a request comes from, as an `Identity` whose token of SIDs the SDDL access check
//! reads (SPEC §4).
//!
//! Every token holds Everyone (`WD`) and Network (`NU`, all callers come over the network), and either
//! Authenticated Users (`AU`) with the identity's own SIDs, or Anonymous (`AN`).

use std::sync::Arc;

use crate::authz::Sid;
use crate::tls::ClientIdentity;

/// How an identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// No credentials.
    Anonymous,
    /// A TLS client certificate the port's CAs verified.
    ClientCertificate,
}

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    name: String,
    scheme: Scheme,
    user: Option<Sid>,
    groups: Vec<Sid>,
}

impl Identity {
    /// The anonymous caller.
    pub fn anonymous() -> Self {
        Identity {
            name: "anonymous".to_owned(),
            scheme: Scheme::Anonymous,
            user: None,
            groups: Vec::new(),
        }
    }

    /// A caller known by a verified client certificate (UPN, e-mail or CN as its name). Until a principals
    /// file maps it to a user SID, it is an Authenticated User with no SID of its own.
    pub fn from_client_certificate(cert: &ClientIdentity) -> Self {
        Identity {
            name: cert.name().to_owned(),
            scheme: Scheme::ClientCertificate,
            user: None,
            groups: Vec::new(),
        }
    }

    /// The name shown in logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it was established.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Whether the caller proved who they are.
    pub fn is_authenticated(&self) -> bool {
        self.scheme != Scheme::Anonymous
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

/// The identity of a request on a connection: its client certificate's, else anonymous.
pub(crate) fn identify(client: Option<&Arc<ClientIdentity>>) -> Identity {
    match client {
        Some(cert) => Identity::from_client_certificate(cert),
        None => Identity::anonymous(),
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
        let alice = Identity::from_client_certificate(&cert);
        assert_eq!(alice.name(), "alice@corp.example");
        let token = alice.token();
        assert!(token.contains(&Sid::authenticated_users()) && token.contains(&Sid::network()));
        assert!(!token.contains(&Sid::anonymous()));
    }
}
