//! The cache honours a revocation list: it refuses what the list revokes,
//! and forgets what a revocation reaches.

use super::{builder::CachingValidatorBuilder, honour::Honour, validator::Shared};
use crate::{
    Validator,
    revoke::{Listener, Revocable, Revocation, Revocations, Target},
};

impl<V: Validator> CachingValidatorBuilder<V>
where
    V::Identity: Revocable,
{
    /// Honours `revocations`: every answer the cache gives, from the cache
    /// or from the backend, is checked against the list (by secret, token
    /// or session id, and subject with its cutoff, see [`Revocable`]), and
    /// what a revocation reaches is forgotten at once (B12). While the list
    /// does not answer (not caught up with its shared store yet, or stale
    /// past its bound and refusing: see
    /// [`SyncState`](crate::revoke::SyncState)), accepted credentials are
    /// answered [`unavailable`](crate::ValidationError::unavailable); when it
    /// has caught up, the cache forgets everything it held before answering
    /// from it again.
    ///
    /// This makes any backend honour revocations, even one that knows
    /// nothing of them (a session table, a token-introspection call).
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::revoke::Revocations;
    /// use portcullis::validate::{ApiKeys, CachingValidator};
    ///
    /// let revocations = Revocations::new();
    /// let keys = ApiKeys::builder("acme_").build()?;
    /// let cached = CachingValidator::builder(keys).revocations(&revocations).build()?;
    /// # let _ = cached;
    /// # Ok::<(), portcullis::ConfigError>(())
    /// ```
    pub fn revocations(mut self, revocations: &Revocations) -> Self {
        self.revocations = Some(Honour::new(revocations));
        self
    }
}

impl<V: Validator> Listener for Shared<V> {
    fn revoked(&self, revocation: &Revocation) {
        match &revocation.target {
            Target::Secret(digest) => self.invalidate_digest(digest),
            Target::Subject(subject) => self.invalidate_subject(subject),
            // Cached outcomes are checked on every answer; without a way to
            // find them by id, they are left to expire.
            Target::Id(_) => {}
        }
    }

    #[cfg(feature = "redis")]
    fn resynced(&self) {
        self.invalidate_all();
    }
}
