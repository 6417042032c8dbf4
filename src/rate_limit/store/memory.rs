//! The in-memory store: governor's GCRA over a bounded, sharded CLOCK table
//! on tokio time.

use std::{
    fmt,
    hash::{BuildHasher, Hash},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use governor::{
    Quota, RateLimiter, clock::Clock, middleware::StateInformationMiddleware, nanos::Nanos,
    state::StateStore,
};

use super::{Decision, Store, Verdict};
use crate::{
    key::KeyHasher,
    rate_limit::{clock::TokioClock, stats::RateLimitStats},
    table::{ClockQueue, Hand, Hashed, Table, shard_capacities, shard_index},
};

/// The GCRA state of one key.
#[derive(Debug)]
struct Slot {
    /// governor's theoretical arrival time, in nanoseconds of the limiter's
    /// clock.
    tat: u64,
    /// Identifies this slot's place in the CLOCK queue.
    ticket: u64,
    /// Used since the CLOCK hand last passed (second chance).
    referenced: bool,
    /// Refused recently: kept out of eviction until its state equals a
    /// fresh one, so a flood of new keys cannot hand it a new burst.
    pinned: bool,
}

impl Slot {
    /// The state of a key not seen yet (queued by the caller).
    fn new() -> Self {
        Self {
            tat: 0,
            ticket: 0,
            referenced: false,
            pinned: false,
        }
    }

    /// Whether the state equals a fresh one at `now` (its whole burst is
    /// back): forgetting it loses nothing.
    fn is_fresh(&self, now: u64) -> bool {
        self.tat <= now
    }
}

/// One shard of the table.
#[derive(Debug)]
struct Shard<K> {
    slots: Table<K, Slot>,
    clock: ClockQueue<K>,
    capacity: usize,
    pinned: usize,
    pin_capacity: usize,
}

impl<K: Clone + Eq> Shard<K> {
    fn new(capacity: usize, pin_capacity: usize) -> Self {
        Self {
            slots: Table::new(),
            clock: ClockQueue::new(capacity),
            capacity,
            pinned: 0,
            pin_capacity,
        }
    }

    /// Frees one slot for the new slot of a key, inserted already but not
    /// queued: one whose state equals a fresh one, else the first one the
    /// CLOCK hand finds neither used since it last passed nor pinned
    /// (pinned slots go only when nothing else can).
    fn evict_one(&mut self, now: u64) {
        // Pinned slots are spared as long as another slot can go (the new
        // one cannot: the hand does not see it).
        let spare_pinned = self.pinned < self.slots.len().saturating_sub(1);
        let slots = &mut self.slots;
        let victim = self.clock.evict(|k, ticket, chance| {
            let Some(slot) = slots.get_mut(k) else {
                return Hand::Stale;
            };
            if slot.ticket != ticket {
                return Hand::Stale;
            }
            if slot.is_fresh(now) {
                return Hand::Evict;
            }
            if slot.pinned && spare_pinned {
                return Hand::Spare;
            }
            if slot.referenced && chance {
                slot.referenced = false;
                return Hand::Spare;
            }
            Hand::Evict
        });
        if let Some((hash, key)) = victim
            && let Some(slot) = self.slots.remove(Hashed { key: &key, hash })
            && slot.pinned
        {
            self.pinned -= 1;
        }
    }

    /// Runs `f` on the slot of `k`, created (making room) if the key is
    /// new: a returning key's slot is found with one lookup. A slot used
    /// again gets its second chance; a new one has none yet, so keys seen
    /// once (a flood) go before keys in use.
    fn with_slot<R>(
        &mut self,
        k: Hashed<'_, K>,
        now: impl FnOnce() -> u64,
        f: impl FnOnce(&mut Slot) -> R,
    ) -> R {
        if let Some(slot) = self.slots.get_mut(k) {
            slot.referenced = true;
            return f(slot);
        }
        self.slots.insert_new(k, Slot::new());
        if self.slots.len() > self.capacity {
            self.evict_one(now());
        }
        let slots = &self.slots;
        let ticket = self.clock.push(k, |k, ticket| {
            slots.get(k).is_some_and(|s| s.ticket == ticket)
        });
        // Found again: making room removed another key, never this one
        // (not queued yet).
        let slot = self.slots.get_or_insert_with(k, Slot::new);
        slot.ticket = ticket;
        f(slot)
    }
}

/// A governor [`StateStore`] on a bounded table.
///
/// - Every key gets a slot, a brand-new one too (a table that refused new
///   keys would reset an attacker's state on every request); at capacity a
///   slot whose state equals a fresh one goes first (nothing is lost), then
///   one not used recently (CLOCK).
/// - A key that was refused is pinned until its state equals a fresh one,
///   up to `limited_capacity` keys: a flood of unique keys that churns the
///   table does not give a limited client a new burst.
/// - The table is split over up to 64 shards by a keyed hash, each with
///   its share of the capacity; the per-request work is one hash and one
///   short critical section, and governor's arithmetic.
pub(crate) struct ClockTable<K> {
    shards: Box<[Mutex<Shard<K>>]>,
    hasher: KeyHasher,
    clock: TokioClock,
}

impl<K> fmt::Debug for ClockTable<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClockTable")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl<K: Clone + Eq + Hash> ClockTable<K> {
    fn new(capacity: u64, limited_capacity: u64, clock: TokioClock) -> Self {
        let shards = shard_capacities(capacity);
        let count = shards.len() as u64;
        let shards = shards
            .into_iter()
            .enumerate()
            .map(|(i, share)| {
                let i = i as u64;
                let pins = limited_capacity / count + u64::from(i < limited_capacity % count);
                let pins = usize::try_from(pins).unwrap_or(usize::MAX).min(share);
                Mutex::new(Shard::new(share, pins))
            })
            .collect();
        Self {
            shards,
            hasher: KeyHasher::new(),
            clock,
        }
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard<K>> {
        // The critical sections hold table operations and integer
        // arithmetic only; a poisoned shard is still consistent.
        self.shards[shard_index(hash, self.shards.len())]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn counts(&self) -> (u64, u64) {
        self.shards.iter().fold((0, 0), |(slots, pinned), shard| {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            (
                slots + shard.slots.len() as u64,
                pinned + shard.pinned as u64,
            )
        })
    }
}

/// The table as governor's state store, shared with the stats.
struct TableRef<K>(Arc<ClockTable<K>>);

impl<K: Clone + Eq + Hash> StateStore for TableRef<K> {
    type Key = K;

    #[inline]
    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        self.0.measure_and_replace(key, f)
    }
}

impl<K: Clone + Eq + Hash> ClockTable<K> {
    #[inline]
    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let k = Hashed {
            key,
            hash: self.hasher.hash_one(key),
        };
        let mut shard = self.shard(k.hash);
        let now = || self.clock.now().as_u64();
        let (result, unpinned) = shard.with_slot(k, now, |slot| {
            let previous = (slot.tat > 0).then(|| Nanos::new(slot.tat));
            match f(previous) {
                Ok((outcome, tat)) => {
                    slot.tat = tat.as_u64().max(1);
                    (Ok(outcome), false)
                }
                Err(refused) => (Err(refused), !slot.pinned),
            }
        });
        let shard = &mut *shard;
        if unpinned
            && shard.pinned < shard.pin_capacity
            && let Some(slot) = shard.slots.get_mut(k)
        {
            slot.pinned = true;
            shard.pinned += 1;
        }
        result
    }
}

