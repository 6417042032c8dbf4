//! API keys honour a revocation list: a revoked key is refused, and removed
//! from the table for good.

use std::sync::{Arc, Weak};

use super::keys::{ApiKeys, ApiKeysBuilder, Inner};
use crate::revoke::{Listener, Revocable, Revocation, Revocations, Target};

impl ApiKeysBuilder {
    /// Honours `revocations`: a key whose secret or id (its subject) is
    /// revoked is refused, and removed from the table for good on every
    /// replica the list reaches, so that it stays refused after the
    /// revocation expires. A key with an [issue time](super::ApiKeyIdentity::with_issued_at)
    /// after a subject's cutoff is kept. While the list does not answer
    /// (not caught up with its shared store yet, or stale past its bound and
    /// refusing: see [`SyncState`](crate::revoke::SyncState)), known keys
    /// are answered [`unavailable`](crate::ValidationError::unavailable).
    ///
    /// See [`Revocations`] for an example.
    pub fn revocations(mut self, revocations: &Revocations) -> Self {
        self.revocations = Some(revocations.clone());
        self
    }
}

impl ApiKeys {
    /// Registers the table with the list it honours, if any.
    pub(super) fn listen(self) -> Self {
        if let Some(revocations) = &self.inner.revocations {
            let weak: Weak<Inner> = Arc::downgrade(&self.inner);
            revocations.listen(weak);
        }
        self
    }
}

impl Listener for Inner {
    fn revoked(&self, revocation: &Revocation) {
        let removed = match &revocation.target {
            Target::Secret(digest) => usize::from(self.remove_digest(digest).is_some()),
            Target::Subject(subject) => self
                .remove(|entry| {
                    let identity = &entry.identity;
                    identity.id() == &**subject
                        && match (identity.issued_at(), revocation.cutoff) {
                            (Some(issued), Some(cutoff)) => issued <= cutoff,
                            _ => true,
                        }
                })
                .len(),
            Target::Id(_) => 0,
        };
        if removed > 0 {
            tracing::info!(target: "portcullis::revoke", removed, "revoked api keys removed");
        }
    }
}
