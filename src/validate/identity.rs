//! What an identity may say about itself.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

/// An identity that may stop being valid at a known time.
///
/// [`CachingValidator`](super::CachingValidator) never serves a cached identity past this deadline.
/// Implemented by [`ApiKeyIdentity`](super::ApiKeyIdentity) and by JWT
/// claims (`Claims`, feature `jwt`); implement it for your own identity
/// types, returning `None` when they do not expire on their own.
///
/// # Example
///
/// ```
/// use portcullis::validate::ExpiresAt;
/// use tokio::time::Instant;
///
/// #[derive(Clone)]
/// struct Session { until: Instant }
///
/// impl ExpiresAt for Session {
///     fn expires_at(&self) -> Option<Instant> {
///         Some(self.until)
///     }
/// }
/// # let _ = Session { until: Instant::now() }.expires_at();
/// ```
pub trait ExpiresAt {
    /// When the identity expires, on tokio's clock.
    fn expires_at(&self) -> Option<Instant>;
}

impl<T: ExpiresAt + ?Sized> ExpiresAt for Arc<T> {
    fn expires_at(&self) -> Option<Instant> {
        (**self).expires_at()
    }
}

/// How far ahead a deadline may lie: 30 years, as tokio's own "far future".
const HORIZON: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `now + after`, saturated at 30 years from now instead of overflowing
/// (R2: an `exp` near `u64::MAX` or a `Duration::MAX` setting must not panic).
pub(crate) fn deadline_after(now: Instant, after: Duration) -> Instant {
    // Adding 30 years cannot overflow on any platform tokio supports; the
    // fallback only keeps this function total.
    now.checked_add(after.min(HORIZON)).unwrap_or(now)
}

/// An identity that carries scopes (OAuth 2.0 `scope`, API-key grants).
///
/// # Example
///
/// ```
/// use portcullis::scope::Scopes;
///
/// #[derive(Clone)]
/// struct User { admin: bool }
///
/// impl Scopes for User {
///     fn has_scope(&self, scope: &str) -> bool {
///         scope == "admin" && self.admin
///     }
/// }
/// assert!(User { admin: true }.has_scope("admin"));
/// ```
pub trait Scopes {
    /// Whether the identity was granted `scope` (compared case-sensitively,
    /// as RFC 6749 §3.3 says).
    fn has_scope(&self, scope: &str) -> bool;
}

impl<T: Scopes + ?Sized> Scopes for Arc<T> {
    fn has_scope(&self, scope: &str) -> bool {
        (**self).has_scope(scope)
    }
}

impl<T: Scopes + ?Sized> Scopes for Box<T> {
    fn has_scope(&self, scope: &str) -> bool {
        (**self).has_scope(scope)
    }
}
