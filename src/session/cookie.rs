//! The refresh cookie: `HttpOnly`, `Secure`, `SameSite=Strict`, its `Path`
//! limited to the endpoints that read it.

use std::time::Duration;

use http::{HeaderValue, request::Parts};

use crate::{
    ConfigError, Credential,
    extract::{Cookie, ExtractError, Extractor},
};

/// How the refresh token travels: one cookie, set and read here only.
#[derive(Debug, Clone)]
pub(crate) struct RefreshCookie {
    extractor: Extractor,
    cookie: Cookie,
}

impl RefreshCookie {
    /// The cookie `name` on `path` (`Secure` unless `secure` is false).
    pub(crate) fn new(name: &str, path: &str, secure: bool) -> Result<Self, ConfigError> {
        if !is_path(path) {
            return Err(ConfigError::InvalidName {
                what: "cookie path",
                name: path.to_owned(),
                reason: "a cookie path starts with '/' and holds no ';', space or control character",
            });
        }
        // Browsers drop a prefixed cookie that breaks its prefix's rules,
        // silently: refuse the configuration instead.
        let prefix_rule = if name.starts_with("__Host-") && (!secure || path != "/") {
            Some("a __Host- cookie must be Secure with Path=/")
        } else if name.starts_with("__Secure-") && !secure {
            Some("a __Secure- cookie must be Secure")
        } else {
            None
        };
        if let Some(reason) = prefix_rule {
            return Err(ConfigError::InvalidName {
                what: "cookie name",
                name: name.to_owned(),
                reason,
            });
        }
        let cookie = Cookie::try_new(name)?.path(path).secure(secure);
        Ok(Self {
            extractor: Extractor::new(cookie.clone()),
            cookie,
        })
    }

    /// A `Set-Cookie` value holding `token`, for `max_age`.
    pub(crate) fn set(&self, token: &str, max_age: Duration) -> HeaderValue {
        let max_age = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
        let cookie = self
            .cookie
            .set_cookie(token)
            .same_site(cookie::SameSite::Strict)
            .max_age(cookie::time::Duration::seconds(max_age))
            .build();
        HeaderValue::try_from(cookie.to_string()).expect(
            "a token name, a base64url value and checked attributes make a valid field value",
        )
    }

    /// A `Set-Cookie` value that removes the cookie.
    pub(crate) fn clear(&self) -> HeaderValue {
        let cookie = self
            .cookie
            .set_cookie("")
            .same_site(cookie::SameSite::Strict)
            .max_age(cookie::time::Duration::ZERO)
            .build();
        HeaderValue::try_from(cookie.to_string())
            .expect("a token name, an empty value and checked attributes make a valid field value")
    }

    /// The refresh token `request` carries, if any.
    pub(crate) fn read(&self, request: &Parts) -> Result<Option<Credential>, ExtractError> {
        self.extractor.extract(request)
    }
}

/// A path a `Set-Cookie` can carry: `/` and then no `;`, space or control
/// character.
fn is_path(path: &str) -> bool {
    path.starts_with('/') && path.bytes().all(|b| b.is_ascii_graphic() && b != b';')
}
