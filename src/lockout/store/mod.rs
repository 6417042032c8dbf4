//! Where the lockout state lives: the [`Store`] trait, the in-memory store
//! and (feature `redis`) the Redis store with its local fallback.
//!
//! The [`Tracker`](super::Tracker) is the decision engine: it hashes keys,
//! reports outcomes (logs, the lockout hook, totals) and runs the waiting.
//! A store only answers its questions: may this key try now, record this
//! outcome, lift this lockout.

use std::{fmt, pin::Pin, sync::Arc, time::Duration};

#[cfg(feature = "redis")]
use tokio::time::Sleep;
use tokio::{
    sync::{Notify, futures::OwnedNotified},
    time::Instant,
};

use super::{Outcome, stats::LockoutStats};
use crate::future::BoxFuture;
pub(crate) use crate::table::Hashed;

#[cfg(feature = "redis")]
mod credits;
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// How soon a request that found its key full asks a shared store again,
/// unless a reservation ending on this replica wakes it first.
pub(crate) const ASK_AGAIN: Duration = Duration::from_millis(250);

/// A lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) until: Instant,
    /// How many times the key has been locked out while remembered.
    pub(crate) lockouts: u32,
}

#[cfg(feature = "redis")]
impl Record {
    /// A lockout that lasts `remaining` from now, as a shared store reports
    /// it.
    pub(crate) fn lasting(remaining: Duration, lockouts: u32) -> Self {
        let now = Instant::now();
        Self {
            until: now.checked_add(remaining).unwrap_or(now),
            lockouts,
        }
    }
}

/// Which store admitted a reservation, and its identity there.
#[derive(Debug)]
pub(crate) struct Ticket {
    /// Unique per reservation in a shared store; 0 in memory.
    #[cfg(feature = "redis")]
    pub(crate) id: u64,
    /// Admitted by the shared store rather than the local one.
    #[cfg(feature = "redis")]
    pub(crate) shared: bool,
    /// In memory: the key's reservations in flight, so that the common
    /// release (no failure, nothing else to do) needs no shard lock.
    pub(crate) flight: Option<Arc<memory::Flight>>,
}

impl Ticket {
    /// A reservation of the in-memory store, released through the shard.
    #[cfg(test)]
    pub(crate) const LOCAL: Self = Self::local(None);

    /// A reservation of the in-memory store.
    pub(crate) const fn local(flight: Option<Arc<memory::Flight>>) -> Self {
        Self {
            #[cfg(feature = "redis")]
            id: 0,
            #[cfg(feature = "redis")]
            shared: false,
            flight,
        }
    }

    /// A reservation of the shared store, under the grant of `epoch`.
    #[cfg(feature = "redis")]
    pub(crate) const fn shared(epoch: u64) -> Self {
        Self {
            id: epoch,
            shared: true,
            flight: None,
        }
    }
}

/// Whether a request may try now.
pub(crate) enum Admission {
    /// A reservation was taken; end it with [`Store::finish`]. With the
    /// key's failures within the window (for progressive delay).
    Admitted(Ticket, u32),
    /// The key is locked out (as of the given time).
    Locked(Record, Instant),
    /// `failures + reservations` reached the threshold: wait (see
    /// [`Store::wait`]), then ask again.
    Full,
    /// Too many requests of the key are waiting already.
    Crowded,
    /// The answer needs a round trip.
    #[cfg(feature = "redis")]
    Ask(BoxFuture<Admission>),
    /// The store could not answer (only a shared store; the fallback
    /// decides locally instead).
    #[cfg(feature = "redis")]
    Unavailable,
}

impl Admission {
    /// Whether the request waits for a slot: the key is full, or a shared
    /// store could not answer.
    pub(crate) fn waits(&self) -> bool {
        match self {
            Self::Full => true,
            #[cfg(feature = "redis")]
            Self::Unavailable => true,
            _ => false,
        }
    }

    /// The round trip the answer waits for, if it needs one.
    pub(crate) fn asking(self) -> Option<BoxFuture<Admission>> {
        #[cfg(feature = "redis")]
        if let Self::Ask(asking) = self {
            return Some(asking);
        }
        None
    }
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Admitted(ticket, failures) => f
                .debug_tuple("Admitted")
                .field(ticket)
                .field(failures)
                .finish(),
            Self::Locked(record, _) => f.debug_tuple("Locked").field(record).finish(),
            Self::Full => f.write_str("Full"),
            Self::Crowded => f.write_str("Crowded"),
            #[cfg(feature = "redis")]
            Self::Ask(_) => f.write_str("Ask"),
            #[cfg(feature = "redis")]
            Self::Unavailable => f.write_str("Unavailable"),
        }
    }
}

