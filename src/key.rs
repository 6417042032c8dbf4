//! How the limiting layers tell clients apart.

mod hash;

use std::{fmt, hash::Hash};

use http::request::Parts;

pub(crate) use self::hash::KeyHasher;
use crate::AuthRejection;

/// Derives the key a limiter counts under from a request.
///
/// [`ClientIp`](crate::ClientIp) is the usual one (the client's address);
/// any other key, such as a username or a username plus an address, works
/// through this trait. Closures `Fn(&Parts) -> Result<K, AuthRejection>` are
/// key extractors too.
///
/// # Errors
///
/// Return an [`AuthRejection`] when no key can be derived; the layer answers
/// with it instead of lumping the request into a shared bucket.
///
/// # Security
///
/// A key appears in logs and operator listings, so it must never contain a
/// credential.
///
/// # Example
///
/// ```
/// use http::{Request, request::Parts};
/// use portcullis::{AuthRejection, KeyExtractor, reject::RejectionKind};
///
/// let by_tenant = |parts: &Parts| {
///     parts
///         .headers
///         .get("x-tenant")
///         .and_then(|v| v.to_str().ok())
///         .map(str::to_owned)
///         .ok_or_else(|| AuthRejection::new(RejectionKind::Malformed))
/// };
/// let (parts, ()) = Request::builder().header("x-tenant", "acme").body(()).unwrap().into_parts();
/// assert_eq!(by_tenant.extract(&parts).unwrap(), "acme");
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key. It is logged and listed, so it must not be secret.
    type Key: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static;

    /// Derives the key of `request`.
    ///
    /// # Errors
    ///
    /// When the request carries nothing to key on.
    fn extract(&self, request: &Parts) -> Result<Self::Key, AuthRejection>;
}

impl<F, K> KeyExtractor for F
where
    F: Fn(&Parts) -> Result<K, AuthRejection> + Send + Sync + 'static,
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    type Key = K;

    fn extract(&self, request: &Parts) -> Result<K, AuthRejection> {
        self(request)
    }
}
