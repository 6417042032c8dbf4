//! Rate-limit state shared by several replicas through Redis (feature
//! `redis`), with the in-memory store as the fallback.
//!
//! Redis holds each key's GCRA state; a replica takes tokens from it in
//! leased batches and spends them locally, so a returning client costs no
//! round trip. A batch is sized to the key's recent rate on this replica
//! (from one token up to [`MAX_BATCH`], and at most an eighth of the
//! burst), refilled in the background before it runs out, and expires
//! [`TOKEN_LEASE`] after it was taken.

use std::{
    fmt,
    hash::{BuildHasher, Hash},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use ::redis::Script;
use tokio::time::Instant;

use super::{Decision, Store, Verdict, memory::MemoryStore};
use crate::{
    KeyExtractor,
    future::BoxFuture,
    key::KeyHasher,
    rate_limit::stats::RateLimitStats,
    redis::{Connection, Fallback, KeySpace, Prefetcher, Primary, RedisStore},
    table::{ClockQueue, Hand, Hashed, Table, shard_capacities, shard_index},
};

/// Takes up to `ARGV[3]` tokens of a key's GCRA state at once. `KEYS[1]`
/// holds the theoretical arrival time (TAT) in microseconds of the Redis
/// server's clock; `ARGV[1]` is the interval of one request and `ARGV[2]`
/// the burst. Grants as many tokens as a request each would be allowed
/// now (at most `ARGV[3]`), advancing the TAT by one interval each, so a
/// batch never holds more than the quota allows. Replies `{granted,
/// remaining}`, or `{0, wait}` with the microseconds until one token is
/// allowed. The key lives exactly until its state equals a fresh one.
const TAKE: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local granted = math.floor((now + burst * interval - tat) / interval)
if granted > tonumber(ARGV[3]) then granted = tonumber(ARGV[3]) end
if granted < 1 then
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((tat - now) / 1000)))
  return {0, tat + interval - burst * interval - now}
end
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {granted, math.floor((now + burst * interval - new_tat) / interval)}
";

/// How long a replica may spend a batch of tokens after taking it. Over
/// any span of time, the fleet admits at most what the quota allows in
/// that span plus this long.
pub(crate) const TOKEN_LEASE: Duration = Duration::from_secs(1);

/// The most tokens one batch takes.
pub(crate) const MAX_BATCH: u32 = 1024;

/// The tokens of one key on this replica.
#[derive(Debug)]
struct Batch {
    tokens: u32,
    /// The tokens may be spent before this.
    until: Instant,
    /// Refused by Redis: refused here until this.
    refused_until: Instant,
    /// What Redis said was left after the last batch.
    remaining: u32,
    /// The size of the next batch.
    size: u32,
    /// When the batch being spent was taken.
    taken_at: Instant,
    /// A refill is under way.
    refilling: bool,
    ticket: u64,
    referenced: bool,
}

struct Shard<K> {
    batches: Table<K, Batch>,
    clock: ClockQueue<K>,
    capacity: usize,
}

/// What the local batches decided.
enum Local {
    Now(Verdict, Option<u32>),
    Ask(u32),
}

/// The Redis side of a rate limiter.
pub(crate) struct RedisRate<K> {
    conn: Connection,
    take: Script,
    /// The interval of one request in whole microseconds (at least 1).
    interval_us: u64,
    burst: u32,
    max_batch: u32,
    hasher: KeyHasher,
    shards: Arc<[Mutex<Shard<K>>]>,
    /// Starts the grants of the lockouts on the same store that count the
    /// same keys, beside this limiter's own round trip for a key.
    prefetch: Option<Prefetcher<K>>,
}

