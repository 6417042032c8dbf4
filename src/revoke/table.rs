//! The bounded table that holds revocations: one entry per revoked secret,
//! id or subject, under a keyed hash, until what it revokes would have
//! expired.

use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    sync::{
        PoisonError, RwLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::SystemTime,
};

use hashbrown::HashTable;
use tokio::time::Instant;

use crate::table::shard_capacities;

/// One revocation as the table keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    /// When what it revokes would have expired: the entry means nothing
    /// after this, on tokio's clock.
    pub(super) until: Instant,
    /// For a subject: credentials issued at or before this are revoked.
    pub(super) cutoff: Option<SystemTime>,
}

impl Entry {
    /// The entry that revokes what both revoke: the later end, the later
    /// cutoff.
    fn merge(self, other: Self) -> Self {
        Self {
            until: self.until.max(other.until),
            cutoff: self.cutoff.max(other.cutoff),
        }
    }
}

/// One shard: the entries by hash, and their ends in order for eviction.
#[derive(Debug)]
struct Shard {
    map: HashTable<(u64, Entry)>,
    /// `(until, hash)` of every entry, soonest first. Merged entries leave
    /// stale items behind, skipped on the way and compacted away.
    due: BinaryHeap<Reverse<(Instant, u64)>>,
    capacity: usize,
}

impl Shard {
    fn get(&self, hash: u64) -> Option<Entry> {
        self.map.find(hash, |(h, _)| *h == hash).map(|(_, e)| *e)
    }

    /// Drops the entries that ended by `now`; returns how many.
    fn purge(&mut self, now: Instant) -> usize {
        let mut purged = 0;
        while let Some(&Reverse((until, hash))) = self.due.peek() {
            if until > now {
                break;
            }
            self.due.pop();
            if let Ok(entry) = self
                .map
                .find_entry(hash, |(h, e)| *h == hash && e.until == until)
            {
                entry.remove();
                purged += 1;
            }
        }
        purged
    }
}

/// At most `capacity` revocations, split over shards by hash.
///
/// Entries are found by their keyed 64-bit hash alone: two targets whose
/// hashes collide (about one chance in 2⁶⁴ per pair) share an entry, which
/// revokes both — never accepts either.
#[derive(Debug)]
pub(super) struct RevocationTable {
    shards: Box<[RwLock<Shard>]>,
    /// Entries held, ended ones not yet purged included: zero means nothing
    /// is revoked, which the request path checks first.
    len: AtomicUsize,
}

impl RevocationTable {
    pub(super) fn new(capacity: u64) -> Self {
        let shards = shard_capacities(capacity)
            .into_iter()
            .map(|capacity| {
                RwLock::new(Shard {
                    map: HashTable::new(),
                    due: BinaryHeap::new(),
                    capacity,
                })
            })
            .collect();
        Self {
            shards,
            len: AtomicUsize::new(0),
        }
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // The high half: hashbrown places entries by the low bits.
        let i = usize::try_from(hash >> 32).unwrap_or(0) % self.shards.len();
        &self.shards[i]
    }

    /// Whether the table holds no entry at all.
    pub(super) fn is_empty(&self) -> bool {
        self.len.load(Ordering::SeqCst) == 0
    }

    /// The live entry of `hash` at `now`.
    pub(super) fn get(&self, hash: u64, now: Instant) -> Option<Entry> {
        let shard = self
            .shard(hash)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(hash).filter(|entry| now < entry.until)
    }

    /// Records `entry` for `hash`, merged with what is there. Ended entries
    /// make room first; when the shard is still full of live entries, a new
    /// target is refused (`false`): a live revocation is never dropped to
    /// make room for another (SECURITY.md V5).
    pub(super) fn insert(&self, hash: u64, entry: Entry, now: Instant) -> bool {
        // Every critical section leaves the shard consistent after each
        // single map operation, so a poisoned lock is still usable.
        let mut shard = self
            .shard(hash)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let purged = shard.purge(now);
        self.len.fetch_sub(purged, Ordering::SeqCst);
        // The `until` the entry's end must be queued at, when it changed: a
        // target revoked again with the same or an earlier end (a lease
        // revoked twice, a catch-up) queues nothing, so the queue stays
        // within twice the capacity.
        let due = match shard.map.find_mut(hash, |(h, _)| *h == hash) {
            Some((_, existing)) => {
                let before = existing.until;
                *existing = existing.merge(entry);
                (existing.until > before).then_some(existing.until)
            }
            None => {
                if shard.map.len() >= shard.capacity {
                    // Ended entries were purged above: every one is live.
                    return false;
                }
                shard.map.insert_unique(hash, (hash, entry), |(h, _)| *h);
                self.len.fetch_add(1, Ordering::SeqCst);
                Some(entry.until)
            }
        };
        if let Some(until) = due {
            shard.due.push(Reverse((until, hash)));
        }
        if shard.due.len() > shard.capacity.saturating_mul(2).saturating_add(16) {
            let Shard { map, due, .. } = &mut *shard;
            due.retain(|Reverse((until, hash))| {
                map.find(*hash, |(h, e)| h == hash && e.until == *until)
                    .is_some()
            });
        }
        true
    }

