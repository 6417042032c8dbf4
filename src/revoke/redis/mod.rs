//! Revocations shared by several replicas through Redis (feature `redis`).
//!
//! Every revocation is stored in one sorted set (member: what it revokes,
//! score: when that would have expired, on the server's clock) and
//! published on a channel, in one script. Every replica subscribes, applies
//! what it hears, and, each time it (re)subscribes, reads the whole set
//! before it answers anything again.

mod feed;
mod member;
mod outbox;

use std::sync::Arc;

use self::outbox::RedisRevocations;
use super::{Revocations, RevocationsBuilder};
use crate::{
    ConfigError,
    redis::{Connection, RedisStore},
};

impl RevocationsBuilder {
    /// Builds a list shared with other replicas through `store` (feature
    /// `redis`; keys and channel under the prefix `portcullis:revoke:`
    /// unless the store has its own). Call it inside a tokio runtime.
    ///
    /// Revocations are applied here at once, stored in Redis, and published
    /// to every replica, which applies them within a second. Until the list
    /// has read every revocation stored in Redis, and whenever it loses its
    /// subscription (Redis down, a network partition, a ping unanswered for
    /// 500 ms), every check answers unavailable and open streams end; it
    /// logs that, and [`Stats::in_sync`](super::Stats::in_sync) says so. On
    /// reconnecting it reads every revocation again, and the caches that
    /// listen to it forget what they held, before it answers again.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_with_redis(self, store: RedisStore) -> Result<Revocations, ConfigError> {
        let list = self.build_in_sync(false)?;
        let conn = Connection::new(store, "portcullis:revoke:");
        let remote = RedisRevocations::start(&conn, Arc::downgrade(&list.inner));
        if list.inner.remote.set(Box::new(remote)).is_err() {
            unreachable!("the list was built just now, without a remote");
        }
        Ok(list)
    }
}

impl Revocations {
    /// A list with the default settings, shared with other replicas through
    /// `store`; see [`RevocationsBuilder::build_with_redis`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use portcullis::{lockout::RedisStore, revoke::Revocations};
    ///
    /// # async fn run() -> Result<(), portcullis::lockout::RedisConnectError> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let revocations = Revocations::with_redis(store);
    /// revocations.synced().await; // before serving
    /// # Ok(()) }
    /// ```
    pub fn with_redis(store: RedisStore) -> Self {
        Self::builder()
            .build_with_redis(store)
            .expect("the default capacity and lifetime are valid")
    }
}
