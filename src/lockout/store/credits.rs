//! Admission credits a replica holds for its keys, leased from a shared
//! store (Redis).
//!
//! The shared store grants a replica a few credits for a key, never more
//! than the key's budget allows: `failures + credits granted to every
//! replica ≤ max_failures`. The replica admits undecided attempts against
//! them without a round trip. An attempt that ends without a failure gives
//! its credit back here; a failure consumes it (and is recorded in the
//! shared store afterwards, against the credit already counted there).
//!
//! A grant lives for a lease. Its local end is measured from the moment the
//! request for it was sent, so it ends here no later than in the shared
//! store, whose lease starts when the request arrives. Each grant has an
//! epoch: a new grant of a key is a new epoch, which replaces what the
//! shared store held for this replica, and a failure is taken from the
//! credits of its own epoch only. Grants and failures then commute: the
//! order in which their round trips reach the shared store does not matter.
//!
//! The table is bounded like the other limiter tables (sharded, CLOCK
//! eviction). An entry whose credits are in use is never evicted: while it
//! is, the table may hold more entries than its capacity, by at most the
//! number of attempts in flight.

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use super::ASK_AGAIN;
use crate::table::{ClockQueue, Hand, Hashed, Table, shard_capacities, shard_index};

/// The share of a lease after which a grant in use is renewed (in the
/// background, by the request that finds it so).
const RENEW_AFTER: u32 = 2;

/// The state of one key's grant on this replica.
#[derive(Debug)]
pub(crate) struct Grant {
    /// The grant's epoch; 0 before the first grant.
    pub(crate) epoch: u64,
    /// Credits granted and not consumed by failures.
    pub(crate) held: u32,
    /// Credits held by undecided attempts (of any epoch).
    pub(crate) in_use: u32,
    /// The credits may be used before this instant.
    until: Instant,
    /// A request finding the grant in use after this renews it.
    renew_at: Instant,
    /// The key's failures as of the last reply, plus this replica's since.
    pub(crate) failures: u32,
    /// A grant or renewal is under way.
    asking: bool,
    /// The shared store had no credit to give: not asked again before
    /// this (waiting requests wake on a release here, or their timer).
    ask_after: Instant,
    /// Another replica waits for credits of this key: keep only what is
    /// used.
    demand: bool,
    /// Requests waiting for a credit of this key.
    waiters: Option<Arc<Notify>>,
    /// Identifies the key's name in the shared store, for messages that
    /// name it (0 until the first reply).
    tag: u64,
    /// CLOCK bookkeeping.
    ticket: u64,
    referenced: bool,
    queued: bool,
}

impl Grant {
    fn new(now: Instant) -> Self {
        Self {
            epoch: 0,
            held: 0,
            in_use: 0,
            until: now,
            renew_at: now,
            failures: 0,
            asking: false,
            ask_after: now,
            demand: false,
            waiters: None,
            tag: 0,
            ticket: 0,
            referenced: true,
            queued: false,
        }
    }

    fn live(&self, now: Instant) -> bool {
        self.epoch != 0 && now < self.until
    }

    /// Credits an attempt may take now: the held ones not in use, and one
    /// at a time while the key's attempts are delayed.
    fn free(&self, now: Instant, delay_after: Option<u32>) -> u32 {
        if !self.live(now) {
            return 0;
        }
        let limit = match delay_after {
            Some(after) if self.failures >= after => self.held.min(1),
            _ => self.held,
        };
        limit.saturating_sub(self.in_use)
    }
}

/// What a request found in the table.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// A credit of `epoch` was taken, with the key's known failures;
    /// `renew` asks for the grant to be renewed in the background.
    Taken {
        epoch: u64,
        failures: u32,
        renew: Option<Ask>,
    },
    /// No credit here: ask the shared store (this request does it).
    Ask(Ask),
    /// No credit here, and a request is already asking: wait.
    Wait,
}

/// A grant request to send: `more` credits (negative: given back) for
/// `epoch`, sent at `sent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ask {
    pub(crate) epoch: u64,
    pub(crate) more: i64,
    pub(crate) sent: Instant,
}