    /// Live entries at `now`.
    pub(super) fn live(&self, now: Instant) -> u64 {
        self.shards
            .iter()
            .map(|shard| {
                let shard = shard.read().unwrap_or_else(PoisonError::into_inner);
                shard.map.iter().filter(|(_, e)| now < e.until).count() as u64
            })
            .sum()
    }

    /// Entries held, ended ones not yet reclaimed included.
    pub(super) fn held(&self) -> u64 {
        self.len.load(Ordering::SeqCst) as u64
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn entry(now: Instant, secs: u64) -> Entry {
        Entry {
            until: now + Duration::from_secs(secs),
            cutoff: None,
        }
    }

    #[test]
    fn a_full_table_drops_ended_entries_first_then_refuses_new_targets() {
        // V5: a live revocation is never dropped to make room.
        let now = Instant::now();
        let table = RevocationTable::new(3);
        for (hash, secs) in [(1, 10), (2, 30), (3, 20)] {
            assert!(table.insert(hash, entry(now, secs), now));
        }
        // Entry 1 has ended at 15 s: it makes room.
        let later = now + Duration::from_secs(15);
        assert!(table.insert(4, entry(now, 40), later));
        assert_eq!(table.held(), 3);
        // All live: a new target is refused, and every live one is kept.
        assert!(!table.insert(5, entry(now, 50), later));
        assert!(table.get(5, later).is_none());
        for hash in [2, 3, 4] {
            assert!(table.get(hash, later).is_some());
        }
        // A target held already is still extended.
        assert!(table.insert(3, entry(now, 60), later));
        assert!(table.get(3, now + Duration::from_secs(50)).is_some());
        assert_eq!(table.held(), 3);
    }

    #[test]
    fn revoking_the_same_target_again_queues_its_end_once() {
        // V1: bounded; a lease revoked again and again (same end) or a
        // catch-up (an earlier end) must not grow the queue of ends.
        let now = Instant::now();
        let table = RevocationTable::new(10);
        for secs in [60, 60, 30, 60, 59] {
            for _ in 0..1000 {
                table.insert(7, entry(now, secs), now);
            }
        }
        let due = |table: &RevocationTable| {
            table
                .shards
                .iter()
                .map(|shard| shard.read().unwrap().due.len())
                .sum::<usize>()
        };
        assert_eq!(due(&table), 1);
        // A later end is queued: the entry now ends then.
        table.insert(7, entry(now, 90), now);
        assert_eq!(due(&table), 2);
        assert!(table.get(7, now + Duration::from_secs(80)).is_some());
        assert!(table.get(7, now + Duration::from_secs(95)).is_none());
    }

    #[test]
    fn revoking_again_merges_the_later_end_and_cutoff() {
        let now = Instant::now();
        let table = RevocationTable::new(10);
        let early = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let late = SystemTime::UNIX_EPOCH + Duration::from_secs(200);
        table.insert(
            7,
            Entry {
                until: now + Duration::from_secs(60),
                cutoff: Some(late),
            },
            now,
        );
        table.insert(
            7,
            Entry {
                until: now + Duration::from_secs(120),
                cutoff: Some(early),
            },
            now,
        );
        let merged = table.get(7, now).unwrap();
        assert_eq!(merged.until, now + Duration::from_secs(120));
        assert_eq!(merged.cutoff, Some(late));
        assert_eq!(table.held(), 1);
        // Still live after the first end, gone after the second.
        assert!(table.get(7, now + Duration::from_secs(90)).is_some());
        assert!(table.get(7, now + Duration::from_secs(120)).is_none());
    }

    // R3: however many revocations come, the table holds at most its
    // capacity, and the heap of ends stays within a small multiple of it.
    #[test]
    fn the_table_never_holds_more_than_its_capacity() {
        let now = Instant::now();
        let table = RevocationTable::new(1_000);
        for i in 0..20_000u64 {
            let hash = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            // Each ends before the next comes: room is made.
            let at = now + Duration::from_secs(i);
            table.insert(hash, entry(at, 60 + i % 7), at);
            assert!(table.held() <= 1_000);
        }
        for shard in &table.shards {
            let shard = shard.read().unwrap();
            assert!(shard.due.len() <= shard.capacity * 2 + 17);
        }
    }
}
