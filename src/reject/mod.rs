//! Rejections and how they are rendered for HTTP, gRPC, gRPC-Web and
//! Connect clients.
//!
//! Every layer of the crate answers a refused request with an
//! [`AuthRejection`]. One [`Renderer`] turns it into a response that fits the
//! protocol of the request ([`Protocol::of`]), and the rejection itself is
//! attached to the response extensions so that an outer layer (the
//! [`LockoutLayer`](crate::lockout::LockoutLayer)) can classify the outcome
//! whatever the encoding.
//!
//! | kind | HTTP | gRPC, gRPC-Web | Connect |
//! |---|---|---|---|
//! | [`Missing`](RejectionKind::Missing) | 401, `WWW-Authenticate: Bearer realm="…"` | 16 `UNAUTHENTICATED` | `unauthenticated` (401) |
//! | [`Malformed`](RejectionKind::Malformed), [`Ambiguous`](RejectionKind::Ambiguous) | 400, `error="invalid_request"` | 16 `UNAUTHENTICATED` | `invalid_argument` (400) |
//! | [`TooLarge`](RejectionKind::TooLarge) | 431 | 16 `UNAUTHENTICATED` | `invalid_argument` (400) |
//! | [`Invalid`](RejectionKind::Invalid), [`Revoked`](RejectionKind::Revoked), [`Expired`](RejectionKind::Expired) | 401, `error="invalid_token"` | 16 `UNAUTHENTICATED` | `unauthenticated` (401) |
//! | [`InsufficientScope`](RejectionKind::InsufficientScope) | 403, `error="insufficient_scope"`, `scope="…"` | 7 `PERMISSION_DENIED` | `permission_denied` (403) |
//! | [`LockedOut`](RejectionKind::LockedOut), [`RateLimited`](RejectionKind::RateLimited) | 429, `Retry-After` | 8 `RESOURCE_EXHAUSTED` | `resource_exhausted` (429) |
//! | [`Unavailable`](RejectionKind::Unavailable) | 503, `Retry-After` when known | 14 `UNAVAILABLE` | `unavailable` (503) |
//! | [`NoClientAddress`](RejectionKind::NoClientAddress) | 500 (the fix goes to the server's log) | 13 `INTERNAL` | `internal` (500) |
//! | [`CrossOrigin`](RejectionKind::CrossOrigin), [`Denied`](RejectionKind::Denied) | 403 | 7 `PERMISSION_DENIED` | `permission_denied` (403) |
//! | [`BodyTooLarge`](RejectionKind::BodyTooLarge) | 413 | 8 `RESOURCE_EXHAUSTED` | `resource_exhausted` (413) |
//! | [`MalformedBody`](RejectionKind::MalformedBody) | 400 | 3 `INVALID_ARGUMENT` | `invalid_argument` (400) |
//!
//! - **HTTP**: RFC 6750 challenges in `WWW-Authenticate`, a short
//!   `text/plain` body.
//! - **gRPC** (`application/grpc`, `application/grpc+proto`, …): a
//!   trailers-only response, HTTP 200 with `grpc-status` and a
//!   percent-encoded `grpc-message` in the head and an empty body
//!   ([gRPC over HTTP/2](https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md)).
//! - **gRPC-Web** (`application/grpc-web`, `application/grpc-web+proto`,
//!   `application/grpc-web-text`, `application/grpc-web-text+proto`): HTTP
//!   200 with `grpc-status`/`grpc-message` in the head (trailers-only), and
//!   the same trailers as a trailer frame in the body (flag `0x80`),
//!   base64-encoded for `-text`
//!   ([gRPC-Web protocol](https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md)).
//!   Browsers let a script read only the response headers CORS exposes, the
//!   body always.
//! - **Connect** (`Connect-Protocol-Version: 1`, a `GET` with `connect=v1`,
//!   or an `application/connect+…` content type): unary calls get the HTTP
//!   status of the Connect code and a JSON error body
//!   `{"code":"unauthenticated","message":"…"}` (`content-type:
//!   application/json`), with the same `WWW-Authenticate` challenge as HTTP;
//!   streaming calls get HTTP 200 and a single end-of-stream message (flag
//!   `0x02`) holding `{"error":{"code":…,"message":…}}`
//!   ([Connect protocol](https://connectrpc.com/docs/protocol/)).
//!
//! `Retry-After` goes with every rejection that has a retry time, in every
//! protocol. Messages are fixed per kind and never contain the credential;
//! unknown and revoked credentials read alike (SECURITY L3).
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
//!
//! // The same rejection for a Connect client.
//! let (parts, ()) = Request::post("/acme.v1.Users/Get")
//!     .header("connect-protocol-version", "1")
//!     .header(header::CONTENT_TYPE, "application/json")
//!     .body(())
//!     .unwrap()
//!     .into_parts();
//! let res = renderer.render(&AuthRejection::new(RejectionKind::Revoked), &parts);
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
//! assert_eq!(res.body(), r#"{"code":"unauthenticated","message":"the access token is invalid"}"#);
//! ```

mod challenge;
mod connect;
mod grpc;
mod grpc_web;
mod protocol;
mod renderer;

pub(crate) use connect::end_of_stream as connect_end_of_stream;
pub(crate) use grpc::percent_encode as grpc_percent_encode;
pub(crate) use grpc_web::trailers_body as grpc_web_trailers;
pub use protocol::{Protocol, is_grpc};
pub use renderer::DefaultRenderer;

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, header, request::Parts};

use crate::{Fingerprint, ValidationError, validate::ValidationErrorKind};

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
    /// A layer that must read the request body cannot: not a form or JSON,
    /// not valid in its format, or its key field twice (see
    /// [`body_key`](crate::body_key)).
    MalformedBody,
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
    /// The message every protocol shows the client: fixed per kind, never
    /// the credential, and the same for unknown and revoked credentials.
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
            Self::MalformedBody => "the request body cannot be read",
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

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(retry_after: Duration) -> u64 {
    let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    secs.max(1)
}

/// The retry time a rejection tells the client: always for a lockout or a
/// rate limit (at least a second), otherwise when known.
fn retry_after(rejection: &AuthRejection) -> Option<Duration> {
    match rejection.kind() {
        RejectionKind::LockedOut | RejectionKind::RateLimited => {
            Some(rejection.retry_after().unwrap_or(Duration::ZERO))
        }
        _ => rejection.retry_after(),
    }
}

/// Adds `Retry-After` (whole seconds, rounded up, at least 1) where the
/// rejection has a retry time.
fn insert_retry_after(headers: &mut HeaderMap, rejection: &AuthRejection) {
    if let Some(retry_after) = retry_after(rejection) {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs(retry_after)),
        );
    }
}

/// Renders `rejection` and attaches it to the response extensions.
///
/// Every layer refuses through this function, after its decision and
/// before the response leaves: the one place that sees each rejection
/// together with its request.
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
}
