//! The building blocks of the limiters' bounded in-memory tables: a hash
//! table whose hashes are computed once per request by the caller, and a
//! CLOCK queue (second-chance LRU) that picks what to evict.
//!
//! moka is not used for these: its default TinyLFU admission can drop a
//! brand-new key at once when the table is full (silently resetting an
//! attacker's count), and an insert at capacity costs several times a hash
//! map insert, which a flood of new keys turns into the cost of every
//! request. A CLOCK table always admits the new key and evicts one that was
//! not used recently, in constant time on average.

use std::{collections::VecDeque, fmt};

use hashbrown::HashTable;

/// The most shards a table is split over.
const MAX_SHARDS: u64 = 64;

/// The fewest entries a shard holds, unless the whole table holds fewer:
/// small tables stay close to one exact LRU instead of many tiny ones.
const MIN_SHARD: u64 = 256;

/// Splits `capacity` over at most 64 shards of at least 256 entries each
/// (one shard for a smaller table), none empty.
pub(crate) fn shard_capacities(capacity: u64) -> Vec<usize> {
    let shards = (capacity / MIN_SHARD).clamp(1, MAX_SHARDS);
    (0..shards)
        .map(|i| {
            let share = capacity / shards + u64::from(i < capacity % shards);
            usize::try_from(share).unwrap_or(usize::MAX)
        })
        .collect()
}

/// The shard of `hash` among `shards` (at most 64): bits 40..56 of the
/// hash, independent of the bits a shard's table uses, scaled to the
/// number of shards by a multiplication rather than a division (each shard
/// gets the same share of the 65,536 values, give or take one).
#[inline]
pub(crate) fn shard_index(hash: u64, shards: usize) -> usize {
    let scaled = ((hash >> 40) & 0xffff) * shards as u64;
    // < shards: a 16-bit value times `shards`, shifted down 16 bits.
    usize::try_from(scaled >> 16).unwrap_or(0)
}

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

/// A hash table keyed by `K` whose hashes are computed by the caller.
pub(crate) struct Table<K, V> {
    table: HashTable<(u64, K, V)>,
}

impl<K: Eq, V> Table<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            table: HashTable::new(),
        }
    }

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            table: HashTable::with_capacity(capacity),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    #[inline]
    pub(crate) fn get(&self, k: Hashed<'_, K>) -> Option<&V> {
        self.table
            .find(k.hash, |(_, key, _)| key == k.key)
            .map(|(_, _, v)| v)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, k: Hashed<'_, K>) -> Option<&mut V> {
        self.table
            .find_mut(k.hash, |(_, key, _)| key == k.key)
            .map(|(_, _, v)| v)
    }

    /// Inserts a key that is not in the table.
    #[inline]
    pub(crate) fn insert_new(&mut self, k: Hashed<'_, K>, value: V)
    where
        K: Clone,
    {
        self.table
            .insert_unique(k.hash, (k.hash, k.key.clone(), value), |(hash, _, _)| *hash);
    }

    pub(crate) fn get_or_insert_with(
        &mut self,
        k: Hashed<'_, K>,
        value: impl FnOnce() -> V,
    ) -> &mut V
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

    /// Runs `f` on the value of `k`, removing the entry when `f` says so,
    /// in one lookup.
    pub(crate) fn update<R>(
        &mut self,
        k: Hashed<'_, K>,
        f: impl FnOnce(&mut V) -> (R, bool),
    ) -> Option<R> {
        let mut entry = self
            .table
            .find_entry(k.hash, |(_, key, _)| key == k.key)
            .ok()?;
        let (result, remove) = f(&mut entry.get_mut().2);
        if remove {
            entry.remove();
        }
        Some(result)
    }

    pub(crate) fn remove(&mut self, k: Hashed<'_, K>) -> Option<V> {
        self.table
            .find_entry(k.hash, |(_, key, _)| key == k.key)
            .ok()
            .map(|e| e.remove().0.2)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (Hashed<'_, K>, &V)> {
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

/// What the CLOCK hand does with the item it points at.
pub(crate) enum Hand {
    /// The item no longer stands for an entry (cleared or re-queued): drop
    /// it from the queue.
    Stale,
    /// The entry was used since the hand last passed: clear that and move
    /// on (its second chance).
    Spare,
    /// Evict this entry.
    Evict,
}

/// Keys in CLOCK order, each with the ticket it was queued under, so that
/// entries cleared or re-queued in place leave stale items the hand skips.
#[derive(Debug)]
pub(crate) struct ClockQueue<K> {
    queue: VecDeque<(u64, K, u64)>,
    next_ticket: u64,
    /// The number of live entries the queue stands for at most; stale items
    /// are compacted away past twice that.
    capacity: usize,
}

impl<K: Clone> ClockQueue<K> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            next_ticket: 0,
            capacity,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Queues `k` and returns its ticket. `current` tells whether an item
    /// still stands for its entry, for compaction.
    pub(crate) fn push(
        &mut self,
        k: Hashed<'_, K>,
        current: impl Fn(Hashed<'_, K>, u64) -> bool,
    ) -> u64 {
        self.next_ticket += 1;
        self.queue
            .push_back((k.hash, k.key.clone(), self.next_ticket));
        if self.queue.len() > self.capacity.saturating_mul(2).saturating_add(16) {
            self.queue
                .retain(|(hash, key, ticket)| current(Hashed { key, hash: *hash }, *ticket));
        }
        self.next_ticket
    }

    /// Moves the hand until `decide` evicts an entry, and returns its hash
    /// and key.
    /// One full turn clears every second chance, so this ends: after it,
    /// `decide` is told that no chance is left (its second argument).
    pub(crate) fn evict(
        &mut self,
        mut decide: impl FnMut(Hashed<'_, K>, u64, bool) -> Hand,
    ) -> Option<(u64, K)> {
        let mut chances = self.queue.len();
        while let Some((hash, key, ticket)) = self.queue.pop_front() {
            match decide(Hashed { key: &key, hash }, ticket, chances > 0) {
                Hand::Stale => {}
                Hand::Spare => {
                    chances = chances.saturating_sub(1);
                    self.queue.push_back((hash, key, ticket));
                }
                Hand::Evict => return Some((hash, key)),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_split_over_shards_without_loss_or_empty_shards() {
        assert_eq!(shard_capacities(1), [1]);
        assert_eq!(shard_capacities(300), [300]);
        assert_eq!(shard_capacities(1000), [334, 333, 333]);
        let split = shard_capacities(100_000);
        assert_eq!(split.len(), 64);
        assert_eq!(split.iter().sum::<usize>(), 100_000);
        assert!(split.iter().all(|c| (1562..=1563).contains(c)));
        assert_eq!(shard_capacities(u64::MAX).len(), 64);
    }

    #[test]
    fn shard_indices_cover_every_shard_evenly() {
        for shards in [1, 3, 64] {
            let mut counts = vec![0u32; shards];
            for bits in 0..=0xffff_u64 {
                let index = shard_index(bits << 40 | 0xdead_beef, shards);
                counts[index] += 1;
            }
            let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(max - min <= 1, "{shards}: {min}..{max}");
        }
        assert_eq!(shard_index(u64::MAX, 64), 63);
    }
}
