//! Finding the credential in a request.
//!
//! An [`Extractor`] is an ordered list of sources. Every source is consulted,
//! so a request that carries two different credentials (a header and a
//! cookie, say) is refused as ambiguous instead of first-wins; the same value
//! in two carriers is accepted.
//!
//! | source | where | default |
//! |---|---|---|
//! | [`Bearer`] | `Authorization: Bearer <token>` (RFC 6750 §2.1) | on |
//! | `Cookie` | a named cookie (RFC 6265bis), feature `cookie` | off |
//! | [`Header`] | a custom header such as `X-API-Key` | off |
//! | [`Query`] | a query parameter (RFC 6750 §2.3), removed from the URI | off |
//! | [`WebSocketProtocol`] | an entry of `Sec-WebSocket-Protocol`, removed from the header | off |
//!
//! # Security
//!
//! Extraction works on bytes and never decodes lossily: a credential with a
//! non-ASCII or control byte is malformed. A credential longer than
//! [`Extractor::max_len`] (default 8 KiB) is refused before anything else
//! looks at it. Query and WebSocket tokens are removed from the request
//! before it reaches your service, so handlers (and any access log inside the
//! layer) never see them.
//!
//! # Example
//!
//! ```
//! use http::{Request, header::AUTHORIZATION};
//! use portcullis::extract::{Bearer, Extractor, Header, ExtractError};
//!
//! let extractor = Extractor::new(Bearer::new()).or(Header::new("x-api-key".parse().unwrap()));
//!
//! let (parts, ()) = Request::builder()
//!     .header(AUTHORIZATION, "Bearer mF_9.B5f-4.1JqM")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! let credential = extractor.extract(&parts).unwrap().unwrap();
//! assert_eq!(credential.secret(), "mF_9.B5f-4.1JqM");
//!
//! let (parts, ()) = Request::builder()
//!     .header(AUTHORIZATION, "Bearer one")
//!     .header("x-api-key", "two")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! assert_eq!(extractor.extract(&parts).unwrap_err(), ExtractError::Ambiguous);
//! ```

mod bearer;
#[cfg(feature = "cookie")]
mod cookie;
mod header;
mod query;
mod syntax;
mod websocket;

use std::{borrow::Cow, fmt, ops::Range};

use http::{HeaderMap, HeaderValue, Uri, request::Parts};
use zeroize::Zeroize;

use crate::{AuthRejection, Credential, CredentialSource, reject::RejectionKind};

#[cfg(feature = "cookie")]
pub use self::cookie::Cookie;
pub use self::{bearer::Bearer, header::Header, query::Query, websocket::WebSocketProtocol};

/// The default cap on a credential's length: 8 KiB.
pub const DEFAULT_MAX_LEN: usize = 8 * 1024;

/// Why no credential could be taken from a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// A carrier holds something the protocol does not allow.
    #[error("malformed credential: {0}")]
    Malformed(&'static str),
    /// Several different credentials, or one carrier given twice.
    #[error("the request carries more than one credential")]
    Ambiguous,
    /// The credential is longer than the cap.
    #[error("credential longer than {max} bytes")]
    TooLarge {
        /// The cap in force.
        max: usize,
    },
}

impl ExtractError {
    /// The rejection a client receives for this error.
    pub fn rejection_kind(&self) -> RejectionKind {
        match self {
            Self::Malformed(_) => RejectionKind::Malformed,
            Self::Ambiguous => RejectionKind::Ambiguous,
            Self::TooLarge { .. } => RejectionKind::TooLarge,
        }
    }
}

impl From<&ExtractError> for AuthRejection {
    fn from(error: &ExtractError) -> Self {
        AuthRejection::new(error.rejection_kind())
    }
}

/// A place a credential can be found. Implemented by the source types of
/// this module only.
pub trait Source: sealed::Sealed {}

mod sealed {
    #[cfg(feature = "cookie")]
    use super::Cookie;
    use super::{Bearer, Header, Query, WebSocketProtocol};

    pub trait Sealed {
        fn into_any(self) -> AnySource;
    }

    /// Any source, in the extractor's list. Public in a private module: it
    /// appears in the sealed trait, never in the crate's API.
    #[derive(Clone, Debug)]
    pub enum AnySource {
        Bearer(Bearer),
        #[cfg(feature = "cookie")]
        Cookie(Cookie),
        Header(Header),
        Query(Query),
        WebSocket(WebSocketProtocol),
    }
}

use sealed::AnySource;

/// Where a header source found its secret: a field value and the range of
/// the secret in it, visible ASCII.
type InHeader<'a> = Option<(&'a HeaderValue, Range<usize>)>;

