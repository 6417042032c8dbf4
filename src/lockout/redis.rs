//! Lockout state shared by several replicas through Redis (feature `redis`).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use redis::{FromRedisValue, Script, ScriptInvocation, aio::ConnectionManager};
use tokio::time::Instant;

use super::Policy;

/// Decides before each request whether a key may try: locked out (by the
/// lockout key's TTL), or `failures + in_flight < max` and then reserves.
/// Every key it creates gets a TTL in the same script.
const ADMIT: &str = r"
local locked = redis.call('PTTL', KEYS[3])
if locked > 0 then return {2, locked, tonumber(redis.call('GET', KEYS[3]) or '1')} end
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
local in_flight = tonumber(redis.call('GET', KEYS[2]) or '0')
if failures + in_flight < tonumber(ARGV[1]) then
  redis.call('INCR', KEYS[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
  return {1, 0, 0}
end
return {0, 0, 0}
";

/// Ends an attempt: frees its reservation (if it had one) and records its
/// outcome: 1 a failure (counted, locking the key out at the threshold,
/// unless it is locked out already), 2 a success that resets the count.
const FINISH: &str = r"
if ARGV[1] == '1' and redis.call('EXISTS', KEYS[2]) == 1 then
  local left = redis.call('DECR', KEYS[2])
  if left <= 0 then redis.call('DEL', KEYS[2]) end
end
if ARGV[2] == '2' then
  redis.call('DEL', KEYS[1])
  return {0, 0, 0}
end
if ARGV[2] ~= '1' then return {0, 0, 0} end
local locked = redis.call('PTTL', KEYS[3])
if locked > 0 then return {3, locked, 0} end
local failures = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if failures < tonumber(ARGV[3]) then return {1, failures, 0} end
local previous = tonumber(redis.call('GET', KEYS[4]) or '0')
local lockout = tonumber(ARGV[5]) * (tonumber(ARGV[6]) ^ previous)
if lockout > tonumber(ARGV[7]) then lockout = tonumber(ARGV[7]) end
lockout = math.floor(lockout)
redis.call('SET', KEYS[3], previous + 1, 'PX', lockout)
redis.call('SET', KEYS[4], previous + 1, 'PX', lockout + tonumber(ARGV[4]))
redis.call('DEL', KEYS[1])
return {2, lockout, previous + 1}
";

/// Lifts a lockout: forgets the lockout, the failures and the history.
const UNLOCK: &str = r"
return redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
";

/// How long an attempt's reservation lives in Redis if the replica that
/// took it dies before releasing it.
const RESERVATION_TTL: Duration = Duration::from_secs(300);

/// How long to wait before asking again when a key has no free slot.
pub(crate) const FULL_RETRY: Duration = Duration::from_millis(20);

/// How long to keep using the local tracker after Redis failed, before
/// trying it again.
const DOWN_FOR: Duration = Duration::from_secs(1);

/// Where a [`Tracker`](super::Tracker) keeps the lockout state shared by
/// several replicas: a Redis server (feature `redis`).
///
/// Every decision is one Lua script that checks, reserves or counts, and
/// sets the TTLs of the keys it touches, so a counter never exists without
/// a TTL and two replicas cannot both take the last attempt. Lockouts and
/// failure windows are Redis TTLs, so the replicas' clocks do not matter.
///
/// Keys are `{prefix}{key}:f` (failures), `:i` (attempts in flight), `:l`
/// (lockout) and `:h` (escalation history), with the key in a hash tag so
/// they share a cluster slot; the prefix defaults to `portcullis:lockout:`.
///
/// The same store (cloned, sharing one connection) can also hold the state
/// of a [`RateLimitLayer`](crate::rate_limit::RateLimitLayer), see
/// [`RateLimitBuilder::redis`](crate::rate_limit::RateLimitBuilder::redis);
/// its keys default to the prefix `portcullis:rate:`.
///
/// # Failure of Redis
///
/// Every call has a timeout (default 100 ms). When Redis does not answer,
/// the tracker decides with its local in-memory tables instead (never "no
/// limit"), logs a warning, counts the fallback in
/// [`Stats::fallbacks`](super::Stats::fallbacks), and tries Redis again a
/// second later. Lockouts seen in Redis are cached locally until they end,
/// so they keep applying while Redis is away.
///
/// # Limits
///
/// - [`Tracker::unlock`](super::Tracker::unlock) clears Redis and the local
///   cache of the replica it runs on; other replicas that cached the
///   lockout keep refusing the key until the lockout would have ended.
/// - While Redis is away, each replica counts on its own, so a key can get
///   up to `max_failures` attempts per replica.
/// - A key with no free slot is asked about again every 20 ms (replicas do
///   not notify each other).
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
    prefix: Option<String>,
    timeout: Duration,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Connects to the Redis server at `url`.
    ///
    /// # Errors
    ///
    /// When the URL is invalid or the server cannot be reached.
    pub async fn connect(url: &str) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1);
        let manager = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self::from_manager(manager))
    }

    /// Uses an existing connection manager.
    pub fn from_manager(manager: ConnectionManager) -> Self {
        Self {
            manager,
            prefix: None,
            timeout: Duration::from_millis(100),
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
}

/// What every user of a [`RedisStore`] shares: the connection, the key
/// prefix, the timeout of a call, and when Redis failed last.
pub(crate) struct Connection {
    manager: ConnectionManager,
    prefix: String,
    timeout: Duration,
    down_until: Mutex<Option<Instant>>,
    down: AtomicBool,
}

impl Connection {
    pub(crate) fn new(store: RedisStore, default_prefix: &str) -> Self {
        Self {
            manager: store.manager,
            prefix: store.prefix.unwrap_or_else(|| default_prefix.to_owned()),
            timeout: store.timeout,
            down_until: Mutex::new(None),
            down: AtomicBool::new(false),
        }
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

    /// Whether Redis is to be skipped for now, after a failure.
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
                false
            }
        }
    }

    /// Records that Redis failed; returns whether it was up until now.
    pub(crate) fn mark_down(&self) -> bool {
        *self
            .down_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + DOWN_FOR);
        !self.down.swap(true, Ordering::Relaxed)
    }
}

