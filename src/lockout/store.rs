//! The in-memory store behind a [`Tracker`](super::Tracker).
//!
//! Every table is bounded by the policy's capacity, and every decision
//! about a key (admit, record, unlock) runs under the lock of the key's
//! shard, which makes check-and-reserve atomic per key.
//!
//! - **Counters and attempts in flight**, per shard. A key holds an entry
//!   while it has failures within the window or attempts in flight; a
//!   client without failures holds one only while its requests run.
//!   Counters are evicted by CLOCK (second-chance LRU): a new counter always
//!   gets in and the least recently used one goes. (moka's default TinyLFU
//!   admission would instead drop a new, rarely seen key at once when the
//!   table is full of frequently used ones, silently resetting an attacker's
//!   count; and a moka insert costs several times a hash map insert, which
//!   a flood of new keys would turn into the cost of every failure.)
//! - **Lockouts**, per shard, in their own map, so no amount of counter
//!   churn can evict them (a single LRU table would let a flood of new keys
//!   evict a blocked attacker's record). When a shard's map is full, ended
//!   lockouts go first, then the one that ends soonest. Checking it is one
//!   lookup under the lock the request takes anyway.
//! - **Escalation history**, a moka cache (LRU, per-entry expiry `window`
//!   after the lockout ends): how often a key was locked out. Read and
//!   written only when a key is locked out.
//!
//! moka's expiry only reclaims memory; every deadline that decides an
//! outcome is stored in the value and compared with tokio's clock.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    fmt,
    hash::{BuildHasher, Hash, RandomState},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hashbrown::HashTable;
use moka::{Expiry, notification::RemovalCause, policy::EvictionPolicy, sync::Cache};
use tokio::{sync::Notify, time::Instant};

use super::Policy;

const MAX_SHARDS: u64 = 64;
const ENTRIES_UP_FRONT: usize = 32;

/// A key with its hash, computed once per request.
#[derive(Debug)]
pub(crate) struct Hashed<'a, K> {
    pub(crate) key: &'a K,
    pub(crate) hash: u64,
}

impl<K> Clone for Hashed<'_, K> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<K> Copy for Hashed<'_, K> {}

/// A lockout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) until: Instant,
    /// How many times the key has been locked out while remembered.
    pub(crate) lockouts: u32,
}

/// How often a key was locked out, for escalation.
#[derive(Debug, Clone, Copy)]
struct History {
    lockouts: u32,
    /// `window` after the last lockout ends.
    forget_at: Instant,
}

/// Registers a waiter on a key's notifier (see [`MemoryStore::admit`]).
pub(crate) type Register<'a> = &'a mut dyn FnMut(&Arc<Notify>);

/// Whether a request may go on.
#[derive(Debug)]
pub(crate) enum Admission {
    /// A reservation was taken; release it with [`MemoryStore::release`].
    Admitted,
    /// The key is locked out (as of the given time).
    Locked(Record, Instant),
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

/// Totals since the store was created.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub(crate) failures: AtomicU64,
    pub(crate) lockouts: AtomicU64,
    pub(crate) evictions: AtomicU64,
}

/// A hash table keyed by `K` whose hashes are computed by the caller.
struct Table<K, V> {
    table: HashTable<(u64, K, V)>,
}

impl<K: Eq, V> Table<K, V> {
    fn new() -> Self {
        Self {
            table: HashTable::new(),
        }
    }

