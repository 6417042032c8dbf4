//! Rejections and how they are rendered for HTTP and gRPC clients.
//!
//! Every layer of the crate answers a refused request with an
//! [`AuthRejection`]. One [`Renderer`] turns it into a response that fits the
//! protocol of the request, and the rejection itself is attached to the
//! response extensions so that an outer layer (the
//! [`LockoutLayer`](crate::lockout::LockoutLayer)) can classify the outcome.
//!
//! | kind | HTTP | gRPC (trailers-only, HTTP 200) |
//! |---|---|---|
//! | [`Missing`](RejectionKind::Missing) | 401, `WWW-Authenticate: Bearer realm="…"` | 16 `UNAUTHENTICATED` |
//! | [`Malformed`](RejectionKind::Malformed), [`Ambiguous`](RejectionKind::Ambiguous) | 400, `error="invalid_request"` | 16 `UNAUTHENTICATED` |
//! | [`TooLarge`](RejectionKind::TooLarge) | 431 | 16 `UNAUTHENTICATED` |
//! | [`Invalid`](RejectionKind::Invalid), [`Revoked`](RejectionKind::Revoked), [`Expired`](RejectionKind::Expired) | 401, `error="invalid_token"` | 16 `UNAUTHENTICATED` |
//! | [`InsufficientScope`](RejectionKind::InsufficientScope) | 403, `error="insufficient_scope"`, `scope="…"` | 7 `PERMISSION_DENIED` |
//! | [`LockedOut`](RejectionKind::LockedOut), [`RateLimited`](RejectionKind::RateLimited) | 429, `Retry-After` | 8 `RESOURCE_EXHAUSTED` |
//! | [`Unavailable`](RejectionKind::Unavailable) | 503, `Retry-After` when known | 14 `UNAVAILABLE` |
//! | [`NoClientAddress`](RejectionKind::NoClientAddress) | 500 (the fix goes to the server's log) | 13 `INTERNAL` |
//! | [`CrossOrigin`](RejectionKind::CrossOrigin), [`Denied`](RejectionKind::Denied) | 403 | 7 `PERMISSION_DENIED` |
//! | [`BodyTooLarge`](RejectionKind::BodyTooLarge) | 413 | 8 `RESOURCE_EXHAUSTED` |
//!
//! # Example
//!
//! ```
//! use http::{Request, StatusCode, header};
//! use portcullis::reject::{AuthRejection, DefaultRenderer, RejectionKind, Renderer};
//!
//! let renderer = DefaultRenderer::new().realm("example");
//! let (parts, ()) = Request::new(()).into_parts();
//!
//! let res = renderer.render(&AuthRejection::new(RejectionKind::Revoked), &parts);
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     res.headers()[header::WWW_AUTHENTICATE],
//!     r#"Bearer realm="example", error="invalid_token", error_description="the access token is invalid""#,
//! );
//! ```

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header, request::Parts};

use crate::{Fingerprint, ResponseBody, ValidationError, validate::ValidationErrorKind};

/// Why a request was refused.
///
/// Attached to the extensions of every rejection response, so outer layers
/// and tests can tell what happened without parsing the response.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use portcullis::reject::{AuthRejection, RejectionKind};
///
/// let locked = AuthRejection::new(RejectionKind::LockedOut).with_retry_after(Duration::from_secs(90));
/// assert_eq!(locked.kind(), RejectionKind::LockedOut);
/// assert!(!locked.counts_as_failure());
/// assert!(AuthRejection::new(RejectionKind::Invalid).counts_as_failure());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRejection {
    kind: RejectionKind,
    retry_after: Option<Duration>,
    scope: Option<Arc<str>>,
    /// The rejected credential's fingerprint, for smart counting.
    fingerprint: Option<Fingerprint>,
    /// A `Set-Cookie` that removes a stale credential cookie.
    clear_cookie: Option<HeaderValue>,
}

/// The reason behind an [`AuthRejection`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credential was presented.
    Missing,
    /// A credential was presented in a form the protocol does not allow.
    Malformed,
    /// Several different credentials were presented.
    Ambiguous,
    /// The credential is longer than the configured cap.
    TooLarge,
    /// The credential is unknown or otherwise invalid.
    Invalid,
    /// The credential has expired.
    Expired,
    /// The credential has been revoked (answered exactly like `Invalid`).
    Revoked,
    /// The credential lacks a required scope.
    InsufficientScope,
    /// The client is locked out after too many failed attempts.
    LockedOut,
    /// The client exceeded its request rate.
    RateLimited,
    /// The validator could not decide (backend down, timeout).
    Unavailable,
    /// The server cannot tell which client sent the request.
    NoClientAddress,
    /// A cross-site browser request with an unsafe method carried a
    /// credential cookie (see [`cross_origin`](crate::cross_origin)).
    CrossOrigin,
    /// The client is on a limiter's deny list.
    Denied,
    /// The request body is larger than a layer that reads it accepts.
    BodyTooLarge,
}

