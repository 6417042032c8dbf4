//! Authentication: [`AuthLayer`] finds the credential, validates it and hands
//! the caller's identity to your service.
//!
//! For each request:
//!
//! 1. CORS preflight requests (`OPTIONS` with `Access-Control-Request-Method`)
//!    and requests marked [public](AuthLayer::public) go straight through.
//! 2. The [`Extractor`] looks for the credential.
//!    None → 401 (or, [optional](AuthLayer::optional), through as anonymous);
//!    malformed or several → 400; too large → 431.
//! 3. The [`Validator`](crate::Validator) decides. Success inserts its
//!    `Identity` into the request extensions and calls your service; a
//!    failure is answered per the table in [`reject`](crate::reject).
//!
//! Every rejection carries an [`AuthRejection`](crate::AuthRejection) in its
//! response extensions, which is how the
//! [`LockoutLayer`](crate::lockout::LockoutLayer) outside it counts failures.
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

use crate::{extract::Extractor, reject::Renderer};

pub use self::{future::ResponseFuture, layer::AuthLayer, service::Auth};

/// Marks requests that need no credential.
pub(crate) type Predicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// Configuration shared by every clone of an [`Auth`] service.
pub(crate) struct Shared<V, R> {
    validator: Arc<V>,
    extractor: Extractor,
    renderer: Arc<R>,
    optional: bool,
    public: Option<Predicate>,
    timeout: Option<Duration>,
}

/// Inserted into the extensions of requests the layer let through without
/// an identity (optional mode, public requests, preflight), so extractors
/// can tell "anonymous" from "the layer is missing".
#[derive(Clone)]
pub(crate) struct Anonymous(#[allow(dead_code)] pub(crate) Arc<dyn Renderer>);
