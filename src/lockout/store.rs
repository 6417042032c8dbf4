//! The in-memory store behind a [`Tracker`](super::Tracker).
//!
//! Two bounded moka tables and a small table of attempts in flight:
//!
//! - `counters`: failure counts of keys that are not locked out. LRU
//!   eviction, so a brand-new key is always admitted (moka's default TinyLFU
//!   admission would drop a new, rarely seen key at once when the table is
//!   full of frequently used ones, silently resetting an attacker's count).
//! - `lockouts`: keys that were locked out, remembered until `window` after
//!   the lockout ended (for escalation). A separate table, so no amount of
//!   counter churn can evict a lockout; only other lockouts can.
//! - `shards`: attempts in flight per key, one mutex per shard. Every
//!   decision about a key (admit, record, unlock) runs under its shard's
//!   lock, which makes check-and-reserve atomic per key. Entries live only
//!   while requests are in flight, so this table is bounded by concurrency,
//!   not by the number of clients.
//!
//! moka's expiry only reclaims memory; every deadline that decides an
//! outcome is stored in the value and compared with tokio's clock.

use std::{
    collections::HashMap,
    fmt,
    hash::{BuildHasher, Hash, RandomState},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use moka::{Expiry, notification::RemovalCause, policy::EvictionPolicy, sync::Cache};
use tokio::{sync::Notify, time::Instant};

use super::Policy;

const SHARDS: usize = 64;

/// Failure count of a key that is not locked out.
#[derive(Debug, Clone, Copy)]
struct Counter {
    failures: u32,
    /// When failures are forgotten: `window` after the last one.
    forget_at: Instant,
}

/// A key that was locked out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) until: Instant,
    /// How many times the key has been locked out while remembered.
    pub(crate) lockouts: u32,
    /// When the record is forgotten: `window` after the lockout ends.
    forget_at: Instant,
}

/// Attempts in flight for one key.
#[derive(Debug, Default)]
struct Slot {
    in_flight: u32,
    /// Created when a request has to wait for this key.
    waiters: Option<Arc<Notify>>,
}

/// Registers a waiter on a key's notifier (see [`MemoryStore::admit`]).
pub(crate) type Register<'a> = &'a mut dyn FnMut(&Arc<Notify>);

/// Whether a request may go on.
#[derive(Debug)]
pub(crate) enum Admission {
    /// A reservation was taken; release it with [`MemoryStore::release`].
    Admitted,
    /// The key is locked out.
    Locked(Record),
    /// `failures + in_flight` reached the threshold: wait for an attempt in
    /// flight to finish, then ask again.
    Full,
}

/// How an attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    Failure,
    Success,
    Neutral,
}

/// What recording a failure did.
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

/// Totals since the store was created.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) failures: AtomicU64,
    pub(crate) lockouts: AtomicU64,
    pub(crate) evictions: AtomicU64,
}

pub(crate) struct MemoryStore<K> {
    policy: Policy,
    counters: Cache<K, Counter>,
    lockouts: Cache<K, Record>,
    shards: Box<[Mutex<HashMap<K, Slot>>]>,
    shard_hasher: RandomState,
    totals: Arc<Totals>,
}

impl<K> fmt::Debug for MemoryStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("policy", &self.policy)
            .field("tracked", &self.counters.entry_count())
            .field("lockout_records", &self.lockouts.entry_count())
            .finish_non_exhaustive()
    }
}

/// Reclaims a moka entry once its deadline (on tokio's clock) has passed.
struct ReclaimAt;

trait Deadline {
    fn reclaim_at(&self) -> Instant;
}

impl Deadline for Counter {
    fn reclaim_at(&self) -> Instant {
        self.forget_at
    }
}

impl Deadline for Record {
    fn reclaim_at(&self) -> Instant {
        self.forget_at.max(self.until)
    }
}