impl AuthRejection {
    /// A rejection of the given kind.
    pub fn new(kind: RejectionKind) -> Self {
        Self {
            kind,
            retry_after: None,
            scope: None,
            fingerprint: None,
            clear_cookie: None,
        }
    }

    /// Records the [`Fingerprint`] of the rejected credential, so a
    /// [`LockoutLayer`](crate::lockout::LockoutLayer) can count the same
    /// wrong credential repeated by one key once (SECURITY.md B14).
    /// `AuthLayer` sets it on every credential it rejects.
    #[must_use]
    pub fn with_fingerprint(mut self, fingerprint: Fingerprint) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// The fingerprint of the rejected credential, if known.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.fingerprint
    }

    /// Adds `set_cookie` (a `Set-Cookie` field value) to the response, to
    /// remove a stale credential cookie; whatever the renderer.
    #[must_use]
    pub fn with_cleared_cookie(mut self, set_cookie: HeaderValue) -> Self {
        self.clear_cookie = Some(set_cookie);
        self
    }

    /// The `Set-Cookie` value that removes a stale credential cookie, if
    /// any.
    pub fn cleared_cookie(&self) -> Option<&HeaderValue> {
        self.clear_cookie.as_ref()
    }

    /// Tells the client when to retry (`Retry-After`).
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Names the scope the request needed.
    #[must_use]
    pub fn with_scope(mut self, scope: impl Into<Arc<str>>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The reason.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// When the client may retry, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The scope the request needed, for [`RejectionKind::InsufficientScope`].
    pub fn required_scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// Whether this outcome is a failed guess: a presented credential that
    /// was rejected as invalid or revoked.
    ///
    /// # Security
    ///
    /// Missing, malformed, ambiguous and oversized credentials are not
    /// guesses at a secret, a missing scope belongs to a valid credential,
    /// and an unavailable validator says nothing about the credential, so
    /// none of them count. An expired credential does not count either: only
    /// its rightful holder can present one (its signature or digest matched),
    /// and clients routinely present one before refreshing, so counting it
    /// would lock out well-behaved users (a whole office behind one NAT
    /// address) rather than attackers.
    pub fn counts_as_failure(&self) -> bool {
        matches!(self.kind, RejectionKind::Invalid | RejectionKind::Revoked)
    }
}

impl From<&ValidationError> for AuthRejection {
    fn from(error: &ValidationError) -> Self {
        let kind = match error.kind() {
            ValidationErrorKind::Invalid => RejectionKind::Invalid,
            ValidationErrorKind::Expired => RejectionKind::Expired,
            ValidationErrorKind::Revoked => RejectionKind::Revoked,
            ValidationErrorKind::InsufficientScope => RejectionKind::InsufficientScope,
            ValidationErrorKind::Unavailable => RejectionKind::Unavailable,
        };
        Self {
            kind,
            retry_after: error.retry_after(),
            scope: error.scope_arc(),
            fingerprint: None,
            clear_cookie: None,
        }
    }
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.message())
    }
}

impl std::error::Error for AuthRejection {}

impl RejectionKind {
    fn message(self) -> &'static str {
        match self {
            Self::Missing => "no credential was presented",
            Self::Malformed => "the credential is malformed",
            Self::Ambiguous => "the request carries more than one credential",
            Self::TooLarge => "the credential is too large",
            Self::Invalid | Self::Revoked => "the access token is invalid",
            Self::Expired => "the access token expired",
            Self::InsufficientScope => "the access token lacks the required scope",
            Self::LockedOut => "too many failed attempts, try again later",
            Self::RateLimited => "too many requests, slow down",
            Self::Unavailable => "authentication is temporarily unavailable",
            Self::NoClientAddress => NO_CLIENT_ADDRESS,
            Self::CrossOrigin => "cross-origin request refused",
            Self::Denied => "access denied",
            Self::BodyTooLarge => "the request body is too large",
        }
    }
}

/// What a client learns when the server cannot tell who it is. How to fix the
/// server is logged where the rejection is made (`portcullis::client_ip`),
/// never sent to every client.
const NO_CLIENT_ADDRESS: &str = "the server cannot identify the client";

