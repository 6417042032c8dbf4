//! The revocation list a cache honours, as the cache reads it.

use super::entry::Outcome;
use crate::{
    credential::KeyDigest,
    revoke::{Facts, Revocable, Revocations},
};

/// A revocation list and how to read an identity's facts for it.
pub(super) struct Honour<I> {
    pub(super) list: Revocations,
    facts: fn(&I) -> Facts<'_>,
}

impl<I: Revocable> Honour<I> {
    pub(super) fn new(list: &Revocations) -> Self {
        Self {
            list: list.clone(),
            facts: Facts::of::<I>,
        }
    }
}

impl<I> Honour<I> {
    /// An accepted credential the list revokes (or cannot vouch for) is
    /// refused; any other outcome stands.
    pub(super) fn check(&self, digest: &KeyDigest, outcome: Outcome<I>) -> Outcome<I> {
        if let Ok(identity) = &outcome {
            self.list
                .check_digest(|| *digest, &(self.facts)(identity))?;
        }
        outcome
    }
}