/// What the shared store answered to an [`Ask`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reply {
    /// Credits added (negative: taken back).
    pub(crate) added: i64,
    pub(crate) failures: u32,
    /// Another replica waits for credits of the key.
    pub(crate) demand: bool,
    /// The shared store still held this epoch's grant (a renewal that
    /// finds it gone learns that the store lost it, e.g. restarted).
    pub(crate) found: bool,
    /// The key's tag (see [`Grants::spare`]).
    pub(crate) tag: u64,
}

/// The bounded table of grants.
pub(crate) struct Grants<K> {
    shards: Box<[Mutex<Shard<K>>]>,
    /// The key of each tag, for messages that name a key by its tag.
    tags: Mutex<std::collections::HashMap<u64, (K, u64)>>,
    lease: Duration,
    /// The credits one grant asks for.
    share: u32,
    delay_after: Option<u32>,
    max_waiting: u32,
    next_epoch: std::sync::atomic::AtomicU64,
}

struct Shard<K> {
    entries: Table<K, Grant>,
    clock: ClockQueue<K>,
    capacity: usize,
}

impl<K> std::fmt::Debug for Grants<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("shards", &self.shards.len())
            .field("lease", &self.lease)
            .field("share", &self.share)
            .finish_non_exhaustive()
    }
}

/// What waiting for a credit found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waiting {
    /// A credit is free, or nobody is asking for one: look again now.
    Ready,
    /// Registered on the key's notifier.
    Registered,
    /// Too many requests of the key wait already.
    Crowded,
}

impl<K: Clone + Eq> Grants<K> {
    /// A table of `capacity` grants, each asking for `share` credits and
    /// living `lease` (shortened here by a margin for clock drift).
    pub(crate) fn new(
        capacity: u64,
        lease: Duration,
        share: u32,
        delay_after: Option<u32>,
        max_waiting: u32,
    ) -> Self {
        let mut seed = [0; 8];
        // Epochs only need to differ between this replica's grants of one
        // key: the counter does that; the random start keeps a restarted
        // replica from reusing the epochs of its previous run.
        let _ = getrandom::fill(&mut seed);
        let start = u64::from_le_bytes(seed) >> 12;
        Self {
            shards: shard_capacities(capacity)
                .into_iter()
                .map(|capacity| {
                    Mutex::new(Shard {
                        entries: Table::new(),
                        clock: ClockQueue::new(capacity),
                        capacity,
                    })
                })
                .collect(),
            tags: Mutex::default(),
            lease,
            share: share.max(1),
            delay_after,
            max_waiting,
            next_epoch: std::sync::atomic::AtomicU64::new(start.max(1)),
        }
    }

