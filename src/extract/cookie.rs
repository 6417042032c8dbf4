use std::sync::Arc;

use http::{HeaderMap, header::COOKIE};

use super::{
    ExtractError, InHeader,
    syntax::{is_token, range_in, trim_ows},
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
    path: Arc<str>,
    domain: Option<Arc<str>>,
    secure: bool,
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
        // Browsers refuse these prefixes without `Secure`.
        let secure = name.starts_with("__Host-") || name.starts_with("__Secure-");
        Ok(Self {
            name: name.into(),
            path: "/".into(),
            domain: None,
            secure,
        })
    }

    /// The `Path` the cookie is set with (default `/`), for
    /// [`set_cookie`](Self::set_cookie) and the removal of a stale cookie.
    #[must_use]
    pub fn path(mut self, path: &str) -> Self {
        self.path = path.into();
        self
    }

    /// The `Domain` the cookie is set with (default none: this host only).
    #[must_use]
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// Whether the cookie is set `Secure` (default: only for `__Host-` and
    /// `__Secure-` names, which require it).
    #[must_use]
    pub fn secure(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// A `Set-Cookie` value that removes the cookie: the same name, path,
    /// domain and attributes, an empty value and `Max-Age=0`.
    ///
    /// `AuthLayer` sends it with the rejection of a credential from this
    /// cookie that the validator refused (a stale session after a sign-out
    /// elsewhere), unless told not to with
    /// [`AuthLayer::clear_stale_cookies`](crate::AuthLayer::clear_stale_cookies).
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::extract::Cookie;
    ///
    /// let removal = Cookie::new("__Host-session").removal();
    /// assert_eq!(
    ///     removal.to_str().unwrap(),
    ///     "__Host-session=; HttpOnly; SameSite=Lax; Secure; Path=/; Max-Age=0"
    /// );
    /// ```
    pub fn removal(&self) -> http::HeaderValue {
        let cookie = self
            .set_cookie("")
            .max_age(cookie::time::Duration::ZERO)
            .build();
        http::HeaderValue::try_from(cookie.to_string())
            .expect("a cookie of a token name, an empty value and checked attributes is a valid field value")
    }

    /// The cookie name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    /// A `Set-Cookie` builder for this cookie with safe defaults: `HttpOnly`,
    /// `SameSite=Lax`, and the source's [`path`](Self::path) (default `/`),
    /// [`domain`](Self::domain) and [`secure`](Self::secure) settings.
    ///
    /// Set [`secure`](Self::secure) when serving over HTTPS (it is on
    /// already for `__Host-` and `__Secure-` names).
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
        let mut builder = cookie::Cookie::build((self.name.to_string(), value.into()))
            .http_only(true)
            .same_site(cookie::SameSite::Lax)
            .path(self.path.to_string());
        if self.secure {
            builder = builder.secure(true);
        }
        if let Some(domain) = &self.domain {
            builder = builder.domain(domain.to_string());
        }
        builder
    }

    pub(super) fn find<'a>(
        &self,
        headers: &'a HeaderMap,
        max_len: usize,
    ) -> Result<InHeader<'a>, ExtractError> {
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
                found = parse_value(trim_ows(&pair[eq + 1..]), max_len)?
                    .map(|value| (field, range_in(field.as_bytes(), value)));
            }
        }
        Ok(found)
    }
}

fn parse_value(raw: &[u8], max_len: usize) -> Result<Option<&[u8]>, ExtractError> {
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
    Ok(Some(value))
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
        assert_eq!(parse_value(b"\"abc\"", 100), Ok(Some(&b"abc"[..])));
        assert_eq!(parse_value(b"abc", 100), Ok(Some(&b"abc"[..])));
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
