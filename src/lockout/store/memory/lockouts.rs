//! The active lockouts of one shard, in a map of their own so that no amount
//! of counter churn can evict them.

use std::{cmp::Reverse, collections::BinaryHeap};

use tokio::time::Instant;

use crate::{
    lockout::store::Record,
    table::{Hashed, Table},
};

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

/// At most `capacity` lockouts. When full, lockouts that ended go first,
/// then the one that ends soonest.
#[derive(Debug)]
pub(super) struct Lockouts<K> {
    map: Table<K, Record>,
    /// Lockouts by end, soonest first, for eviction. Lifted or replaced
    /// lockouts leave stale items, skipped on the way and compacted away.
    due: BinaryHeap<Reverse<Due<K>>>,
    capacity: usize,
}

impl<K: Clone + Eq> Lockouts<K> {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            map: Table::new(),
            due: BinaryHeap::new(),
            capacity,
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The lockout of `k`, if it is locked out at `now`. Reads the clock
    /// only when the shard holds lockouts.
    pub(super) fn get(
        &self,
        k: Hashed<'_, K>,
        now: impl FnOnce() -> Instant,
    ) -> Option<(Record, Instant)> {
        if self.map.is_empty() {
            return None;
        }
        let record = *self.map.get(k)?;
        let now = now();
        (now < record.until).then_some((record, now))
    }

    /// Locks `k` out, making room if the map is full: the lockout that ends
    /// soonest goes (one that already ended, if any). Returns the key of an
    /// active lockout evicted to make room.
    pub(super) fn insert(&mut self, k: Hashed<'_, K>, record: Record, now: Instant) -> Option<K> {
        self.due.push(Reverse(Due {
            until: record.until,
            hash: k.hash,
            key: k.key.clone(),
        }));
        if let Some(existing) = self.map.get_mut(k) {
            *existing = record;
            return None;
        }
        let mut evicted = None;
        if self.map.len() >= self.capacity {
            while let Some(Reverse(due)) = self.due.pop() {
                let d = Hashed {
                    key: &due.key,
                    hash: due.hash,
                };
                // Items of lifted or replaced lockouts are stale.
                if self.map.get(d).is_some_and(|r| r.until == due.until) {
                    self.map.remove(d);
                    if now < due.until {
                        evicted = Some(due.key);
                    }
                    break;
                }
            }
        }
        self.map.insert_new(k, record);
        if self.due.len() > self.capacity.saturating_mul(2).saturating_add(16) {
            let map = &self.map;
            self.due.retain(|Reverse(due)| {
                let d = Hashed {
                    key: &due.key,
                    hash: due.hash,
                };
                map.get(d).is_some_and(|r| r.until == due.until)
            });
        }
        evicted
    }

    /// Lifts the lockout of `k`; returns whether it was active at `now`.
    pub(super) fn remove(&mut self, k: Hashed<'_, K>, now: Instant) -> bool {
        self.map.remove(k).is_some_and(|r| now < r.until)
    }

    /// The lockouts active at `now`.
    pub(super) fn active(&self, now: Instant) -> impl Iterator<Item = (&K, Record)> {
        self.map
            .iter()
            .filter(move |(_, r)| now < r.until)
            .map(|(k, r)| (k.key, *r))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Any well-spread hash will do here.
    fn h(key: &u32) -> Hashed<'_, u32> {
        Hashed {
            key,
            hash: u64::from(*key).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }

    #[test]
    fn a_full_lockout_map_drops_ended_lockouts_first_then_the_one_ending_soonest() {
        let now = Instant::now();
        let at = |secs| now + Duration::from_secs(secs);
        let record = |secs| Record {
            until: at(secs),
            lockouts: 1,
        };
        let mut lockouts = Lockouts::new(3);
        assert_eq!(lockouts.insert(h(&1u32), record(10), now), None);
        assert_eq!(lockouts.insert(h(&2), record(30), now), None);
        assert_eq!(lockouts.insert(h(&3), record(20), now), None);
        // Key 1's lockout has ended: it makes room without evicting anyone.
        assert_eq!(lockouts.insert(h(&4), record(40), at(15)), None);
        assert_eq!(lockouts.len(), 3);
        // All active: the one ending soonest goes.
        assert_eq!(lockouts.insert(h(&5), record(50), at(15)), Some(3));
        assert!(lockouts.get(h(&2), || at(15)).is_some());
        assert!(lockouts.get(h(&5), || at(15)).is_some());
        // Locking out a key again replaces its lockout.
        assert_eq!(lockouts.insert(h(&5), record(60), at(15)), None);
        assert_eq!(lockouts.len(), 3);
    }

    #[test]
    fn an_unbounded_capacity_does_not_overflow() {
        let now = Instant::now();
        let mut lockouts = Lockouts::new(usize::MAX);
        let record = Record {
            until: now + Duration::from_secs(60),
            lockouts: 1,
        };
        assert_eq!(lockouts.insert(h(&2), record, now), None);
    }
}