    fn with_capacity(capacity: usize) -> Self {
        Self {
            table: HashTable::with_capacity(capacity),
        }
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn get(&self, k: Hashed<'_, K>) -> Option<&V> {
        self.table
            .find(k.hash, |(_, key, _)| key == k.key)
            .map(|(_, _, v)| v)
    }

    fn get_mut(&mut self, k: Hashed<'_, K>) -> Option<&mut V> {
        self.table
            .find_mut(k.hash, |(_, key, _)| key == k.key)
            .map(|(_, _, v)| v)
    }

    /// Inserts a key that is not in the table.
    fn insert_new(&mut self, k: Hashed<'_, K>, value: V)
    where
        K: Clone,
    {
        self.table
            .insert_unique(k.hash, (k.hash, k.key.clone(), value), |(hash, _, _)| *hash);
    }

    fn get_or_insert_with(&mut self, k: Hashed<'_, K>, value: impl FnOnce() -> V) -> &mut V
    where
        K: Clone,
    {
        let entry = self
            .table
            .entry(k.hash, |(_, key, _)| key == k.key, |(hash, _, _)| *hash);
        &mut entry
            .or_insert_with(|| (k.hash, k.key.clone(), value()))
            .into_mut()
            .2
    }

    fn remove(&mut self, k: Hashed<'_, K>) -> Option<V> {
        self.table
            .find_entry(k.hash, |(_, key, _)| key == k.key)
            .ok()
            .map(|e| e.remove().0.2)
    }

    fn iter(&self) -> impl Iterator<Item = (Hashed<'_, K>, &V)> {
        self.table
            .iter()
            .map(|(hash, key, v)| (Hashed { key, hash: *hash }, v))
    }
}

impl<K, V> fmt::Debug for Table<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("len", &self.table.len())
            .finish()
    }
}

/// When a lockout ends, ordered by that time only.
#[derive(Debug)]
struct Due<K> {
    until: Instant,
    hash: u64,
    key: K,
}

impl<K> PartialEq for Due<K> {
    fn eq(&self, other: &Self) -> bool {
        self.until == other.until
    }
}

impl<K> Eq for Due<K> {}

impl<K> PartialOrd for Due<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Due<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.until.cmp(&other.until)
    }
}

/// The state of one key in its shard.
#[derive(Debug)]
struct Entry {
    /// Failures within the window; 0 when the key holds no counter.
    failures: u32,
    /// When the failures are forgotten: `window` after the last one.
    forget_at: Option<Instant>,
    /// Identifies this counter's place in the CLOCK queue.
    ticket: u64,
    /// Used since the CLOCK hand last passed (second chance).
    referenced: bool,
    in_flight: u32,
    /// Created when a request has to wait for this key.
    waiters: Option<Arc<Notify>>,
}

impl Entry {
    fn new() -> Self {
        Self {
            failures: 0,
            forget_at: None,
            ticket: 0,
            referenced: false,
            in_flight: 0,
            waiters: None,
        }
    }

    fn live_failures(&self, now: Instant) -> u32 {
        match self.forget_at {
            Some(forget_at) if now < forget_at => self.failures,
            _ => 0,
        }
    }

    fn is_live(&self, now: Instant) -> bool {
        self.live_failures(now) > 0
    }

    /// Neither a counter nor an attempt in flight: the entry can go.
    fn is_idle(&self) -> bool {
        self.failures == 0 && self.in_flight == 0
    }
}

/// One shard: counters, attempts in flight and lockouts of the keys that
/// hash to it.
#[derive(Debug)]
struct Shard<K> {
    entries: Table<K, Entry>,
    /// Lockouts; at most `capacity`.
    blocked: Table<K, Record>,
    /// Lockouts by end, soonest first, for eviction. Lifted or replaced
    /// lockouts leave stale items, skipped on the way and compacted away.
    due: BinaryHeap<Reverse<Due<K>>>,
    /// Keys holding a counter, in CLOCK order, with the ticket they were
    /// queued under. Counters cleared in place leave stale items, which the
    /// hand skips and `compact` removes.
    clock: VecDeque<(u64, K, u64)>,
    /// Entries with `failures > 0`; at most `capacity`.
    counters: usize,
    capacity: usize,
    next_ticket: u64,
}

impl<K: Clone + Eq> Shard<K> {
    fn new(capacity: usize) -> Self {
        Self {
            // Room for the attempts in flight of a busy shard up front: an
            // entry is inserted and removed by every request.
            entries: Table::with_capacity(capacity.min(ENTRIES_UP_FRONT)),
            blocked: Table::new(),
            due: BinaryHeap::new(),
            clock: VecDeque::new(),
            counters: 0,
            capacity,
            next_ticket: 0,
        }
    }