/// What recording an outcome did.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Recorded {
    /// Counted; `failures` within the window so far.
    Counted { failures: u32 },
    /// This failure locked the key out.
    LockedOut { record: Record, failures: u32 },
    /// The key was already locked out: not counted, the lockout unchanged.
    AlreadyLocked { record: Record },
    /// A success or a neutral outcome.
    NotAFailure,
}

/// What ending an attempt did: known now, or once a round trip ends
/// (`None` when the shared store could not record it).
pub(crate) enum Finished {
    Now(Recorded),
    #[cfg(feature = "redis")]
    Later(BoxFuture<Option<Recorded>>),
}

/// Where a waiting request registers to be woken: a notification when a
/// reservation of its key ends on this replica, and (for a shared store) a
/// timer to ask again.
pub(crate) struct Waiter<'a> {
    pub(crate) notified: Pin<&'a mut Option<OwnedNotified>>,
    #[cfg(feature = "redis")]
    pub(crate) retry: &'a mut Option<Pin<Box<Sleep>>>,
}

impl Waiter<'_> {
    /// Wakes the request on the next notification of `notify`. Registered
    /// at once, so a notification sent after this call is not missed.
    pub(crate) fn wait_on(&mut self, notify: &Arc<Notify>) {
        self.notified.set(Some(Arc::clone(notify).notified_owned()));
        if let Some(notified) = self.notified.as_mut().as_pin_mut() {
            notified.enable();
        }
    }

    /// Wakes the request after `delay` at the latest.
    #[cfg(feature = "redis")]
    pub(crate) fn retry_in(&mut self, delay: Duration) {
        *self.retry = Some(Box::pin(tokio::time::sleep(delay)));
    }
}

/// Where a [`Tracker`](super::Tracker) keeps its state.
///
/// Every method decides for one key atomically; `now` is read from tokio's
/// clock inside, only when a decision needs it.
pub(crate) trait Store<K>: Send + Sync + 'static {
    /// Admits a request of `key` if its reservations are below the policy's
    /// [`in_flight_limit`](super::Policy::in_flight_limit) (`failures +
    /// reservations < max_failures`, or one at a time while delayed),
    /// reserving a slot.
    fn admit(&self, key: Hashed<'_, K>) -> Admission;

    /// After [`admit`](Self::admit) answered `Full`: registers `waiter` to be
    /// woken when asking again makes sense, or answers at once if the key's
    /// state changed meanwhile. Never a round trip: `Full` means registered,
    /// `Crowded` means too many requests of the key wait already.
    fn wait(&self, key: Hashed<'_, K>, waiter: &mut Waiter<'_>) -> Admission;

    /// Ends a reservation admitted by this store, recording its outcome.
    fn finish(&self, key: Hashed<'_, K>, ticket: &Ticket, outcome: Outcome) -> Finished;

    /// Records an outcome outside of a reservation (the direct API).
    fn record(&self, key: Hashed<'_, K>, outcome: Outcome) -> Recorded;

    /// Starts, without waiting, the round trip the next [`admit`](Self::admit)
    /// of `key` would make, so that the request finds it done or under way
    /// (only a shared store has one; see [`Prefetch`](crate::redis::Prefetch)).
    #[cfg(feature = "redis")]
    fn prefetch(&self, key: Hashed<'_, K>) {
        let _ = key;
    }

    /// The lockout of `key`, if it is locked out now (as of the instant
    /// returned).
    fn locked(&self, key: Hashed<'_, K>) -> Option<(Record, Instant)>;

    /// Failures of `key` within the window.
    fn failures(&self, key: Hashed<'_, K>) -> u32;

    /// Lifts the lockout of `key` and forgets its failures and history.
    /// Returns whether it was locked out here.
    fn unlock(&self, key: Hashed<'_, K>) -> bool;

    /// Keys locked out now.
    fn locked_keys(&self) -> Vec<(K, Record)>;

    /// Fills in the table sizes and the counts this store keeps.
    fn stats(&self, stats: &mut LockoutStats);
}
