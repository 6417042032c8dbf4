//! Where the rate limiter's state lives: the [`Store`] trait, the in-memory
//! store and (feature `redis`) the Redis store with its local fallback.

use std::time::Duration;

use super::stats::RateLimitStats;
#[cfg(feature = "redis")]
use crate::future::BoxFuture;

pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// What the limiter decided about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Allowed, with this many requests left right now (counted only when
    /// the layer sends `RateLimit` header fields: 0 otherwise).
    Allowed { remaining: u32 },
    /// Refused; the next request is allowed after this long.
    Refused { retry_after: Duration },
}

/// A verdict now, or once a round trip ends.
pub(crate) enum Decision {
    Now(Verdict),
    #[cfg(feature = "redis")]
    Ask(BoxFuture<Verdict>),
}

/// Where a rate limiter keeps its state: one GCRA decision per request.
pub(crate) trait Store<K>: Send + Sync + 'static {
    /// Counts one request of `key` and decides it.
    fn decide(&self, key: &K) -> Decision;

    /// Fills in the table sizes and the counts this store keeps.
    fn stats(&self, stats: &mut RateLimitStats);
}

#[cfg(feature = "redis")]
pub(crate) use self::redis::with_fallback;
/// A shared store the builder can be given: Redis with the `redis` feature.
#[cfg(feature = "redis")]
pub(crate) use crate::redis::RedisStore as SharedStore;

/// Without the `redis` feature there is no shared store to be given.
#[cfg(not(feature = "redis"))]
#[derive(Debug, Clone)]
pub(crate) enum SharedStore {}

#[cfg(not(feature = "redis"))]
pub(crate) fn with_fallback<E: crate::KeyExtractor>(
    shared: SharedStore,
    _: memory::MemoryStore<E::Key>,
    _: Duration,
    _: u32,
    _: u64,
    _: &E,
) -> Box<dyn Store<E::Key>> {
    match shared {}
}
