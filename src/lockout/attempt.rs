//! Reserved attempts: [`Attempt`], and why a key may be refused
//! ([`Locked`], [`Refused`]).

use std::{fmt, sync::Arc, time::Duration};

use tokio::time::Instant;

use super::{
    Failed, Outcome,
    store::{Record, Ticket},
};
use crate::{
    AuthRejection, Fingerprint,
    reject::{RejectionKind, retry_after_secs},
};

/// A key is locked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    until: Instant,
    retry_after: Duration,
    lockouts: u32,
}

impl Locked {
    pub(crate) fn new(record: Record, now: Instant) -> Self {
        Self {
            until: record.until,
            retry_after: record.until.saturating_duration_since(now),
            lockouts: record.lockouts,
        }
    }

    /// When the lockout ends.
    pub fn until(&self) -> Instant {
        self.until
    }

    /// How long the lockout still lasts, as of when it was reported.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// How many times the key has been locked out while remembered
    /// (1 for a first lockout).
    pub fn lockouts(&self) -> u32 {
        self.lockouts
    }

    /// The rejection the layer answers with:
    /// [`RejectionKind::LockedOut`] with `Retry-After`.
    pub fn to_rejection(&self) -> AuthRejection {
        AuthRejection::new(RejectionKind::LockedOut).with_retry_after(self.retry_after)
    }
}

impl fmt::Display for Locked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "locked out after too many failed attempts, retry in {} s",
            retry_after_secs(self.retry_after)
        )
    }
}

impl std::error::Error for Locked {}

/// Why [`Tracker::attempt`](super::Tracker::attempt) did not admit a key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refused {
    /// The key is locked out.
    LockedOut(Locked),
    /// [`max_waiting`](super::PolicyBuilder::max_waiting) requests of the
    /// key are waiting for a reservation already.
    Crowded,
}

impl Refused {
    /// How long the client should wait before trying again.
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::LockedOut(locked) => locked.retry_after(),
            Self::Crowded => Duration::from_secs(1),
        }
    }

    /// The rejection the layer answers with: [`RejectionKind::LockedOut`]
    /// for a lockout, [`RejectionKind::RateLimited`] for a crowded key,
    /// both with `Retry-After`. Neither counts as a failure.
    pub fn to_rejection(&self) -> AuthRejection {
        match self {
            Self::LockedOut(locked) => locked.to_rejection(),
            Self::Crowded => {
                AuthRejection::new(RejectionKind::RateLimited).with_retry_after(self.retry_after())
            }
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LockedOut(locked) => locked.fmt(f),
            Self::Crowded => f.write_str("too many requests of this key are waiting"),
        }
    }
}

impl std::error::Error for Refused {}

impl From<Locked> for Refused {
    fn from(locked: Locked) -> Self {
        Self::LockedOut(locked)
    }
}

/// What recording a failure did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureOutcome {
    /// The failure was counted; the key is not locked out.
    Counted {
        /// Failures within the window, this one included.
        failures: u32,
        /// Failures left before a lockout.
        remaining: u32,
    },
    /// This failure locked the key out.
    LockedOut(Locked),
    /// The key was already locked out: the failure was not counted and the
    /// lockout is unchanged.
    AlreadyLocked(Locked),
    /// The failure is being recorded in the shared store (Redis) in the
    /// background; what it did is logged and, for a lockout, passed to the
    /// hook.
    Deferred,
    /// The same wrong guess was made by this key within the window already
    /// (smart counting, B14): not counted again.
    Repeated,
}

/// Ends reservations; erases the key bounds so [`Attempt`] needs none.
pub(crate) trait Finisher<K>: Send + Sync {
    fn finish(
        &self,
        key: &K,
        hash: u64,
        ticket: &Ticket,
        outcome: Outcome,
        guess: Option<Fingerprint>,
    ) -> Option<FailureOutcome>;

    /// Records `outcome` of `key` outside of any reservation (one released
    /// early, B20), as the direct API does.
    fn record(&self, key: &K, hash: u64, outcome: Outcome, guess: Option<Fingerprint>);
}

/// A reservation held in a store, ended once.
pub(crate) struct Reserved<K> {
    finisher: Arc<dyn Finisher<K>>,
    key: K,
    hash: u64,
    ticket: Ticket,
}

impl<K> Reserved<K> {
    pub(crate) fn new(finisher: Arc<dyn Finisher<K>>, key: K, hash: u64, ticket: Ticket) -> Self {
        Self {
            finisher,
            key,
            hash,
            ticket,
        }
    }

    pub(crate) fn key(&self) -> &K {
        &self.key
    }

    /// Ends the reservation with `outcome`.
    pub(crate) fn end(
        &self,
        outcome: Outcome,
        guess: Option<Fingerprint>,
    ) -> Option<FailureOutcome> {
        self.finisher
            .finish(&self.key, self.hash, &self.ticket, outcome, guess)
    }

    /// Records `outcome` for the key after the reservation ended (B20).
    pub(crate) fn record(&self, outcome: Outcome, guess: Option<Fingerprint>) {
        self.finisher.record(&self.key, self.hash, outcome, guess);
    }
}

/// A reserved attempt of one key; see [`Tracker::attempt`](super::Tracker::attempt).
///
/// End it with [`failed`](Self::failed) or [`succeeded`](Self::succeeded).
/// Dropping it (a client that disconnected, a handler that returned early)
/// frees the reservation without recording anything.
#[must_use = "dropping an attempt records nothing; call `failed` or `succeeded`"]
pub struct Attempt<K> {
    reserved: Option<Reserved<K>>,
    failures: u32,
}

impl<K> Attempt<K> {
    /// An attempt admitted with `failures` within the window.
    pub(crate) fn new(reserved: Reserved<K>, failures: u32) -> Self {
        Self {
            reserved: Some(reserved),
            failures,
        }
    }

    /// The key of this attempt.
    pub fn key(&self) -> &K {
        self.reserved
            .as_ref()
            .expect("the reservation is only taken when the attempt ends")
            .key()
    }

    /// The key's failures within the window when the attempt was admitted
    /// (to ask for a CAPTCHA after a few, say).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure, locking the key out at the threshold.
    pub fn failed(mut self) -> FailureOutcome {
        self.end(Outcome::Failure, None)
            .unwrap_or(FailureOutcome::Deferred)
    }

    /// Records a failure described by `failed`: with
    /// [`Failed::guess`], the same wrong guess repeated by the key within
    /// the window counts once ([`FailureOutcome::Repeated`]).
    pub fn failed_with(mut self, failed: Failed) -> FailureOutcome {
        self.end(Outcome::Failure, failed.fingerprint())
            .unwrap_or(FailureOutcome::Deferred)
    }

    /// Records a success (clears the failures only when the policy resets
    /// on success).
    pub fn succeeded(mut self) {
        self.end(Outcome::Success, None);
    }

    /// The reservation, to be ended by someone else.
    pub(crate) fn into_reserved(mut self) -> Reserved<K> {
        self.reserved
            .take()
            .expect("the reservation is only taken when the attempt ends")
    }

    fn end(&mut self, outcome: Outcome, guess: Option<Fingerprint>) -> Option<FailureOutcome> {
        self.reserved.take()?.end(outcome, guess)
    }
}

impl<K> Drop for Attempt<K> {
    fn drop(&mut self) {
        self.end(Outcome::Neutral, None);
    }
}

impl<K: fmt::Debug> fmt::Debug for Attempt<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt")
            .field("key", &self.reserved.as_ref().map(Reserved::key))
            .finish()
    }
}