    fn failures(&self, k: Hashed<'_, K>, now: Instant) -> u32 {
        self.entries.get(k).map_or(0, |e| e.live_failures(now))
    }

    /// The lockout of `k`, if it is locked out at `now`. Reads the clock
    /// only when the shard holds lockouts.
    fn locked(&self, k: Hashed<'_, K>, now: impl Fn() -> Instant) -> Option<(Record, Instant)> {
        if self.blocked.is_empty() {
            return None;
        }
        let record = *self.blocked.get(k)?;
        let now = now();
        (now < record.until).then_some((record, now))
    }

    /// Locks `k` out, making room if the map is full: the lockout that ends
    /// soonest goes (one that already ended, if any). Returns the key of an
    /// active lockout evicted to make room.
    fn block(&mut self, k: Hashed<'_, K>, record: Record, now: Instant) -> Option<K> {
        self.due.push(Reverse(Due {
            until: record.until,
            hash: k.hash,
            key: k.key.clone(),
        }));
        if let Some(existing) = self.blocked.get_mut(k) {
            *existing = record;
            return None;
        }
        let mut evicted = None;
        if self.blocked.len() >= self.capacity {
            while let Some(Reverse(due)) = self.due.pop() {
                let d = Hashed {
                    key: &due.key,
                    hash: due.hash,
                };
                // Items of lifted or replaced lockouts are stale.
                if self.blocked.get(d).is_some_and(|r| r.until == due.until) {
                    self.blocked.remove(d);
                    if now < due.until {
                        evicted = Some(due.key);
                    }
                    break;
                }
            }
        }
        self.blocked.insert_new(k, record);
        if self.due.len() > self.capacity.saturating_mul(2).saturating_add(16) {
            let blocked = &self.blocked;
            self.due.retain(|Reverse(due)| {
                let d = Hashed {
                    key: &due.key,
                    hash: due.hash,
                };
                blocked.get(d).is_some_and(|r| r.until == due.until)
            });
        }
        evicted
    }

    /// Drops the counter of `k`, and its entry when nothing else holds it.
    fn clear(&mut self, k: Hashed<'_, K>) {
        let mut idle = false;
        if let Some(entry) = self.entries.get_mut(k) {
            if entry.failures > 0 {
                entry.failures = 0;
                entry.forget_at = None;
                self.counters -= 1;
            }
            idle = entry.is_idle();
        }
        if idle {
            self.entries.remove(k);
        }
    }

    /// Sets the failures of `k` (at least 1), making room if it holds no
    /// counter yet. Returns whether a live counter was evicted for it.
    fn set_failures(
        &mut self,
        k: Hashed<'_, K>,
        failures: u32,
        forget_at: Instant,
        now: Instant,
    ) -> bool {
        let holds_counter = self.entries.get(k).is_some_and(|e| e.failures > 0);
        let mut evicted = false;
        if !holds_counter {
            if self.counters >= self.capacity {
                evicted = self.evict_one(now);
            }
            self.counters += 1;
            self.next_ticket += 1;
            self.clock
                .push_back((k.hash, k.key.clone(), self.next_ticket));
            if self.clock.len() > self.capacity.saturating_mul(2).saturating_add(16) {
                self.compact();
            }
        }
        let ticket = self.next_ticket;
        let entry = self.entries.get_or_insert_with(k, Entry::new);
        if !holds_counter {
            entry.ticket = ticket;
        }
        entry.failures = failures;
        entry.forget_at = Some(forget_at);
        entry.referenced = true;
        evicted
    }