/// An ordered list of credential sources.
///
/// Build it with [`Extractor::new`] and [`Extractor::or`]; give it to
/// [`AuthLayer::extractor`](crate::AuthLayer::extractor).
#[derive(Clone)]
pub struct Extractor {
    sources: Vec<AnySource>,
    max_len: usize,
    strips: bool,
}

impl Extractor {
    /// An extractor that looks in `source`.
    pub fn new(source: impl Source) -> Self {
        Self {
            sources: Vec::new(),
            max_len: DEFAULT_MAX_LEN,
            strips: false,
        }
        .or(source)
    }

    /// Also looks in `source`. Sources are consulted in order.
    #[must_use]
    pub fn or(mut self, source: impl Source) -> Self {
        let source = source.into_any();
        self.strips |= matches!(source, AnySource::Query(_) | AnySource::WebSocket(_));
        self.sources.push(source);
        self
    }

    /// Caps the length of a credential in bytes (default 8 KiB).
    ///
    /// A longer credential is refused (`431` for HTTP) before it is decoded,
    /// hashed, validated or logged.
    #[must_use]
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// Finds the credential of a request.
    ///
    /// `Ok(None)` means no source holds a credential (a foreign
    /// `Authorization` scheme such as `Basic` counts as none).
    ///
    /// # Errors
    ///
    /// [`ExtractError`] when a carrier is malformed, too large, given twice,
    /// or when two sources hold different credentials.
    pub fn extract(&self, request: &Parts) -> Result<Option<Credential>, ExtractError> {
        self.find(&request.headers, &request.uri)
    }

    /// [`Extractor::extract`] from the headers and URI of a request: the
    /// layers hold a `Request`, and taking it apart and putting it back
    /// together would move it twice.
    pub(crate) fn find(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Option<Credential>, ExtractError> {
        match &self.sources[..] {
            // The default extractor, and the common one.
            [AnySource::Bearer(bearer)] => {
                let found = bearer.find(headers, self.max_len)?;
                return Ok(found.map(|(value, token)| {
                    Credential::in_place(value, token.start, token.end, CredentialSource::Bearer)
                }));
            }
            [source] => {
                let found = source.find(headers, uri, self.max_len)?;
                return Ok(found.map(|found| found.into_credential(source)));
            }
            _ => {}
        }
        let mut found: Option<(Found<'_>, &AnySource)> = None;
        for source in &self.sources {
            let Some(secret) = source.find(headers, uri, self.max_len)? else {
                continue;
            };
            match &found {
                None => found = Some((secret, source)),
                Some((first, _)) if first.bytes() == secret.bytes() => secret.wipe(),
                Some(_) => return Err(ExtractError::Ambiguous),
            }
        }
        Ok(found.map(|(found, source)| found.into_credential(source)))
    }

    /// The `Set-Cookie` value that removes the credential cookie `name`
    /// (see [`Cookie::removal`]), if it is one of the sources.
    #[cfg(feature = "cookie")]
    pub(crate) fn cookie_removal(&self, name: &str) -> Option<http::HeaderValue> {
        self.sources.iter().find_map(|source| match source {
            AnySource::Cookie(cookie) if cookie.name() == name => Some(cookie.removal()),
            _ => None,
        })
    }

    /// Whether [`Extractor::strip`] has anything to do: a query or
    /// WebSocket-protocol source is in the list.
    pub(crate) fn strips(&self) -> bool {
        self.strips
    }

    /// Removes query and WebSocket-protocol tokens from the request, so the
    /// inner service never sees them.
    pub(crate) fn strip(&self, request: &mut Parts) {
        if !self.strips {
            return;
        }
        for source in &self.sources {
            match source {
                AnySource::Query(query) => query.strip(request),
                AnySource::WebSocket(ws) => ws.strip(request),
                _ => {}
            }
        }
    }
}

impl Default for Extractor {
    /// `Authorization: Bearer` only.
    fn default() -> Self {
        Self::new(Bearer::new())
    }
}

impl fmt::Debug for Extractor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extractor")
            .field("sources", &self.sources)
            .field("max_len", &self.max_len)
            .finish()
    }
}

/// A secret as a source found it.
enum Found<'a> {
    /// Bytes `start..end` of a header field value, visible ASCII: read in
    /// place.
    InPlace(&'a HeaderValue, usize, usize),
    /// From the URI: borrowed, or decoded into a copy that is wiped.
    Uri(Cow<'a, str>),
}

impl Found<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::InPlace(value, start, end) => {
                value.as_bytes().get(*start..*end).unwrap_or_default()
            }
            Self::Uri(secret) => secret.as_bytes(),
        }
    }

    fn into_credential(self, source: &AnySource) -> Credential {
        match self {
            Self::InPlace(value, start, end) => {
                Credential::in_place(value, start, end, source.credential_source())
            }
            Self::Uri(secret) => Credential::found(secret, source.credential_source()),
        }
    }

    /// Drops a secret found twice, wiping it if it is a decoded copy.
    fn wipe(self) {
        if let Self::Uri(Cow::Owned(mut decoded)) = self {
            decoded.zeroize();
        }
    }
}

