//! The fallback from a shared store to a local one, written once for both
//! limiters: the combinator [`Fallback`] and the [`Health`] of the shared
//! store it consults, per cluster slot.

use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use hashbrown::HashMap;
use tokio::time::Instant;

use super::{
    Connection,
    link::{SLOTS, key_base, slot},
};

/// How long to keep deciding locally after the shared store failed, before
/// asking it again.
const DOWN_FOR: Duration = Duration::from_secs(1);

/// Whether the shared store answers, per cluster slot, and how often it did
/// not.
///
/// On a single node every key is in one slot, so one failure sends every
/// key to local state for a while. On a Redis Cluster a failure sends only
/// the keys of its slot there: a master that goes down puts its own keys on
/// the fallback, one slot at a time as its keys are asked for, and the keys
/// of the other masters keep deciding through Redis.
pub(crate) struct Health {
    /// The `tracing` target of the limiter, for the warnings.
    target: &'static str,
    /// The key prefix of a store on a cluster, to find a key's slot; `None`
    /// on a single node.
    cluster_prefix: Option<Arc<str>>,
    /// One bit per slot: set while the slot is skipped.
    down: Box<[AtomicU64]>,
    /// How many bits of `down` are set, to log an outage's start and end
    /// once.
    down_slots: AtomicUsize,
    /// Until when each skipped slot is skipped.
    down_until: Mutex<HashMap<u16, Instant>>,
    fallbacks: AtomicU64,
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("target", &self.target)
            .field("cluster", &self.cluster_prefix.is_some())
            .field("down_slots", &self.down_slots.load(Ordering::Relaxed))
            .field("fallbacks", &self.fallbacks())
            .finish_non_exhaustive()
    }
}

impl Health {
    pub(crate) fn new(target: &'static str, conn: &Connection) -> Self {
        let words = if conn.is_cluster() { SLOTS / 64 } else { 1 };
        Self {
            target,
            cluster_prefix: conn.is_cluster().then(|| conn.prefix().into()),
            down: (0..words).map(|_| AtomicU64::new(0)).collect(),
            down_slots: AtomicUsize::new(0),
            down_until: Mutex::new(HashMap::new()),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// The slot of the Redis keys of the limiter key `key` (0 on a single
    /// node).
    fn slot(&self, key: &impl fmt::Debug) -> u16 {
        match &self.cluster_prefix {
            Some(prefix) => slot(key_base(prefix, key).as_bytes()),
            None => 0,
        }
    }

    /// Whether the shared store is to be skipped for now for `key`, after a
    /// failure of its slot.
    pub(crate) fn is_down(&self, key: &impl fmt::Debug) -> bool {
        // Nothing is down: no need to find the slot.
        if self.down_slots.load(Ordering::Relaxed) == 0 {
            return false;
        }
        let slot = self.slot(key);
        let (word, bit) = (&self.down[usize::from(slot / 64)], 1u64 << (slot % 64));
        if word.load(Ordering::Relaxed) & bit == 0 {
            return false;
        }
        let mut until = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match until.get(&slot) {
            Some(&at) if Instant::now() < at => true,
            _ => {
                until.remove(&slot);
                if word.fetch_and(!bit, Ordering::Relaxed) & bit != 0
                    && self.down_slots.fetch_sub(1, Ordering::Relaxed) == 1
                {
                    tracing::info!(target: "portcullis::redis", limiter = self.target, "asking redis again");
                }
                false
            }
        }
    }

    /// Counts a decision of `key` made locally because the shared store
    /// failed, and skips the store for the keys of its slot for a while.
    /// Warns once per outage.
    pub(crate) fn fell_back(&self, key: &impl fmt::Debug) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        crate::events::emit(crate::events::Record::Fallback {
            limiter: self.target,
        });
        let slot = self.slot(key);
        let (word, bit) = (&self.down[usize::from(slot / 64)], 1u64 << (slot % 64));
        let mut until = self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        until.insert(slot, Instant::now() + DOWN_FOR);
        if word.fetch_or(bit, Ordering::Relaxed) & bit == 0
            && self.down_slots.fetch_add(1, Ordering::Relaxed) == 0
        {
            if self.cluster_prefix.is_some() {
                tracing::warn!(
                    target: "portcullis::redis",
                    limiter = self.target,
                    slot,
                    "redis is unavailable for some keys; deciding them with local state until \
                     their master answers again"
                );
            } else {
                tracing::warn!(
                    target: "portcullis::redis",
                    limiter = self.target,
                    "redis is unavailable; deciding with local state until it answers again"
                );
            }
        }
    }

    /// Decisions made locally so far.
    pub(crate) fn fallbacks(&self) -> u64 {
        self.fallbacks.load(Ordering::Relaxed)
    }
}

/// The Redis side of a limiter, for its [`Fallback`].
pub(crate) trait Primary {
    /// The connection its decisions go through.
    fn connection(&self) -> &Connection;
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

impl<P: Primary, S> Fallback<P, S> {
    pub(crate) fn new(primary: P, secondary: S, target: &'static str) -> Self {
        let health = Arc::new(Health::new(target, primary.connection()));
        Self {
            primary,
            secondary: Arc::new(secondary),
            health,
        }
    }
}
