use std::sync::Arc;

use http::{HeaderMap, header::COOKIE};

use super::{
    ExtractError,
    syntax::{is_token, trim_ows},
};
use crate::ConfigError;

/// A named cookie (RFC 6265bis), feature `cookie`.
///
/// - Every `Cookie` field line is read (HTTP/2 sends one per cookie).
/// - Names match case-sensitively, so `__Host-session` works as written.
/// - The credential cookie present twice is ambiguous (400), even with the
///   same value: a second one is how cookie-tossing attacks look.
/// - A value in one matched pair of double quotes is unquoted; an unbalanced
///   quote, or a byte outside `cookie-octet`, is malformed. Other cookies are
///   not inspected.
/// - An empty value counts as no cookie (browsers send `name=` after a
///   cookie was cleared).
///
/// # Example
///
/// ```
/// use http::{Request, header::COOKIE};
/// use portcullis::extract::{Cookie, Extractor};
///
/// let extractor = Extractor::new(Cookie::new("__Host-session"));
/// let (parts, ()) = Request::builder()
///     .header(COOKIE, "theme=dark; __Host-session=\"abc123\"")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert_eq!(extractor.extract(&parts).unwrap().unwrap().secret(), "abc123");
/// ```
#[derive(Debug, Clone)]
pub struct Cookie {
    name: Arc<str>,
}

impl Cookie {
    /// The cookie `name`.
    ///
    /// # Panics
    ///
    /// When `name` is not a valid cookie name (an RFC 9110 token); use
    /// [`Cookie::try_new`] for names that are not literals.
    pub fn new(name: &str) -> Self {
        match Self::try_new(name) {
            Ok(cookie) => cookie,
            Err(error) => panic!("{error}"),
        }
    }

    /// The cookie `name`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidName`] when `name` is not an RFC 9110 token.
    pub fn try_new(name: &str) -> Result<Self, ConfigError> {
        if !is_token(name.as_bytes()) {
            return Err(ConfigError::InvalidName {
                what: "cookie name",
                name: name.to_owned(),
                reason: "a cookie name is a non-empty token (letters, digits and !#$%&'*+-.^_`|~)",
            });
        }
        Ok(Self { name: name.into() })
    }

    /// The cookie name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    /// A `Set-Cookie` builder for this cookie with safe defaults: `HttpOnly`,
    /// `SameSite=Lax`, `Path=/`.
    ///
    /// Add `.secure(true)` when serving over HTTPS (required for `__Host-`
    /// and `__Secure-` names).
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::extract::Cookie;
    ///
    /// let set = Cookie::new("session").set_cookie("abc123").build();
    /// assert_eq!(set.to_string(), "session=abc123; HttpOnly; SameSite=Lax; Path=/");
    /// ```
    pub fn set_cookie(&self, value: impl Into<String>) -> cookie::CookieBuilder<'static> {
        cookie::Cookie::build((self.name.to_string(), value.into()))
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .path("/")
    }

    pub(super) fn find<'a>(
        &self,
        headers: &'a HeaderMap,
        max_len: usize,
    ) -> Result<Option<&'a str>, ExtractError> {
        let mut found = None;
        let mut seen = false;
        for field in headers.get_all(COOKIE) {
            for pair in field.as_bytes().split(|&b| b == b';') {
                let pair = trim_ows(pair);
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                if trim_ows(&pair[..eq]) != self.name.as_bytes() {
                    continue;
                }
                if seen {
                    return Err(ExtractError::Ambiguous);
                }
                seen = true;
                found = parse_value(trim_ows(&pair[eq + 1..]), max_len)?;
            }
        }
        Ok(found)
    }
}

fn parse_value(raw: &[u8], max_len: usize) -> Result<Option<&str>, ExtractError> {
    let value = match raw {
        [b'"', inner @ .., b'"'] => inner,
        _ => raw,
    };
    if value.len() > max_len {
        return Err(ExtractError::TooLarge { max: max_len });
    }
    if value.is_empty() {
        return Ok(None);
    }
    if !value.iter().all(|&b| is_cookie_octet(b)) {
        return Err(ExtractError::Malformed(
            "the credential cookie holds a byte outside cookie-octet or an unbalanced quote",
        ));
    }
    Ok(std::str::from_utf8(value).ok())
}

/// `cookie-octet = %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E`
fn is_cookie_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

#[cfg(test)]
mod tests {
    use super::*;

    // P8
    #[test]
    fn quoted_values_are_unquoted_and_unbalanced_quotes_are_malformed() {
        assert_eq!(parse_value(b"\"abc\"", 100), Ok(Some("abc")));
        assert_eq!(parse_value(b"abc", 100), Ok(Some("abc")));
        assert_eq!(parse_value(b"", 100), Ok(None));
        assert_eq!(parse_value(b"\"\"", 100), Ok(None));
        assert!(parse_value(b"\"abc", 100).is_err());
        assert!(parse_value(b"abc\"", 100).is_err());
        assert!(parse_value(b"\"", 100).is_err());
        assert!(parse_value(b"a\"b", 100).is_err());
        assert!(parse_value(b"a b", 100).is_err());
        assert!(parse_value(b"a\\b", 100).is_err());
        assert!(parse_value("caf\u{e9}".as_bytes(), 100).is_err());
    }

    #[test]
    fn invalid_names_are_config_errors() {
        assert!(Cookie::try_new("").is_err());
        assert!(Cookie::try_new("a b").is_err());
        assert!(Cookie::try_new("a=b").is_err());
        assert!(Cookie::try_new("__Host-session").is_ok());
    }
}
