//! The `Authorization` header, sans-IO and total: which scheme, and Basic credentials (RFC 7617).
//!
//! SECURITY: the threat is a malformed or hostile header (bad base64, no colon, huge values, control
//! characters) crashing or confusing the server. Parsing never panics, bounds the input, and anything
//! malformed is an error the service answers with 400.

use base64::Engine as _;

use super::password::Password;

/// The most bytes of an Authorization header we look at (NTLM and Kerberos tokens included).
pub const MAX_AUTHORIZATION: usize = 16 * 1024;

/// A parsed Authorization header.
#[derive(Debug)]
#[non_exhaustive]
pub enum AuthorizationHeader {
    /// `Basic`: a user name and password.
    Basic {
        /// The user as sent (may be `DOMAIN\user` or `user@domain`).
        user: String,
        /// The password.
        password: Password,
    },
    /// A scheme with a token we handle elsewhere, or not at all (its name lowercased, and the token).
    Other {
        /// The scheme name, lowercase.
        scheme: String,
        /// The token after the scheme name.
        token: String,
    },
}

/// Why an Authorization header is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Longer than [`MAX_AUTHORIZATION`].
    #[error("the Authorization header is too long")]
    TooLong,
    /// Not visible ASCII.
    #[error("the Authorization header is not visible ASCII")]
    NotAscii,
    /// No scheme name.
    #[error("the Authorization header has no scheme")]
    NoScheme,
    /// Basic without valid base64.
    #[error("the Basic credentials are not valid base64")]
    Base64,
    /// Basic credentials without `user:password`, or not UTF-8.
    #[error("the Basic credentials are not user:password in UTF-8")]
    Form,
}

/// Parses an Authorization header value.
pub fn parse(value: &[u8]) -> Result<AuthorizationHeader, HeaderError> {
    if value.len() > MAX_AUTHORIZATION {
        return Err(HeaderError::TooLong);
    }
    if !value
        .iter()
        .all(|b| (0x20..0x7f).contains(b) || *b == b'\t')
    {
        return Err(HeaderError::NotAscii);
    }
    let text = std::str::from_utf8(value)
        .map_err(|_| HeaderError::NotAscii)?
        .trim();
    let (scheme, token) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    if scheme.is_empty() {
        return Err(HeaderError::NoScheme);
    }
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(AuthorizationHeader::Other {
            scheme: scheme.to_ascii_lowercase(),
            token: token.to_owned(),
        });
    }
    let decoded = zeroize::Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(token)
            .map_err(|_| HeaderError::Base64)?,
    );
    let text = std::str::from_utf8(&decoded).map_err(|_| HeaderError::Form)?;
    let (user, password) = text.split_once(':').ok_or(HeaderError::Form)?;
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err(HeaderError::Form);
    }
    Ok(AuthorizationHeader::Basic {
        user: user.to_owned(),
        password: Password::from(password),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(v: &str) -> Result<(String, String), HeaderError> {
        match parse(v.as_bytes())? {
            AuthorizationHeader::Basic { user, password } => {
                Ok((user, password.expose().to_owned()))
            }
            AuthorizationHeader::Other { scheme, .. } => panic!("{scheme}"),
        }
    }

    #[test]
    fn basic_credentials() {
        // RFC 7617 §2: "Aladdin:open sesame".
        assert_eq!(
            basic("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Ok(("Aladdin".into(), "open sesame".into()))
        );
        assert_eq!(basic("basic   YTpiOmM="), Ok(("a".into(), "b:c".into())));
        assert_eq!(basic("Basic YTo="), Ok(("a".into(), String::new())));
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert_eq!(basic("Basic !!!").unwrap_err(), HeaderError::Base64);
        assert_eq!(basic("Basic YWJj").unwrap_err(), HeaderError::Form); // "abc": no colon
        assert_eq!(basic("Basic OmI=").unwrap_err(), HeaderError::Form); // ":b": no user
        assert_eq!(basic("Basic /w==").unwrap_err(), HeaderError::Form); // 0xff: not UTF-8
        assert_eq!(basic("Basic").unwrap_err(), HeaderError::Form);
        assert!(matches!(parse(b""), Err(HeaderError::NoScheme)));
        assert!(matches!(parse(b"Basic \x01"), Err(HeaderError::NotAscii)));
        assert!(matches!(
            parse(&vec![b'a'; MAX_AUTHORIZATION + 1]),
            Err(HeaderError::TooLong)
        ));
        assert!(
            matches!(parse(b"NTLM TlRMTVNT"), Ok(AuthorizationHeader::Other { scheme, .. }) if scheme == "ntlm")
        );
    }
}