/// What Redis said about an admission.
#[derive(Debug)]
pub(crate) enum RemoteAdmission {
    Admitted,
    /// Locked out for this long; the number of lockouts.
    Locked(Duration, u32),
    Full,
    Unavailable,
}

/// What Redis said about a finished attempt.
#[derive(Debug)]
pub(crate) enum RemoteFinish {
    Done,
    Counted(u32),
    LockedOut { lockout: Duration, lockouts: u32 },
    AlreadyLocked(Duration),
    Unavailable,
}

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The Redis side of a tracker.
pub(crate) struct Remote {
    conn: Connection,
    admit: Script,
    finish: Script,
    unlock: Script,
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Remote {
    pub(crate) fn new(store: RedisStore) -> Self {
        Self {
            conn: Connection::new(store, "portcullis:lockout:"),
            admit: Script::new(ADMIT),
            finish: Script::new(FINISH),
            unlock: Script::new(UNLOCK),
        }
    }

    /// Whether Redis is to be skipped for now, after a failure.
    pub(crate) fn is_down(&self) -> bool {
        self.conn.is_down()
    }

    /// Records that Redis failed; returns whether it was up until now.
    pub(crate) fn mark_down(&self) -> bool {
        self.conn.mark_down()
    }

    fn keys(&self, key: &impl fmt::Debug) -> [String; 4] {
        let base = self.conn.key_base(key);
        [
            format!("{base}:f"),
            format!("{base}:i"),
            format!("{base}:l"),
            format!("{base}:h"),
        ]
    }

    pub(crate) fn admit(
        &self,
        key: &impl fmt::Debug,
        policy: &Policy,
    ) -> BoxFuture<RemoteAdmission> {
        let [failures, in_flight, locked, _] = self.keys(key);
        let max = policy.max_failures();
        let call = self
            .conn
            .invoke::<(i64, i64, i64)>(&self.admit, move |invocation| {
                invocation
                    .key(failures)
                    .key(in_flight)
                    .key(locked)
                    .arg(max)
                    .arg(millis(RESERVATION_TTL));
            });
        Box::pin(async move {
            match call.await {
                Some((1, _, _)) => RemoteAdmission::Admitted,
                Some((2, ttl, lockouts)) => RemoteAdmission::Locked(
                    Duration::from_millis(ttl.max(1).unsigned_abs()),
                    u32::try_from(lockouts).unwrap_or(1),
                ),
                Some(_) => RemoteAdmission::Full,
                None => RemoteAdmission::Unavailable,
            }
        })
    }

    /// `reserved`: the attempt holds a reservation. `outcome`: 0 neutral,
    /// 1 failure, 2 a success that resets.
    pub(crate) fn finish(
        &self,
        key: &impl fmt::Debug,
        reserved: bool,
        outcome: u8,
        policy: &Policy,
    ) -> BoxFuture<RemoteFinish> {
        let keys = self.keys(key);
        let args = (
            u8::from(reserved),
            outcome,
            policy.max_failures(),
            millis(policy.window()),
            millis(policy.lockout()),
            policy.multiplier(),
            millis(policy.max_lockout()),
        );
        let call = self
            .conn
            .invoke::<(i64, i64, i64)>(&self.finish, move |invocation| {
                for key in keys {
                    invocation.key(key);
                }
                invocation
                    .arg(args.0)
                    .arg(args.1)
                    .arg(args.2)
                    .arg(args.3)
                    .arg(args.4)
                    .arg(args.5)
                    .arg(args.6);
            });
        let ms = |v: i64| Duration::from_millis(v.max(1).unsigned_abs());
        let count = |v: i64| u32::try_from(v).unwrap_or(u32::MAX);
        Box::pin(async move {
            match call.await {
                Some((1, failures, _)) => RemoteFinish::Counted(count(failures)),
                Some((2, lockout, lockouts)) => RemoteFinish::LockedOut {
                    lockout: ms(lockout),
                    lockouts: count(lockouts),
                },
                Some((3, ttl, _)) => RemoteFinish::AlreadyLocked(ms(ttl)),
                Some(_) => RemoteFinish::Done,
                None => RemoteFinish::Unavailable,
            }
        })
    }

    pub(crate) fn unlock(&self, key: &impl fmt::Debug) -> BoxFuture<bool> {
        let keys = self.keys(key);
        let call = self.conn.invoke::<i64>(&self.unlock, move |invocation| {
            for key in keys {
                invocation.key(key);
            }
        });
        Box::pin(async move { call.await.is_some() })
    }
}
