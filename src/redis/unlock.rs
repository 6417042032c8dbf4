//! Unlocks that reach every replica: an operator's `Tracker::unlock` is
//! published on the store's channel, and every replica forgets the lockout
//! of that key it had cached.

use std::{
    fmt,
    hash::Hash,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use moka::sync::Cache;
use tokio::sync::Notify;

use super::{Connection, Handler, keep};
use crate::future::BoxFuture;

/// Deletes the keys of a lockout and tells every replica, in one step, so
/// that no replica hears of the unlock before the keys are gone.
const FORGET: &str =
    "redis.call('DEL', unpack(KEYS)) return redis.call('PUBLISH', ARGV[1], ARGV[2])";

/// What a replica does when another one waits for credits of a key: the
/// message's payload is [`WANTED`] followed by the key's base.
pub(crate) type Wanted = Box<dyn Fn(&[u8]) + Send + Sync>;

/// The first byte of a message that says a key's credits are wanted (a key
/// base starts with the prefix, never with this).
pub(crate) const WANTED: u8 = b'?';

/// The unlock channel of one lockout store, and the caches it clears.
pub(crate) struct Unlocks<K, V> {
    conn: Connection,
    channel: String,
    lockouts: Cache<K, V>,
    waiting: Cache<K, Arc<Notify>>,
    wanted: Wanted,
    /// Moved on at every unlock heard, so that a lockout whose answer was
    /// on its way meanwhile is not cached again.
    generation: Arc<AtomicU64>,
}

impl<K, V> Unlocks<K, V>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Listens for unlocks on `{prefix}unlock` for as long as the returned
    /// handle lives.
    /// Messages that a key's credits are wanted go to `wanted`.
    pub(crate) fn start(
        conn: &Connection,
        lockouts: Cache<K, V>,
        waiting: Cache<K, Arc<Notify>>,
        wanted: Wanted,
        generation: Arc<AtomicU64>,
    ) -> Arc<Self> {
        let unlocks = Self {
            conn: conn.clone(),
            channel: Self::channel_of(conn),
            lockouts,
            waiting,
            wanted,
            generation,
        };
        keep(conn.client(), unlocks, "lockout unlocks")
    }

    /// The channel of a store's unlocks.
    pub(crate) fn channel_of(conn: &Connection) -> String {
        format!("{}unlock", conn.prefix())
    }

    /// Deletes `keys` (the lockout of `key`) and tells every replica to
    /// forget its cached lockout of `key`, in the background.
    pub(crate) fn forget(&self, key: &K, keys: impl IntoIterator<Item = String>) {
        let keys: Vec<String> = keys.into_iter().collect();
        let mut command = ::redis::cmd("EVAL");
        command
            .arg(FORGET)
            .arg(keys.len())
            .arg(keys)
            .arg(&self.channel)
            .arg(self.conn.key_base(key));
        self.conn.send(command);
    }
}

impl<K, V> Handler for Unlocks<K, V>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    fn channel(&self) -> &str {
        &self.channel
    }

    fn message(&self, payload: &[u8]) {
        if let Some((&WANTED, key)) = payload.split_first() {
            (self.wanted)(key);
            return;
        }
        self.generation.fetch_add(1, Ordering::Relaxed);
        let matches = |key: &K| self.conn.key_base(key).as_bytes() == payload;
        for (key, _) in self.lockouts.iter() {
            if matches(&key) {
                self.lockouts.invalidate(&*key);
                tracing::info!(target: "portcullis::lockout", key = ?key, "lockout lifted on another replica");
            }
        }
        for (key, notify) in self.waiting.iter() {
            if matches(&key) {
                notify.notify_waiters();
            }
        }
    }

    fn subscribed(&self) -> BoxFuture<bool> {
        // Unlocks may have been missed meanwhile: ask redis again about
        // every key instead of trusting the cache.
        self.generation.fetch_add(1, Ordering::Relaxed);
        self.lockouts.invalidate_all();
        Box::pin(std::future::ready(true))
    }

    fn lost(&self, why: &'static str) {
        tracing::debug!(target: "portcullis::lockout", why, "not listening for unlocks from other replicas");
    }
}