    /// Frees one counter slot: the first counter the CLOCK hand finds that
    /// was not used since it last passed (expired counters go first).
    /// Returns whether the counter dropped was still live.
    fn evict_one(&mut self, now: Instant) -> bool {
        // One full turn clears every second chance, so this ends.
        let mut chances = self.clock.len();
        while let Some((hash, key, ticket)) = self.clock.pop_front() {
            let k = Hashed { key: &key, hash };
            let Some(entry) = self.entries.get_mut(k) else {
                continue;
            };
            if entry.ticket != ticket || entry.failures == 0 {
                continue;
            }
            let live = entry.is_live(now);
            if live && entry.referenced && chances > 0 {
                chances -= 1;
                entry.referenced = false;
                self.clock.push_back((hash, key, ticket));
                continue;
            }
            entry.failures = 0;
            entry.forget_at = None;
            self.counters -= 1;
            if entry.is_idle() {
                self.entries.remove(k);
            }
            return live;
        }
        false
    }

    /// Removes stale items from the CLOCK queue.
    fn compact(&mut self) {
        let entries = &self.entries;
        self.clock.retain(|(hash, key, ticket)| {
            entries
                .get(Hashed { key, hash: *hash })
                .is_some_and(|e| e.ticket == *ticket && e.failures > 0)
        });
    }
}

pub(crate) struct MemoryStore<K> {
    policy: Policy,
    history: Cache<K, History>,
    shards: Box<[Mutex<Shard<K>>]>,
    hasher: RandomState,
    totals: Arc<Totals>,
}

impl<K> fmt::Debug for MemoryStore<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("policy", &self.policy)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
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

/// Splits `capacity` over at most [`MAX_SHARDS`] shards, none empty.
fn shard_capacities(capacity: u64) -> Vec<usize> {
    let shards = capacity.clamp(1, MAX_SHARDS);
    (0..shards)
        .map(|i| {
            let share = capacity / shards + u64::from(i < capacity % shards);
            usize::try_from(share).unwrap_or(usize::MAX)
        })
        .collect()
}

