//! axum integration (feature `axum`): the [`Identity`] extractor, and the
//! [`Lease`] extractor for streaming handlers.
//!
//! # Example
//!
//! ```
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode, header::AUTHORIZATION};
//! use portcullis::{AuthLayer, Credential, ValidationError, integration::axum::Identity};
//! use tower::ServiceExt;
//!
//! #[derive(Clone)]
//! struct User(String);
//!
//! async fn me(Identity(user): Identity<User>) -> String {
//!     format!("hello {}", user.0)
//! }
//!
//! async fn maybe(user: Option<Identity<User>>) -> &'static str {
//!     if user.is_some() { "signed in" } else { "anonymous" }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let validator = |credential: Credential| async move {
//!     match credential.secret() {
//!         "alice-token" => Ok(User("alice".into())),
//!         _ => Err(ValidationError::invalid()),
//!     }
//! };
//! let app = Router::new()
//!     .route("/me", get(me))
//!     .route("/maybe", get(maybe))
//!     .layer(AuthLayer::new(validator).optional());
//!
//! let req = Request::get("/me").header(AUTHORIZATION, "Bearer alice-token").body(Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::OK);
//!
//! // Anonymous requests reach the handler in optional mode; `Identity` refuses them with 401.
//! let req = Request::get("/me").body(Body::empty()).unwrap();
//! assert_eq!(app.clone().oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! let req = Request::get("/maybe").body(Body::empty()).unwrap();
//! assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::OK);
//! # }
//! ```

use std::{fmt, sync::OnceLock};

use ::axum::{
    body::Body,
    extract::{FromRequestParts, OptionalFromRequestParts},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http::{StatusCode, header, request::Parts};

use crate::{
    AuthRejection,
    auth::Anonymous,
    lease::Lease,
    reject::{self, DefaultRenderer, RejectionKind},
};

/// Answers with the [`DefaultRenderer`] (realm `"api"`), as an HTTP
/// response, with the rejection in the response extensions: a handler
/// answers a refusal in one line, and a lockout outside counts it as the
/// layers' own rejections.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use axum::response::IntoResponse;
/// use http::StatusCode;
/// use portcullis::{AuthRejection, lockout::Tracker, reject::RejectionKind};
///
/// async fn login() -> Result<&'static str, AuthRejection> {
///     Err(AuthRejection::new(RejectionKind::LockedOut).with_retry_after(Duration::from_secs(90)))
/// }
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let res = login().await.into_response();
/// assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
/// assert_eq!(res.headers()["retry-after"], "90");
/// # });
/// ```
impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        static RENDERER: OnceLock<DefaultRenderer> = OnceLock::new();
        let renderer = RENDERER.get_or_init(DefaultRenderer::new);
        let (parts, ()) = http::Request::new(()).into_parts();
        reject::render(renderer, self, &parts).map(Body::from)
    }
}

/// The caller's identity, as produced by the [`Validator`](crate::Validator)
/// of the [`AuthLayer`](crate::AuthLayer) in front of the handler.
///
/// - Identity present: the extractor succeeds.
/// - The layer let the request through anonymous (optional mode, a public
///   route): `Identity<T>` answers 401 through the layer's renderer, and
///   `Option<Identity<T>>` gives `None`.
/// - No `AuthLayer` in front of the route, or a validator that produces
///   another type: a 500 that says so (and an `error` event), instead of an
///   opaque failure. This is a deployment bug, not a client error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<T>(pub T);

/// Why [`Identity`] could not be extracted.
#[derive(Debug)]
pub struct IdentityRejection {
    kind: RejectionReason,
}

enum RejectionReason {
    Anonymous(http::Response<Bytes>),
    LayerMissing(String),
}

impl fmt::Debug for RejectionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous(_) => f.write_str("Anonymous"),
            Self::LayerMissing(message) => f.debug_tuple("LayerMissing").field(message).finish(),
        }
    }
}

impl IdentityRejection {
    /// Whether the route is missing its `AuthLayer` (a server bug) rather
    /// than the request missing a credential.
    pub fn is_layer_missing(&self) -> bool {
        matches!(self.kind, RejectionReason::LayerMissing(_))
    }
}

impl fmt::Display for IdentityRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RejectionReason::Anonymous(_) => f.write_str("the request carries no credential"),
            RejectionReason::LayerMissing(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for IdentityRejection {}

impl IntoResponse for IdentityRejection {
    fn into_response(self) -> Response {
        match self.kind {
            RejectionReason::Anonymous(response) => response.map(Body::from),
            RejectionReason::LayerMissing(message) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                message,
            )
                .into_response(),
        }
    }
}

