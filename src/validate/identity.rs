//! What an identity may say about itself.

use std::sync::Arc;

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
