//! What the sign-in, refresh and sign-out endpoints answer: a [`Grant`]
//! (an access token in JSON and a refresh cookie), [`SignedOut`] (the
//! cookie cleared), or a [`SessionError`].

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header, request::Parts};
use zeroize::Zeroizing;

use super::{Device, SessionError, SessionErrorKind, Sessions, secret::Presented, token::Signed};
use crate::{
    AuthRejection, Fingerprint,
    cross_origin::{self, CrossOriginProtection},
    reject::{self, RejectionKind},
};

/// How long a client waits before it asks again while sessions are
/// unavailable.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A session's new access token and refresh cookie: the answer to a
/// sign-in or a refresh.
///
/// As a response (`Response::from(grant)`, or returned from an axum
/// handler): 200, `Cache-Control: no-store`, the refresh cookie in
/// `Set-Cookie` (`HttpOnly`, `Secure`, `SameSite=Strict`, `Path` the
/// endpoints' prefix, `Max-Age` until the session would end unrefreshed),
/// and the body (RFC 6749 §5.1):
///
/// ```json
/// {"access_token":"eyJ…","token_type":"Bearer","expires_in":900}
/// ```
///
/// `Debug` shows the session id and subject, never a token.
pub struct Grant {
    access_token: Zeroizing<String>,
    expires_in: u64,
    refresh_token: Zeroizing<String>,
    session_id: Box<str>,
    subject: Arc<str>,
    set_cookie: HeaderValue,
}

impl Grant {
    pub(super) fn new(
        access: Signed,
        refresh_token: Zeroizing<String>,
        session_id: Box<str>,
        subject: Arc<str>,
        set_cookie: HeaderValue,
    ) -> Self {
        Self {
            access_token: access.token,
            expires_in: access.expires_in,
            refresh_token,
            session_id,
            subject,
            set_cookie,
        }
    }

    /// The access token (a JWT), for `Authorization: Bearer`.
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// How long the access token lives.
    pub fn expires_in(&self) -> Duration {
        Duration::from_secs(self.expires_in)
    }

    /// The refresh token, which the response carries in its cookie only.
    /// For clients that keep it elsewhere (a native app's keychain) and for
    /// tests; never log it.
    pub fn refresh_token(&self) -> &str {
        &self.refresh_token
    }

    /// The session id: the `sid` of the access tokens, not a secret.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Whom the session is about.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The `Set-Cookie` value with the refresh token.
    pub fn set_cookie(&self) -> &HeaderValue {
        &self.set_cookie
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::json!({
            "access_token": self.access_token.as_str(),
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        })
        .to_string()
    }
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("session_id", &self.session_id)
            .field("subject", &self.subject)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl From<Grant> for Response<Bytes> {
    fn from(grant: Grant) -> Self {
        let body = Bytes::from(grant.body());
        let mut response = Response::new(body);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::SET_COOKIE, grant.set_cookie);
        response
    }
}

/// A session ended by its owner: 204 with the refresh cookie cleared.
#[derive(Debug)]
pub struct SignedOut {
    clear_cookie: HeaderValue,
}

impl SignedOut {
    pub(super) fn new(clear_cookie: HeaderValue) -> Self {
        Self { clear_cookie }
    }

    /// The `Set-Cookie` value that clears the refresh cookie.
    pub fn clear_cookie(&self) -> &HeaderValue {
        &self.clear_cookie
    }
}

impl From<SignedOut> for Response<Bytes> {
    fn from(signed_out: SignedOut) -> Self {
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::NO_CONTENT;
        response
            .headers_mut()
            .insert(header::SET_COOKIE, signed_out.clear_cookie);
        response
    }
}

impl Sessions {
    /// Refuses a cross-site browser request (SECURITY.md C1): 403, not a
    /// failed attempt. [`sign_in_from`](Self::sign_in_from), the refresh
    /// and sign-out helpers call it first; call it in a sign-in handler
    /// before checking the password, and in every endpoint that changes
    /// sessions with an access token ([`end`](Self::end), sign-out
    /// everywhere).
    ///
    /// # Errors
    ///
    /// [`CrossOrigin`](SessionErrorKind::CrossOrigin).
    pub fn check_origin(&self, request: &Parts) -> Result<(), SessionError> {
        let inner = &self.inner;
        if cross_origin::checked_outside(request) || inner.cross_origin.allows(request) {
            return Ok(());
        }
        let rejection = CrossOriginProtection::refuse(request);
        let response = reject::render(&*inner.renderer, rejection, request);
        Err(SessionError::new(SessionErrorKind::CrossOrigin, response))
    }

