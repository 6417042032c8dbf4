//! [`RateLimitStats`]: what a rate limiter counts, as its store reports it.

use crate::events::{Gauge, Gauges};

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

impl Gauges for RateLimitStats {
    fn gauges(&self, set: &mut dyn FnMut(Gauge, f64)) {
        set(Gauge::RateLimitEntries, self.entries as f64);
        set(Gauge::RateLimitLimited, self.limited as f64);
    }
}
