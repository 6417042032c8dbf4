//! The layer and its builder.

use std::{
    fmt,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use governor::{Quota, RateLimiter, middleware::StateInformationMiddleware};
use tower_layer::Layer;

use super::{RateLimit, clock::TokioClock, store::MokaStore};
use crate::{
    ClientIp, ConfigError, KeyExtractor,
    reject::{DefaultRenderer, Renderer},
};

/// The default bound of the per-client table.
const DEFAULT_MAX_CAPACITY: u64 = 100_000;

/// The longest refill the limiter accepts; beyond it nanosecond arithmetic
/// could overflow, and no rate limit needs a century.
const MAX_REFILL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

pub(crate) type Limiter<Key> =
    RateLimiter<Key, MokaStore<Key>, TokioClock, StateInformationMiddleware>;

/// Limits each client to a rate with a burst, using GCRA.
///
/// Built with [`RateLimitLayer::builder`]; see the [module docs](super) for
/// the guarantees. Clones share one table, so every service made from one
/// layer (every connection) counts together.
#[must_use]
pub struct RateLimitLayer<K: KeyExtractor = ClientIp, R = DefaultRenderer> {
    pub(crate) shared: Arc<Shared<K, R>>,
}

pub(crate) struct Shared<K: KeyExtractor, R> {
    pub(crate) extractor: K,
    pub(crate) renderer: R,
    pub(crate) limiter: Limiter<K::Key>,
    pub(crate) store: MokaStore<K::Key>,
    pub(crate) headers: bool,
    pub(crate) burst: u32,
    /// The time one request's allowance takes to come back.
    pub(crate) interval: Duration,
    max_capacity: u64,
    limited_capacity: u64,
    /// The shared store, when there is one.
    #[cfg(feature = "redis")]
    pub(crate) remote: Option<super::redis::Remote>,
    /// Decisions made locally because the shared store failed.
    pub(crate) fallbacks: AtomicU64,
}

impl<K: KeyExtractor, R> Shared<K, R> {
    /// The shared store, unless it failed a moment ago.
    #[cfg(feature = "redis")]
    pub(crate) fn remote(&self) -> Option<&super::redis::Remote> {
        self.remote.as_ref().filter(|r| !r.is_down())
    }

    /// Counts and logs a decision made locally because Redis failed.
    #[cfg(feature = "redis")]
    pub(crate) fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        if let Some(remote) = &self.remote
            && remote.mark_down()
        {
            tracing::warn!(
                target: "portcullis::rate_limit",
                "redis is unavailable; limiting with the local table until it answers again"
            );
        }
    }
}

impl RateLimitLayer {
    /// A builder keyed by [`ClientIp`] (socket peer, no trusted proxies) and
    /// answering with the [`DefaultRenderer`]. Set a rate before
    /// [`build`](RateLimitBuilder::build).
    pub fn builder() -> RateLimitBuilder {
        RateLimitBuilder {
            extractor: ClientIp::new(),
            renderer: DefaultRenderer::new(),
            rate: None,
            burst: None,
            max_capacity: DEFAULT_MAX_CAPACITY,
            limited_capacity: None,
            headers: false,
            #[cfg(feature = "redis")]
            redis: None,
        }
    }
}

impl<K: KeyExtractor, R> RateLimitLayer<K, R> {
    /// How many keys the table holds right now.
    ///
    /// moka applies evictions in batches: call
    /// [`run_pending_tasks`](Self::run_pending_tasks) first for an exact
    /// count.
    pub fn entry_count(&self) -> u64 {
        self.shared.store.entry_count()
    }

    /// How many keys are held in the table of limited keys, which a flood of
    /// other keys cannot evict.
    pub fn limited_count(&self) -> u64 {
        self.shared.store.limited_count()
    }

    /// Applies pending evictions and expirations now (moka otherwise does it
    /// in batches as requests arrive).
    pub fn run_pending_tasks(&self) {
        self.shared.store.run_pending_tasks();
    }