impl<K> MemoryStore<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    pub(crate) fn new(policy: Policy) -> Self {
        let totals = Arc::new(Totals::default());
        let evicted = Arc::clone(&totals);
        let history = Cache::builder()
            .max_capacity(policy.capacity())
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(ReclaimAt)
            .eviction_listener(move |_, _, cause| {
                if cause == RemovalCause::Size {
                    evicted.evictions.fetch_add(1, Ordering::Relaxed);
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
            hasher: RandomState::new(),
            totals,
        }
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    pub(crate) fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The hash of `key`, computed once per request (SipHash with a random
    /// key, so an attacker cannot aim keys at one bucket or one shard).
    pub(crate) fn hash(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    fn shard(&self, k: Hashed<'_, K>) -> MutexGuard<'_, Shard<K>> {
        // Bits 40..56 pick the shard: the tables inside use the low bits for
        // the bucket and the top 7 for the tag, so these stay independent.
        let index = ((k.hash >> 40) & 0xffff) % self.shards.len() as u64;
        // The critical sections never panic while holding the lock (table
        // operations and integer arithmetic only), and a shard stays
        // consistent even if one did, so a poisoned lock is still usable.
        #[allow(clippy::cast_possible_truncation)] // index < shards.len()
        self.shards[index as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The lockout of `k`, if it is locked out at `now`.
    pub(crate) fn locked(&self, k: Hashed<'_, K>, now: Instant) -> Option<Record> {
        self.shard(k).locked(k, || now).map(|(r, _)| r)
    }

    /// Admits a request for `k` if `failures + in_flight < max_failures`,
    /// reserving a slot. When the key is full, `wait` is called with the
    /// key's notifier while the shard is still locked, so that a waiter
    /// registered there cannot miss the release that frees a slot. Reads the
    /// clock only when the key has lockouts or failures to compare with it.
    pub(crate) fn admit(
        &self,
        k: Hashed<'_, K>,
        now: impl Fn() -> Instant,
        wait: Option<Register<'_>>,
    ) -> Admission {
        let mut shard = self.shard(k);
        if let Some((record, at)) = shard.locked(k, &now) {
            return Admission::Locked(record, at);
        }
        let max = self.policy.max_failures();
        match shard.entries.get_mut(k) {
            Some(entry) => {
                let failures = if entry.failures > 0 {
                    entry.live_failures(now())
                } else {
                    0
                };
                if failures.saturating_add(entry.in_flight) < max {
                    entry.in_flight += 1;
                    entry.referenced = true;
                    return Admission::Admitted;
                }
                // failures < max always holds (reaching max locks the key
                // out and clears its counter), so in_flight >= 1 here: a
                // release will come and wake the waiter.
                if let Some(wait) = wait {
                    wait(entry.waiters.get_or_insert_with(Default::default));
                }
                Admission::Full
            }
            None => {
                // No counter and nothing in flight: admit.
                let mut entry = Entry::new();
                entry.in_flight = 1;
                shard.entries.insert_new(k, entry);
                Admission::Admitted
            }
        }
    }

    /// Ends an attempt admitted by [`admit`](Self::admit): records its
    /// outcome and frees its slot.
    pub(crate) fn release(
        &self,
        k: Hashed<'_, K>,
        finish: Finish,
        now: impl Fn() -> Instant,
    ) -> Recorded {
        let mut shard = self.shard(k);
        let recorded = self.apply(&mut shard, k, finish, now);
        let mut wake = None;
        let mut idle = false;
        if let Some(entry) = shard.entries.get_mut(k) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
            // A lockout concerns every waiter, and a reset may free several
            // slots at once; otherwise at most one slot came free.
            let everyone = matches!(recorded, Recorded::LockedOut { .. })
                || (finish == Finish::Success && self.policy.reset_on_success())
                || entry.in_flight == 0;
            if entry.in_flight == 0 {
                // Waiters hold this notifier and are all woken below.
                wake = entry.waiters.take().map(|n| (n, everyone));
            } else {
                wake = entry.waiters.clone().map(|n| (n, everyone));
            }
            idle = entry.is_idle();
        }
        if idle {
            shard.entries.remove(k);
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
    pub(crate) fn record(
        &self,
        k: Hashed<'_, K>,
        finish: Finish,
        now: impl Fn() -> Instant,
    ) -> Recorded {
        let mut shard = self.shard(k);
        let recorded = self.apply(&mut shard, k, finish, now);
        let waiters = shard.entries.get(k).and_then(|e| e.waiters.clone());
        drop(shard);
        // A lockout or a reset changes what waiters would be told.
        if let Some(waiters) = waiters {
            waiters.notify_waiters();
        }
        recorded
    }

    /// Applies an outcome under the key's shard lock. Only a failure needs
    /// the time.
    fn apply(
        &self,
        shard: &mut Shard<K>,
        k: Hashed<'_, K>,
        finish: Finish,
        now: impl Fn() -> Instant,
    ) -> Recorded {
        match finish {
            Finish::Failure => self.fail(shard, k, now()),
            Finish::Success => {
                if self.policy.reset_on_success() {
                    shard.clear(k);
                }
                Recorded::NotAFailure
            }
            Finish::Neutral => Recorded::NotAFailure,
        }
    }

    fn fail(&self, shard: &mut Shard<K>, k: Hashed<'_, K>, now: Instant) -> Recorded {
        if let Some((record, _)) = shard.locked(k, || now) {
            // B7: failures while locked out neither count nor extend it.
            return Recorded::AlreadyLocked { record };
        }
        self.totals.failures.fetch_add(1, Ordering::Relaxed);
        let failures = shard.failures(k, now).saturating_add(1);
        if failures < self.policy.max_failures() {
            let forget_at = later(now, self.policy.window());
            if shard.set_failures(k, failures, forget_at, now) {
                self.totals.evictions.fetch_add(1, Ordering::Relaxed);
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
        if let Some(evicted) = shard.block(k, record, now) {
            self.totals.evictions.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "portcullis::lockout",
                key = ?evicted,
                "an active lockout was evicted because the lockout table is full; \
                 raise the capacity"
            );
        }
        shard.clear(k);
        self.totals.lockouts.fetch_add(1, Ordering::Relaxed);
        Recorded::LockedOut { record, failures }
    }

    /// Lifts a lockout and forgets the key's failures. Returns whether the
    /// key was locked out.
    pub(crate) fn unlock(&self, k: Hashed<'_, K>, now: Instant) -> bool {
        let mut shard = self.shard(k);
        let was_locked = shard.locked(k, || now).is_some();
        shard.blocked.remove(k);
        self.history.invalidate(k.key);
        shard.clear(k);
        let waiters = shard.entries.get(k).and_then(|e| e.waiters.clone());
        drop(shard);
        if let Some(waiters) = waiters {
            waiters.notify_waiters();
        }
        was_locked
    }

    /// Keys locked out at `now`.
    pub(crate) fn locked_keys(&self, now: Instant) -> Vec<(K, Record)> {
        let mut keys = Vec::new();
        for shard in &*self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            keys.extend(
                shard
                    .blocked
                    .iter()
                    .filter(|(_, r)| now < r.until)
                    .map(|(k, r)| (k.key.clone(), *r)),
            );
        }
        keys
    }

    /// How many keys are locked out at `now`.
    pub(crate) fn blocked(&self, now: Instant) -> u64 {
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(PoisonError::into_inner);
                shard.blocked.iter().filter(|(_, r)| now < r.until).count() as u64
            })
            .sum()
    }

    /// Counters held (at most the capacity; may include counters whose
    /// window has passed and that were not reclaimed yet).
    pub(crate) fn tracked(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).counters as u64)
            .sum()
    }

    /// Failures within the window, for the direct API.
    pub(crate) fn failures_of(&self, k: Hashed<'_, K>, now: Instant) -> u32 {
        self.shard(k).failures(k, now)
    }

    pub(crate) fn run_pending_tasks(&self) {
        self.history.run_pending_tasks();
    }
}

#[cfg(test)]
mod tests {
    //! Why the tables are built the way they are: the first tests show the
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

    fn t0() -> Instant {
        Instant::now()
    }

    /// Any well-spread hash will do for a shard on its own.
    fn h(key: &u32) -> Hashed<'_, u32> {
        Hashed {
            key,
            hash: u64::from(*key).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }

    #[test]
    fn capacity_is_split_over_shards_without_loss_or_empty_shards() {
        assert_eq!(shard_capacities(1), [1]);
        assert_eq!(shard_capacities(3), [1, 1, 1]);
        let split = shard_capacities(100_000);
        assert_eq!(split.len(), 64);
        assert_eq!(split.iter().sum::<usize>(), 100_000);
        assert!(split.iter().all(|c| (1562..=1563).contains(c)));
    }

    #[test]
    fn clock_admits_every_new_counter_and_never_exceeds_capacity() {
        let now = t0();
        let later = now + Duration::from_secs(60);
        let mut shard = Shard::new(4);
        for key in 0..100u32 {
            shard.set_failures(h(&key), 1, later, now);
            assert!(shard.counters <= 4);
            assert_eq!(shard.failures(h(&key), now), 1, "new key {key} was dropped");
        }
        assert_eq!(shard.counters, 4);
        assert_eq!(shard.entries.len(), 4);
        assert!(shard.clock.len() <= 2 * 4 + 16);
    }

    #[test]
    fn clock_gives_recently_used_counters_a_second_chance() {
        let now = t0();
        let later = now + Duration::from_secs(60);
        let mut shard = Shard::new(3);
        for key in 0..3u32 {
            shard.set_failures(h(&key), 1, later, now);
        }
        // The hand clears every bit on its first turn and takes key 0; then
        // only key 2 is used again before the next eviction.
        shard.set_failures(h(&3), 1, later, now);
        assert_eq!(shard.failures(h(&0), now), 0);
        shard.set_failures(h(&2), 2, later, now);
        shard.set_failures(h(&4), 1, later, now);
        assert_eq!(shard.failures(h(&1), now), 0, "the unused counter stayed");
        assert_eq!(shard.failures(h(&2), now), 2, "the used counter went");
    }

    #[test]
    fn clock_evicts_expired_counters_first() {
        let now = t0();
        let mut shard = Shard::new(2);
        shard.set_failures(h(&1u32), 1, now + Duration::from_secs(1), now);
        shard.set_failures(h(&2u32), 1, now + Duration::from_secs(60), now);
        let later = now + Duration::from_secs(2);
        assert!(!shard.set_failures(h(&3), 1, later + Duration::from_secs(60), later));
        assert_eq!(shard.failures(h(&2), later), 1);
        assert_eq!(shard.failures(h(&3), later), 1);
    }

    #[test]
    fn an_unbounded_capacity_does_not_overflow() {
        let now = t0();
        let mut shard = Shard::new(usize::MAX);
        shard.set_failures(h(&1), 1, now + Duration::from_secs(60), now);
        let record = Record {
            until: now + Duration::from_secs(60),
            lockouts: 1,
        };
        assert_eq!(shard.block(h(&2), record, now), None);
        assert_eq!(shard_capacities(u64::MAX).len(), 64);
    }

    #[test]
    fn cleared_counters_leave_no_garbage_behind() {
        let now = t0();
        let later = now + Duration::from_secs(60);
        let mut shard = Shard::new(8);
        for round in 0..1000u32 {
            shard.set_failures(h(&(round % 3)), 1, later, now);
            shard.clear(h(&(round % 3)));
        }
        assert_eq!(shard.counters, 0);
        assert!(shard.entries.is_empty());
        assert!(shard.clock.len() <= 2 * 8 + 16);
    }

    #[test]
    fn a_full_lockout_map_drops_ended_lockouts_first_then_the_one_ending_soonest() {
        let now = t0();
        let at = |secs| now + Duration::from_secs(secs);
        let record = |secs| Record {
            until: at(secs),
            lockouts: 1,
        };
        let mut shard = Shard::new(3);
        assert_eq!(shard.block(h(&1u32), record(10), now), None);
        assert_eq!(shard.block(h(&2), record(30), now), None);
        assert_eq!(shard.block(h(&3), record(20), now), None);
        // Key 1's lockout has ended: it makes room without evicting anyone.
        assert_eq!(shard.block(h(&4), record(40), at(15)), None);
        assert_eq!(shard.blocked.len(), 3);
        // All active: the one ending soonest goes.
        assert_eq!(shard.block(h(&5), record(50), at(15)), Some(3));
        assert!(shard.locked(h(&2), || at(15)).is_some());
        assert!(shard.locked(h(&5), || at(15)).is_some());
        // Locking out a key again replaces its lockout.
        assert_eq!(shard.block(h(&5), record(60), at(15)), None);
        assert_eq!(shard.blocked.len(), 3);
    }

    fn store_key<'a>(store: &MemoryStore<u32>, key: &'a u32) -> Hashed<'a, u32> {
        Hashed {
            key,
            hash: store.hash(key),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn counters_never_reach_the_threshold_without_a_lockout() {
        let policy = Policy::builder().max_failures(3).build().unwrap();
        let store = MemoryStore::new(policy);
        let now = Instant::now();
        let fail = |key: u32| store.record(store_key(&store, &key), Finish::Failure, || now);
        assert!(matches!(fail(1), Recorded::Counted { failures: 1 }));
        assert!(matches!(fail(1), Recorded::Counted { failures: 2 }));
        assert!(matches!(fail(1), Recorded::LockedOut { failures: 3, .. }));
        assert_eq!(store.failures_of(store_key(&store, &1), now), 0);
        assert!(store.locked(store_key(&store, &1), now).is_some());
        assert_eq!(store.tracked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn entries_are_removed_when_the_last_attempt_ends() {
        let store = MemoryStore::new(Policy::default());
        let now = Instant::now();
        let k = store_key(&store, &7);
        assert!(matches!(store.admit(k, || now, None), Admission::Admitted));
        assert!(matches!(store.admit(k, || now, None), Admission::Admitted));
        store.release(k, Finish::Neutral, || now);
        assert_eq!(store.shard(k).entries.len(), 1);
        store.release(k, Finish::Success, || now);
        assert_eq!(store.shard(k).entries.len(), 0);
    }
}
