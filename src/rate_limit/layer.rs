//! [`RateLimitLayer`]: the table and settings shared by every service it
//! builds.

use std::{
    fmt,
    sync::{Arc, atomic::Ordering},
};

use tower_layer::Layer;

use super::{RateLimit, RateLimitStats, shared::Shared};
use crate::{ClientIp, KeyExtractor, reject::DefaultRenderer};

/// Limits each client to a rate with a burst, using GCRA.
///
/// Built with [`RateLimitLayer::builder`]; see the [module docs](super) for
/// the guarantees. Clones share one table, so every service made from one
/// layer (every connection) counts together.
#[must_use]
pub struct RateLimitLayer<K: KeyExtractor = ClientIp, R = DefaultRenderer> {
    pub(crate) shared: Arc<Shared<K, R>>,
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