    /// How many requests were decided with the local table because the
    /// shared store (Redis, feature `redis`) was unavailable. Always 0
    /// without a shared store.
    pub fn fallbacks(&self) -> u64 {
        self.shared.fallbacks.load(Ordering::Relaxed)
    }
}

impl<K: KeyExtractor, R> Clone for RateLimitLayer<K, R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: KeyExtractor, R> fmt::Debug for RateLimitLayer<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.shared;
        f.debug_struct("RateLimitLayer")
            .field("burst", &shared.burst)
            .field("interval", &shared.interval)
            .field("max_capacity", &shared.max_capacity)
            .field("limited_capacity", &shared.limited_capacity)
            .field("headers", &shared.headers)
            .field("fallbacks", &shared.fallbacks)
            .finish_non_exhaustive()
    }
}

impl<S, K: KeyExtractor, R> Layer<S> for RateLimitLayer<K, R> {
    type Service = RateLimit<S, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.clone())
    }
}

/// Configures a [`RateLimitLayer`].
///
/// A rate is required; everything else has a default: the burst equals the
/// number of requests of the rate, the table holds 100,000 clients, the
/// limited table a tenth of that, and no `RateLimit-*` headers are sent.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use portcullis::{ClientIp, rate_limit::RateLimitLayer};
///
/// let layer = RateLimitLayer::builder()
///     .rate(100, Duration::from_secs(60)) // 100 a minute, one every 600 ms
///     .burst(20)
///     .key(ClientIp::new().trust_proxies(["10.0.0.0/8"]).unwrap())
///     .rate_limit_headers(true)
///     .build()
///     .unwrap();
/// # let _ = layer;
///
/// assert!(RateLimitLayer::builder().per_second(0).build().is_err());
/// ```
#[must_use]
#[derive(Debug, Clone)]
pub struct RateLimitBuilder<K = ClientIp, R = DefaultRenderer> {
    extractor: K,
    renderer: R,
    rate: Option<(u32, Duration)>,
    burst: Option<u32>,
    max_capacity: u64,
    limited_capacity: Option<u64>,
    headers: bool,
    #[cfg(feature = "redis")]
    redis: Option<crate::lockout::RedisStore>,
}

impl<K, R> RateLimitBuilder<K, R> {
    /// Allows `requests` per `period`, evenly spread: one request's
    /// allowance comes back every `period / requests`.
    pub fn rate(mut self, requests: u32, period: Duration) -> Self {
        self.rate = Some((requests, period));
        self
    }

    /// Allows `requests` per second.
    pub fn per_second(self, requests: u32) -> Self {
        self.rate(requests, Duration::from_secs(1))
    }

    /// Allows `requests` per minute.
    pub fn per_minute(self, requests: u32) -> Self {
        self.rate(requests, Duration::from_secs(60))
    }

    /// Allows `requests` per hour.
    pub fn per_hour(self, requests: u32) -> Self {
        self.rate(requests, Duration::from_secs(3600))
    }

    /// How many requests a client that has been quiet may send at once
    /// (default: the `requests` of the rate).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The most clients the table remembers (default 100,000). When it is
    /// full, the least recently seen client is forgotten.
    pub fn max_capacity(mut self, max_capacity: u64) -> Self {
        self.max_capacity = max_capacity;
        self
    }

    /// The most limited clients kept safe from eviction (default a tenth of
    /// [`max_capacity`](Self::max_capacity), at least 1).
    pub fn limited_capacity(mut self, limited_capacity: u64) -> Self {
        self.limited_capacity = Some(limited_capacity);
        self
    }

