//! The cache honours a revocation list: it refuses what the list revokes,
//! and forgets what a revocation reaches.

use std::sync::{Arc, Weak};

use super::{
    builder::CachingValidatorBuilder,
    entry::Outcome,
    validator::{CachingValidator, Shared},
};
use crate::{
    Validator,
    revoke::{Facts, Listener, Revocable, Revocation, Revocations, Target},
    validate::KeyDigest,
};

/// A revocation list and how to read an identity's facts for it.
pub(super) struct Honour<I> {
    list: Revocations,
    facts: fn(&I) -> Facts<'_>,
}

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
        self.revocations = Some(Honour {
            list: revocations.clone(),
            facts: Facts::of::<V::Identity>,
        });
        self
    }
}

impl<V: Validator> CachingValidator<V> {
    /// Registers the cache with the list it honours, if any.
    pub(super) fn listen(self) -> Self {
        if let Some(honour) = &self.shared.revocations {
            let weak: Weak<Shared<V>> = Arc::downgrade(&self.shared);
            honour.list.listen(weak);
        }
        self
    }
}

impl<V: Validator> Shared<V> {
    /// An accepted credential the list revokes (or cannot vouch for) is
    /// refused; any other outcome stands.
    pub(super) fn honour(
        &self,
        digest: &KeyDigest,
        outcome: Outcome<V::Identity>,
    ) -> Outcome<V::Identity> {
        if let (Some(honour), Ok(identity)) = (&self.revocations, &outcome) {
            honour
                .list
                .inner
                .check(|| *digest, &(honour.facts)(identity))?;
        }
        outcome
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