    fn shard(&self, k: Hashed<'_, K>) -> MutexGuard<'_, Shard<K>> {
        let index = shard_index(k.hash, self.shards.len());
        // Table operations and integer arithmetic only: a poisoned lock
        // still guards a consistent shard.
        self.shards[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The local end of a grant asked for at `sent`: the lease less 1 %
    /// and 2 ms, so that it ends here before it ends in the shared store
    /// even if the clocks run at slightly different rates.
    fn ends(&self, sent: Instant) -> Instant {
        let margin = self.lease / 100 + Duration::from_millis(2);
        sent + self.lease.saturating_sub(margin)
    }

    /// Takes a credit of `k` if this replica holds one, or says who asks
    /// the shared store for more.
    pub(crate) fn take(&self, k: Hashed<'_, K>) -> Take {
        let now = Instant::now();
        let mut shard = self.shard(k);
        let (entry, evicted) = shard.entry(k, now);
        if let Some(tag) = evicted {
            self.untag(tag);
        }
        entry.referenced = true;
        if entry.free(now, self.delay_after) > 0 {
            entry.in_use += 1;
            let renew = (now >= entry.renew_at && !entry.asking).then(|| {
                entry.asking = true;
                // Keep what is used when others wait; otherwise top the
                // grant up to its share.
                let target = if entry.demand {
                    entry.in_use
                } else {
                    self.share.max(entry.in_use)
                };
                Ask {
                    epoch: entry.epoch,
                    more: i64::from(target) - i64::from(entry.held),
                    sent: now,
                }
            });
            if let Some(ask) = renew
                && ask.more < 0
            {
                // Given back now: the shared store can only hold more for
                // this replica than it uses, never less.
                entry.held = entry.held.saturating_sub(ask.more.unsigned_abs() as u32);
            }
            return Take::Taken {
                epoch: entry.epoch,
                failures: entry.failures,
                renew,
            };
        }
        if entry.asking || now < entry.ask_after {
            return Take::Wait;
        }
        Take::Ask(self.ask(entry, now))
    }

    /// Starts a grant of `k` ahead of the key's next request (which then
    /// finds it done, or waits for it as for any grant under way), when
    /// this replica holds no live grant of the key and nobody asks for one;
    /// `None` otherwise. Takes no credit. The entry is made, or found, as
    /// for a request: the table stays bounded the same way, and at most
    /// one grant per key is in flight.
    pub(crate) fn prefetch(&self, k: Hashed<'_, K>) -> Option<Ask> {
        let now = Instant::now();
        let mut shard = self.shard(k);
        let (entry, evicted) = shard.entry(k, now);
        if let Some(tag) = evicted {
            self.untag(tag);
        }
        if entry.live(now) || entry.asking || now < entry.ask_after {
            return None;
        }
        entry.referenced = true;
        Some(self.ask(entry, now))
    }

    /// The grant request of `entry`, which nobody asks for yet: a top-up of
    /// a live grant, or a new grant.
    fn ask(&self, entry: &mut Grant, now: Instant) -> Ask {
        entry.asking = true;
        if !entry.live(now) {
            // A new grant: the credits of an earlier one are abandoned
            // (the shared store replaces them with this epoch's).
            entry.epoch = self
                .next_epoch
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            entry.held = 0;
        }
        let target = self.share.max(entry.in_use + 1);
        Ask {
            epoch: entry.epoch,
            more: i64::from(target.saturating_sub(entry.held)).max(1),
            sent: now,
        }
    }

    /// Applies the shared store's reply to `ask`, then takes a credit for
    /// the request that asked if `take` (a renewal takes none). Returns
    /// whether a credit was taken, and the key's failures.
    pub(crate) fn granted(
        &self,
        k: Hashed<'_, K>,
        ask: Ask,
        reply: Reply,
        take: bool,
    ) -> (bool, u32) {
        let now = Instant::now();
        let mut shard = self.shard(k);
        let Some(entry) = shard.entries.get_mut(k) else {
            // Evicted meanwhile (its credits were not in use): what was
            // granted lapses with the lease.
            return (false, reply.failures);
        };
        entry.asking = false;
        entry.failures = reply.failures;
        entry.demand = reply.demand;
        let tagged = entry.tag != reply.tag;
        entry.tag = reply.tag;
        let mut taken = false;
        if entry.epoch == ask.epoch {
            if !reply.found && ask.more <= 0 {
                // The shared store lost the grant (expired there, or the
                // store restarted): nothing is held any more.
                entry.held = 0;
                entry.until = now;
            } else {
                if reply.added > 0 {
                    entry.held = entry
                        .held
                        .saturating_add(u32::try_from(reply.added).unwrap_or(u32::MAX));
                }
                entry.until = self.ends(ask.sent);
                entry.renew_at = ask.sent + self.lease / RENEW_AFTER;
            }
            if take && entry.free(now, self.delay_after) > 0 {
                entry.in_use += 1;
                taken = true;
            }
            if ask.more > 0 && entry.free(now, self.delay_after) == 0 {
                // Nothing to give: whoever waits asks again after a while
                // (or when a credit comes back here).
                entry.ask_after = now + ASK_AGAIN;
            }
        }
        let failures = entry.failures;
        let waiters = entry.waiters.clone();
        drop(shard);
        if tagged {
            self.tags
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(reply.tag, (k.key.clone(), k.hash));
        }
        // Credits may have come: every waiter of the key looks again.
        if let Some(waiters) = waiters {
            waiters.notify_waiters();
        }
        (taken, failures)
    }

    /// The shared store's answer to `ask` was lost: what it granted is not
    /// known, so the grant is abandoned here (the next request asks for a
    /// new one, which replaces it there). Returns whether it was.
    pub(crate) fn abandon(&self, k: Hashed<'_, K>, ask: Ask) -> bool {
        let now = Instant::now();
        let mut abandoned = false;
        let waiters = self.shard(k).entries.get_mut(k).and_then(|entry| {
            entry.asking = false;
            if entry.epoch == ask.epoch {
                entry.held = 0;
                entry.until = now;
                abandoned = true;
            }
            entry.waiters.clone()
        });
        if let Some(waiters) = waiters {
            waiters.notify_waiters();
        }
        abandoned
    }

    /// Another replica waits for credits of the key tagged `tag`: gives back
    /// the credits held here and not in use, and keeps only what is used
    /// until the shared store says nobody waits. Returns the requests to
    /// send.
    pub(crate) fn spare(&self, tag: u64) -> Option<(K, u64, Ask)> {
        let (key, hash) = self
            .tags
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&tag)
            .cloned()?;
        let now = Instant::now();
        let k = Hashed { key: &key, hash };
        let mut shard = self.shard(k);
        let entry = shard.entries.get_mut(k)?;
        entry.demand = true;
        let spare = entry.held.saturating_sub(entry.in_use);
        if entry.asking || !entry.live(now) || spare == 0 {
            return None;
        }
        entry.held -= spare;
        entry.asking = true;
        let ask = Ask {
            epoch: entry.epoch,
            more: -i64::from(spare),
            sent: now,
        };
        drop(shard);
        Some((key, hash, ask))
    }

    /// Ends an attempt that held a credit of `epoch`. A failure consumes
    /// the credit (when it is of the current epoch); anything else gives it
    /// back. A success that resets the count forgets the known failures.
    pub(crate) fn release(&self, k: Hashed<'_, K>, epoch: u64, failed: bool, reset: bool) {
        let mut shard = self.shard(k);
        let Some(entry) = shard.entries.get_mut(k) else {
            return;
        };
        entry.in_use = entry.in_use.saturating_sub(1);
        if failed {
            entry.failures = entry.failures.saturating_add(1);
            if entry.epoch == epoch {
                entry.held = entry.held.saturating_sub(1);
            }
        } else if reset {
            entry.failures = 0;
        }
        let idle = entry.in_use == 0;
        let requeue = idle && !entry.queued;
        let waiters = if failed || idle {
            entry.waiters.take().inspect(|n| {
                if !idle {
                    entry.waiters = Some(Arc::clone(n));
                }
            })
        } else {
            entry.waiters.clone()
        };
        if requeue {
            shard.queue(k);
        }
        drop(shard);
        match waiters {
            // A failure changes the budget and the delay of every waiter.
            Some(waiters) if failed || idle => waiters.notify_waiters(),
            Some(waiters) => waiters.notify_one(),
            None => {}
        }
    }

    /// Registers a request waiting for a credit of `k` with `register`
    /// (called under the shard's lock, so a release cannot slip in
    /// between), unless a credit is free or too many requests wait already.
    pub(crate) fn wait(&self, k: Hashed<'_, K>, register: impl FnOnce(&Arc<Notify>)) -> Waiting {
        let now = Instant::now();
        let mut shard = self.shard(k);
        let (entry, evicted) = shard.entry(k, now);
        if let Some(tag) = evicted {
            self.untag(tag);
        }
        if entry.free(now, self.delay_after) > 0 || (!entry.asking && now >= entry.ask_after) {
            return Waiting::Ready;
        }
        let notify = entry.waiters.get_or_insert_with(Default::default);
        // The entry holds one clone; every waiter another.
        if Arc::strong_count(notify) > self.max_waiting as usize {
            return Waiting::Crowded;
        }
        register(notify);
        Waiting::Registered
    }

    /// Drops the grant of `k` here (its key was locked out or unlocked):
    /// the next attempt asks the shared store.
    pub(crate) fn forget(&self, k: Hashed<'_, K>) {
        let now = Instant::now();
        let waiters = self.shard(k).entries.get_mut(k).and_then(|entry| {
            entry.held = 0;
            entry.until = now;
            entry.waiters.clone()
        });
        if let Some(waiters) = waiters {
            waiters.notify_waiters();
        }
    }

    /// Forgets the key of `tag` (its entry was evicted).
    fn untag(&self, tag: u64) {
        if tag != 0 {
            self.tags
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&tag);
        }
    }

    /// Every request waiting for a credit of any key looks again.
    pub(crate) fn wake_all(&self) {
        for shard in &*self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            for (_, entry) in shard.entries.iter() {
                if let Some(waiters) = &entry.waiters {
                    waiters.notify_waiters();
                }
            }
        }
    }