    /// How `request` signs in, as its session's owner will see it: its
    /// `User-Agent`, and its client address as the configured
    /// [`ClientIp`](crate::ClientIp) resolves it (unless
    /// [`record_address`](super::SessionsBuilder::record_address) is off).
    pub fn device(&self, request: &Parts) -> Device {
        let mut device = Device::new();
        if let Some(user_agent) = request
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
        {
            device = device.with_user_agent(user_agent);
        }
        if let Some(address) = self
            .inner
            .client_ip
            .as_ref()
            .and_then(|client_ip| client_ip.resolve(request))
        {
            device = device.with_address(address);
        }
        device
    }

    /// The refresh token of an endpoint request, after the cross-origin
    /// check.
    pub(super) fn presented(&self, request: &Parts) -> Result<String, SessionError> {
        let inner = &self.inner;
        self.check_origin(request)?;
        match inner.cookie.read(request) {
            Ok(Some(credential)) => Ok(credential.secret().to_owned()),
            Ok(None) => Err(self.refuse(SessionErrorKind::Missing, Some(request), None)),
            Err(error) => {
                // Nothing is cleared (S7): of two cookies of the same name
                // (a sibling subdomain can set one) the real one may be
                // either, and a cleared real cookie signs its owner out.
                let rejection = AuthRejection::from(&error);
                tracing::info!(target: "portcullis::session", %error, "refresh cookie refused");
                let response = reject::render(&*inner.renderer, rejection, request);
                Err(SessionError::new(SessionErrorKind::Malformed, response))
            }
        }
    }

    /// The refusal of `kind`, rendered for `request` (plain HTTP without
    /// one), logged. `token` is the presented refresh token, for its
    /// fingerprint (smart counting) and the removal of its cookie.
    pub(super) fn refuse(
        &self,
        kind: SessionErrorKind,
        request: Option<&Parts>,
        token: Option<&str>,
    ) -> SessionError {
        self.refuse_clearing(kind, request, token, true)
    }

    /// As [`refuse`](Self::refuse); the cookie is removed only when
    /// `clear` (a token not shaped like a refresh token may not be the
    /// cookie this service set: it is left alone, S7).
    pub(super) fn refuse_clearing(
        &self,
        kind: SessionErrorKind,
        request: Option<&Parts>,
        token: Option<&str>,
        clear: bool,
    ) -> SessionError {
        let inner = &self.inner;
        let fingerprint = token.map(|token| Fingerprint::of(token.as_bytes()));
        let session = token.and_then(Presented::parse).map(|p| p.sid().to_owned());
        tracing::info!(
            target: "portcullis::session",
            ?kind,
            session = session.as_deref().unwrap_or("-"),
            fingerprint = %fingerprint.map_or_else(|| "-".to_owned(), |f| f.to_string()),
            "session request refused"
        );
        let rejection = match kind {
            SessionErrorKind::Conflict => return SessionError::new(kind, conflict()),
            // The refresh token's own refusals name it: a client must not
            // read them as a refused access token.
            SessionErrorKind::Missing => AuthRejection::new(RejectionKind::Missing).refresh_token(),
            SessionErrorKind::Malformed => {
                AuthRejection::new(RejectionKind::Malformed).refresh_token()
            }
            SessionErrorKind::Unknown | SessionErrorKind::Reused => {
                AuthRejection::new(RejectionKind::Invalid).refresh_token()
            }
            SessionErrorKind::Revoked => AuthRejection::new(RejectionKind::Revoked).refresh_token(),
            SessionErrorKind::CrossOrigin => AuthRejection::new(RejectionKind::CrossOrigin),
            SessionErrorKind::Full => AuthRejection::new(RejectionKind::Unavailable),
            SessionErrorKind::Unavailable => {
                AuthRejection::new(RejectionKind::Unavailable).with_retry_after(RETRY_AFTER)
            }
        };
        let rejection = match fingerprint {
            Some(fingerprint) if clear => rejection
                .with_fingerprint(fingerprint)
                .with_cleared_cookie(inner.cookie.clear()),
            Some(fingerprint) => rejection.with_fingerprint(fingerprint),
            None => rejection,
        };
        let response = match request {
            Some(request) => reject::render(&*inner.renderer, rejection, request),
            None => {
                let (request, ()) = http::Request::new(()).into_parts();
                reject::render(&*inner.renderer, rejection, &request)
            }
        };
        SessionError::new(kind, response)
    }
}

/// The answer to a refresh that lost a race: 409, retry with the newest
/// cookie.
fn conflict() -> Response<Bytes> {
    let body = serde_json::json!({
        "error": "refresh_conflict",
        "error_description": "a concurrent refresh used this refresh token; retry with the newest refresh cookie",
    });
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = StatusCode::CONFLICT;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
