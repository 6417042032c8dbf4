//! The in-memory store: bounded, sharded tables on tokio time.
//!
//! Every table is bounded by the policy's capacity, and every decision
//! about a key (admit, record, unlock) runs under the lock of the key's
//! shard, which makes check-and-reserve atomic per key.
//!
//! - **Counters and reservations**, per shard ([`shard`]). A key holds an
//!   entry while it has failures within the window or reservations, and
//!   recent clients keep theirs between requests, so that a returning
//!   client takes and ends a reservation with a lookup each, not an insert
//!   and a removal. Counters are evicted by CLOCK (second-chance LRU): a new
//!   counter always gets in and the least recently used one goes. The
//!   entries kept for recent clients have a CLOCK and a bound of their own:
//!   clients that never fail cannot push a counter out. (moka's
//!   default TinyLFU admission would instead drop a new, rarely seen key at
//!   once when the table is full of frequently used ones, silently
//!   resetting an attacker's count; and a moka insert costs several times a
//!   hash map insert, which a flood of new keys would turn into the cost of
//!   every failure.)
//! - **Lockouts**, per shard, in their own map ([`lockouts`]), so no amount
//!   of counter churn can evict them.
//! - **Escalation history**, a moka cache (LRU, per-entry expiry `window`
//!   after the lockout ends): how often a key was locked out. Read and
//!   written only when a key is locked out.
//!
//! moka's expiry only reclaims memory; every deadline that decides an
//! outcome is stored in the value and compared with tokio's clock.

mod lockouts;
mod shard;

use std::{
    fmt,
    hash::Hash,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use moka::{Expiry, notification::RemovalCause, policy::EvictionPolicy, sync::Cache};
use tokio::time::Instant;

pub(crate) use self::shard::Flight;
use self::shard::Shard;
use super::{Admission, Finished, Hashed, Record, Recorded, Store, Ticket, Waiter};
use crate::{
    lockout::{Outcome, Policy, stats::LockoutStats},
    table::{shard_capacities, shard_index},
};

/// How often a key was locked out, for escalation.
#[derive(Debug, Clone, Copy)]
struct History {
    lockouts: u32,
    /// `window` after the last lockout ends.
    forget_at: Instant,
}

/// Reclaims a history entry once it is forgotten (on tokio's clock).
struct ReclaimAt;

impl<K> Expiry<K, History> for ReclaimAt {
    fn expire_after_create(
        &self,
        _: &K,
        history: &History,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(history.forget_at.saturating_duration_since(Instant::now()))
    }

    fn expire_after_update(
        &self,
        _: &K,
        history: &History,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(history.forget_at.saturating_duration_since(Instant::now()))
    }
}

fn later(now: Instant, by: Duration) -> Instant {
    // Policy durations are at most 366 days, so this only saturates on a
    // clock near its end of range.
    now.checked_add(by).unwrap_or(now)
}

/// The in-memory [`Store`].
pub(crate) struct MemoryStore<K> {
    policy: Policy,
    history: Cache<K, History>,
    shards: Box<[Mutex<Shard<K>>]>,
    evictions: Arc<AtomicU64>,
}

impl<K> fmt::Debug for MemoryStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl<K> MemoryStore<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    pub(crate) fn new(policy: Policy) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let evicted = Arc::clone(&evictions);
        let history = Cache::builder()
            .max_capacity(policy.capacity())
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(ReclaimAt)
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    evicted.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        let shards = shard_capacities(policy.capacity())
            .into_iter()
            .map(|capacity| Mutex::new(Shard::new(capacity)))
            .collect();
        Self {
            policy,
            history,
            shards,
            evictions,
        }
    }

    fn shard(&self, k: Hashed<'_, K>) -> MutexGuard<'_, Shard<K>> {
        // Bits 40..56 pick the shard: the tables inside use the low bits for
        // the bucket and the top 7 for the tag, so these stay independent.
        let index = shard_index(k.hash, self.shards.len());
        // The critical sections never panic while holding the lock (table
        // operations and integer arithmetic only), and a shard stays
        // consistent even if one did, so a poisoned lock is still usable.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies an outcome under the key's shard lock. Only a failure needs
    /// the time.
    fn apply(&self, shard: &mut Shard<K>, k: Hashed<'_, K>, outcome: Outcome) -> Recorded {
        match outcome {
            Outcome::Failure => self.fail(shard, k, Instant::now()),
            Outcome::Success => {
                if self.policy.reset_on_success() {
                    shard.clear(k);
                }
                Recorded::NotAFailure
            }
            Outcome::Neutral => Recorded::NotAFailure,
        }
    }

    fn fail(&self, shard: &mut Shard<K>, k: Hashed<'_, K>, now: Instant) -> Recorded {
        if let Some((record, _)) = shard.lockouts.get(k, || now) {
            // B7: failures while locked out neither count nor extend it.
            return Recorded::AlreadyLocked { record };
        }
        let failures = shard.failures(k, now).saturating_add(1);
        if failures < self.policy.max_failures() {
            let forget_at = later(now, self.policy.window());
            if shard.set_failures(k, failures, forget_at, now) {
                self.evictions.fetch_add(1, Ordering::Relaxed);
            }
            return Recorded::Counted { failures };
        }
        let previous = self
            .history
            .get(k.key)
            .filter(|h| now < h.forget_at)
            .map_or(0, |h| h.lockouts);
        let until = later(now, self.policy.lockout_duration(previous));
        let record = Record {
            until,
            lockouts: previous.saturating_add(1),
        };
        let history = History {
            lockouts: record.lockouts,
            forget_at: later(until, self.policy.window()),
        };
        self.history.insert(k.key.clone(), history);
        if shard.lockouts.insert(k, record, now).is_some() {
            self.evictions.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "portcullis::lockout",
                "an active lockout was evicted because the lockout table is full; \
                 raise the capacity"
            );
        }
        shard.clear(k);
        Recorded::LockedOut { record, failures }
    }

    /// Counters held (at most the capacity; may include counters whose
    /// window has passed and that were not reclaimed yet).
    fn tracked(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).counters as u64)
            .sum()
    }
}

