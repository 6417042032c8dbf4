//! [`LockoutStats`]: what a lockout's tracker counts, as its stores report it.

use crate::events::{Gauge, Gauges};

/// Counts since the tracker was created, and table sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct LockoutStats {
    /// Failure counters held (at most the capacity). May include counters
    /// whose window has passed and that were not reclaimed yet.
    pub tracked: u64,
    /// Keys locked out right now (as far as this replica knows).
    pub locked_out: u64,
    /// Failures counted (failures while locked out are not).
    pub failures: u64,
    /// Lockouts imposed.
    pub lockouts: u64,
    /// Entries dropped because a table was full.
    pub evictions: u64,
    /// Decisions made with the local tables because the shared store
    /// (Redis, feature `redis`) was unavailable.
    pub fallbacks: u64,
    /// Keys for which this replica holds admission credits leased from the
    /// shared store (Redis, feature `redis`): their returning requests are
    /// admitted without a round trip.
    pub leased: u64,
}

impl Gauges for LockoutStats {
    fn gauges(&self, set: &mut dyn FnMut(Gauge, f64)) {
        set(Gauge::LockoutTracked, self.tracked as f64);
        set(Gauge::LockoutLockedOut, self.locked_out as f64);
    }
}
