//! A job's credentials (SetCredentials): a scheme, a user name and a password; or Negotiate, which
//! takes none (Kerberos tickets come from the caller's credential cache, `KRB5CCNAME`).
//!
//! SECURITY: the threat is a password at rest or in a log. The password is a [`Password`] (zeroized on
//! drop, redacted in `Debug`) and is never serialized: a job store keeps the scheme and the user name only,
//! so after a restart the job needs its credentials set again (until then a transfer that needs them ends
//! in ERROR with code `credentials_missing`). Basic sends the password in the clear, so it is only sent
//! over TLS unless explicitly allowed.

use serde::{Deserialize, Serialize};

use crate::auth::Password;

/// How the credentials are presented (BG_AUTH_SCHEME).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CredentialScheme {
    /// RFC 7617 Basic, sent with every request.
    Basic,
    /// NTLMv2 with a MIC, once per connection when the server asks.
    Ntlm,
    /// Negotiate (RFC 4559): Kerberos through SPNEGO from the default credential cache, once per
    /// connection when the server asks. Needs the `negotiate` feature.
    Negotiate,
}

/// A user name and password for one scheme.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The scheme.
    pub scheme: CredentialScheme,
    /// The user: `name`, or for NTLM `DOMAIN\name` or `name@domain`.
    pub user: String,
    /// In memory only.
    #[serde(skip)]
    password: Option<Password>,
    /// Whether Basic may travel over plain HTTP. Default is false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_basic_over_http: bool,
}

impl Credentials {
    /// Basic credentials (only sent over TLS unless [`Credentials::allow_basic_over_http`]).
    pub fn basic(user: impl Into<String>, password: Password) -> Credentials {
        Credentials::new(CredentialScheme::Basic, user, password)
    }

    /// NTLM credentials.
    pub fn ntlm(user: impl Into<String>, password: Password) -> Credentials {
        Credentials::new(CredentialScheme::Ntlm, user, password)
    }

    /// Negotiate (Kerberos) with the caller's default credential cache (`KRB5CCNAME`), like
    /// `curl --negotiate -u :`: no user name, no password. **Needs the `negotiate` feature** to be used. A build without the `negotiate` feature refuses
    /// these credentials (`JobError::InvalidSetting`, or ERROR `negotiate_unavailable` for a stored job).
    pub fn negotiate() -> Credentials {
        Credentials {
            scheme: CredentialScheme::Negotiate,
            user: String::new(),
            password: None,
            allow_basic_over_http: false,
        }
    }

    fn new(scheme: CredentialScheme, user: impl Into<String>, password: Password) -> Credentials {
        Credentials {
            scheme,
            user: user.into(),
            password: Some(password),
            allow_basic_over_http: false,
        }
    }

    /// Lets Basic credentials travel over plain HTTP. SECURITY: anyone on the path can then read them.
    pub fn allow_basic_over_http(mut self, allow: bool) -> Self {
        self.allow_basic_over_http = allow;
        self
    }

    /// Whether the password is here (false for credentials read back from a job store, and for
    /// Negotiate, which needs none).
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    pub(crate) fn password(&self) -> Option<&Password> {
        self.password.as_ref()
    }

    /// Gives credentials read back from a store their password again (the service's job store keeps it
    /// encrypted beside them).
    #[cfg(feature = "service")]
    pub(crate) fn set_password(&mut self, password: Password) {
        self.password = Some(password);
    }
}

/// Equal when scheme, user and flags are, and both have a password or both lack one; passwords themselves
/// are not compared (nothing needs to, and it would be a timing oracle).
impl PartialEq for Credentials {
    fn eq(&self, other: &Self) -> bool {
        self.scheme == other.scheme
            && self.user == other.user
            && self.allow_basic_over_http == other.allow_basic_over_http
            && self.has_password() == other.has_password()
    }
}

impl Eq for Credentials {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_neither_stored_nor_printed() {
        let c = Credentials::ntlm("CORP\\alice", Password::from("s3cret-pass"));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        assert!(!format!("{c:?}").contains("s3cret"));
        let back: Credentials = serde_json::from_str(&json).unwrap();
        assert_eq!((back.scheme, back.user.as_str()), (c.scheme, "CORP\\alice"));
        assert!(!back.has_password());
        assert_ne!(back, c);
    }
}
