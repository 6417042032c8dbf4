//! One shard of the in-memory store: failure counters with CLOCK
//! eviction, reservations in flight and waiters, the entries of recent
//! clients kept between their requests, and the shard's lockouts.
//!
//! A returning client finds its entry and takes a reservation with a
//! lookup and an increment: the entry is not inserted at admission and
//! removed at release on every request. Entries kept this way (*resident*)
//! are bounded by the shard's capacity on their own, with a CLOCK of their
//! own, so clients that never fail cannot push failure counters out.
//!
//! Such a client also ends its reservation without the shard lock: the
//! count of a key's reservations in flight is an atomic word shared with
//! their tickets ([`Flight`]), and a release with nothing else to do (no
//! failure, no counter to reset, no waiter to wake, an entry that stays) is
//! one update of it.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

use tokio::{sync::Notify, time::Instant};

use super::lockouts::Lockouts;
use crate::table::{ClockQueue, Hand, Hashed, Table};

/// Room for the entries of a busy shard up front; the table grows with the
/// clients it keeps, up to twice the capacity plus the keys in flight.
const ENTRIES_UP_FRONT: usize = 32;

/// The reservations of one key in flight, shared by its entry and the
/// tickets of the attempts holding them.
///
/// The count only grows under the shard lock, at admission. It shrinks
/// either under the lock or, for a release with nothing else to do, by
/// [`Flight::try_release`] without it; the flags say when that is not the
/// case, and are set under the lock by an update of the same word, so a
/// release either sees them or happened before they were set.
#[derive(Debug)]
pub(crate) struct Flight(AtomicU32);

/// The bits of a [`Flight`] word that count reservations.
const COUNT: u32 = (1 << 30) - 1;
/// Requests wait for a slot of the key: a release wakes them, under the
/// lock.
const WAITERS: u32 = 1 << 31;
/// The entry holds a counter (a success may reset it) or is no longer kept
/// (it goes once idle): a release takes the lock.
const LOCKED: u32 = 1 << 30;

impl Flight {
    /// Ends one reservation without the lock, unless the key has waiters,
    /// a counter or an entry that is not kept. Returns whether it did.
    #[inline]
    pub(crate) fn try_release(&self) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (word & (WAITERS | LOCKED) == 0 && word & COUNT > 0).then(|| word - 1)
            })
            .is_ok()
    }

    fn word(&self) -> u32 {
        self.0.load(Ordering::Acquire)
    }

    fn count(&self) -> u32 {
        self.word() & COUNT
    }
}

/// The state of one key in its shard.
#[derive(Debug)]
pub(super) struct Entry {
    /// Failures within the window; 0 when the key holds no counter.
    pub(super) failures: u32,
    /// When the failures are forgotten: `window` after the last one.
    forget_at: Option<Instant>,
    /// Identifies this counter's place in the CLOCK queue.
    ticket: u64,
    /// Used since a CLOCK hand last passed (second chance).
    pub(super) referenced: bool,
    /// Identifies this entry's place in the queue of resident entries; 0
    /// when it is not resident (removed once idle).
    resident: u64,
    /// Reservations in flight, shared with their tickets.
    flight: Arc<Flight>,
    /// Created when a request has to wait for this key.
    waiters: Option<Arc<Notify>>,
}

impl Entry {
    pub(super) fn new() -> Self {
        Self {
            failures: 0,
            forget_at: None,
            ticket: 0,
            referenced: false,
            resident: 0,
            // Not kept yet: releases take the lock.
            flight: Arc::new(Flight(AtomicU32::new(LOCKED))),
            waiters: None,
        }
    }

    /// Reservations in flight.
    pub(super) fn in_flight(&self) -> u32 {
        self.flight.count()
    }

    /// Takes a reservation if fewer than `limit` are in flight, returning
    /// the handle its ticket keeps.
    pub(super) fn reserve(&mut self, limit: u32) -> Option<Arc<Flight>> {
        if self.in_flight() >= limit {
            return None;
        }
        self.flight.0.fetch_add(1, Ordering::AcqRel);
        self.referenced = true;
        Some(Arc::clone(&self.flight))
    }

    /// The key is full: the notifier its waiters register with, unless a
    /// release (without the lock) freed a slot meanwhile, which `None`
    /// says; then the caller asks again.
    pub(super) fn waiters(&mut self, limit: u32) -> Option<&Arc<Notify>> {
        let word = self.flight.word();
        if word & WAITERS == 0 {
            if word & COUNT < limit {
                return None;
            }
            // From the exact word read: a release that slips in first
            // makes this fail, and the caller finds the slot free.
            self.flight
                .0
                .compare_exchange(word, word | WAITERS, Ordering::AcqRel, Ordering::Acquire)
                .ok()?;
        }
        Some(self.waiters.get_or_insert_with(Default::default))
    }

