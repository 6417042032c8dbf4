//! What the cache keeps for one secret: an outcome per carrier.

use std::sync::Arc;

use tokio::time::Instant;

use super::invalidation::SubjectCell;
use crate::{CredentialSource, ValidationError};

/// A validator's answer.
pub(super) type Outcome<I> = Result<I, ValidationError>;

/// The outcome of one backend call, with the invalidation generation read
/// before the call started.
#[derive(Clone)]
pub(super) struct Settled<I> {
    pub(super) outcome: Outcome<I>,
    pub(super) started: u64,
}

/// The cached outcome for one carrier of a secret.
///
/// The carrier is part of what is cached (a validator may answer the same
/// secret differently in a cookie and in a header), but not of the cache
/// key, so invalidating the secret reaches every carrier at once.
#[derive(Clone)]
pub(super) struct Carrier<I> {
    pub(super) source: CredentialSource,
    pub(super) outcome: Outcome<I>,
    /// When the outcome stops being served, on tokio's clock.
    pub(super) deadline: Instant,
    /// The generation read before the backend call started.
    pub(super) started: u64,
    /// The identity's subject, for `invalidate_subject`.
    pub(super) subject: Option<Arc<SubjectCell>>,
}

impl<I> Carrier<I> {
    /// Whether this outcome may still be served at `now`, given the
    /// generation of the last `invalidate_all`.
    pub(super) fn is_live(&self, now: Instant, cleared: u64) -> bool {
        now < self.deadline
            && self.started >= cleared
            && self
                .subject
                .as_ref()
                .is_none_or(|cell| !cell.invalidated_after(self.started))
    }
}

/// Everything cached for one secret, replaced as a whole (never mutated in
/// place, so readers need no lock).
pub(super) type Slot<I> = Arc<[Carrier<I>]>;

/// The outcome cached for `source`, if it is still live.
pub(super) fn lookup<I: Clone>(
    slot: &Slot<I>,
    source: &CredentialSource,
    now: Instant,
    cleared: u64,
) -> Option<Outcome<I>> {
    slot.iter()
        .find(|carrier| carrier.source == *source)
        .filter(|carrier| carrier.is_live(now, cleared))
        .map(|carrier| carrier.outcome.clone())
}

/// `slot` with `carrier` in place of the outcome for its source; carriers
/// that can no longer be served are dropped on the way.
pub(super) fn with<I: Clone>(
    slot: Option<&Slot<I>>,
    carrier: Carrier<I>,
    now: Instant,
    cleared: u64,
) -> Slot<I> {
    let mut carriers: Vec<Carrier<I>> = slot
        .into_iter()
        .flat_map(|slot| slot.iter())
        .filter(|old| old.source != carrier.source && old.is_live(now, cleared))
        .cloned()
        .collect();
    carriers.push(carrier);
    carriers.into()
}