    /// Grants held (entries with live credits).
    pub(crate) fn len(&self) -> u64 {
        let now = Instant::now();
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(PoisonError::into_inner);
                shard.entries.iter().filter(|(_, e)| e.live(now)).count() as u64
            })
            .sum()
    }

    /// Entries in the table, live or not (for tests of its bound).
    #[cfg(test)]
    fn entries(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entries
                    .len()
            })
            .sum()
    }
}

impl<K: Clone + Eq> Shard<K> {
    /// Inserts a new entry, evicting one first when the shard is full.
    /// The entry of `k`, made (evicting another first when the shard is
    /// full) if it has none, with the tag of the entry evicted for it.
    fn entry(&mut self, k: Hashed<'_, K>, now: Instant) -> (&mut Grant, Option<u64>) {
        let evicted = if self.entries.get(k).is_none() {
            self.insert(k, Grant::new(now), now)
        } else {
            None
        };
        let entry = self.entries.get_mut(k).expect("made just above");
        (entry, evicted)
    }

    /// Returns the tag of an entry evicted for it, if any.
    fn insert(&mut self, k: Hashed<'_, K>, grant: Grant, now: Instant) -> Option<u64> {
        let evicted = if self.entries.len() >= self.capacity {
            self.evict_one(now)
        } else {
            None
        };
        self.entries.insert_new(k, grant);
        self.queue(k);
        evicted
    }

