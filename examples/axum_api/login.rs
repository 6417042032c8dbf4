//! Login protection: the password check of `POST /login`, `POST /logout`,
//! and the limits around them.
//!
//! - **Per address**: the lockout of `settings.rs` (`PORTCULLIS_MAX_FAILURES`).
//! - **Per account, for untrusted clients**: `PORTCULLIS_ACCOUNT_MAX_FAILURES`
//!   (default 10) distinct wrong passwords for one username, from any
//!   addresses within the window, lock that username out for clients without
//!   a device cookie for it (429 with `Retry-After`). Other usernames and
//!   signed-in users are not affected. The username is read from the form
//!   by `BodyKeyLayer`; unknown usernames count like known ones.
//! - **Per device**: a successful login sets a device cookie named `device`
//!   (signed, `HttpOnly`, bound to the account). A client that presents a
//!   valid one for the account is counted on its own (after
//!   `PORTCULLIS_MAX_FAILURES` failures that device is locked out), and the
//!   account's lockout does not apply to it. `PORTCULLIS_DEVICE_KEY` (at
//!   least 32 bytes) keeps device cookies valid across restarts and
//!   replicas; unset, a random key is used.
//! - **Smart counting**: the same wrong password repeated by one address
//!   (or for one account) counts once.
//! - **Cross-origin protection** on `POST /login` and `POST /logout`: a
//!   cross-site form post is answered 403 and not counted.

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Form, Json, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::post,
};
use http::{Method, StatusCode, header, request::Parts};
use portcullis::{
    ClientIp,
    body_key::BodyKeyLayer,
    cross_origin::{CrossOriginLayer, CrossOriginProtection},
    lockout::{DeviceCookies, Failed, LockoutBuilder, LockoutLayer, Policy, Succeeded},
    reject::DefaultRenderer,
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    sessions::Sessions,
    settings::{Limits, env, number},
};

/// The login settings, from the environment.
pub(crate) struct Login {
    /// Distinct wrong passwords that lock a username out for untrusted
    /// clients.
    account_max_failures: u32,
    devices: DeviceCookies,
}

impl Login {
    pub(crate) fn from_env() -> Result<Self, String> {
        let account_max_failures = number("PORTCULLIS_ACCOUNT_MAX_FAILURES", 1, 10)?;
        let devices = match env("PORTCULLIS_DEVICE_KEY")? {
            // The error names the length, never the key.
            Some(key) => DeviceCookies::new("device", key.as_bytes())
                .map_err(|e| format!("PORTCULLIS_DEVICE_KEY: {e}"))?,
            None => DeviceCookies::random("device")
                .map_err(|e| format!("cannot make a device cookie key: {e}"))?,
        };
        Ok(Self {
            account_max_failures,
            devices,
        })
    }

    /// The address lockout of `settings.rs`, plus the account key for
    /// untrusted clients and the device key.
    pub(crate) fn protect(
        &self,
        lockout: LockoutBuilder<ClientIp>,
        limits: &Limits,
    ) -> Result<LockoutLayer, String> {
        let account = Policy::builder()
            .max_failures(self.account_max_failures)
            .lockout(limits.lockout)
            .max_lockout(limits.lockout.max(Duration::from_secs(24 * 3600)))
            .capacity(limits.capacity)
            // The account's owner signing in (the handler marks it
            // `Succeeded`) clears its count.
            .reset_on_success(true)
            .build()
            .map_err(|e| format!("PORTCULLIS_ACCOUNT_MAX_FAILURES: {e}"))?;
        let device = Policy::builder()
            .max_failures(limits.max_failures)
            .lockout(limits.lockout)
            .capacity(limits.capacity)
            .build()
            .map_err(|e| format!("PORTCULLIS_MAX_FAILURES: {e}"))?;
        lockout
            .also_key(self.devices.untrusted_key(), account)
            .also_key(self.devices.key(), device)
            .build()
            .map_err(|e| format!("the lockout: {e}"))
    }

    /// Reads the username of `POST /login` forms, for the account key.
    pub(crate) fn body_key() -> BodyKeyLayer {
        BodyKeyLayer::new("username", is_login).renderer(DefaultRenderer::new().realm("portcullis"))
    }

    /// `POST /login` and `POST /logout`, behind cross-origin protection.
    pub(crate) fn routes(self) -> Router {
        Router::new()
            .route("/login", post(login))
            .route("/logout", post(crate::sessions::logout))
            .route_layer(
                CrossOriginLayer::new(CrossOriginProtection::new())
                    .renderer(DefaultRenderer::new().realm("portcullis")),
            )
            .with_state(Arc::new(self))
    }
}

fn is_login(parts: &Parts) -> bool {
    parts.method == Method::POST && parts.uri.path() == "/login"
}

/// The fields of the login form.
#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

/// Signs `alice` in with a session cookie and a device cookie; answers 401
/// to anything else, which the lockout counts as a failed attempt, once per
/// distinct wrong password.
///
/// A real service would check a password hash (argon2, scrypt) here.
async fn login(
    State(login): State<Arc<Login>>,
    Extension(sessions): Extension<Sessions>,
    Form(form): Form<LoginForm>,
) -> Response {
    if form.username == "alice" && form.password == "wonderland" {
        tracing::info!(subject = "alice", "signed in");
        // A fresh session token (see sessions.rs).
        let Some(session) = sessions.sign_in("alice", &["admin"]) else {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        };
        // `Succeeded`: alice's sign-in, which clears her account's count (a
        // 2xx alone clears nothing).
        let mut response = (
            [(header::SET_COOKIE, session)],
            Extension(Succeeded),
            Json(json!({ "subject": "alice" })),
        )
            .into_response();
        match login.devices.issue(&form.username) {
            Ok(device) => {
                response.headers_mut().append(header::SET_COOKIE, device);
            }
            Err(error) => tracing::warn!(%error, "no device cookie issued"),
        }
        response
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Bearer realm="portcullis""#)],
            // Smart counting: the same wrong password again is not a new
            // guess.
            Extension(Failed::guess(&form.username, &form.password)),
            "wrong username or password",
        )
            .into_response()
    }
}
