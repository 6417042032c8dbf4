//! A limiter key from a form or JSON body field: the account a login
//! request is for (SECURITY.md B13).
//!
//! [`KeyExtractor`](crate::KeyExtractor)s see only the request head, and a
//! login form carries the username in its body. [`BodyKeyLayer`] reads it
//! there, ahead of the [`LockoutLayer`](crate::lockout::LockoutLayer):
//!
//! 1. It buffers the body of the requests it applies to (by default every
//!    request with a form body, `application/x-www-form-urlencoded`, and
//!    with feature `json` a JSON one; narrow it with
//!    [`when`](BodyKeyLayer::when)) up to a small
//!    [limit](BodyKeyLayer::limit) (default 16 KiB). A larger body, by
//!    `Content-Length` or as it arrives, is answered 413 at once: the layer
//!    never holds more than the limit.
//! 2. It reads the field (`username`, say), trims it and lowercases it
//!    (unless [`case_sensitive`](BodyKeyLayer::case_sensitive)), and puts
//!    it into the request extensions as a [`BodyField`].
//! 3. It hands the body on intact, as the bytes it read: the handler's
//!    `Form` or `Json` extractor reads exactly what the layer read.
//!
//! [`BodyField::key`] is the key extractor for the lockout: `Some(account)`
//! for a request with the field, `None` for the others (the key does not
//! apply to them).
//!
//! # Security
//!
//! - The field's value is the key whether or not such an account exists:
//!   the layer looks nothing up, so an unknown username is counted exactly
//!   like a known one and a lockout says nothing about which accounts exist.
//! - A field present twice is refused (400): a handler might read the other
//!   one. A field longer than 256 bytes is refused (413): keys are logged
//!   and kept in bounded tables, and no username is that long.
//! - A body in another format is not read and gets no key: make sure your
//!   handler accepts only the formats the layer reads (axum's `Form` and
//!   `Json` check the content type).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, header};
//! use http_body_util::Full;
//! use bytes::Bytes;
//! use portcullis::{PeerAddr, body_key::{BodyField, BodyKeyLayer}, lockout::{LockoutLayer, Policy}};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let per_account = Policy::builder().max_failures(2).build().unwrap();
//! let lockout = LockoutLayer::new(Policy::default()).key(BodyField::key, per_account);
//! let login = ServiceBuilder::new()
//!     .layer(BodyKeyLayer::new("username"))
//!     .layer(lockout)
//!     .service_fn(|_req: Request<_>| async {
//!         let res = Response::builder().status(StatusCode::UNAUTHORIZED).body(String::new());
//!         Ok::<_, Infallible>(res.unwrap())
//!     });
//!
//! let attempt = |from: &str, form: &'static str| {
//!     Request::post("/login")
//!         .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
//!         .extension(PeerAddr(from.parse().unwrap()))
//!         .body(Full::new(Bytes::from_static(form.as_bytes())))
//!         .unwrap()
//! };
//! // Two addresses, two wrong passwords for one account…
//! for (from, form) in [("192.0.2.1:1", "username=alice&password=a"), ("192.0.2.2:1", "username=Alice&password=b")] {
//!     let res = login.clone().oneshot(attempt(from, form)).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! }
//! // …lock the account, from any address.
//! let res = login.clone().oneshot(attempt("192.0.2.3:1", "username=alice&password=c")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! # });
//! ```

mod layer;
mod parse;
mod service;

use std::sync::Arc;

use http::request::Parts;

pub use self::{
    layer::BodyKeyLayer,
    service::{BodyKey, ResponseFuture},
};
use crate::AuthRejection;

/// The body of a request after [`BodyKey`]: the original body, or the bytes
/// the layer read from it.
pub type Body<B> = http_body_util::Either<B, http_body_util::Full<bytes::Bytes>>;

/// The value of the body field a [`BodyKeyLayer`] read, normalized; in the
/// request extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyField(Arc<str>);

impl BodyField {
    /// The field's value, trimmed (and lowercased unless the layer is
    /// [case-sensitive](BodyKeyLayer::case_sensitive)).
    pub fn value(&self) -> &str {
        &self.0
    }

    /// The field of `request`, if a [`BodyKeyLayer`] read one.
    pub fn of(request: &Parts) -> Option<&Self> {
        request.extensions.get::<Self>()
    }

    /// A key extractor: the field's value, or `None` for a request without
    /// one. Give it to [`LockoutLayer::key`](crate::lockout::LockoutLayer::key).
    ///
    /// # Errors
    ///
    /// Never; the signature is that of a key extractor.
    pub fn key(request: &Parts) -> Result<Option<String>, AuthRejection> {
        Ok(Self::of(request).map(|field| field.value().to_owned()))
    }
}
