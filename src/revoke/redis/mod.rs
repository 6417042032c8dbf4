//! Revocations shared by several replicas through Redis (feature `redis`).
//!
//! Every revocation is stored in one of 16 sorted sets, chosen by a hash of
//! what it revokes, each under its own hash tag (member: what it revokes,
//! score: when that would have expired, on the server's clock; the set's
//! TTL is its last end), and published on a channel, in one script per
//! batch. Every replica subscribes, applies what it hears, and, each time
//! it (re)subscribes, reads every set again in pages (`ZSCAN`). When the
//! server's run id changed (a restart, maybe without its data), it first
//! writes back every live revocation it holds.

mod feed;
mod held;
mod member;
mod outbox;
mod write;

use std::sync::Arc;

use self::outbox::RedisRevocations;
use super::{Revocations, RevocationsBuilder};
use crate::{
    ConfigError,
    redis::{Connection, RedisStore},
};

impl RevocationsBuilder {
    /// Shares the list with other replicas through `store` (feature
    /// `redis`; keys and channel under the prefix `portcullis:revoke:`
    /// unless the store has its own), the same store handle the lockout,
    /// the rate limiter and the sessions take. [`build`](Self::build) it
    /// inside a tokio runtime.
    ///
    /// Revocations are applied here at once, stored in Redis, and published
    /// to every replica, which applies them within a second. Until the list
    /// has read every revocation stored in Redis the first time, every
    /// check answers unavailable.
    ///
    /// # When Redis fails
    ///
    /// When the list loses its subscription (Redis down, restarting or
    /// failing over, a network partition, a ping unanswered for 500 ms) it
    /// logs it and serves its local copy for the
    /// [staleness](Self::staleness) bound (default 30 s), then does what
    /// [`when_stale`](Self::when_stale) says: refuse with 503 and end open
    /// streams (the default), or keep serving. Revocations made here
    /// meanwhile take effect here at once, answer at once
    /// ([`RevokeErrorKind::Queued`](super::RevokeErrorKind::Queued)) and
    /// wait in a bounded queue (4,096; past it they stay local, counted in
    /// [`RevocationStats::dropped`](super::RevocationStats::dropped) and logged) until Redis
    /// takes them. On reconnecting the list writes back what it holds if the
    /// server's run id changed (a Redis that restarted empty loses nothing
    /// a replica still holds), reads every revocation again, and the caches
    /// that listen to it forget what they held. [`RevocationStats::state`](super::RevocationStats::state)
    /// says where it stands.
    ///
    /// # Redis state
    ///
    /// Bounded: revocations are spread over 16 sorted sets, each under its
    /// own hash tag (its own cluster slot), each with a TTL at its last end;
    /// ended revocations are trimmed at every write and catch-up; a
    /// catch-up reads 1,000 at a time. Measured: 100,000 revocations take
    /// about 13 MB in Redis. Each replica also keeps the live revocations it
    /// holds as Redis members (at most the capacity, about 100 bytes each),
    /// to write them back after a restart.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use portcullis::{RedisStore, revoke::Revocations};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let revocations = Revocations::builder().redis(store).build()?;
    /// revocations.synced().await; // before serving
    /// # Ok(()) }
    /// ```
    pub fn redis(mut self, store: RedisStore) -> Self {
        self.shared = Some(store);
        self
    }

    /// Builds the list over `store`; see [`redis`](Self::redis).
    pub(super) fn build_shared(self, store: RedisStore) -> Result<Revocations, ConfigError> {
        let capacity = self.capacity;
        let list = self.build_in_sync(false)?;
        let conn = Connection::new(store, "portcullis:revoke:");
        let remote = RedisRevocations::start(&conn, Arc::downgrade(&list.inner), capacity);
        if list.inner.remote.set(Box::new(remote)).is_err() {
            unreachable!("the list was built just now, without a remote");
        }
        Ok(list)
    }
}