    /// Sends `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`
    /// (IETF draft `ratelimit-headers`) on every response (default off).
    pub fn rate_limit_headers(mut self, enabled: bool) -> Self {
        self.headers = enabled;
        self
    }

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
    /// [`RateLimitLayer::fallbacks`], and Redis is tried again a second
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
    /// assert_eq!(layer.fallbacks(), 0);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(mut self, store: crate::lockout::RedisStore) -> Self {
        self.redis = Some(store);
        self
    }

    /// Counts per another key, e.g. a [`ClientIp`] that trusts your proxies.
    pub fn key<K2>(self, extractor: K2) -> RateLimitBuilder<K2, R> {
        RateLimitBuilder {
            extractor,
            renderer: self.renderer,
            rate: self.rate,
            burst: self.burst,
            max_capacity: self.max_capacity,
            limited_capacity: self.limited_capacity,
            headers: self.headers,
            #[cfg(feature = "redis")]
            redis: self.redis,
        }
    }

    /// Answers refused requests with another [`Renderer`].
    pub fn renderer<R2>(self, renderer: R2) -> RateLimitBuilder<K, R2> {
        RateLimitBuilder {
            extractor: self.extractor,
            renderer,
            rate: self.rate,
            burst: self.burst,
            max_capacity: self.max_capacity,
            limited_capacity: self.limited_capacity,
            headers: self.headers,
            #[cfg(feature = "redis")]
            redis: self.redis,
        }
    }

    /// Builds the layer.
    ///
    /// Call it inside the tokio runtime that will serve requests: the
    /// limiter's clock starts here, on tokio time.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] when no rate was set, the rate allows no
    /// request, its period is zero or it asks for more than one request per
    /// nanosecond, the burst or a capacity is zero, or a full burst would
    /// take more than a century to come back.
    pub fn build(self) -> Result<RateLimitLayer<K, R>, ConfigError>
    where
        K: KeyExtractor,
        R: Renderer,
    {
        let Some((requests, period)) = self.rate else {
            return Err(ConfigError::out_of_range(
                "rate",
                "not set: call rate, per_second, per_minute or per_hour",
            ));
        };
        if requests == 0 {
            return Err(ConfigError::out_of_range(
                "rate",
                "must allow at least one request",
            ));
        }
        let interval = period / requests;
        if interval.is_zero() {
            return Err(ConfigError::out_of_range(
                "rate",
                "must allow at most one request per nanosecond",
            ));
        }
        let burst = self.burst.unwrap_or(requests);
        let Some(burst_nz) = NonZeroU32::new(burst) else {
            return Err(ConfigError::out_of_range("burst", "must be at least 1"));
        };
        let refill = interval
            .checked_mul(burst)
            .filter(|refill| *refill <= MAX_REFILL)
            .ok_or_else(|| {
                ConfigError::out_of_range("rate", "a full burst must come back within 100 years")
            })?;
        if self.max_capacity == 0 {
            return Err(ConfigError::out_of_range(
                "max_capacity",
                "must be at least 1",
            ));
        }
        let limited_capacity = self
            .limited_capacity
            .unwrap_or((self.max_capacity / 10).max(1));
        if limited_capacity == 0 {
            return Err(ConfigError::out_of_range(
                "limited_capacity",
                "must be at least 1",
            ));
        }
        let quota = Quota::with_period(interval)
            .ok_or_else(|| ConfigError::out_of_range("rate", "the period must not be zero"))?
            .allow_burst(burst_nz);

        // Forgetting a key is lossless once a full burst has come back; the
        // floor keeps moka from churning on very fast rates.
        let forget_after = refill.max(Duration::from_secs(1));
        let store = MokaStore::new(self.max_capacity, limited_capacity, forget_after);
        let limiter: Limiter<K::Key> = RateLimiter::new(quota, store.clone(), TokioClock::new());
        Ok(RateLimitLayer {
            shared: Arc::new(Shared {
                extractor: self.extractor,
                renderer: self.renderer,
                limiter,
                store,
                headers: self.headers,
                burst,
                interval,
                max_capacity: self.max_capacity,
                limited_capacity,
                #[cfg(feature = "redis")]
                remote: self
                    .redis
                    .map(|store| super::redis::Remote::new(store, interval, burst)),
                fallbacks: AtomicU64::new(0),
            }),
        })
    }
}