fn missing<T>(parts: &Parts) -> IdentityRejection {
    missing_because(parts, || super::layer_missing::<T>())
}

fn missing_because(parts: &Parts, layer_missing: impl FnOnce() -> String) -> IdentityRejection {
    match parts.extensions.get::<Anonymous>() {
        Some(Anonymous { renderer }) => IdentityRejection {
            kind: RejectionReason::Anonymous(reject::render(
                &**renderer,
                AuthRejection::new(RejectionKind::Missing),
                parts,
            )),
        },
        None => {
            let message = layer_missing();
            tracing::error!(target: "portcullis::axum", "{message}");
            IdentityRejection {
                kind: RejectionReason::LayerMissing(message),
            }
        }
    }
}

impl<S, T> FromRequestParts<S> for Identity<T>
where
    T: Clone + Send + Sync + 'static,
    S: Send + Sync,
{
    type Rejection = IdentityRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<T>() {
            Some(identity) => Ok(Identity(identity.clone())),
            None => Err(missing::<T>(parts)),
        }
    }
}

impl<S, T> OptionalFromRequestParts<S> for Identity<T>
where
    T: Clone + Send + Sync + 'static,
    S: Send + Sync,
{
    type Rejection = IdentityRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        if let Some(identity) = parts.extensions.get::<T>() {
            return Ok(Some(Identity(identity.clone())));
        }
        match missing::<T>(parts) {
            IdentityRejection {
                kind: RejectionReason::Anonymous(_),
            } => Ok(None),
            layer_missing => Err(layer_missing),
        }
    }
}

/// The request's [`Lease`], granted by an [`AuthLayer`](crate::AuthLayer)
/// with [leases](crate::AuthLayer::leases) on: hold it in a WebSocket
/// handler and `select!` on [`Lease::ended`] (see [`lease`](crate::lease)
/// for closing with code 1008).
///
/// Refused like [`Identity`]: 401 (through the layer's renderer) for a
/// request the layer let through anonymous (`Option<Lease>` gives `None`),
/// and a 500 that says so when the route has no `AuthLayer` with leases on.
///
/// # Example
///
/// ```
/// use axum::{Router, body::Body, routing::get};
/// use http::{Request, StatusCode, header::AUTHORIZATION};
/// use portcullis::{AuthLayer, Credential, ValidationError, lease::Lease};
/// use portcullis::revoke::{Revocable, Revocations};
/// use portcullis::validate::ExpiresAt;
/// use tokio::time::Instant;
/// use tower::ServiceExt;
///
/// #[derive(Clone)]
/// struct User;
/// impl ExpiresAt for User {
///     fn expires_at(&self) -> Option<Instant> { None }
/// }
/// impl Revocable for User {}
///
/// async fn sign_out(lease: Lease) -> StatusCode {
///     match lease.revoke().await {
///         Ok(()) => StatusCode::NO_CONTENT,
///         Err(_) => StatusCode::SERVICE_UNAVAILABLE,
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let revocations = Revocations::new();
/// let validate = |_: Credential| async { Ok::<_, ValidationError>(User) };
/// let app = Router::new()
///     .route("/logout", get(sign_out))
///     .layer(AuthLayer::new(validate).leases(&revocations));
/// let req = Request::get("/logout").header(AUTHORIZATION, "Bearer t").body(Body::empty()).unwrap();
/// assert_eq!(app.oneshot(req).await.unwrap().status(), StatusCode::NO_CONTENT);
/// assert_eq!(revocations.stats().entries, 1);
/// # }
/// ```
impl<S> FromRequestParts<S> for Lease
where
    S: Send + Sync,
{
    type Rejection = IdentityRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Lease>() {
            Some(lease) => Ok(lease.clone()),
            None => Err(missing_because(parts, lease_missing)),
        }
    }
}

impl<S> OptionalFromRequestParts<S> for Lease
where
    S: Send + Sync,
{
    type Rejection = IdentityRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        if let Some(lease) = parts.extensions.get::<Lease>() {
            return Ok(Some(lease.clone()));
        }
        match missing_because(parts, lease_missing) {
            IdentityRejection {
                kind: RejectionReason::Anonymous(_),
            } => Ok(None),
            layer_missing => Err(layer_missing),
        }
    }
}

fn lease_missing() -> String {
    "portcullis: no `Lease` in the request extensions: the route is not behind an AuthLayer \
     with leases on (AuthLayer::leases)"
        .to_owned()
}
