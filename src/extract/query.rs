use std::{borrow::Cow, sync::Arc};

use http::{Uri, request::Parts, uri::PathAndQuery};
use zeroize::Zeroizing;

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
/// set a header (an `EventSource`, say).
///
/// The parameter is removed from the request before it reaches the inner
/// service, whether the credential is accepted or the request goes on
/// anonymous: from the URI and, with feature `axum`, from axum's
/// `OriginalUri`, which a `Router` records before any of its layers run and
/// which nested routers and logging middleware usually read. So handlers and
/// every layer *inside* the `AuthLayer` never see it.
///
/// A layer *outside* the `AuthLayer` sees the request before the token is
/// removed. Put access logging (tower-http's `TraceLayer`, say) inside it:
///
/// - on an axum `Router`, the layer added last runs first:
///   `.layer(TraceLayer::new_for_http()).layer(auth)`;
/// - on a `tower::ServiceBuilder`, the layer added first runs first:
///   `ServiceBuilder::new().layer(auth).layer(TraceLayer::new_for_http())`.
///
/// A logging layer inside the `AuthLayer` does not see the requests it
/// rejects; to log those too, log them outside with the path only
/// (`uri.path()`), never the whole URI.
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
                && form_decode(key).is_some_and(|k| *k == self.name.as_bytes()))
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
            // A decoded copy of the token is wiped when dropped, whatever
            // the outcome.
            let decoded = if value.contains('%') || value.contains('+') {
                Some(form_decode(value).ok_or(ExtractError::Malformed(
                    "the query token has an invalid percent-escape",
                ))?)
            } else {
                None
            };
            let token = decoded.as_deref().map_or(value.as_bytes(), Vec::as_slice);
            if token.len() > max_len {
                return Err(ExtractError::TooLarge { max: max_len });
            }
            if !is_b64token(token) {
                return Err(ExtractError::Malformed("the query token is not a b64token"));
            }
            found = Some(match decoded {
                None => Cow::Borrowed(value),
                // The extractor wipes the `String` once it is copied.
                Some(mut bytes) => Cow::Owned(
                    String::from_utf8(std::mem::take(&mut *bytes))
                        .map_err(|_| ExtractError::Malformed("not ascii"))?,
                ),
            });
        }
        Ok(found)
    }

    /// Removes every occurrence of the parameter from the request: from its
    /// URI and, with feature `axum`, from axum's `OriginalUri`, which axum's
    /// `Router` records before any `Router::layer` runs.
    pub(super) fn strip(&self, request: &mut Parts) {
        if let Some(uri) = self.stripped(&request.uri) {
            request.uri = uri;
        }
        #[cfg(feature = "axum")]
        if let Some(axum::extract::OriginalUri(original)) = request.extensions.get_mut()
            && let Some(uri) = self.stripped(original)
        {
            *original = uri;
        }
    }

    /// `uri` without the parameter, or `None` when it does not hold it.
    fn stripped(&self, uri: &Uri) -> Option<Uri> {
        let query = uri.query()?;
        if !query
            .split('&')
            .any(|pair| self.is_ours(pair.split('=').next().unwrap_or("")))
        {
            return None;
        }
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !self.is_ours(pair.split('=').next().unwrap_or("")))
            .collect();
        let mut path_and_query = uri.path().to_owned();
        if !kept.is_empty() {
            path_and_query.push('?');
            path_and_query.push_str(&kept.join("&"));
        }
        let mut parts = uri.clone().into_parts();
        // A subset of a valid query is valid; if it were not, dropping the
        // whole query is the safe side (the token must not go on).
        parts.path_and_query = Some(
            PathAndQuery::try_from(path_and_query)
                .unwrap_or_else(|_| PathAndQuery::from_static("/")),
        );
        Some(Uri::from_parts(parts).unwrap_or_default())
    }
}

/// Decodes `application/x-www-form-urlencoded` bytes: `+` is a space,
/// `%XX` a byte. `None` on a broken escape.
fn form_decode(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let bytes = s.as_bytes();
    // Never grows (each byte decodes from one or more), so no copy is left
    // behind by a reallocation.
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
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
        assert_eq!(*form_decode("a%2Bb+c").unwrap(), b"a+b c");
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

    // P5, L1
    #[cfg(feature = "axum")]
    #[test]
    fn strip_rewrites_axum_original_uri_too() {
        use axum::extract::OriginalUri;

        let q = Query::new("access_token");
        let (mut parts, ()) = http::Request::builder()
            .uri("/events?access_token=x&since=7")
            .extension(OriginalUri(
                "/api/events?since=7&access_token=x".parse().unwrap(),
            ))
            .body(())
            .unwrap()
            .into_parts();
        q.strip(&mut parts);
        assert_eq!(parts.uri, "/events?since=7");
        let OriginalUri(original) = parts.extensions.get::<OriginalUri>().unwrap();
        assert_eq!(original, "/api/events?since=7");
    }
}
