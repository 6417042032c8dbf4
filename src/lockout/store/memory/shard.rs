//! One shard of the in-memory store: failure counters with CLOCK
//! eviction, reservations in flight and waiters, and the shard's lockouts.

use std::sync::Arc;

use tokio::{sync::Notify, time::Instant};

use super::lockouts::Lockouts;
use crate::table::{ClockQueue, Hand, Hashed, Table};

/// Room for the reservations of a busy shard up front: an entry is inserted
/// and removed by every request of a client without failures.
const ENTRIES_UP_FRONT: usize = 32;

/// The state of one key in its shard.
#[derive(Debug)]
pub(super) struct Entry {
    /// Failures within the window; 0 when the key holds no counter.
    pub(super) failures: u32,
    /// When the failures are forgotten: `window` after the last one.
    forget_at: Option<Instant>,
    /// Identifies this counter's place in the CLOCK queue.
    ticket: u64,
    /// Used since the CLOCK hand last passed (second chance).
    pub(super) referenced: bool,
    pub(super) in_flight: u32,
    /// Created when a request has to wait for this key.
    pub(super) waiters: Option<Arc<Notify>>,
}

impl Entry {
    pub(super) fn new() -> Self {
        Self {
            failures: 0,
            forget_at: None,
            ticket: 0,
            referenced: false,
            in_flight: 0,
            waiters: None,
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

    /// Neither a counter nor an attempt in flight: the entry can go.
    pub(super) fn is_idle(&self) -> bool {
        self.failures == 0 && self.in_flight == 0
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
    capacity: usize,
}

impl<K: Clone + Eq> Shard<K> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            // Room for the attempts in flight of a busy shard up front: an
            // entry is inserted and removed by every request.
            entries: Table::with_capacity(capacity.min(ENTRIES_UP_FRONT)),
            lockouts: Lockouts::new(capacity),
            clock: ClockQueue::new(capacity),
            counters: 0,
            capacity,
        }
    }

    pub(super) fn failures(&self, k: Hashed<'_, K>, now: Instant) -> u32 {
        self.entries.get(k).map_or(0, |e| e.live_failures(now))
    }

    /// Drops the counter of `k`, and its entry when nothing else holds it.
    pub(super) fn clear(&mut self, k: Hashed<'_, K>) {
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
        let idle = self.entries.get_mut(k).is_some_and(|entry| {
            entry.failures = 0;
            entry.forget_at = None;
            entry.is_idle()
        });
        self.counters -= 1;
        if idle {
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
}