impl<K> RedisRate<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    fn new(
        store: RedisStore,
        interval: Duration,
        burst: u32,
        capacity: u64,
        space: Option<KeySpace>,
    ) -> Self {
        let interval_us = u64::try_from(interval.as_nanos().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1);
        let prefetch = space.map(|space| store.prefetchers().for_space(space));
        Self {
            prefetch,
            conn: Connection::new(store, "portcullis:rate:"),
            take: Script::new(TAKE),
            interval_us,
            burst,
            max_batch: (burst / 8).clamp(1, MAX_BATCH),
            hasher: KeyHasher::new(),
            shards: shard_capacities(capacity)
                .into_iter()
                .map(|capacity| {
                    Mutex::new(Shard {
                        batches: Table::new(),
                        clock: ClockQueue::new(capacity),
                        capacity,
                    })
                })
                .collect(),
        }
    }

    fn shard<'a>(shards: &'a [Mutex<Shard<K>>], k: Hashed<'_, K>) -> MutexGuard<'a, Shard<K>> {
        shards[shard_index(k.hash, shards.len())]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Spends a token of the key's batch, or says how many to ask for.
    fn local(&self, k: Hashed<'_, K>) -> Local {
        let now = Instant::now();
        let mut shard = Self::shard(&self.shards, k);
        let Some(batch) = shard.batches.get_mut(k) else {
            return Local::Ask(1);
        };
        batch.referenced = true;
        if now < batch.refused_until {
            return Local::Now(
                Verdict::Refused {
                    retry_after: batch.refused_until - now,
                },
                None,
            );
        }
        if batch.tokens == 0 || now >= batch.until {
            return Local::Ask(batch.size);
        }
        batch.tokens -= 1;
        let verdict = Verdict::Allowed {
            remaining: batch.remaining.saturating_add(batch.tokens),
        };
        // Refill before the batch runs out, off the request path.
        let refill =
            (batch.tokens <= batch.size / 4 && !batch.refilling && batch.size > 1).then(|| {
                batch.refilling = true;
                batch.size
            });
        Local::Now(verdict, refill)
    }

    /// Takes `n` tokens for `k`; `None` when Redis does not answer.
    fn ask(&self, key: &K, n: u32) -> BoxFuture<Option<(i64, i64)>> {
        let tat = format!("{}:t", self.conn.key_base(key));
        let (interval, burst) = (self.interval_us, self.burst);
        self.conn
            .invoke::<(i64, i64)>(&self.take, move |invocation| {
                invocation.key(tat).arg(interval).arg(burst).arg(n);
            })
    }

    /// Applies what Redis answered to a request for tokens sent at
    /// `sent`, spending one of them if `spend`.
    fn apply(
        shards: &[Mutex<Shard<K>>],
        max_batch: u32,
        k: Hashed<'_, K>,
        sent: Instant,
        reply: (i64, i64),
        spend: bool,
    ) -> Verdict {
        let now = Instant::now();
        let mut shard = Self::shard(shards, k);
        if shard.batches.get(k).is_none() {
            if shard.batches.len() >= shard.capacity {
                shard.evict_one(now);
            }
            shard.batches.insert_new(
                k,
                Batch {
                    tokens: 0,
                    until: now,
                    refused_until: now,
                    remaining: 0,
                    size: 1,
                    taken_at: now,
                    refilling: false,
                    ticket: 0,
                    referenced: true,
                },
            );
            let Shard { batches, clock, .. } = &mut *shard;
            let ticket = clock.push(k, |k, ticket| {
                batches.get(k).is_some_and(|b| b.ticket == ticket)
            });
            if let Some(batch) = shard.batches.get_mut(k) {
                batch.ticket = ticket;
            }
        }
        let batch = shard.batches.get_mut(k).expect("inserted just above");
        batch.refilling = false;
        let (granted, rest) = reply;
        if granted < 1 {
            let retry_after = Duration::from_micros(rest.max(1).unsigned_abs());
            // Tokens taken before stay good until their lease ends: a
            // refused refill refuses only once they are gone.
            if batch.tokens == 0 || now >= batch.until {
                batch.refused_until = now + retry_after;
            }
            return Verdict::Refused { retry_after };
        }
        let granted = u32::try_from(granted).unwrap_or(u32::MAX);
        // Size the next batch to the rate: double while batches are spent
        // quickly, halve when one lapsed with tokens left.
        let lapsed = now >= batch.until && batch.tokens > 0;
        let quick = now.saturating_duration_since(batch.taken_at) < TOKEN_LEASE / 4;
        batch.size = if lapsed {
            (batch.size / 2).max(1)
        } else if quick {
            batch.size.saturating_mul(2).min(max_batch)
        } else {
            batch.size
        };
        // Tokens left of a lapsed batch are gone; a live one keeps them.
        if now >= batch.until {
            batch.tokens = 0;
        }
        batch.tokens = batch.tokens.saturating_add(granted);
        batch.until = sent + TOKEN_LEASE;
        batch.taken_at = sent;
        batch.remaining = u32::try_from(rest.max(0)).unwrap_or(u32::MAX);
        if spend {
            batch.tokens -= 1;
        }
        Verdict::Allowed {
            remaining: batch.remaining.saturating_add(batch.tokens),
        }
    }
}