/// Turns an [`AuthRejection`] into a response.
///
/// Replace the [`DefaultRenderer`] to answer in another format (JSON problem
/// details, say) without touching the layers. The layers attach the
/// rejection to the response extensions themselves, so a renderer cannot
/// break lockout accounting. Closures
/// `Fn(&AuthRejection, &Parts) -> Response<Bytes>` are renderers too.
///
/// # Example
///
/// ```
/// use bytes::Bytes;
/// use http::{Response, StatusCode, request::Parts};
/// use portcullis::reject::{AuthRejection, Renderer};
///
/// let json = |rejection: &AuthRejection, _: &Parts| {
///     Response::builder()
///         .status(StatusCode::UNAUTHORIZED)
///         .header("content-type", "application/problem+json")
///         .body(Bytes::from(format!(r#"{{"title":"{rejection}"}}"#)))
///         .unwrap()
/// };
/// # fn is_renderer<R: Renderer>(_: &R) {}
/// # is_renderer(&json);
/// ```
pub trait Renderer: Send + Sync + 'static {
    /// Renders `rejection` as the answer to the request described by `request`.
    fn render(&self, rejection: &AuthRejection, request: &Parts) -> Response<Bytes>;
}

impl<F> Renderer for F
where
    F: Fn(&AuthRejection, &Parts) -> Response<Bytes> + Send + Sync + 'static,
{
    fn render(&self, rejection: &AuthRejection, request: &Parts) -> Response<Bytes> {
        self(rejection, request)
    }
}

impl<R: Renderer + ?Sized> Renderer for Arc<R> {
    fn render(&self, rejection: &AuthRejection, request: &Parts) -> Response<Bytes> {
        (**self).render(rejection, request)
    }
}

/// The renderer that follows RFC 6750 for HTTP and the gRPC status codes
/// for gRPC requests (`content-type: application/grpc*`).
///
/// Challenge headers are built once, when the renderer is created.
#[derive(Clone)]
pub struct DefaultRenderer {
    challenges: Arc<Challenges>,
}

struct Challenges {
    realm: String,
    missing: HeaderValue,
    invalid_request: HeaderValue,
    ambiguous: HeaderValue,
    invalid_token: HeaderValue,
    expired: HeaderValue,
}

impl DefaultRenderer {
    /// A renderer with realm `"api"`.
    pub fn new() -> Self {
        Self::with_realm("api")
    }

    /// Sets the realm announced in `WWW-Authenticate`.
    ///
    /// Characters that cannot appear in a quoted string (control bytes,
    /// non-ASCII) are dropped.
    #[must_use]
    pub fn realm(self, realm: impl AsRef<str>) -> Self {
        Self::with_realm(realm.as_ref())
    }

    fn with_realm(realm: &str) -> Self {
        let realm = quoted(realm);
        let challenge = |params: &[(&str, &str)]| {
            let mut value = format!("Bearer realm={realm}");
            for (name, v) in params {
                value.push_str(&format!(", {name}={}", quoted(v)));
            }
            HeaderValue::try_from(value).expect("quoted() keeps only visible ASCII and spaces")
        };
        let challenges = Challenges {
            missing: challenge(&[]),
            invalid_request: challenge(&[
                ("error", "invalid_request"),
                ("error_description", RejectionKind::Malformed.message()),
            ]),
            ambiguous: challenge(&[
                ("error", "invalid_request"),
                ("error_description", RejectionKind::Ambiguous.message()),
            ]),
            invalid_token: challenge(&[
                ("error", "invalid_token"),
                ("error_description", RejectionKind::Invalid.message()),
            ]),
            expired: challenge(&[
                ("error", "invalid_token"),
                ("error_description", RejectionKind::Expired.message()),
            ]),
            realm,
        };
        Self {
            challenges: Arc::new(challenges),
        }
    }

    fn insufficient_scope(&self, scope: &str) -> HeaderValue {
        let value = format!(
            "Bearer realm={}, error=\"insufficient_scope\", error_description={}, scope={}",
            self.challenges.realm,
            quoted(RejectionKind::InsufficientScope.message()),
            quoted(scope),
        );
        HeaderValue::try_from(value).expect("quoted() keeps only visible ASCII and spaces")
    }