    /// The notifier of the key's waiters, if any wait.
    pub(super) fn waiting(&self) -> Option<&Arc<Notify>> {
        self.waiters.as_ref()
    }

    /// Ends a reservation under the lock. Returns the waiters to wake, and
    /// whether all of them (no reservation left, or `everyone`).
    pub(super) fn release(&mut self, everyone: bool) -> Option<(Arc<Notify>, bool)> {
        let before = self
            .flight
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (word & COUNT > 0).then(|| word - 1)
            })
            .unwrap_or(0);
        if (before & COUNT) <= 1 {
            // Waiters hold this notifier and are all woken.
            let waiters = self.waiters.take();
            self.flight.0.fetch_and(!WAITERS, Ordering::AcqRel);
            waiters.map(|n| (n, true))
        } else {
            self.waiters.clone().map(|n| (n, everyone))
        }
    }

    /// Keeps the lock-free release allowed exactly while the entry holds no
    /// counter and is kept.
    fn sync(&self) {
        if self.failures > 0 || self.resident == 0 {
            self.flight.0.fetch_or(LOCKED, Ordering::AcqRel);
        } else {
            self.flight.0.fetch_and(!LOCKED, Ordering::AcqRel);
        }
    }

    pub(super) fn live_failures(&self, now: Instant) -> u32 {
        match self.forget_at {
            Some(forget_at) if now < forget_at => self.failures,
            _ => 0,
        }
    }

    fn is_live(&self, now: Instant) -> bool {
        self.live_failures(now) > 0
    }

    /// Neither a counter nor an attempt in flight.
    pub(super) fn is_idle(&self) -> bool {
        self.failures == 0 && self.in_flight() == 0
    }

    /// Idle and not kept for the client's next request: the entry can go.
    pub(super) fn is_spent(&self) -> bool {
        self.is_idle() && self.resident == 0
    }
}

/// One shard: counters, attempts in flight and lockouts of the keys that
/// hash to it.
#[derive(Debug)]
pub(super) struct Shard<K> {
    pub(super) entries: Table<K, Entry>,
    pub(super) lockouts: Lockouts<K>,
    /// Keys holding a counter, in CLOCK order.
    clock: ClockQueue<K>,
    /// Entries with `failures > 0`; at most `capacity`.
    pub(super) counters: usize,
    /// Resident entries, in CLOCK order.
    kept: ClockQueue<K>,
    /// Resident entries; at most `capacity`.
    pub(super) residents: usize,
    capacity: usize,
}

