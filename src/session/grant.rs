//! What the sign-in, refresh and sign-out endpoints answer when they
//! succeed: a [`Grant`] (an access token in JSON and a refresh cookie), or
//! [`SignedOut`] (the cookie cleared).

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use zeroize::Zeroizing;

use super::token::Signed;

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