type Limiter<K> = RateLimiter<K, TableRef<K>, TokioClock, StateInformationMiddleware>;

/// The in-memory [`Store`]. (governor's limiter needs the key bounds on
/// the struct.)
pub(crate) struct MemoryStore<K: Clone + Eq + Hash> {
    limiter: Limiter<K>,
    table: Arc<ClockTable<K>>,
    /// Whether an allowed request's remaining allowance is wanted (the
    /// `RateLimit` header fields); a division otherwise saved.
    count_remaining: bool,
}

impl<K: Clone + Eq + Hash> fmt::Debug for MemoryStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl<K: Clone + Eq + Hash> MemoryStore<K> {
    /// A store of at most `capacity` keys, `limited_capacity` of them
    /// pinned while refused. Allowed verdicts carry the remaining allowance
    /// when `count_remaining`, and 0 otherwise.
    pub(crate) fn new(
        quota: Quota,
        capacity: u64,
        limited_capacity: u64,
        count_remaining: bool,
    ) -> Self {
        let clock = TokioClock::new();
        let table = Arc::new(ClockTable::new(capacity, limited_capacity, clock));
        Self {
            limiter: RateLimiter::new(quota, TableRef(Arc::clone(&table)), clock),
            table,
            count_remaining,
        }
    }

    pub(crate) fn verdict(&self, key: &K) -> Verdict {
        match self.limiter.check_key(key) {
            Ok(snapshot) => Verdict::Allowed {
                remaining: if self.count_remaining {
                    snapshot.remaining_burst_capacity()
                } else {
                    0
                },
            },
            Err(not_until) => Verdict::Refused {
                retry_after: not_until
                    .wait_time_from(self.limiter.clock().now())
                    .max(Duration::from_nanos(1)),
            },
        }
    }
}

impl<K> Store<K> for MemoryStore<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    fn decide(&self, key: &K) -> Decision {
        Decision::Now(self.verdict(key))
    }

    fn stats(&self, stats: &mut RateLimitStats) {
        let (entries, limited) = self.table.counts();
        stats.entries = entries;
        stats.limited = limited;
    }
}
