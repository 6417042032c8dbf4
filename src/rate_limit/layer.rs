//! [`RateLimitLayer`]: the table and settings shared by every service it
//! builds.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tower_layer::Layer;

use super::{
    RateLimit,
    headers::{self, Headers},
    store::Store,
};
use crate::{
    ClientIp, KeyExtractor,
    client_list::Lists,
    events::{self, Gauge, Gauges, KeyText, Record},
    reject::DefaultRenderer,
};

/// Limits each client to a rate with a burst, using GCRA.
///
/// Built with [`RateLimitLayer::builder`]; see the [module docs](super) for
/// the guarantees. Clones share one table, so every service made from one
/// layer (every connection) counts together.
#[must_use]
pub struct RateLimitLayer<K: KeyExtractor = ClientIp, R = DefaultRenderer> {
    pub(crate) shared: Arc<Shared<K, R>>,
}

/// What every service of one layer shares.
pub(crate) struct Shared<K: KeyExtractor, R> {
    pub(crate) extractor: K,
    pub(crate) renderer: Arc<R>,
    pub(crate) store: Box<dyn Store<K::Key>>,
    /// The `RateLimit` fields to send, if any.
    pub(crate) headers: Option<Arc<headers::Config>>,
    pub(crate) burst: u32,
    /// The time one request's allowance takes to come back.
    pub(crate) interval: Duration,
    pub(crate) refused: AtomicU64,
    /// Allow- and deny-lists (B16).
    pub(crate) lists: Lists,
}

/// Counts since the layer was built, and table sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RateLimitStats {
    /// Keys the table holds (at most its capacity).
    pub entries: u64,
    /// Keys held because they were refused recently, which a flood of other
    /// keys cannot evict (at most the limited capacity).
    pub limited: u64,
    /// Requests refused.
    pub refused: u64,
    /// Requests decided with the local table because the shared store
    /// (Redis, feature `redis`) was unavailable.
    pub fallbacks: u64,
}

impl<K: KeyExtractor, R> RateLimitLayer<K, R> {
    pub(crate) fn new(shared: Shared<K, R>) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    /// Counts and table sizes; exact, at the cost of visiting every shard.
    pub fn stats(&self) -> RateLimitStats {
        let mut stats = RateLimitStats {
            refused: self.shared.refused.load(Ordering::Relaxed),
            ..RateLimitStats::default()
        };
        self.shared.store.stats(&mut stats);
        stats
    }
}

impl<K: KeyExtractor, R> Shared<K, R> {
    /// The `RateLimit-*` fields of an allowed request, when enabled.
    pub(crate) fn allowed(&self, remaining: u32) -> Option<Headers> {
        self.headers.as_ref().map(|h| h.allowed(remaining))
    }

    /// Counts and logs a refusal; the `RateLimit-*` fields, when enabled.
    pub(crate) fn refused(&self, key: &K::Key, retry_after: Duration) -> Option<Headers> {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "portcullis::rate_limit", key = %KeyText(key), ?retry_after, "rate limited");
        events::emit(Record::RateLimited { key, retry_after });
        self.headers.as_ref().map(|h| h.refused(retry_after))
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
            .field("headers", &shared.headers.is_some())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<S, K: KeyExtractor, R> Layer<S> for RateLimitLayer<K, R> {
    type Service = RateLimit<S, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, Arc::clone(&self.shared))
    }
}

impl Gauges for RateLimitStats {
    fn gauges(&self, set: &mut dyn FnMut(Gauge, f64)) {
        set(Gauge::RateLimitEntries, self.entries as f64);
        set(Gauge::RateLimitLimited, self.limited as f64);
    }
}
