//! Rate-limit state shared by several replicas through Redis (feature
//! `redis`), with the in-memory store as the fallback.

use std::{fmt, hash::Hash, sync::Arc, time::Duration};

use ::redis::Script;

use super::{Decision, Store, Verdict, memory::MemoryStore};
use crate::{
    gate::BoxFuture,
    rate_limit::{RateLimitBuilder, Stats},
    redis::{Connection, Fallback, Primary, RedisStore},
};

/// One GCRA decision. `KEYS[1]` holds the theoretical arrival time (TAT) in
/// microseconds of the Redis server's clock; `ARGV[1]` is the interval of
/// one request and `ARGV[2]` the burst. The key lives exactly until its
/// state equals a fresh one, and is never left without a TTL.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((tat - now) / 1000)))
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, math.floor((now + burst * interval - new_tat) / interval)}
";

impl<K, R> RateLimitBuilder<K, R> {
    /// Keeps the GCRA state in Redis, shared by every replica that uses the
    /// same server and prefix (feature `redis`).
    ///
    /// Each request is one Lua script that reads and updates the key's
    /// theoretical arrival time with the Redis server's clock (`TIME`), so
    /// the replicas' clocks do not matter, and sets the key to expire when
    /// its state equals a fresh one. Keys are `{prefix}{key}:t`, the prefix
    /// defaulting to `portcullis:rate:`; times are whole microseconds, so
    /// an interval is rounded up to one.
    ///
    /// The layer then needs a cloneable inner service, as the request waits
    /// for Redis before it is passed on.
    ///
    /// # Failure of Redis
    ///
    /// Every call has the store's timeout (default 100 ms). When Redis does
    /// not answer, the request is decided with the local in-memory table
    /// (never "no limit"), a warning is logged, the fallback is counted in
    /// [`Stats::fallbacks`](crate::rate_limit::Stats::fallbacks), and Redis is tried again a second
    /// later. While Redis is away each replica limits on its own, so a
    /// client can get up to one burst per replica, and what it used in
    /// Redis is not known locally.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use portcullis::{lockout::RedisStore, rate_limit::RateLimitLayer};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let layer = RateLimitLayer::builder()
    ///     .per_second(10)
    ///     .redis(store.prefix("myapp:rate:"))
    ///     .build()?;
    /// assert_eq!(layer.stats().fallbacks, 0);
    /// # Ok(()) }
    /// ```
    pub fn redis(mut self, store: RedisStore) -> Self {
        self.shared = Some(store);
        self
    }
}

/// The Redis side of a rate limiter.
pub(crate) struct RedisRate {
    conn: Connection,
    gcra: Script,
    /// The interval of one request in whole microseconds (at least 1).
    interval_us: u64,
    burst: u32,
}

impl RedisRate {
    fn new(store: RedisStore, interval: Duration, burst: u32) -> Self {
        let interval_us = u64::try_from(interval.as_nanos().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            conn: Connection::new(store, "portcullis:rate:"),
            gcra: Script::new(GCRA),
            interval_us,
            burst,
        }
    }

    /// Counts one request of `key` and decides it; `None` when Redis does
    /// not answer.
    fn decide(&self, key: &impl fmt::Debug) -> BoxFuture<Option<Verdict>> {
        let tat = format!("{}:t", self.conn.key_base(key));
        let (interval, burst) = (self.interval_us, self.burst);
        let call = self
            .conn
            .invoke::<(i64, i64)>(&self.gcra, move |invocation| {
                invocation.key(tat).arg(interval).arg(burst);
            });
        Box::pin(async move {
            Some(match call.await? {
                (1, remaining) => Verdict::Allowed {
                    remaining: u32::try_from(remaining.clamp(0, i64::from(burst))).unwrap_or(0),
                },
                (_, wait_us) => Verdict::Refused {
                    retry_after: Duration::from_micros(wait_us.max(1).unsigned_abs()),
                },
            })
        })
    }
}

impl Primary for RedisRate {
    fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// The shared store with its local fallback, for the builder.
pub(crate) fn with_fallback<K>(
    store: RedisStore,
    memory: MemoryStore<K>,
    interval: Duration,
    burst: u32,
) -> Box<dyn Store<K>>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    Box::new(Fallback::new(
        RedisRate::new(store, interval, burst),
        memory,
        "rate_limit",
    ))
}

impl<K> Store<K> for Fallback<RedisRate, MemoryStore<K>>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    fn decide(&self, key: &K) -> Decision {
        if self.health.is_down(key) {
            return self.secondary.decide(key);
        }
        let asking = self.primary.decide(key);
        let (secondary, health) = (Arc::clone(&self.secondary), Arc::clone(&self.health));
        let key = key.clone();
        Decision::Ask(Box::pin(async move {
            match asking.await {
                Some(verdict) => verdict,
                None => {
                    health.fell_back(&key);
                    secondary.verdict(&key)
                }
            }
        }))
    }

    fn stats(&self, stats: &mut Stats) {
        self.secondary.stats(stats);
        stats.fallbacks = self.health.fallbacks();
    }
}
