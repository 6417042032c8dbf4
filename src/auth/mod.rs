//! Authentication: [`AuthLayer`] finds the credential, validates it and hands
//! the caller's identity to your service.
//!
//! For each request:
//!
//! 1. Requests marked [public](AuthLayer::public) go straight through.
//!    CORS preflight requests are authenticated like any other unless a
//!    [preflight responder](AuthLayer::preflight) answers them.
//! 2. The [`Extractor`] looks for the credential.
//!    None → 401 (or, [optional](AuthLayer::optional), through as anonymous);
//!    malformed or several → 400; too large → 431.
//! 3. The [`Validator`](crate::Validator) decides. Success inserts its
//!    `Identity` into the request extensions, releases the reservations of
//!    the [`LockoutLayer`](crate::lockout::LockoutLayer)s outside (the
//!    credential was accepted, so your handler runs without holding one,
//!    B11), and calls your service; a failure is answered per the table in
//!    [`reject`](crate::reject). A released request is still judged by its
//!    response: a 401 or a [`Failed`](crate::lockout::Failed) marker from
//!    your handler counts on every key of the lockout, whatever credential
//!    was accepted (B20). A sign-in attempt (a request whose body names an
//!    account, read by a [`BodyKeyLayer`](crate::body_key::BodyKeyLayer))
//!    keeps its reservations until the response, so parallel guesses stay
//!    bounded (B6).
//!
//! A validator that answers without waiting (an in-memory table, a cache
//! hit) is answered in `call` itself: the request goes on without a
//! waiting state and without cloning the inner service.
//!
//! Every rejection carries an [`AuthRejection`](crate::AuthRejection) in its
//! response extensions, which is how the
//! [`LockoutLayer`](crate::lockout::LockoutLayer) outside it counts failures.
//!
//! # CORS
//!
//! Put a CORS layer (such as tower-http's `CorsLayer`) *outside*
//! `AuthLayer`: it answers preflight requests itself, before they need a
//! credential. A preflight that reaches `AuthLayer` carries no credential
//! and is answered 401, unless [`AuthLayer::preflight`] is given a responder
//! for it; it never reaches your handlers either way (an axum `any()` route
//! or a proxying fallback would otherwise run for anyone).
//!
//! # Security
//!
//! Unknown, revoked and otherwise invalid credentials get byte-identical
//! responses; the precise reason goes to `tracing` (target
//! `portcullis::auth`) with the credential's fingerprint, never the secret.
//! A presented credential is validated even in optional mode, so a wrong one
//! is never quietly downgraded to anonymous.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, header::AUTHORIZATION};
//! use portcullis::{AuthLayer, Credential, ValidationError};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! #[derive(Clone, Debug, PartialEq)]
//! struct User(&'static str);
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let validator = |credential: Credential| async move {
//!     match credential.secret() {
//!         "alice-token" => Ok(User("alice")),
//!         _ => Err(ValidationError::invalid()),
//!     }
//! };
//! let mut service = ServiceBuilder::new()
//!     .layer(AuthLayer::new(validator))
//!     .service_fn(|req: Request<String>| async move {
//!         let user = req.extensions().get::<User>().unwrap();
//!         Ok::<_, Infallible>(Response::new(format!("hello {}", user.0)))
//!     });
//!
//! let req = Request::builder()
//!     .header(AUTHORIZATION, "Bearer alice-token")
//!     .body(String::new())
//!     .unwrap();
//! let res = service.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! let req = Request::new(String::new());
//! let res = service.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(res.headers()["www-authenticate"], r#"Bearer realm="api""#);
//! # }
//! ```

mod future;
mod layer;
mod service;

use std::{sync::Arc, time::Duration};

use http::request::Parts;

use bytes::Bytes;
use http::Response;

use crate::{cross_origin::CrossOriginProtection, extract::Extractor, lease::Leases};

pub use self::{future::ResponseFuture, layer::AuthLayer, service::Auth};

/// Marks requests that need no credential.
pub(crate) type Predicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// Answers CORS preflight requests.
pub(crate) type Preflight = Arc<dyn Fn(&Parts) -> Response<Bytes> + Send + Sync>;

/// Configuration shared by every clone of an [`Auth`] service.
pub(crate) struct Shared<V, R> {
    validator: Arc<V>,
    extractor: Extractor,
    renderer: Arc<R>,
    optional: bool,
    public: Option<Predicate>,
    preflight: Option<Preflight>,
    timeout: Option<Duration>,
    cross_origin: CrossOriginProtection,
    clear_stale_cookies: bool,
    leases: Option<Leases>,
}

impl<V, R> Shared<V, R> {
    /// The same configuration, rendering with `renderer`.
    fn with_renderer<R2>(self, renderer: Arc<R2>) -> Shared<V, R2> {
        Shared {
            validator: self.validator,
            extractor: self.extractor,
            renderer,
            optional: self.optional,
            public: self.public,
            preflight: self.preflight,
            timeout: self.timeout,
            cross_origin: self.cross_origin,
            clear_stale_cookies: self.clear_stale_cookies,
            leases: self.leases,
        }
    }
}

impl<V, R> Clone for Shared<V, R> {
    fn clone(&self) -> Self {
        Self {
            validator: Arc::clone(&self.validator),
            extractor: self.extractor.clone(),
            renderer: Arc::clone(&self.renderer),
            optional: self.optional,
            public: self.public.clone(),
            preflight: self.preflight.clone(),
            timeout: self.timeout,
            cross_origin: self.cross_origin.clone(),
            clear_stale_cookies: self.clear_stale_cookies,
            leases: self.leases.clone(),
        }
    }
}

/// Inserted into the extensions of requests the layer let through without
/// an identity (optional mode, public requests), so extractors
/// can tell "anonymous" from "the layer is missing".
#[cfg(any(feature = "axum", feature = "tonic"))]
#[derive(Clone)]
pub(crate) struct Anonymous {
    /// The layer's renderer: the axum extractors answer an anonymous
    /// request with the layer's own 401.
    #[cfg(feature = "axum")]
    pub(crate) renderer: Arc<dyn crate::reject::Renderer>,
}