impl<K: Clone + Eq> Shard<K> {
    /// Evicts a batch: a lapsed one, or one not used since the hand last
    /// passed. Its tokens are lost; a refused key is simply asked again.
    fn evict_one(&mut self, now: Instant) {
        let batches = &mut self.batches;
        let victim = self.clock.evict(|k, ticket, chance| {
            let Some(batch) = batches.get_mut(k) else {
                return Hand::Stale;
            };
            if batch.ticket != ticket {
                return Hand::Stale;
            }
            let live = now < batch.until || now < batch.refused_until;
            if live && batch.referenced && chance {
                batch.referenced = false;
                return Hand::Spare;
            }
            Hand::Evict
        });
        if let Some((hash, key)) = victim {
            self.batches.remove(Hashed { key: &key, hash });
        }
    }
}

impl<K> Primary for RedisRate<K> {
    fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// The shared store with its local fallback, for the builder of a limiter
/// keyed by `extractor`.
pub(crate) fn with_fallback<E: KeyExtractor>(
    store: RedisStore,
    memory: MemoryStore<E::Key>,
    interval: Duration,
    burst: u32,
    capacity: u64,
    extractor: &E,
) -> Box<dyn Store<E::Key>> {
    let space = crate::client_ip::key_space(extractor);
    Box::new(Fallback::new(
        RedisRate::new(store, interval, burst, capacity, space),
        memory,
        "rate_limit",
    ))
}

impl<K> Store<K> for Fallback<RedisRate<K>, MemoryStore<K>>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    fn decide(&self, key: &K) -> Decision {
        if self.health.is_down(key) {
            return self.secondary.decide(key);
        }
        let rate = &self.primary;
        let k = Hashed {
            key,
            hash: rate.hasher.hash_one(key),
        };
        let n = match rate.local(k) {
            Local::Now(verdict, None) => return Decision::Now(verdict),
            Local::Now(verdict, Some(n)) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let asking = rate.ask(key, n);
                    let (shards, max_batch) = (Arc::clone(&rate.shards), rate.max_batch);
                    let (key, hash, sent) = (key.clone(), k.hash, Instant::now());
                    runtime.spawn(async move {
                        let k = Hashed { key: &key, hash };
                        match asking.await {
                            Some(reply) => {
                                RedisRate::apply(&shards, max_batch, k, sent, reply, false);
                            }
                            None => {
                                // Not refilled: the next request asks.
                                if let Some(batch) = RedisRate::shard(&shards, k).batches.get_mut(k)
                                {
                                    batch.refilling = false;
                                }
                            }
                        }
                    });
                }
                return Decision::Now(verdict);
            }
            Local::Ask(n) => n,
        };
        let asking = rate.ask(key, n);
        // The lockouts that count this key ask Redis now too, so that their
        // script follows this one on the connection: the request waits for
        // one round trip, not one per layer.
        if let Some(prefetch) = &rate.prefetch {
            prefetch.prefetch(key);
        }
        let (shards, max_batch) = (Arc::clone(&rate.shards), rate.max_batch);
        let (secondary, health) = (Arc::clone(&self.secondary), Arc::clone(&self.health));
        let (key, hash, sent) = (key.clone(), k.hash, Instant::now());
        Decision::Ask(Box::pin(async move {
            match asking.await {
                Some(reply) => RedisRate::apply(
                    &shards,
                    max_batch,
                    Hashed { key: &key, hash },
                    sent,
                    reply,
                    true,
                ),
                None => {
                    health.fell_back(&key);
                    secondary.verdict(&key)
                }
            }
        }))
    }

    fn stats(&self, stats: &mut RateLimitStats) {
        self.secondary.stats(stats);
        stats.fallbacks = self.health.fallbacks();
    }
}