impl<K> MemoryStore<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    /// Admits `k`, or registers `waiter` (if any) while the shard is still
    /// locked, so that the release that frees a slot cannot slip in before.
    fn admit_or_wait(&self, k: Hashed<'_, K>, waiter: Option<&mut Waiter<'_>>) -> Admission {
        let mut shard = self.shard(k);
        if let Some((record, at)) = shard.lockouts.get(k, Instant::now) {
            return Admission::Locked(record, at);
        }
        // One lookup for a returning client; a new key gets a fresh entry,
        // which admits.
        shard.with_entry(k, |entry| {
            let failures = if entry.failures > 0 {
                entry.live_failures(Instant::now())
            } else {
                0
            };
            let limit = self.policy.in_flight_limit(failures);
            // Releases without the lock may free a slot at any moment: the
            // waiters are registered from the exact count that was full, or
            // the slot is taken (at most one more turn per such release).
            let notify = loop {
                if let Some(flight) = entry.reserve(limit) {
                    return Admission::Admitted(Ticket::local(Some(flight)), failures);
                }
                // failures < max always holds (reaching max locks the key
                // out and clears its counter), so a reservation is in
                // flight here: its release will come and wake the waiter.
                if let Some(notify) = entry.waiters(limit) {
                    break notify;
                }
            };
            // Every waiter holds a clone of the notifier: the count is exact.
            let waiting = Arc::strong_count(notify) - 1;
            if waiting >= self.policy.max_waiting() as usize {
                return Admission::Crowded;
            }
            if let Some(waiter) = waiter {
                waiter.wait_on(notify);
            }
            Admission::Full
        })
    }
}