impl<K: Clone + Eq> Shard<K> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            // Room for the clients of a busy shard up front.
            entries: Table::with_capacity(capacity.min(ENTRIES_UP_FRONT)),
            lockouts: Lockouts::new(capacity),
            clock: ClockQueue::new(capacity),
            counters: 0,
            kept: ClockQueue::new(capacity),
            residents: 0,
            capacity,
        }
    }

    pub(super) fn failures(&self, k: Hashed<'_, K>, now: Instant) -> u32 {
        self.entries.get(k).map_or(0, |e| e.live_failures(now))
    }

    /// Runs `f` on the entry of `k`, made resident if it is new: a
    /// returning client's entry is found with one lookup. Room for a new
    /// one is made by dropping (or no longer keeping) a resident entry that
    /// was not used recently.
    pub(super) fn with_entry<R>(&mut self, k: Hashed<'_, K>, f: impl FnOnce(&mut Entry) -> R) -> R {
        let mut created = false;
        let entry = self.entries.get_or_insert_with(k, || {
            created = true;
            Entry::new()
        });
        if !created {
            return f(entry);
        }
        if self.residents >= self.capacity {
            self.release_one();
        }
        self.residents += 1;
        let entries = &self.entries;
        let ticket = self.kept.push(k, |k, ticket| {
            entries.get(k).is_some_and(|e| e.resident == ticket)
        });
        // Found again: making room removed another key, never this one
        // (not queued yet).
        let entry = self.entries.get_or_insert_with(k, Entry::new);
        entry.resident = ticket;
        entry.sync();
        f(entry)
    }

    /// Frees one resident slot: the first resident entry the hand finds that
    /// was not used since it last passed. An idle one is dropped; one in
    /// use (a counter, attempts in flight) is no longer kept, and goes once
    /// it is idle.
    fn release_one(&mut self) {
        let entries = &mut self.entries;
        let victim = self.kept.evict(|k, ticket, chance| {
            let Some(entry) = entries.get_mut(k) else {
                return Hand::Stale;
            };
            if entry.resident != ticket {
                return Hand::Stale;
            }
            if entry.referenced && chance {
                entry.referenced = false;
                return Hand::Spare;
            }
            Hand::Evict
        });
        let Some((hash, key)) = victim else {
            return;
        };
        let k = Hashed { key: &key, hash };
        self.residents -= 1;
        let spent = self.entries.get_mut(k).is_some_and(|entry| {
            entry.resident = 0;
            entry.sync();
            entry.is_spent()
        });
        if spent {
            self.entries.remove(k);
        }
    }

    /// Drops the counter of `k`, and its entry when nothing else holds it.
    pub(super) fn clear(&mut self, k: Hashed<'_, K>) {
        let mut spent = false;
        if let Some(entry) = self.entries.get_mut(k) {
            if entry.failures > 0 {
                entry.failures = 0;
                entry.forget_at = None;
                self.counters -= 1;
                entry.sync();
            }
            spent = entry.is_spent();
        }
        if spent {
            self.entries.remove(k);
        }
    }

    /// Sets the failures of `k` (at least 1), making room if it holds no
    /// counter yet. Returns whether a live counter was evicted for it.
    pub(super) fn set_failures(
        &mut self,
        k: Hashed<'_, K>,
        failures: u32,
        forget_at: Instant,
        now: Instant,
    ) -> bool {
        let holds_counter = self.entries.get(k).is_some_and(|e| e.failures > 0);
        let mut evicted = false;
        let mut ticket = None;
        if !holds_counter {
            if self.counters >= self.capacity {
                evicted = self.evict_one(now);
            }
            self.counters += 1;
            let entries = &self.entries;
            ticket = Some(self.clock.push(k, |k, ticket| {
                entries
                    .get(k)
                    .is_some_and(|e| e.ticket == ticket && e.failures > 0)
            }));
        }
        let entry = self.entries.get_or_insert_with(k, Entry::new);
        if let Some(ticket) = ticket {
            entry.ticket = ticket;
        }
        entry.failures = failures;
        entry.forget_at = Some(forget_at);
        entry.referenced = true;
        entry.sync();
        evicted
    }

    /// Frees one counter slot: the first counter the CLOCK hand finds that
    /// was not used since it last passed (expired counters go first).
    /// Returns whether the counter dropped was still live.
    pub(super) fn evict_one(&mut self, now: Instant) -> bool {
        let entries = &mut self.entries;
        let mut live = false;
        let victim = self.clock.evict(|k, ticket, chance| {
            let Some(entry) = entries.get_mut(k) else {
                return Hand::Stale;
            };
            if entry.ticket != ticket || entry.failures == 0 {
                return Hand::Stale;
            }
            live = entry.is_live(now);
            if live && entry.referenced && chance {
                entry.referenced = false;
                return Hand::Spare;
            }
            Hand::Evict
        });
        let Some((hash, key)) = victim else {
            return false;
        };
        let k = Hashed { key: &key, hash };
        let spent = self.entries.get_mut(k).is_some_and(|entry| {
            entry.failures = 0;
            entry.forget_at = None;
            entry.sync();
            entry.is_spent()
        });
        self.counters -= 1;
        if spent {
            self.entries.remove(k);
        }
        live
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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

    /// An admission and its release, as the store makes them.
    fn visit(shard: &mut Shard<u32>, key: &u32) {
        shard.with_entry(h(key), |e| e.reserve(u32::MAX));
        let spent = shard.entries.update(h(key), |e| {
            e.release(false);
            ((), e.is_spent())
        });
        assert!(spent.is_some());
    }

    #[test]
    fn resident_entries_stay_between_requests_within_capacity() {
        let mut shard = Shard::new(4);
        for key in 0..100u32 {
            visit(&mut shard, &key);
            assert!(
                shard.entries.get(h(&key)).is_some(),
                "key {key} was not kept"
            );
            assert!(shard.residents <= 4);
            assert!(shard.entries.len() <= 4);
        }
        assert!(shard.kept.len() <= 2 * 4 + 16);
    }

    #[test]
    fn clients_that_never_fail_cannot_push_a_counter_out() {
        // B5: resident entries have a bound of their own.
        let now = t0();
        let later = now + Duration::from_secs(60);
        let mut shard = Shard::new(4);
        shard.set_failures(h(&1000), 3, later, now);
        for key in 0..100u32 {
            visit(&mut shard, &key);
        }
        assert_eq!(shard.failures(h(&1000), now), 3);
        assert_eq!(shard.counters, 1);
    }

    #[test]
    fn an_entry_in_use_that_is_no_longer_kept_goes_once_idle() {
        let mut shard = Shard::new(1);
        shard.with_entry(h(&1), |e| e.reserve(u32::MAX));
        // A new client takes key 1's resident slot while key 1 is in
        // flight: its entry stays, no longer kept.
        visit(&mut shard, &2);
        assert!(
            shard
                .entries
                .get(h(&1))
                .is_some_and(|e| e.in_flight() == 1 && e.resident == 0)
        );
        assert_eq!(shard.residents, 1);
        let released = shard.entries.update(h(&1), |e| {
            e.release(false);
            ((), e.is_spent())
        });
        assert!(released.is_some());
        assert!(shard.entries.get(h(&1)).is_none());
        assert!(shard.entries.get(h(&2)).is_some());
    }
}