    fn render_http(&self, rejection: &AuthRejection) -> Response<Bytes> {
        use RejectionKind as K;
        let kind = rejection.kind();
        let (status, challenge) = match kind {
            K::Missing => (
                StatusCode::UNAUTHORIZED,
                Some(self.challenges.missing.clone()),
            ),
            K::Malformed => (
                StatusCode::BAD_REQUEST,
                Some(self.challenges.invalid_request.clone()),
            ),
            K::Ambiguous => (
                StatusCode::BAD_REQUEST,
                Some(self.challenges.ambiguous.clone()),
            ),
            K::TooLarge => (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, None),
            K::Invalid | K::Revoked => (
                StatusCode::UNAUTHORIZED,
                Some(self.challenges.invalid_token.clone()),
            ),
            K::Expired => (
                StatusCode::UNAUTHORIZED,
                Some(self.challenges.expired.clone()),
            ),
            K::InsufficientScope => (
                StatusCode::FORBIDDEN,
                Some(self.insufficient_scope(rejection.required_scope().unwrap_or(""))),
            ),
            K::LockedOut | K::RateLimited => (StatusCode::TOO_MANY_REQUESTS, None),
            K::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, None),
            K::NoClientAddress => (StatusCode::INTERNAL_SERVER_ERROR, None),
            K::CrossOrigin | K::Denied => (StatusCode::FORBIDDEN, None),
            K::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, None),
        };
        let mut res = Response::new(Bytes::from_static(kind.message().as_bytes()));
        *res.status_mut() = status;
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(challenge) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        let retry_after = match kind {
            K::LockedOut | K::RateLimited => {
                Some(rejection.retry_after().unwrap_or(Duration::ZERO))
            }
            _ => rejection.retry_after(),
        };
        if let Some(retry_after) = retry_after {
            headers.insert(header::RETRY_AFTER, retry_after_value(retry_after));
        }
        res
    }

    fn render_grpc(&self, rejection: &AuthRejection) -> Response<Bytes> {
        use RejectionKind as K;
        let code: u16 = match rejection.kind() {
            K::InsufficientScope | K::CrossOrigin | K::Denied => 7,
            K::LockedOut | K::RateLimited | K::BodyTooLarge => 8,
            K::Unavailable => 14,
            K::NoClientAddress => 13,
            _ => 16,
        };
        let mut res = Response::new(Bytes::new());
        let headers = res.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from(code));
        headers.insert(
            "grpc-message",
            HeaderValue::try_from(grpc_percent_encode(rejection.kind().message()))
                .expect("percent-encoding leaves only visible ASCII"),
        );
        if let Some(retry_after) = rejection.retry_after() {
            headers.insert(header::RETRY_AFTER, retry_after_value(retry_after));
        }
        res
    }
}

impl Default for DefaultRenderer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for DefaultRenderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefaultRenderer")
            .field("realm", &self.challenges.realm)
            .finish()
    }
}

impl Renderer for DefaultRenderer {
    fn render(&self, rejection: &AuthRejection, request: &Parts) -> Response<Bytes> {
        if is_grpc(&request.headers) {
            self.render_grpc(rejection)
        } else {
            self.render_http(rejection)
        }
    }
}

/// Whether a request is gRPC (`content-type: application/grpc`, with or
/// without a `+format` or `-web` suffix).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"))
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(retry_after: Duration) -> u64 {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    secs.max(1)
}

fn retry_after_value(retry_after: Duration) -> HeaderValue {
    HeaderValue::from(retry_after_secs(retry_after))
}

/// Renders `s` as an RFC 9110 quoted-string, escaping `"` and `\` and
/// dropping bytes a quoted-string cannot carry.
pub(crate) fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' ' | '\t' | '!'..='~' => out.push(c),
            _ => {}
        }
    }
    out.push('"');
    out
}

/// Percent-encodes a `grpc-message` as the gRPC spec requires: every byte
/// outside `0x20..=0x7E`, and `%` itself.
pub(crate) fn grpc_percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for &b in message.as_bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Renders `rejection` and attaches it to the response extensions.
pub(crate) fn render<R: Renderer + ?Sized>(
    renderer: &R,
    rejection: AuthRejection,
    request: &Parts,
) -> Response<Bytes> {
    let mut res = renderer.render(&rejection, request);
    if let Some(set_cookie) = &rejection.clear_cookie {
        res.headers_mut()
            .append(header::SET_COOKIE, set_cookie.clone());
    }
    res.extensions_mut().insert(rejection);
    res
}

/// Renders `rejection`, attaches it to the response extensions and wraps the
/// body for a layer whose inner body type is `B`.
#[allow(dead_code)] // used by every layer
pub(crate) fn respond<R: Renderer + ?Sized, B>(
    renderer: &R,
    rejection: AuthRejection,
    request: &Parts,
) -> Response<ResponseBody<B>> {
    render(renderer, rejection, request).map(ResponseBody::rejection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(30)), 30);
    }

    #[test]
    fn quoted_escapes_quotes_and_backslashes_and_drops_controls() {
        assert_eq!(quoted(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(quoted("x\r\ny\u{e9}"), r#""xy""#);
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(grpc_percent_encode("50% off\n"), "50%25 off%0A");
        assert_eq!(grpc_percent_encode("caf\u{e9}"), "caf%C3%A9");
    }
}