impl<K> Store<K> for MemoryStore<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    fn admit(&self, k: Hashed<'_, K>) -> Admission {
        self.admit_or_wait(k, None)
    }

    fn wait(&self, k: Hashed<'_, K>, waiter: &mut Waiter<'_>) -> Admission {
        self.admit_or_wait(k, Some(waiter))
    }

    fn finish(&self, k: Hashed<'_, K>, ticket: &Ticket, outcome: Outcome) -> Finished {
        // A returning client's attempt that did not fail: one atomic update
        // when nothing else is to be done (see `shard::Flight`).
        if outcome != Outcome::Failure && ticket.flight.as_ref().is_some_and(|f| f.try_release()) {
            return Finished::Now(Recorded::NotAFailure);
        }
        let mut shard = self.shard(k);
        let recorded = self.apply(&mut shard, k, outcome);
        let reset = outcome == Outcome::Success && self.policy.reset_on_success();
        let wake = shard
            .entries
            .update(k, |entry| {
                // A lockout concerns every waiter, and a reset may free
                // several slots at once; otherwise at most one slot came
                // free.
                let everyone = matches!(recorded, Recorded::LockedOut { .. }) || reset;
                (entry.release(everyone), entry.is_spent())
            })
            .flatten();
        drop(shard);
        match wake {
            Some((notify, true)) => notify.notify_waiters(),
            Some((notify, false)) => notify.notify_one(),
            None => {}
        }
        Finished::Now(recorded)
    }

    fn record(&self, k: Hashed<'_, K>, outcome: Outcome) -> Recorded {
        let mut shard = self.shard(k);
        let recorded = self.apply(&mut shard, k, outcome);
        let waiters = shard.entries.get(k).and_then(|e| e.waiting().cloned());
        drop(shard);
        // A lockout or a reset changes what waiters would be told.
        if let Some(waiters) = waiters {
            waiters.notify_waiters();
        }
        recorded
    }

    fn locked(&self, k: Hashed<'_, K>) -> Option<(Record, Instant)> {
        self.shard(k).lockouts.get(k, Instant::now)
    }

    fn failures(&self, k: Hashed<'_, K>) -> u32 {
        self.shard(k).failures(k, Instant::now())
    }

    fn unlock(&self, k: Hashed<'_, K>) -> bool {
        let mut shard = self.shard(k);
        let was_locked = shard.lockouts.remove(k, Instant::now());
        self.history.invalidate(k.key);
        shard.clear(k);
        let waiters = shard.entries.get(k).and_then(|e| e.waiting().cloned());
        drop(shard);
        if let Some(waiters) = waiters {
            waiters.notify_waiters();
        }
        was_locked
    }

    fn locked_keys(&self) -> Vec<(K, Record)> {
        let now = Instant::now();
        let mut keys = Vec::new();
        for shard in &*self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            keys.extend(shard.lockouts.active(now).map(|(k, r)| (k.clone(), r)));
        }
        keys
    }

    fn stats(&self, stats: &mut LockoutStats) {
        let now = Instant::now();
        stats.tracked = self.tracked();
        stats.locked_out = self
            .shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(PoisonError::into_inner);
                shard.lockouts.active(now).count() as u64
            })
            .sum();
        stats.evictions = self.evictions.load(Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    //! Why the tables are built the way they are: the first tests show the
    //! failure a simpler design would have.
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher, RandomState};

    use super::*;

    /// A hasher with fixed keys: moka's frequency sketch counts by hash, so
    /// with a random hasher a collision now and then lends the new key the
    /// count of a hot one and the demonstration below would be a coin toss.
    /// Fixed keys make it the same run every time.
    type FixedHasher = BuildHasherDefault<DefaultHasher>;

    fn hot_table(policy: EvictionPolicy, capacity: u64) -> Cache<u64, u32, FixedHasher> {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .eviction_policy(policy)
            .build_with_hasher(FixedHasher::default());
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
    fn a_single_lru_table_would_let_a_flood_of_new_keys_evict_a_lockout() {
        // B4: the hazard that the separate lockout table removes.
        let cache: Cache<u64, u32, FixedHasher> = Cache::builder()
            .max_capacity(1000)
            .eviction_policy(EvictionPolicy::lru())
            .build_with_hasher(FixedHasher::default());
        cache.insert(u64::MAX, 5);
        for key in 0..10_000 {
            cache.insert(key, 1);
        }
        cache.run_pending_tasks();
        assert_eq!(cache.get(&u64::MAX), None);
    }

    fn key(key: &u32) -> Hashed<'_, u32> {
        Hashed {
            key,
            hash: RandomState::new().hash_one(key),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn counters_never_reach_the_threshold_without_a_lockout() {
        let policy = Policy::builder().max_failures(3).build().unwrap();
        let store = MemoryStore::new(policy);
        let k = key(&1);
        assert!(matches!(
            store.record(k, Outcome::Failure),
            Recorded::Counted { failures: 1 }
        ));
        assert!(matches!(
            store.record(k, Outcome::Failure),
            Recorded::Counted { failures: 2 }
        ));
        assert!(matches!(
            store.record(k, Outcome::Failure),
            Recorded::LockedOut { failures: 3, .. }
        ));
        assert_eq!(store.failures(k), 0);
        assert!(store.locked(k).is_some());
        assert_eq!(store.tracked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_returning_client_keeps_its_entry_and_entries_stay_within_capacity() {
        // R3: at most `capacity` entries are kept for clients between their
        // requests; the most recent client's is one of them.
        let store = MemoryStore::new(Policy::builder().capacity(4).build().unwrap());
        let hasher = RandomState::new();
        let keys: Vec<u32> = (0..100).collect();
        for key in &keys {
            let k = Hashed {
                key,
                hash: hasher.hash_one(key),
            };
            assert!(matches!(store.admit(k), Admission::Admitted(..)));
            assert!(matches!(store.admit(k), Admission::Admitted(..)));
            store.finish(k, &Ticket::LOCAL, Outcome::Neutral);
            store.finish(k, &Ticket::LOCAL, Outcome::Success);
            let entries = store.shard(k).entries.len();
            assert!(entries <= 4, "{entries} entries");
            assert!(idle(&store, k));
        }
    }

    fn admitted(admission: Admission) -> Ticket {
        match admission {
            Admission::Admitted(ticket, _) => ticket,
            other => panic!("not admitted: {other:?}"),
        }
    }

    /// Whether `k` has an entry with no reservation in flight.
    fn idle(store: &MemoryStore<u32>, k: Hashed<'_, u32>) -> bool {
        store
            .shard(k)
            .entries
            .get(k)
            .is_some_and(|e| e.in_flight() == 0)
    }

    #[tokio::test(start_paused = true)]
    async fn a_release_without_the_lock_never_strands_a_waiter() {
        // B6, B11: once a request waits for the key, releases take the lock
        // and wake it; before, they need none.
        let store = MemoryStore::new(Policy::builder().max_failures(2).build().unwrap());
        let k = key(&9);
        let first = admitted(store.admit(k));
        let second = admitted(store.admit(k));
        let mut notified = Box::pin(None);
        let mut waiter = Waiter {
            notified: notified.as_mut(),
            #[cfg(feature = "redis")]
            retry: &mut None,
        };
        assert!(matches!(store.wait(k, &mut waiter), Admission::Full));
        let flight = first.flight.as_ref().expect("an in-memory ticket");
        assert!(!flight.try_release(), "a waiter is registered");
        store.finish(k, &first, Outcome::Neutral);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let woken = notified
            .as_mut()
            .as_pin_mut()
            .expect("registered")
            .poll(&mut cx);
        assert!(woken.is_ready(), "the waiter was not woken");
        let third = admitted(store.admit(k));
        store.finish(k, &second, Outcome::Neutral);
        store.finish(k, &third, Outcome::Neutral);
        // Nobody waits any more: the next release needs no lock.
        let fourth = admitted(store.admit(k));
        assert!(fourth.flight.as_ref().expect("in memory").try_release());
        assert!(idle(&store, k));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_with_failures_or_an_entry_no_longer_kept_releases_under_the_lock() {
        // R3: an entry that is no longer kept still goes once idle; the
        // release of a key with failures goes through the lock (where a
        // success may reset them).
        let store = MemoryStore::new(Policy::builder().capacity(4).build().unwrap());
        let hasher = RandomState::new();
        let hashed = |key: &u32| hasher.hash_one(key);
        let failing = Hashed {
            key: &1000,
            hash: hashed(&1000),
        };
        store.record(failing, Outcome::Failure);
        let ticket = admitted(store.admit(failing));
        assert!(!ticket.flight.as_ref().expect("in memory").try_release());
        store.finish(failing, &ticket, Outcome::Success);
        assert_eq!(
            store.failures(failing),
            1,
            "a success resets nothing by default"
        );
        assert!(idle(&store, failing));

        let held = Hashed {
            key: &1,
            hash: hashed(&1),
        };
        let ticket = admitted(store.admit(held));
        for key in 2..40u32 {
            let k = Hashed {
                key: &key,
                hash: hashed(&key),
            };
            let other = admitted(store.admit(k));
            store.finish(k, &other, Outcome::Neutral);
        }
        // Other clients took the kept entries; key 1's stays while in flight.
        assert!(store.shard(held).entries.get(held).is_some());
        assert!(!ticket.flight.as_ref().expect("in memory").try_release());
        store.finish(held, &ticket, Outcome::Neutral);
        assert!(store.shard(held).entries.get(held).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_with_too_many_waiting_requests_is_crowded() {
        // B11: the queue of waiting requests per key is bounded.
        let policy = Policy::builder()
            .max_failures(1)
            .max_waiting(2)
            .build()
            .unwrap();
        let store = MemoryStore::new(policy);
        let k = key(&7);
        assert!(matches!(store.admit(k), Admission::Admitted(..)));
        let mut waiting = Vec::new();
        for _ in 0..2 {
            let mut notified = Box::pin(None);
            let mut waiter = Waiter {
                notified: notified.as_mut(),
                #[cfg(feature = "redis")]
                retry: &mut None,
            };
            assert!(matches!(store.admit(k), Admission::Full));
            assert!(matches!(store.wait(k, &mut waiter), Admission::Full));
            waiting.push(notified);
        }
        assert!(matches!(store.admit(k), Admission::Crowded));
        waiting.pop();
        assert!(matches!(store.admit(k), Admission::Full));
    }
}
