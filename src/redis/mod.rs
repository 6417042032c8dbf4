//! State shared by several replicas through Redis (feature `redis`): the
//! connection both limiters use, and the fallback to local state while
//! Redis does not answer.

mod fallback;
mod pubsub;
pub(crate) mod unlock;

use std::{fmt, sync::Arc, time::Duration};

use ::redis::{Client, FromRedisValue, Script, ScriptInvocation, aio::ConnectionManager};

pub(crate) use self::fallback::Fallback;
pub(crate) use self::pubsub::{Handler, keep};
pub(crate) use self::unlock::Unlocks;
use crate::gate::BoxFuture;

/// A Redis server that holds limiter state shared by several replicas.
///
/// Hand one (cloned: clones share one connection) to
/// [`Tracker::with_redis`](crate::lockout::Tracker::with_redis) and to
/// [`RateLimitBuilder::redis`](crate::rate_limit::RateLimitBuilder::redis).
///
/// Every decision is one Lua script that checks, reserves or counts, and
/// sets the TTLs of the keys it touches, so a key never exists without a
/// TTL and two replicas cannot both take the last attempt. Lockouts,
/// failure windows, reservation leases and rate-limit state are timed by
/// the Redis server's clock (TTLs, `TIME`), so the replicas' clocks do not
/// matter.
///
/// Keys are `{prefix}{key}:…` with the limiter key in a hash tag, so a
/// key's entries share a cluster slot; the prefix defaults to
/// `portcullis:lockout:` for a tracker and `portcullis:rate:` for a rate
/// limiter. A limiter key is written with its `Debug` form: never key on a
/// credential.
///
/// # When Redis fails
///
/// Every call has a timeout (default 100 ms). When Redis does not answer,
/// the limiter decides with its local in-memory state instead (never "no
/// limit"), logs a warning once, counts the fallback, and tries Redis again
/// a second later.
///
/// # Messages between replicas
///
/// A store made with [`connect`](Self::connect) also opens a pub/sub
/// connection per user (kept alive with a ping every 250 ms, reopened when
/// lost): [`Tracker::unlock`](crate::lockout::Tracker::unlock) is published
/// so that every replica forgets its cached lockout within a second, and
/// revocations (`Revocations::with_redis`) reach every replica the same way.
/// A store made with [`from_manager`](Self::from_manager) cannot subscribe.
///
/// # Reservations
///
/// A lockout reservation (an attempt whose outcome is undecided) is a member
/// of a sorted set scored by its own deadline, the
/// [lease](Self::reservation_lease) (default 10 s), and every admission
/// trims the members whose deadline passed. A reservation whose reply never
/// reached the replica, or whose request was dropped, is released at once
/// when the replica can still send the release, and otherwise frees itself
/// when its lease ends; traffic cannot keep it alive.
///
/// # Example
///
/// ```no_run
/// use portcullis::lockout::{Policy, RedisStore, Tracker};
///
/// # async fn run() -> redis::RedisResult<()> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.prefix("myapp:lockout:");
/// let tracker: Tracker<std::net::IpAddr> = Tracker::with_redis(Policy::default(), store);
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Clone)]
pub struct RedisStore {
    manager: ConnectionManager,
    /// For the pub/sub connections that carry unlocks and revocations to
    /// the other replicas; unknown for a store made from a manager.
    client: Option<Client>,
    prefix: Option<String>,
    timeout: Duration,
    lease: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("reservation_lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis server at `url`.
    ///
    /// # Errors
    ///
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str) -> ::redis::RedisResult<Self> {
        let client = ::redis::Client::open(url)?;
        let config = ::redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
        Ok(Self {
            client: Some(client),
            ..Self::from_manager(manager)
        })
    }

    /// Uses an existing connection manager.
    ///
    /// A store made this way cannot open the pub/sub connections that tell
    /// the other replicas of unlocks and revocations (they warn once):
    /// prefer [`connect`](Self::connect).
    pub fn from_manager(manager: ConnectionManager) -> Self {
        Self {
            manager,
            client: None,
            prefix: None,
            timeout: Duration::from_millis(100),
            lease: Duration::from_secs(10),
        }
    }

    /// Sets the prefix of every key (default `portcullis:lockout:` for a
    /// lockout tracker, `portcullis:rate:` for a rate limiter).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Sets the timeout of every Redis call (default 100 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long a lockout reservation lives in Redis at most (default
    /// 10 s, at least 1 ms).
    ///
    /// A reservation that its replica never released (the replica died, or
    /// the release could not be sent) frees itself after this long. An
    /// attempt still undecided after this long (a login handler slower than
    /// the lease) no longer holds a slot, so the bound on parallel guesses
    /// holds for attempts that decide within the lease.
    pub fn reservation_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(1));
        self
    }
}

/// What every user of a [`RedisStore`] shares: the connection, the key
/// prefix and the timeout of a call.
#[derive(Clone)]
pub(crate) struct Connection {
    manager: ConnectionManager,
    client: Option<Client>,
    prefix: Arc<str>,
    timeout: Duration,
    pub(crate) lease: Duration,
}

impl Connection {
    pub(crate) fn new(store: RedisStore, default_prefix: &str) -> Self {
        Self {
            manager: store.manager,
            client: store.client,
            prefix: store.prefix.as_deref().unwrap_or(default_prefix).into(),
            timeout: store.timeout,
            lease: store.lease,
        }
    }

    /// The client to open a pub/sub connection with, if known.
    pub(crate) fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    /// The prefix of every key.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// This connection with another timeout per call.
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `{prefix}{key}`, the key in a hash tag so that a key's entries share a
    /// cluster slot.
    pub(crate) fn key_base(&self, key: &impl fmt::Debug) -> String {
        format!("{}{{{key:?}}}", self.prefix)
    }

    /// Runs `script`, with the keys and arguments `prepare` adds, within
    /// the timeout; `None` when Redis fails or does not answer in time.
    pub(crate) fn invoke<T>(
        &self,
        script: &Script,
        prepare: impl FnOnce(&mut ScriptInvocation<'_>) + Send + 'static,
    ) -> BoxFuture<Option<T>>
    where
        T: FromRedisValue + Send + 'static,
    {
        let mut con = self.manager.clone();
        let script = script.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let mut invocation = script.prepare_invoke();
            prepare(&mut invocation);
            let call = invocation.invoke_async::<T>(&mut con);
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(value)) => Some(value),
                Ok(Err(_)) | Err(_) => None,
            }
        })
    }
}

impl Connection {
    /// Sends `command` in the background, for work nobody waits for (a
    /// release, an unlock). It follows the calls sent before it on the same
    /// connection, and gets the reservation lease (at least the timeout) to
    /// be answered. A plain command, not a script: a script unknown to a
    /// restarted server costs a second round trip, which a timeout could
    /// cut.
    pub(crate) fn send(&self, command: ::redis::Cmd) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut con = self.manager.clone();
        let patience = self.lease.max(self.timeout);
        runtime.spawn(async move {
            let call = command.exec_async(&mut con);
            let _ = tokio::time::timeout(patience, call).await;
        });
    }
}

/// Whole milliseconds, at least 1.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
