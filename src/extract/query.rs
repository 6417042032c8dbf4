use std::{borrow::Cow, sync::Arc};

use http::{Uri, request::Parts, uri::PathAndQuery};

use super::{ExtractError, syntax::is_b64token};
use crate::ConfigError;

/// A query parameter (RFC 6750 §2.3), off unless you add it.
///
/// The value is `application/x-www-form-urlencoded` (so a `+` in a token
/// must be sent as `%2B`) and must decode to a `b64token`. The parameter
/// given twice is ambiguous.
///
/// # Security
///
/// URLs end up in browser history, proxy logs and `Referer` headers, which is
/// why RFC 6750 discourages this source; use it only where a client cannot
/// set a header (an `EventSource`, say). The parameter is removed from the
/// URI before the request reaches the inner service, so your handlers and
/// any access log inside the layer never see it. Layers *outside* the
/// `AuthLayer` still do: put request logging inside it.
///
/// # Example
///
/// ```
/// use http::Request;
/// use portcullis::extract::{Extractor, Query};
///
/// let extractor = Extractor::new(Query::new("access_token"));
/// let (parts, ()) = Request::builder()
///     .uri("/events?access_token=mF_9.B5f-4.1JqM&since=7")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert_eq!(extractor.extract(&parts).unwrap().unwrap().secret(), "mF_9.B5f-4.1JqM");
/// ```
#[derive(Debug, Clone)]
pub struct Query {
    name: Arc<str>,
}

impl Query {
    /// The query parameter `name` (RFC 6750 uses `access_token`).
    ///
    /// # Panics
    ///
    /// When `name` is empty or holds a byte that must be percent-encoded in a
    /// query; use [`Query::try_new`] for names that are not literals.
    pub fn new(name: &str) -> Self {
        match Self::try_new(name) {
            Ok(query) => query,
            Err(error) => panic!("{error}"),
        }
    }

    /// The query parameter `name`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidName`] when `name` is empty or holds a byte that
    /// would have to be percent-encoded.
    pub fn try_new(name: &str) -> Result<Self, ConfigError> {
        let plain = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if name.is_empty() || !name.as_bytes().iter().all(plain) {
            return Err(ConfigError::InvalidName {
                what: "query parameter",
                name: name.to_owned(),
                reason: "use letters, digits, '-', '.', '_' and '~'",
            });
        }
        Ok(Self { name: name.into() })
    }

    /// The parameter name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn name_arc(&self) -> Arc<str> {
        self.name.clone()
    }

    fn is_ours(&self, key: &str) -> bool {
        key == &*self.name
            || ((key.contains('%') || key.contains('+'))
                && form_decode(key).is_some_and(|k| k == self.name.as_bytes()))
    }

    pub(super) fn find<'a>(
        &self,
        uri: &'a Uri,
        max_len: usize,
    ) -> Result<Option<Cow<'a, str>>, ExtractError> {
        let Some(query) = uri.query() else {
            return Ok(None);
        };
        let mut found = None;
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !self.is_ours(key) {
                continue;
            }
            if found.is_some() {
                return Err(ExtractError::Ambiguous);
            }
            // Each decoded byte takes at most three encoded ones.
            if value.len() > max_len.saturating_mul(3) {
                return Err(ExtractError::TooLarge { max: max_len });
            }
            let token: Cow<'a, [u8]> = if value.contains('%') || value.contains('+') {
                Cow::Owned(form_decode(value).ok_or(ExtractError::Malformed(
                    "the query token has an invalid percent-escape",
                ))?)
            } else {
                Cow::Borrowed(value.as_bytes())
            };
            if token.len() > max_len {
                return Err(ExtractError::TooLarge { max: max_len });
            }
            if !is_b64token(&token) {
                return Err(ExtractError::Malformed("the query token is not a b64token"));
            }
            found = Some(match token {
                Cow::Borrowed(_) => Cow::Borrowed(value),
                Cow::Owned(bytes) => Cow::Owned(
                    String::from_utf8(bytes).map_err(|_| ExtractError::Malformed("not ascii"))?,
                ),
            });
        }
        Ok(found)
    }

    /// Removes every occurrence of the parameter from the URI.
    pub(super) fn strip(&self, request: &mut Parts) {
        let Some(query) = request.uri.query() else {
            return;
        };
        if !query
            .split('&')
            .any(|pair| self.is_ours(pair.split('=').next().unwrap_or("")))
        {
            return;
        }
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !self.is_ours(pair.split('=').next().unwrap_or("")))
            .collect();
        let mut path_and_query = request.uri.path().to_owned();
        if !kept.is_empty() {
            path_and_query.push('?');
            path_and_query.push_str(&kept.join("&"));
        }
        let mut parts = std::mem::take(&mut request.uri).into_parts();
        // A subset of a valid query is valid; if it were not, dropping the
        // whole query is the safe side (the token must not go on).
        parts.path_and_query = Some(
            PathAndQuery::try_from(path_and_query)
                .unwrap_or_else(|_| PathAndQuery::from_static("/")),
        );
        request.uri = Uri::from_parts(parts).unwrap_or_default();
    }
}

/// Decodes `application/x-www-form-urlencoded` bytes: `+` is a space,
/// `%XX` a byte. `None` on a broken escape.
fn form_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |b: &u8| char::from(*b).to_digit(16);
                let high = bytes.get(i + 1).and_then(hex)?;
                let low = bytes.get(i + 2).and_then(hex)?;
                // Two hex digits are at most 0xFF.
                out.push((high * 16 + low) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_handles_escapes_and_rejects_broken_ones() {
        assert_eq!(form_decode("a%2Bb+c").unwrap(), b"a+b c");
        assert!(form_decode("a%2").is_none());
        assert!(form_decode("a%zz").is_none());
        assert!(form_decode("%+1").is_none());
    }

    // P5
    #[test]
    fn strip_removes_every_occurrence_and_keeps_the_rest() {
        let q = Query::new("access_token");
        let strip = |uri: &str| {
            let (mut parts, ()) = http::Request::builder()
                .uri(uri)
                .body(())
                .unwrap()
                .into_parts();
            q.strip(&mut parts);
            parts.uri.to_string()
        };
        assert_eq!(strip("/a?access_token=x&b=1"), "/a?b=1");
        assert_eq!(strip("/a?b=1&access_token=x"), "/a?b=1");
        assert_eq!(strip("/a?access_token=x"), "/a");
        assert_eq!(strip("/a?access%5Ftoken=x&c"), "/a?c");
        assert_eq!(strip("/a?b=1"), "/a?b=1");
        assert_eq!(strip("http://h/a?access_token=x"), "http://h/a");
    }
}
