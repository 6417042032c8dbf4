//! The fallback from a shared store to a local one, written once for both
//! limiters: the combinator [`Fallback`] and the [`Health`] of the shared
//! store it consults.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

/// How long to keep deciding locally after the shared store failed, before
/// asking it again.
const DOWN_FOR: Duration = Duration::from_secs(1);

/// Whether the shared store answers, and how often it did not.
#[derive(Debug)]
pub(crate) struct Health {
    /// The `tracing` target of the limiter, for the warnings.
    target: &'static str,
    down: AtomicBool,
    down_until: Mutex<Option<Instant>>,
    fallbacks: AtomicU64,
}

impl Health {
    pub(crate) fn new(target: &'static str) -> Self {
        Self {
            target,
            down: AtomicBool::new(false),
            down_until: Mutex::new(None),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Whether the shared store is to be skipped for now, after a failure.
    pub(crate) fn is_down(&self) -> bool {
        if !self.down.load(Ordering::Relaxed) {
            return false;
        }
        let mut until = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match *until {
            Some(at) if Instant::now() < at => true,
            _ => {
                *until = None;
                self.down.store(false, Ordering::Relaxed);
                tracing::info!(target: "portcullis::redis", limiter = self.target, "asking redis again");
                false
            }
        }
    }

    /// Counts a decision made locally because the shared store failed, and
    /// skips the store for a while. Warns once per outage.
    pub(crate) fn fell_back(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        crate::events::emit(crate::events::Record::Fallback {
            limiter: self.target,
        });
        *self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + DOWN_FOR);
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                target: "portcullis::redis",
                limiter = self.target,
                "redis is unavailable; deciding with local state until it answers again"
            );
        }
    }

    /// Decisions made locally so far.
    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

/// A shared store (`primary`) with a local one to decide while it does not
/// answer. Each limiter implements its store trait for it, dispatching on
/// [`Health`].
#[derive(Debug)]
pub(crate) struct Fallback<P, S> {
    pub(crate) primary: P,
    pub(crate) secondary: Arc<S>,
    pub(crate) health: Arc<Health>,
}

impl<P, S> Fallback<P, S> {
    pub(crate) fn new(primary: P, secondary: S, target: &'static str) -> Self {
        Self {
            primary,
            secondary: Arc::new(secondary),
            health: Arc::new(Health::new(target)),
        }
    }
}
