//! A limiter key from a form or JSON body field: the account a login
//! request is for (SECURITY.md B13).
//!
//! [`KeyExtractor`](crate::KeyExtractor)s see only the request head, and a
//! login form carries the username in its body. [`BodyKeyLayer`] reads it
//! there, ahead of the [`LockoutLayer`](crate::lockout::LockoutLayer):
//!
//! 1. It reads the bodies of the requests its route predicate selects (the
//!    login route: the predicate is required, so API calls elsewhere are
//!    never buffered), except those with a safe method (`GET`, `HEAD`,
//!    `OPTIONS`, `TRACE`), which pass untouched and without a key.
//! 2. It buffers the body, a form (`application/x-www-form-urlencoded`)
//!    or, with feature `json`, a JSON one (`application/json`, `*/*+json`),
//!    up to a small [limit](BodyKeyLayer::limit) (default 16 KiB). A larger
//!    body, by `Content-Length` or as it arrives, is answered 413 at once:
//!    the layer never holds more than the limit.
//! 3. It reads the field (`username`, say), trims it and lowercases it
//!    (unless [`case_sensitive`](BodyKeyLayer::case_sensitive)), and puts
//!    it into the request extensions as a [`BodyField`].
//! 4. It hands the body on intact, as the bytes it read: the handler's
//!    `Form` or `Json` extractor reads exactly what the layer read.
//!
//! [`BodyField::key`] is the key extractor for the lockout: `Some(account)`
//! for a request with the field, `None` for the others (the key does not
//! apply to them).
//!
//! # Security
//!
//! - A selected request never goes on without its key (SECURITY.md B18).
//!   It is refused with 400 ([`RejectionKind::MalformedBody`], not a
//!   failure) when the layer cannot read its body: another format or none;
//!   a form whose field is not UTF-8 once decoded; JSON that is not a
//!   single object, not UTF-8, or invalid anywhere (a bad escape, a lone
//!   surrogate, a control character in a string, bad number syntax, nesting
//!   deeper than 128), or whose field is not a string; the field twice (in
//!   JSON too, however its name is escaped), since a handler might read the
//!   other one. JSON numbers are checked for syntax only, never converted,
//!   so no value elsewhere in the body (`1e400`) keeps the field from being
//!   read.
//! - The field's value is the key whether or not such an account exists:
//!   the layer looks nothing up, so an unknown username is counted exactly
//!   like a known one and a lockout says nothing about which accounts exist.
//! - A field longer than 256 bytes is refused (413): keys are logged and
//!   kept in bounded tables, and no username is that long.
//! - Safe methods are never read: a login page served to `GET /login` with
//!   a body naming an account says nothing about that account. Let the
//!   login handler take `POST` only (axum's `post(..)`).
//!
//! [`RejectionKind::MalformedBody`]: crate::reject::RejectionKind::MalformedBody
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
//! let lockout = LockoutLayer::builder(Policy::default())
//!     .also_key(BodyField::key, per_account)
//!     .build()
//!     .unwrap();
//! let login = ServiceBuilder::new()
//!     .layer(BodyKeyLayer::new("username", |req| req.uri.path() == "/login"))
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

use std::{fmt, sync::Arc};

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
#[derive(Clone, PartialEq, Eq)]
pub struct BodyField {
    value: Arc<str>,
    case_sensitive: bool,
}

impl fmt::Debug for BodyField {
    /// The value, as `BodyField("alice")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("BodyField").field(&self.value).finish()
    }
}

impl BodyField {
    pub(crate) fn new(value: impl Into<Arc<str>>, case_sensitive: bool) -> Self {
        Self {
            value: value.into(),
            case_sensitive,
        }
    }

    /// The field's value, trimmed (and lowercased unless the layer is
    /// [case-sensitive](BodyKeyLayer::case_sensitive)).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the layer that read the field keeps its case
    /// ([`BodyKeyLayer::case_sensitive`]).
    pub fn is_case_sensitive(&self) -> bool {
        self.case_sensitive
    }

    /// The field of `request`, if a [`BodyKeyLayer`] read one.
    pub fn of(request: &Parts) -> Option<&Self> {
        request.extensions.get::<Self>()
    }

    /// A key extractor: the field's value, or `None` for a request without
    /// one. Give it to [`LockoutBuilder::also_key`](crate::lockout::LockoutBuilder::also_key).
    ///
    /// There are two ways to key a lockout on the account:
    ///
    /// - `BodyField::key` (this one): every attempt at the account counts
    ///   on it, from any client. Use it when you issue no device cookies:
    ///   an API login, a service without browsers. Whoever guesses against
    ///   an account locks it for everyone, the user included, so keep its
    ///   lockout short and [reset it on success](crate::lockout::PolicyBuilder::reset_on_success).
    /// - [`DeviceCookies::untrusted_key`](crate::lockout::DeviceCookies::untrusted_key):
    ///   the account too, but only for clients without a valid device
    ///   cookie for it; add [`DeviceCookies::key`](crate::lockout::DeviceCookies::key)
    ///   beside it. Use it when browsers sign in and you can send a cookie
    ///   at each successful sign-in: an attacker then locks out only the
    ///   clients the account never used, never the user's own browser.
    ///
    /// Use one of the two, not both: both would count every untrusted
    /// attempt twice against one account.
    ///
    /// # Errors
    ///
    /// Never; the signature is that of a key extractor.
    pub fn key(request: &Parts) -> Result<Option<String>, AuthRejection> {
        Ok(Self::of(request).map(|field| field.value().to_owned()))
    }
}
