//! [`RateLimitBuilder`]: the settings of a [`RateLimitLayer`].

use std::{
    num::NonZeroU32,
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use governor::Quota;

use super::{
    HeaderFields, RateLimitLayer,
    headers::Config as HeaderConfig,
    shared::Shared,
    store::{self, SharedStore, memory::MemoryStore},
};
use crate::{
    ClientIp, ConfigError, KeyExtractor,
    client_list::{ClientList, Lists},
    reject::{DefaultRenderer, Renderer},
};

/// The default bound of the per-client table.
const DEFAULT_MAX_CAPACITY: u64 = 100_000;

/// The longest refill the limiter accepts; beyond it nanosecond arithmetic
/// could overflow, and no rate limit needs a century.
const MAX_REFILL: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

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
            headers: None,
            policy_name: None,
            shared: None,
            lists: Lists::default(),
        }
    }
}

/// Configures a [`RateLimitLayer`].
///
/// A rate is required; everything else has a default: the burst equals the
/// number of requests of the rate, the table holds 100,000 clients, the
/// limited table a tenth of that, and no `RateLimit` header fields are sent.
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
///     .key(ClientIp::builder().trust_proxies(["10.0.0.0/8"]).build().unwrap())
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
    headers: Option<HeaderFields>,
    policy_name: Option<String>,
    pub(super) shared: Option<SharedStore>,
    lists: Lists,
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
    /// (IETF draft `ratelimit-headers` up to -06) on every response
    /// (default off); the same as
    /// [`header_fields(HeaderFields::Separate)`](Self::header_fields) when
    /// `true`.
    pub fn rate_limit_headers(mut self, enabled: bool) -> Self {
        self.headers = enabled.then_some(HeaderFields::Separate);
        self
    }

    /// Sends these `RateLimit` fields on every response, allowed or
    /// refused: the separate ones, the current draft's structured
    /// `RateLimit-Policy` and `RateLimit`, or both; see [`HeaderFields`].
    pub fn header_fields(mut self, fields: HeaderFields) -> Self {
        self.headers = Some(fields);
        self
    }

    /// Names the policy in `RateLimit-Policy` and `RateLimit` (default
    /// `"default"`). Printable ASCII only.
    pub fn policy_name(mut self, name: impl Into<String>) -> Self {
        self.policy_name = Some(name.into());
        self
    }

    /// Lets the requests on `list` through unlimited and uncounted
    /// (SECURITY.md B16); see [`client_list`](crate::client_list).
    pub fn allow(mut self, list: ClientList) -> Self {
        self.lists.allow = Some(list);
        self
    }

    /// Refuses the requests on `list` with 403 (gRPC `PERMISSION_DENIED`);
    /// the deny list wins over the allow list (SECURITY.md B16).
    pub fn deny(mut self, list: ClientList) -> Self {
        self.lists.deny = Some(list);
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
            policy_name: self.policy_name,
            shared: self.shared,
            lists: self.lists,
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
            policy_name: self.policy_name,
            shared: self.shared,
            lists: self.lists,
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
    /// take more than a century to come back; [`ConfigError::InvalidName`]
    /// when the [policy name](Self::policy_name) is not printable ASCII.
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
        if interval
            .checked_mul(burst)
            .is_none_or(|refill| refill > MAX_REFILL)
        {
            return Err(ConfigError::out_of_range(
                "rate",
                "a full burst must come back within 100 years",
            ));
        }
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

        let headers = self
            .headers
            .map(|fields| {
                let name = self.policy_name.as_deref().unwrap_or("default");
                HeaderConfig::new(fields, name, burst, interval).map(Arc::new)
            })
            .transpose()?;
        let memory = MemoryStore::new(
            quota,
            self.max_capacity,
            limited_capacity,
            headers.is_some(),
        );
        let store = match self.shared {
            Some(shared) => store::with_fallback(
                shared,
                memory,
                interval,
                burst,
                self.max_capacity,
                &self.extractor,
            ),
            None => Box::new(memory),
        };
        Ok(RateLimitLayer::new(Shared {
            extractor: self.extractor,
            renderer: Arc::new(self.renderer),
            store,
            headers,
            burst,
            interval,
            refused: AtomicU64::new(0),
            lists: self.lists,
        }))
    }
}

#[cfg(feature = "redis")]
impl<K, R> RateLimitBuilder<K, R> {
    /// Keeps the GCRA state in Redis, shared by every replica that uses the
    /// same server and prefix (feature `redis`).
    ///
    /// Redis holds each key's theoretical arrival time, on the Redis
    /// server's clock (`TIME`), so the replicas' clocks do not matter; the
    /// key expires when its state equals a fresh one. Keys are
    /// `{prefix}{key}:t`, the prefix defaulting to `portcullis:rate:`;
    /// times are whole microseconds, so an interval is rounded up to one.
    ///
    /// # Tokens in leased batches
    ///
    /// A replica does not ask Redis for every request: it takes tokens in
    /// batches, each granted by the GCRA as that many requests would have
    /// been, and spends them locally. The first request of a key takes one
    /// token (one round trip); a key that keeps coming gets larger batches
    /// (doubling up to 1024, and at most an eighth of the burst), refilled
    /// in the background before they run out, so a returning client costs
    /// no round trip. A refused key is refused locally until Redis said it
    /// may try again.
    ///
    /// What this costs in precision, and no more: the fleet never admits
    /// more requests than Redis granted tokens, and Redis never grants more
    /// than the quota. A batch may be spent up to 1 s after it was taken;
    /// the tokens of a batch not spent by then are lost (charged, never
    /// used), at most one batch per key and replica.
    ///
    /// The layer then needs a cloneable inner service, as a request may
    /// wait for Redis before it is passed on.
    ///
    /// A [`LockoutLayer`](crate::lockout::LockoutLayer) built on the same
    /// store (or a clone) and keyed by the same [`ClientIp`] configuration
    /// gets its credits for a key asked for beside this limiter's batch, so
    /// a new client's first request through both waits for one round trip;
    /// see [`RedisStore`](crate::RedisStore).
    ///
    /// # Failure of Redis
    ///
    /// Every call has the store's timeout (default 100 ms). When Redis does
    /// not answer, the request is decided with the local in-memory table
    /// (never "no limit"), a warning is logged, the fallback is counted in
    /// [`RateLimitStats::fallbacks`](crate::rate_limit::RateLimitStats::fallbacks), and Redis is tried again a second
    /// later. While Redis is away each replica limits on its own, so a
    /// client can get up to one burst per replica, and what it used in
    /// Redis is not known locally.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use portcullis::{RedisStore, rate_limit::RateLimitLayer};
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
    pub fn redis(mut self, store: crate::RedisStore) -> Self {
        self.shared = Some(store);
        self
    }
}