impl AnySource {
    fn find<'a>(
        &self,
        headers: &'a HeaderMap,
        uri: &'a Uri,
        max_len: usize,
    ) -> Result<Option<Found<'a>>, ExtractError> {
        let in_place = |(value, range): (&'a HeaderValue, Range<usize>)| {
            Found::InPlace(value, range.start, range.end)
        };
        match self {
            Self::Bearer(s) => s.find(headers, max_len).map(|o| o.map(in_place)),
            #[cfg(feature = "cookie")]
            Self::Cookie(s) => s.find(headers, max_len).map(|o| o.map(in_place)),
            Self::Header(s) => s.find(headers, max_len).map(|o| o.map(in_place)),
            Self::Query(s) => s.find(uri, max_len).map(|o| o.map(Found::Uri)),
            Self::WebSocket(s) => s.find(headers, max_len).map(|o| o.map(in_place)),
        }
    }

    fn credential_source(&self) -> CredentialSource {
        match self {
            Self::Bearer(_) => CredentialSource::Bearer,
            #[cfg(feature = "cookie")]
            Self::Cookie(s) => CredentialSource::Cookie(s.name_arc()),
            Self::Header(s) => CredentialSource::Header(s.name().clone()),
            Self::Query(s) => CredentialSource::Query(s.name_arc()),
            Self::WebSocket(_) => CredentialSource::WebSocketProtocol,
        }
    }
}

macro_rules! source {
    ($ty:ident, $variant:ident) => {
        impl Source for $ty {}
        impl sealed::Sealed for $ty {
            fn into_any(self) -> AnySource {
                AnySource::$variant(self)
            }
        }
    };
}

source!(Bearer, Bearer);
#[cfg(feature = "cookie")]
source!(Cookie, Cookie);
source!(Header, Header);
source!(Query, Query);
source!(WebSocketProtocol, WebSocket);

#[cfg(test)]
mod tests {
    use http::{HeaderName, Request, header::AUTHORIZATION};

    use super::*;

    fn parts(value: &'static str) -> Parts {
        let (parts, ()) = Request::builder()
            .header(AUTHORIZATION, value)
            .header("x-api-key", "  pk_live_abc ")
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[test]
    fn a_secret_found_in_a_header_is_read_in_place() {
        let parts = parts("Bearer   abc.def  ");
        let field = parts.headers[AUTHORIZATION].as_bytes().as_ptr_range();
        let credential = Extractor::default().extract(&parts).unwrap().unwrap();
        assert_eq!(credential.secret(), "abc.def");
        assert!(field.contains(&credential.secret().as_ptr()));

        let header = Extractor::new(Header::new(HeaderName::from_static("x-api-key")));
        let field = parts.headers["x-api-key"].as_bytes().as_ptr_range();
        let credential = header.extract(&parts).unwrap().unwrap();
        assert_eq!(credential.secret(), "pk_live_abc");
        assert!(field.contains(&credential.secret().as_ptr()));
    }

    // P4: the one-lookup path (no field name repeats) and the other one
    // (some field repeats) agree.
    #[test]
    fn a_second_authorization_line_is_ambiguous_whatever_else_repeats() {
        let extractor = Extractor::default();
        let mut parts = parts("Bearer abc");
        assert_eq!(extractor.extract(&parts).unwrap().unwrap().secret(), "abc");
        parts
            .headers
            .append("x-other", HeaderValue::from_static("1"));
        parts
            .headers
            .append("x-other", HeaderValue::from_static("2"));
        assert_eq!(extractor.extract(&parts).unwrap().unwrap().secret(), "abc");
        parts
            .headers
            .append(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(
            extractor.extract(&parts).unwrap_err(),
            ExtractError::Ambiguous
        );
        parts.headers.remove("x-other");
        assert_eq!(
            extractor.extract(&parts).unwrap_err(),
            ExtractError::Ambiguous
        );
    }

    #[test]
    fn a_secret_read_in_place_outlives_its_request() {
        let credential = Extractor::default()
            .extract(&parts("Bearer abc"))
            .unwrap()
            .unwrap();
        assert_eq!(credential.clone().secret(), "abc");
    }
}