impl<K, V: Deadline> Expiry<K, V> for ReclaimAt {
    fn expire_after_create(&self, _: &K, value: &V, _: std::time::Instant) -> Option<Duration> {
        Some(value.reclaim_at().saturating_duration_since(Instant::now()))
    }

    fn expire_after_update(
        &self,
        _: &K,
        value: &V,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.reclaim_at().saturating_duration_since(Instant::now()))
    }
}

fn later(now: Instant, by: Duration) -> Instant {
    // Policy durations are at most 366 days, so this only saturates on a
    // clock near its end of range.
    now.checked_add(by).unwrap_or(now)
}

impl<K> MemoryStore<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    pub(crate) fn new(policy: Policy) -> Self {
        let totals = Arc::new(Totals::default());
        let evicted = Arc::clone(&totals);
        let counters = Cache::builder()
            .max_capacity(policy.capacity())
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(ReclaimAt)
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    evicted.evictions.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        let evicted = Arc::clone(&totals);
        let lockouts = Cache::builder()
            .max_capacity(policy.capacity())
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(ReclaimAt)
            .eviction_listener(move |key: Arc<K>, record: Record, cause| {
                if cause == RemovalCause::Size {
                    evicted.evictions.fetch_add(1, Ordering::Relaxed);
                    if record.until > Instant::now() {
                        tracing::warn!(
                            target: "portcullis::lockout",
                            key = ?key,
                            "an active lockout was evicted because the lockout table is full; \
                             raise the capacity"
                        );
                    }
                }
            })
            .build();
        let shards = (0..SHARDS).map(|_| Mutex::default()).collect();
        Self {
            policy,
            counters,
            lockouts,
            shards,
            shard_hasher: RandomState::new(),
            totals,
        }
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    pub(crate) fn totals(&self) -> &Totals {
        &self.totals
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, HashMap<K, Slot>> {
        let hash = self.shard_hasher.hash_one(key);
        // SHARDS is a power of two; truncating the hash is the point.
        #[allow(clippy::cast_possible_truncation)]
        let index = (hash as usize) & (SHARDS - 1);
        // The critical sections below never panic while holding the lock
        // (moka calls and integer arithmetic only), and the map stays
        // consistent even if one did, so a poisoned lock is still usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The lockout of `key`, if it is locked out at `now`.
    pub(crate) fn locked(&self, key: &K, now: Instant) -> Option<Record> {
        self.lockouts.get(key).filter(|r| now < r.until)
    }

    /// Failures of `key` still within the window at `now`.
    fn failures(&self, key: &K, now: Instant) -> u32 {
        self.counters
            .get(key)
            .filter(|c| now < c.forget_at)
            .map_or(0, |c| c.failures)
    }

    /// Admits a request for `key` if `failures + in_flight < max_failures`,
    /// reserving a slot. When the key is full, `wait` is called with the
    /// key's notifier while the shard is still locked, so that a waiter
    /// registered there cannot miss the release that frees a slot.
    pub(crate) fn admit(&self, key: &K, now: Instant, wait: Option<Register<'_>>) -> Admission {
        let mut shard = self.shard(key);
        if let Some(record) = self.locked(key, now) {
            return Admission::Locked(record);
        }
        let failures = self.failures(key, now);
        let max = self.policy.max_failures();
        match shard.get_mut(key) {
            Some(slot) if failures.saturating_add(slot.in_flight) < max => {
                slot.in_flight += 1;
                Admission::Admitted
            }
            Some(slot) => {
                // failures < max always holds (reaching max locks the key
                // out and clears its counter), so in_flight >= 1 here: a
                // release will come and wake the waiter.
                if let Some(wait) = wait {
                    wait(slot.waiters.get_or_insert_with(Default::default));
                }
                Admission::Full
            }
            None => {
                // No attempt in flight and failures < max: admit.
                shard.insert(
                    key.clone(),
                    Slot {
                        in_flight: 1,
                        waiters: None,
                    },
                );
                Admission::Admitted
            }
        }
    }

    /// Ends an attempt admitted by [`admit`](Self::admit): records its
    /// outcome and frees its slot.
    pub(crate) fn release(&self, key: &K, finish: Finish, now: Instant) -> Recorded {
        let mut shard = self.shard(key);
        let recorded = self.apply(key, finish, now);
        let mut wake = None;
        if let Some(slot) = shard.get_mut(key) {
            slot.in_flight = slot.in_flight.saturating_sub(1);
            if slot.in_flight == 0 {
                // Waiters hold the notifier of this slot: wake them all to
                // ask again before the slot goes away.
                wake = shard.remove(key).and_then(|s| s.waiters).map(|n| (n, true));
            } else {
                let everyone = matches!(recorded, Recorded::LockedOut { .. });
                wake = slot.waiters.clone().map(|n| (n, everyone));
            }
        }
        drop(shard);
        match wake {
            Some((notify, true)) => notify.notify_waiters(),
            Some((notify, false)) => notify.notify_one(),
            None => {}
        }
        recorded
    }

    /// Records an outcome outside of an admitted attempt.
    pub(crate) fn record(&self, key: &K, finish: Finish, now: Instant) -> Recorded {
        let shard = self.shard(key);
        let recorded = self.apply(key, finish, now);
        let waiters = shard.get(key).and_then(|s| s.waiters.clone());
        drop(shard);
        // A lockout or a reset changes what waiters would be told.
        if let Some(waiters) = waiters {
            waiters.notify_waiters();
        }
        recorded
    }

    /// Applies an outcome. The caller holds the key's shard lock.
    fn apply(&self, key: &K, finish: Finish, now: Instant) -> Recorded {
        match finish {
            Finish::Failure => self.fail(key, now),
            Finish::Success => {
                if self.policy.reset_on_success() {
                    self.counters.invalidate(key);
                }
                Recorded::NotAFailure
            }
            Finish::Neutral => Recorded::NotAFailure,
        }
    }

    fn fail(&self, key: &K, now: Instant) -> Recorded {
        let remembered = self.lockouts.get(key).filter(|r| now < r.forget_at);
        if let Some(record) = remembered.filter(|r| now < r.until) {
            // B7: failures while locked out neither count nor extend it.
            return Recorded::AlreadyLocked { record };
        }
        self.totals.failures.fetch_add(1, Ordering::Relaxed);
        let failures = self.failures(key, now).saturating_add(1);
        if failures < self.policy.max_failures() {
            let forget_at = later(now, self.policy.window());
            self.counters.insert(
                key.clone(),
                Counter {
                    failures,
                    forget_at,
                },
            );
            return Recorded::Counted { failures };
        }
        let previous = remembered.map_or(0, |r| r.lockouts);
        let until = later(now, self.policy.lockout_duration(previous));
        let record = Record {
            until,
            lockouts: previous.saturating_add(1),
            forget_at: later(until, self.policy.window()),
        };
        self.lockouts.insert(key.clone(), record);
        self.counters.invalidate(key);
        self.totals.lockouts.fetch_add(1, Ordering::Relaxed);
        Recorded::LockedOut { record, failures }
    }

    /// Lifts a lockout and forgets the key's failures. Returns whether the
    /// key was locked out.
    pub(crate) fn unlock(&self, key: &K, now: Instant) -> bool {
        let shard = self.shard(key);
        let was_locked = self.locked(key, now).is_some();
        self.lockouts.invalidate(key);
        self.counters.invalidate(key);
        let waiters = shard.get(key).and_then(|s| s.waiters.clone());
        drop(shard);
        if let Some(waiters) = waiters {
            waiters.notify_waiters();
        }
        was_locked
    }

    /// Keys locked out at `now`.
    pub(crate) fn locked_keys(&self, now: Instant) -> impl Iterator<Item = (Arc<K>, Record)> {
        self.lockouts.iter().filter(move |(_, r)| now < r.until)
    }

    /// Entries in the counter table (exact after `run_pending_tasks`).
    pub(crate) fn tracked(&self) -> u64 {
        self.counters.entry_count()
    }

    /// Entries in the lockout table (exact after `run_pending_tasks`).
    pub(crate) fn lockout_records(&self) -> u64 {
        self.lockouts.entry_count()
    }

    /// Failures within the window, for the direct API.
    pub(crate) fn failures_of(&self, key: &K, now: Instant) -> u32 {
        self.failures(key, now)
    }

    pub(crate) fn run_pending_tasks(&self) {
        self.counters.run_pending_tasks();
        self.lockouts.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    //! Why the tables are built the way they are: each test shows the
    //! failure a simpler design would have.
    use super::*;

    fn hot_table(policy: EvictionPolicy, capacity: u64) -> Cache<u64, u32> {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .eviction_policy(policy)
            .build();
        for round in 0..8 {
            for key in 0..capacity {
                if round == 0 {
                    cache.insert(key, 1);
                } else {
                    let _ = cache.get(&key);
                }
            }
            cache.run_pending_tasks();
        }
        cache
    }

    #[test]
    fn tiny_lfu_admission_would_drop_a_new_attacker_key_from_a_table_of_hot_keys() {
        // B5: the hazard. Five writes of a new key into a full TinyLFU table
        // of frequently read keys leave no trace of it.
        let cache = hot_table(EvictionPolicy::tiny_lfu(), 1000);
        for _ in 0..5 {
            let seen = cache.get(&u64::MAX).unwrap_or(0);
            cache.insert(u64::MAX, seen + 1);
            cache.run_pending_tasks();
        }
        assert_eq!(cache.get(&u64::MAX), None);
    }

    #[test]
    fn lru_admits_a_new_key_into_a_table_of_hot_keys() {
        // B5: the remedy.
        let cache = hot_table(EvictionPolicy::lru(), 1000);
        for _ in 0..5 {
            let seen = cache.get(&u64::MAX).unwrap_or(0);
            cache.insert(u64::MAX, seen + 1);
            cache.run_pending_tasks();
        }
        assert_eq!(cache.get(&u64::MAX), Some(5));
    }

    #[test]
    fn a_single_lru_table_would_let_a_flood_of_new_keys_evict_a_lockout() {
        // B4: the hazard that the separate lockout table removes.
        let cache: Cache<u64, u32> = Cache::builder()
            .max_capacity(1000)
            .eviction_policy(EvictionPolicy::lru())
            .build();
        cache.insert(u64::MAX, 5);
        for key in 0..10_000 {
            cache.insert(key, 1);
        }
        cache.run_pending_tasks();
        assert_eq!(cache.get(&u64::MAX), None);
    }

    #[tokio::test(start_paused = true)]
    async fn counters_never_reach_the_threshold_without_a_lockout() {
        let policy = Policy::builder().max_failures(3).build().unwrap();
        let store = MemoryStore::new(policy);
        let now = Instant::now();
        assert!(matches!(
            store.record(&1, Finish::Failure, now),
            Recorded::Counted { failures: 1 }
        ));
        assert!(matches!(
            store.record(&1, Finish::Failure, now),
            Recorded::Counted { failures: 2 }
        ));
        assert!(matches!(
            store.record(&1, Finish::Failure, now),
            Recorded::LockedOut { failures: 3, .. }
        ));
        assert_eq!(store.failures_of(&1, now), 0);
        assert!(store.locked(&1, now).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn slots_are_removed_when_the_last_attempt_ends() {
        let store = MemoryStore::new(Policy::default());
        let now = Instant::now();
        assert!(matches!(store.admit(&7, now, None), Admission::Admitted));
        assert!(matches!(store.admit(&7, now, None), Admission::Admitted));
        store.release(&7, Finish::Neutral, now);
        assert_eq!(store.shard(&7).len(), 1);
        store.release(&7, Finish::Success, now);
        assert_eq!(store.shard(&7).len(), 0);
    }
}
