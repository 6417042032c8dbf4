//! [`SessionError`]: why a sign-in, refresh or sign-out was refused, and
//! the response that says so.

use std::fmt;

use bytes::Bytes;
use http::Response;

use crate::AuthRejection;

/// Why a sign-in, refresh or sign-out was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionErrorKind {
    /// The request carries no refresh cookie: 401, not a failed attempt.
    Missing,
    /// The refresh cookie is malformed, or present twice: 400, not a
    /// failed attempt.
    Malformed,
    /// No live session has this refresh token (never issued, ended, signed
    /// out, or forgotten): 401 `invalid_token`, a failed attempt.
    Unknown,
    /// The refresh token had been used before, outside the grace window:
    /// the whole session is revoked. 401 `invalid_token` (like an unknown
    /// token), a failed attempt.
    Reused,
    /// The session was revoked (by its id, or its subject was signed out
    /// everywhere): 401 `invalid_token`, a failed attempt.
    Revoked,
    /// The refresh token was used a moment ago by a concurrent refresh
    /// whose successor was rotated already: 409, nothing revoked, not a
    /// failed attempt. The client retries with its newest cookie.
    Conflict,
    /// A cross-site browser request: 403, not a failed attempt
    /// (SECURITY.md C1).
    CrossOrigin,
    /// The store holds as many live sessions as it may: the sign-in is
    /// refused (503) rather than dropping a live session.
    Full,
    /// The store or the revocation list could not answer: 503 with
    /// `Retry-After`; nothing changed.
    Unavailable,
}

impl SessionErrorKind {
    fn message(self) -> &'static str {
        match self {
            Self::Missing => "no refresh token was presented",
            Self::Malformed => "the refresh cookie is malformed",
            Self::Unknown => "the refresh token is unknown",
            Self::Reused => "the refresh token was used before: the session is revoked",
            Self::Revoked => "the session was revoked",
            Self::Conflict => "the refresh token was just used by a concurrent refresh",
            Self::CrossOrigin => "cross-origin request refused",
            Self::Full => "too many sessions: sign-in refused",
            Self::Unavailable => "sessions are temporarily unavailable",
        }
    }
}

/// A refused sign-in, refresh or sign-out, with the response to send.
///
/// The response is rendered by the [`Sessions`](super::Sessions)'
/// renderer for the request's protocol, and carries an
/// [`AuthRejection`] in its extensions (except for a
/// [`Conflict`](SessionErrorKind::Conflict)), so a
/// [`LockoutLayer`](crate::lockout::LockoutLayer) outside counts unknown,
/// reused and revoked refresh tokens as failed attempts (each distinct
/// token once). Refusals of a refresh token clear the refresh cookie.
///
/// Send it with `Response::from(error)`, or return it from an axum handler
/// (feature `axum`).
pub struct SessionError {
    kind: SessionErrorKind,
    /// Boxed: errors travel in `Result`s, and are rare.
    response: Box<Response<Bytes>>,
}

impl SessionError {
    pub(crate) fn new(kind: SessionErrorKind, response: Response<Bytes>) -> Self {
        Self {
            kind,
            response: Box::new(response),
        }
    }

    /// Why.
    pub fn kind(&self) -> SessionErrorKind {
        self.kind
    }

    /// The rejection the response carries, if any.
    pub fn rejection(&self) -> Option<&AuthRejection> {
        self.response.extensions().get()
    }

    /// The response to send.
    pub fn response(&self) -> &Response<Bytes> {
        &self.response
    }
}

impl fmt::Debug for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionError")
            .field("kind", &self.kind)
            .field("status", &self.response.status())
            .finish()
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.message())
    }
}

impl std::error::Error for SessionError {}

impl From<SessionError> for Response<Bytes> {
    fn from(error: SessionError) -> Self {
        *error.response
    }
}
