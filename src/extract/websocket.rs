use std::sync::Arc;

use http::{HeaderMap, HeaderValue, header::SEC_WEBSOCKET_PROTOCOL};

use super::{
    ExtractError, InHeader,
    syntax::{is_b64token, is_token, range_in, trim_ows},
};
use crate::ConfigError;

/// An entry of the `Sec-WebSocket-Protocol` header, off unless you add it.
///
/// Browsers cannot set `Authorization` on a WebSocket handshake, but they
/// can offer subprotocols: a client offers `["chat.v1", "bearer.<token>"]`
/// and this source takes the token from the entry that starts with the
/// prefix (`bearer.` by default). The token must be a `b64token` made of
/// `tchar`s (base64url without padding, or a JWT).
///
/// # Security
///
/// The token entry is removed from the header before the request reaches the
/// inner service, so the server only ever selects (and echoes back) a
/// non-secret protocol. Two token entries are ambiguous.
///
/// # Example
///
/// ```
/// use http::{Request, header::SEC_WEBSOCKET_PROTOCOL};
/// use portcullis::extract::{Extractor, WebSocketProtocol};
///
/// let extractor = Extractor::new(WebSocketProtocol::new());
/// let (parts, ()) = Request::builder()
///     .header(SEC_WEBSOCKET_PROTOCOL, "chat.v1, bearer.abc123")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert_eq!(extractor.extract(&parts).unwrap().unwrap().secret(), "abc123");
/// ```
#[derive(Debug, Clone)]
pub struct WebSocketProtocol {
    prefix: Arc<str>,
}

impl Default for WebSocketProtocol {
    fn default() -> Self {
        Self::new()
    }
}

impl WebSocketProtocol {
    /// Takes the token from the entry that starts with `bearer.`.
    pub fn new() -> Self {
        Self {
            prefix: "bearer.".into(),
        }
    }

    /// Takes the token from the entry that starts with `prefix`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidName`] when `prefix` is not a token.
    pub fn with_prefix(prefix: &str) -> Result<Self, ConfigError> {
        if !is_token(prefix.as_bytes()) {
            return Err(ConfigError::InvalidName {
                what: "websocket protocol prefix",
                name: prefix.to_owned(),
                reason: "a protocol prefix is a non-empty token",
            });
        }
        Ok(Self {
            prefix: prefix.into(),
        })
    }

    /// Every entry of every field line, with its field.
    fn entries(headers: &HeaderMap) -> impl Iterator<Item = (&HeaderValue, &[u8])> {
        headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .flat_map(|field| {
                field
                    .as_bytes()
                    .split(|&b| b == b',')
                    .map(move |entry| (field, trim_ows(entry)))
            })
    }

    pub(super) fn find<'a>(
        &self,
        headers: &'a HeaderMap,
        max_len: usize,
    ) -> Result<InHeader<'a>, ExtractError> {
        let prefix = self.prefix.as_bytes();
        let mut found = None;
        for (field, entry) in Self::entries(headers) {
            let Some(token) = entry.strip_prefix(prefix) else {
                continue;
            };
            if found.is_some() {
                return Err(ExtractError::Ambiguous);
            }
            if token.len() > max_len {
                return Err(ExtractError::TooLarge { max: max_len });
            }
            if !is_token(token) || !is_b64token(token) {
                return Err(ExtractError::Malformed(
                    "the websocket protocol token is not a b64token of tchars",
                ));
            }
            found = Some((field, range_in(field.as_bytes(), token)));
        }
        Ok(found)
    }

    /// Removes the token entry; removes the header when nothing else is left.
    pub(super) fn strip(&self, request: &mut http::request::Parts) {
        let prefix = self.prefix.as_bytes();
        if !Self::entries(&request.headers).any(|(_, e)| e.starts_with(prefix)) {
            return;
        }
        let kept: Vec<&[u8]> = Self::entries(&request.headers)
            .map(|(_, e)| e)
            .filter(|e| !e.starts_with(prefix) && !e.is_empty())
            .collect();
        let joined = kept.join(&b", "[..]);
        // The kept entries are a subset of a valid field value.
        let value = HeaderValue::from_bytes(&joined)
            .ok()
            .filter(|_| !joined.is_empty());
        request.headers.remove(SEC_WEBSOCKET_PROTOCOL);
        if let Some(value) = value {
            request.headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
        }
    }
}