    /// Puts `k` on the CLOCK queue.
    fn queue(&mut self, k: Hashed<'_, K>) {
        let entries = &self.entries;
        let ticket = self.clock.push(k, |k, ticket| {
            entries
                .get(k)
                .is_some_and(|e| e.ticket == ticket && e.queued)
        });
        if let Some(entry) = self.entries.get_mut(k) {
            entry.ticket = ticket;
            entry.queued = true;
        }
    }

    /// Evicts one entry whose credits are not in use: an expired one, or
    /// one not used since the hand last passed. Entries in use leave the
    /// queue and are queued again when their last credit comes back.
    fn evict_one(&mut self, now: Instant) -> Option<u64> {
        let entries = &mut self.entries;
        let victim = self.clock.evict(|k, ticket, chance| {
            let Some(entry) = entries.get_mut(k) else {
                return Hand::Stale;
            };
            if entry.ticket != ticket || !entry.queued {
                return Hand::Stale;
            }
            if entry.in_use > 0 || entry.asking {
                entry.queued = false;
                return Hand::Stale;
            }
            if entry.live(now) && entry.referenced && chance {
                entry.referenced = false;
                return Hand::Spare;
            }
            Hand::Evict
        });
        let (hash, key) = victim?;
        let entry = self.entries.remove(Hashed { key: &key, hash })?;
        if let Some(waiters) = entry.waiters {
            waiters.notify_waiters();
        }
        Some(entry.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(key: &u32) -> Hashed<'_, u32> {
        Hashed {
            key,
            hash: u64::from(*key).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        }
    }

    fn reply(added: i64) -> Reply {
        Reply {
            added,
            failures: 0,
            demand: false,
            found: true,
            tag: 7,
        }
    }

    fn grants() -> Grants<u32> {
        Grants::new(4, Duration::from_secs(10), 2, None, 8)
    }

    #[tokio::test(start_paused = true)]
    async fn a_returning_key_takes_credits_without_asking() {
        // D5: only the first contact asks; returning requests take and give
        // back credits here.
        let grants = grants();
        let Take::Ask(ask) = grants.take(h(&1)) else {
            panic!("a new key asks")
        };
        assert_eq!(ask.more, 2);
        assert_eq!(grants.take(h(&1)), Take::Wait, "one request asks at a time");
        assert_eq!(grants.granted(h(&1), ask, reply(2), true), (true, 0));
        for _ in 0..1000 {
            let Take::Taken { epoch, renew, .. } = grants.take(h(&1)) else {
                panic!("a credit is free")
            };
            assert_eq!(renew, None);
            grants.release(h(&1), epoch, false, false);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_consume_credits_and_grants_end_with_their_lease() {
        // D5: a failure consumes its credit; nothing is used past the lease.
        let grants = grants();
        let Take::Ask(ask) = grants.take(h(&1)) else {
            panic!()
        };
        grants.granted(h(&1), ask, reply(2), true);
        let Take::Taken { epoch, .. } = grants.take(h(&1)) else {
            panic!()
        };
        // Both credits in use: a third request must ask (and gets none).
        let Take::Ask(third) = grants.take(h(&1)) else {
            panic!("both credits are in use")
        };
        assert_eq!(third.epoch, epoch, "the same grant is topped up");
        grants.granted(h(&1), third, reply(0), false);
        grants.release(h(&1), epoch, true, false);
        grants.release(h(&1), epoch, true, false);
        // The store had none to give: asked again after a while (D4).
        assert_eq!(grants.take(h(&1)), Take::Wait);
        tokio::time::advance(ASK_AGAIN).await;
        assert!(matches!(grants.take(h(&1)), Take::Ask(_)), "both consumed");

        let Take::Ask(ask) = grants.take(h(&2)) else {
            panic!()
        };
        grants.granted(h(&2), ask, reply(2), false);
        tokio::time::advance(Duration::from_secs(10)).await;
        let Take::Ask(next) = grants.take(h(&2)) else {
            panic!("an expired grant is not used")
        };
        assert_ne!(next.epoch, ask.epoch, "a new grant is a new epoch");
    }

    #[tokio::test(start_paused = true)]
    async fn grants_in_use_are_renewed_in_the_background() {
        let grants = grants();
        let Take::Ask(ask) = grants.take(h(&1)) else {
            panic!()
        };
        grants.granted(h(&1), ask, reply(2), false);
        tokio::time::advance(Duration::from_secs(6)).await;
        let Take::Taken {
            renew: Some(renew),
            epoch,
            ..
        } = grants.take(h(&1))
        else {
            panic!("past half the lease, a renewal is asked for")
        };
        assert_eq!((renew.epoch, renew.more), (epoch, 0));
        assert!(matches!(
            grants.take(h(&1)),
            Take::Taken { renew: None, .. }
        ));
        grants.granted(h(&1), renew, reply(0), false);
        grants.release(h(&1), epoch, false, false);
        grants.release(h(&1), epoch, false, false);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(matches!(grants.take(h(&1)), Take::Taken { .. }), "renewed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_the_store_lost_is_dropped() {
        let grants = grants();
        let Take::Ask(ask) = grants.take(h(&1)) else {
            panic!()
        };
        grants.granted(h(&1), ask, reply(2), false);
        tokio::time::advance(Duration::from_secs(6)).await;
        let Take::Taken {
            renew: Some(renew), ..
        } = grants.take(h(&1))
        else {
            panic!()
        };
        let lost = Reply {
            found: false,
            ..reply(0)
        };
        grants.granted(h(&1), renew, lost, false);
        assert!(matches!(grants.take(h(&1)), Take::Ask(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_table_stays_bounded_and_keeps_entries_in_use() {
        // R3: a flood of keys never grows the table past its capacity,
        // except by entries whose credits are in use.
        let grants = grants();
        let Take::Ask(ask) = grants.take(h(&0)) else {
            panic!()
        };
        grants.granted(h(&0), ask, reply(2), true);
        for key in 1..1000u32 {
            if let Take::Ask(ask) = grants.take(h(&key)) {
                grants.granted(h(&key), ask, reply(2), false);
            }
            assert!(grants.entries() <= 5);
        }
        let Take::Taken { .. } = grants.take(h(&0)) else {
            panic!("the entry in use was evicted")
        };
    }

    #[tokio::test(start_paused = true)]
    async fn others_waiting_shrink_the_grant_to_what_is_used() {
        let grants = grants();
        let Take::Ask(ask) = grants.take(h(&1)) else {
            panic!()
        };
        let demand = Reply {
            demand: true,
            ..reply(2)
        };
        grants.granted(h(&1), ask, demand, true);
        grants.release(h(&1), ask.epoch, false, false);
        tokio::time::advance(Duration::from_secs(6)).await;
        let Take::Taken {
            renew: Some(renew), ..
        } = grants.take(h(&1))
        else {
            panic!()
        };
        assert_eq!(renew.more, -1, "one in use of two held: one given back");
        assert!(
            matches!(grants.take(h(&1)), Take::Wait),
            "given back at once"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_grant_started_ahead_is_joined_by_the_next_request() {
        // D5: a grant started ahead of the key's request (by a rate limiter
        // on the same store) takes no credit, and the request waits for it
        // instead of asking again.
        let grants = grants();
        let ask = grants.prefetch(h(&1)).expect("a new key is fetched");
        assert_eq!(ask.more, 2);
        assert_eq!(grants.prefetch(h(&1)), None, "one grant in flight per key");
        assert_eq!(grants.take(h(&1)), Take::Wait, "the request joins it");
        assert_eq!(grants.wait(h(&1), |_| {}), Waiting::Registered);
        assert_eq!(grants.granted(h(&1), ask, reply(2), false), (false, 0));
        assert_eq!(grants.prefetch(h(&1)), None, "credits are held");
        let Take::Taken { epoch, .. } = grants.take(h(&1)) else {
            panic!("the credits fetched ahead are taken")
        };
        assert_eq!(epoch, ask.epoch);
        grants.release(h(&1), epoch, false, false);

        // A grant lost on the way is asked again by the request itself.
        let ask = grants.prefetch(h(&2)).unwrap();
        assert!(grants.abandon(h(&2), ask));
        assert!(matches!(grants.take(h(&2)), Take::Ask(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn grants_started_ahead_keep_the_table_bounded() {
        // R3: a flood of new keys started ahead grows the table no more
        // than one of requests: entries whose grant is answered are evicted
        // as usual.
        let grants = grants();
        for key in 0..1000u32 {
            if let Some(ask) = grants.prefetch(h(&key)) {
                grants.granted(h(&key), ask, reply(2), false);
            }
            assert!(grants.entries() <= 4);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_without_credits_anywhere_is_asked_again_after_a_while() {
        // D4: waiting requests do not ask the shared store in a loop.
        let grants = grants();
        let Take::Ask(ask) = grants.take(h(&1)) else {
            panic!()
        };
        assert_eq!(grants.granted(h(&1), ask, reply(0), true), (false, 0));
        assert_eq!(grants.take(h(&1)), Take::Wait);
        assert_eq!(grants.wait(h(&1), |_| {}), Waiting::Registered);
        tokio::time::advance(ASK_AGAIN).await;
        assert_eq!(grants.wait(h(&1), |_| {}), Waiting::Ready);
        assert!(matches!(grants.take(h(&1)), Take::Ask(_)));
    }
}
