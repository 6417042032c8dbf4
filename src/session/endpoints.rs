//! How the sign-in, refresh and sign-out endpoints read a request (its
//! origin, its device, its refresh cookie) and refuse one: a
//! [`SessionError`] rendered for it.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header, request::Parts};

use super::{Device, SessionError, SessionErrorKind, Sessions, secret::Presented};
use crate::{
    AuthRejection, Fingerprint,
    cross_origin::{self, CrossOriginProtection},
    reject::{self, RejectionKind},
};

/// How long a client waits before it asks again while sessions are
/// unavailable.
const RETRY_AFTER: Duration = Duration::from_secs(1);

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
