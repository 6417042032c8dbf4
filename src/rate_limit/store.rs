//! The bounded per-key state store behind the rate limiter.

use std::{
    fmt,
    hash::Hash,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use governor::{
    nanos::Nanos,
    state::{InMemoryState, NotKeyed, StateStore},
};
use moka::{notification::RemovalCause, policy::EvictionPolicy, sync::Cache};

/// The GCRA state of one key: governor's own atomic cell, plus whether the
/// key is currently held in the limited table.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    gcra: InMemoryState,
    pinned: AtomicBool,
}

/// A governor [`StateStore`] on two bounded moka caches.
///
/// - `main` holds every recently seen key. It evicts least-recently-used
///   entries, so a brand-new key is always admitted (moka's default TinyLFU
///   admission could refuse it, resetting an attacker's state on every
///   request), and forgets a key after it has been idle long enough for its
///   state to be indistinguishable from a fresh one.
/// - `limited` holds keys that were refused, for as long as a full refill
///   takes. Evicting a limited key from `main` (a flood of unique keys) does
///   not reset it: a miss in `main` first looks here and puts the same state
///   back.
///
/// The per-request path is one `get` on `main` and a compare-and-swap on the
/// key's atomic state, as in governor's own keyed stores.
#[derive(Clone)]
pub(crate) struct MokaStore<K> {
    main: Cache<K, Arc<Slot>>,
    limited: Cache<K, Arc<Slot>>,
}

impl<K> MokaStore<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// `forget_after` is how long after its last request a key's state is
    /// the same as a fresh one (a full refill).
    pub(crate) fn new(max_capacity: u64, limited_capacity: u64, forget_after: Duration) -> Self {
        let main = Cache::builder()
            .max_capacity(max_capacity)
            .eviction_policy(EvictionPolicy::lru())
            .time_to_idle(forget_after)
            .build();
        let limited = Cache::builder()
            .max_capacity(limited_capacity)
            .eviction_policy(EvictionPolicy::lru())
            .time_to_live(forget_after)
            .eviction_listener(|_key, slot: Arc<Slot>, cause| {
                if cause != RemovalCause::Replaced {
                    slot.pinned.store(false, Ordering::Relaxed);
                }
            })
            .build();
        Self { main, limited }
    }

    pub(crate) fn entry_count(&self) -> u64 {
        self.main.entry_count()
    }

    pub(crate) fn limited_count(&self) -> u64 {
        self.limited.entry_count()
    }

    pub(crate) fn run_pending_tasks(&self) {
        self.main.run_pending_tasks();
        self.limited.run_pending_tasks();
    }

    fn slot(&self, key: &K) -> Arc<Slot> {
        if let Some(slot) = self.main.get(key) {
            return slot;
        }
        // Concurrent first requests of one key share one initialisation,
        // so they cannot each start from a full burst.
        self.main
            .get_with_by_ref(key, || self.limited.get(key).unwrap_or_default())
    }
}

impl<K> StateStore for MokaStore<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let slot = self.slot(key);
        let outcome = slot.gcra.measure_and_replace(&NotKeyed::NonKey, f);
        if outcome.is_err()
            && !slot.pinned.load(Ordering::Relaxed)
            && !slot.pinned.swap(true, Ordering::Relaxed)
        {
            self.limited.insert(key.clone(), slot);
        }
        outcome
    }
}

impl<K> fmt::Debug for MokaStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MokaStore")
            .field("entries", &self.main.entry_count())
            .field("limited", &self.limited.entry_count())
            .finish()
    }
}
