//! Lockout state shared by several replicas through Redis (feature
//! `redis`), with the in-memory store as the fallback.

use std::{
    fmt,
    hash::Hash,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use ::redis::Script;
use moka::{policy::EvictionPolicy, sync::Cache};
use tokio::{sync::Notify, time::Instant};

use super::{
    Admission, Finished, Hashed, Record, Recorded, Store, Ticket, Waiter, memory::MemoryStore,
};
use crate::{
    gate::BoxFuture,
    lockout::{Outcome, Policy, Stats, Tracker, attempt::ASK_AGAIN},
    redis::{Connection, Fallback, Primary, RedisStore, Unlocks, millis},
};

/// Admits a request unless the key is locked out (by the lockout key's TTL)
/// or its reservations reached `max - failures` (one while its attempts are
/// delayed: `failures >= ARGV[4] > 0`). A reservation is a member of the
/// sorted set `KEYS[2]` scored by its deadline on the server's clock; every
/// admission trims the members whose deadline passed, so a reservation that
/// was never released frees itself after its lease.
const ADMIT: &str = r"
local locked = redis.call('PTTL', KEYS[3])
if locked > 0 then return {2, locked, tonumber(redis.call('GET', KEYS[3]) or '1')} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[1]) - failures
local after = tonumber(ARGV[4])
if after > 0 and failures >= after and limit > 1 then limit = 1 end
if redis.call('ZCARD', KEYS[2]) < limit then
  local lease = tonumber(ARGV[2])
  redis.call('ZADD', KEYS[2], now + lease, ARGV[3])
  redis.call('PEXPIRE', KEYS[2], lease)
  return {1, failures, 0}
end
return {0, 0, 0}
";

/// Ends a reservation and records its outcome: 1 a failure (counted once
/// per reservation however often this is retried, locking the key out at
/// the threshold, unless it is locked out already), 2 a success that resets
/// the count, 0 nothing.
const FINISH: &str = r"
redis.call('ZREM', KEYS[2], ARGV[1])
if ARGV[2] == '2' then
  redis.call('DEL', KEYS[1])
  return {0, 0, 0}
end
if ARGV[2] ~= '1' then return {0, 0, 0} end
local locked = redis.call('PTTL', KEYS[3])
if locked > 0 then return {3, locked, 0} end
if not redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[8]) then return {0, 0, 0} end
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

/// How long the marker that a reservation's failure was counted lives:
/// longer than any retry of its recording.
const COUNTED_MARKER: Duration = Duration::from_secs(60);

/// How often the recording of an outcome is tried before it is recorded
/// locally instead.
const FINISH_TRIES: u32 = 3;

/// The Redis keys of one limiter key.
#[derive(Clone)]
struct Keys {
    failures: String,
    reservations: String,
    lockout: String,
    history: String,
}

impl Keys {
    fn new(conn: &Connection, key: &impl fmt::Debug) -> Self {
        let base = conn.key_base(key);
        Self {
            failures: format!("{base}:f"),
            reservations: format!("{base}:i"),
            lockout: format!("{base}:l"),
            history: format!("{base}:h"),
        }
    }
}

/// The Redis side of a tracker.
pub(crate) struct RedisLockout<K> {
    conn: Connection,
    policy: Policy,
    admit: Script,
    finish: Script,
    /// Lockouts seen in Redis, so a locked-out client is refused without a
    /// round trip; deadlines in the value, on tokio time.
    lockouts: Cache<K, Record>,
    /// Requests waiting for a reservation of a key, woken when one of this
    /// replica ends; every waiter holds a clone, which bounds the queue.
    waiting: Cache<K, Arc<Notify>>,
    /// Reservation ids: a random base per replica plus a counter.
    id_base: u64,
    next_id: AtomicU64,
    /// Unlocks made on any replica clear `lockouts` here.
    unlocks: Arc<Unlocks<K, Record>>,
}

impl<K> RedisLockout<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    fn new(store: RedisStore, policy: Policy) -> Self {
        let mut seed = [0; 8];
        // Without randomness two replicas could pick the same ids; the
        // counter below still keeps one replica's ids apart.
        let _ = getrandom::fill(&mut seed);
        let conn = Connection::new(store, "portcullis:lockout:");
        let (lockouts, waiting) = (lru(policy.capacity()), lru(policy.capacity()));
        Self {
            unlocks: Unlocks::start(&conn, lockouts.clone(), waiting.clone()),
            conn,
            lockouts,
            waiting,
            policy,
            admit: Script::new(ADMIT),
            finish: Script::new(FINISH),
            id_base: u64::from_le_bytes(seed),
            next_id: AtomicU64::new(1),
        }
    }

    /// The lockout of `key` seen in Redis, if it still lasts.
    fn cached(&self, key: &K) -> Option<(Record, Instant)> {
        let record = self.lockouts.get(key)?;
        let now = Instant::now();
        (now < record.until).then_some((record, now))
    }

    fn admit(&self, key: &K) -> Admission {
        if let Some((record, now)) = self.cached(key) {
            return Admission::Locked(record, now);
        }
        let id = self
            .id_base
            .wrapping_add(self.next_id.fetch_add(1, Ordering::Relaxed));
        let keys = Keys::new(&self.conn, key);
        let (max, lease) = (self.policy.max_failures(), millis(self.conn.lease));
        let delay_after = self.policy.delay_after().unwrap_or(0);
        let call = self.conn.invoke::<(i64, i64, i64)>(&self.admit, {
            let keys = keys.clone();
            move |invocation| {
                invocation
                    .key(keys.failures)
                    .key(keys.reservations)
                    .key(keys.lockout)
                    .arg(max)
                    .arg(lease)
                    .arg(id)
                    .arg(delay_after);
            }
        });
        // Until a reply settles it, the reservation may exist in Redis: if
        // the reply is lost (timeout) or the request goes away, release it.
        // The release follows the admission on the same connection, so
        // Redis runs it after the admission.
        let mut pending = PendingRelease {
            conn: self.conn.clone(),
            reservations: Some(keys.reservations),
            id,
        };
        let lockouts = self.lockouts.clone();
        let waiting = self.waiting.clone();
        let key = key.clone();
        Admission::Ask(Box::pin(async move {
            let reply = call.await;
            if reply.is_some() {
                pending.settled();
            }
            match reply {
                Some((1, failures, _)) => Admission::Admitted(
                    Ticket { id, shared: true },
                    u32::try_from(failures).unwrap_or(u32::MAX),
                ),
                Some((2, ttl, lockouts_so_far)) => {
                    let record =
                        Record::lasting(ms(ttl), u32::try_from(lockouts_so_far).unwrap_or(1));
                    remember_lockout(&lockouts, &waiting, key, record);
                    Admission::Locked(record, Instant::now())
                }
                Some(_) => Admission::Full,
                None => Admission::Unavailable,
            }
        }))
    }

    fn wait(&self, key: &K, waiter: &mut Waiter<'_>) -> Admission {
        if let Some((record, now)) = self.cached(key) {
            return Admission::Locked(record, now);
        }
        let notify = self.waiting.get_with_by_ref(key, Default::default);
        // The table and `notify` hold one clone each; every waiter another.
        let waiting = Arc::strong_count(&notify).saturating_sub(2);
        if waiting >= self.policy.max_waiting() as usize {
            return Admission::Crowded;
        }
        waiter.wait_on(&notify);
        // A reservation held by another replica ends without a word to this
        // one: ask again after a while.
        waiter.retry_in(ASK_AGAIN);
        Admission::Full
    }

    fn finish(&self, key: &K, ticket: Ticket, outcome: Outcome) -> BoxFuture<Option<Recorded>> {
        let keys = Keys::new(&self.conn, key);
        let counted = format!("{}:d:{:x}", self.conn.key_base(key), ticket.id);
        let code = match outcome {
            Outcome::Failure => 1,
            Outcome::Success if self.policy.reset_on_success() => 2,
            _ => 0,
        };
        let policy = &self.policy;
        let args = [
            policy.max_failures().into(),
            millis(policy.window()),
            millis(policy.lockout()),
            0,
            millis(policy.max_lockout()),
            millis(COUNTED_MARKER),
        ];
        let multiplier = policy.multiplier();
        let max_failures = policy.max_failures();
        let (conn, script) = (self.conn.clone(), self.finish.clone());
        let (lockouts, waiting, key) = (self.lockouts.clone(), self.waiting.clone(), key.clone());
        Box::pin(async move {
            let mut reply = None;
            for attempt in 0..FINISH_TRIES {
                if attempt > 0 {
                    tokio::time::sleep(ASK_AGAIN).await;
                }
                let (keys, counted) = (keys.clone(), counted.clone());
                reply = conn
                    .invoke::<(i64, i64, i64)>(&script, move |invocation| {
                        invocation
                            .key(keys.failures)
                            .key(keys.reservations)
                            .key(keys.lockout)
                            .key(keys.history)
                            .key(counted)
                            .arg(ticket.id)
                            .arg(code)
                            .arg(args[0])
                            .arg(args[1])
                            .arg(args[2])
                            .arg(multiplier)
                            .arg(args[4])
                            .arg(args[5]);
                    })
                    .await;
                if reply.is_some() {
                    break;
                }
            }
            let recorded = match reply? {
                (1, failures, _) => Recorded::Counted {
                    failures: u32::try_from(failures).unwrap_or(u32::MAX),
                },
                (2, lockout, lockouts_so_far) => {
                    let record =
                        Record::lasting(ms(lockout), u32::try_from(lockouts_so_far).unwrap_or(1));
                    remember_lockout(&lockouts, &waiting, key.clone(), record);
                    Recorded::LockedOut {
                        record,
                        failures: max_failures,
                    }
                }
                (3, ttl, _) => {
                    let record = Record::lasting(ms(ttl), 1);
                    remember_lockout(&lockouts, &waiting, key.clone(), record);
                    Recorded::AlreadyLocked { record }
                }
                _ => Recorded::NotAFailure,
            };
            // A slot came free: one waiter of this replica may take it.
            if let Some(notify) = waiting.get(&key) {
                notify.notify_one();
            }
            Some(recorded)
        })
    }

    fn unlock(&self, key: &K) -> bool {
        let was_locked = self.cached(key).is_some();
        self.lockouts.invalidate(key);
        // Forgets the lockout, the failures and the history, and tells the
        // other replicas; reservations in flight stay.
        let keys = Keys::new(&self.conn, key);
        self.unlocks
            .forget(key, [keys.failures, keys.lockout, keys.history]);
        if let Some(notify) = self.waiting.get(key) {
            notify.notify_waiters();
        }
        was_locked
    }

    fn locked_keys(&self) -> Vec<(K, Record)> {
        let now = Instant::now();
        self.lockouts
            .iter()
            .filter(|(_, record)| now < record.until)
            .map(|(key, record)| ((*key).clone(), record))
            .collect()
    }
}

/// Caches a lockout seen in Redis and tells the waiting requests of the
/// key, which are refused now.
fn remember_lockout<K>(
    lockouts: &Cache<K, Record>,
    waiting: &Cache<K, Arc<Notify>>,
    key: K,
    record: Record,
) where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    if let Some(notify) = waiting.get(&key) {
        notify.notify_waiters();
    }
    lockouts.insert(key, record);
}

/// A bounded LRU table; LRU so that a new lockout is always admitted.
fn lru<K, V>(capacity: u64) -> Cache<K, V>
where
    K: Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    Cache::builder()
        .max_capacity(capacity)
        .eviction_policy(EvictionPolicy::lru())
        .build()
}

fn ms(value: i64) -> Duration {
    Duration::from_millis(value.max(1).unsigned_abs())
}

/// Releases a reservation when dropped, unless a reply settled it.
struct PendingRelease {
    conn: Connection,
    reservations: Option<String>,
    id: u64,
}

impl PendingRelease {
    /// A reply came: nothing to release.
    fn settled(&mut self) {
        self.reservations = None;
    }
}

impl Drop for PendingRelease {
    fn drop(&mut self) {
        // Without a runtime nothing can send the release: the lease frees
        // the slot.
        if let Some(reservations) = self.reservations.take() {
            let mut release = ::redis::cmd("ZREM");
            release.arg(reservations).arg(self.id);
            self.conn.send(release);
        }
    }
}

impl<K> Primary for RedisLockout<K> {
    fn connection(&self) -> &Connection {
        &self.conn
    }
}

type Shared<K> = Fallback<RedisLockout<K>, MemoryStore<K>>;

impl<K> Tracker<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    /// A tracker whose state is shared with other replicas through Redis,
    /// with in-memory tables as the fallback while Redis is unavailable;
    /// see [`RedisStore`].
    ///
    /// [`attempt`](Self::attempt), [`unlock`](Self::unlock) and the
    /// [`LockoutLayer`](crate::lockout::LockoutLayer) use Redis. The other
    /// direct methods ([`check`](Self::check),
    /// [`record_failure`](Self::record_failure),
    /// [`record_success`](Self::record_success),
    /// [`failures`](Self::failures)) are synchronous and act on this
    /// replica's tables only (which include the lockouts seen in Redis).
    pub fn with_redis(policy: Policy, store: RedisStore) -> Self {
        let shared: Shared<K> = Fallback::new(
            RedisLockout::new(store, policy.clone()),
            MemoryStore::new(policy.clone()),
            "lockout",
        );
        Self::with_store(policy, shared)
    }
}

impl<K> Store<K> for Shared<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    fn admit(&self, k: Hashed<'_, K>) -> Admission {
        if self.health.is_down(k.key) {
            if let Some((record, now)) = self.primary.cached(k.key) {
                return Admission::Locked(record, now);
            }
            return self.secondary.admit(k);
        }
        match self.primary.admit(k.key) {
            Admission::Ask(asking) => {
                let (secondary, health) = (Arc::clone(&self.secondary), Arc::clone(&self.health));
                let (key, hash) = (k.key.clone(), k.hash);
                Admission::Ask(Box::pin(async move {
                    match asking.await {
                        Admission::Unavailable => {
                            health.fell_back(&key);
                            secondary.admit(Hashed { key: &key, hash })
                        }
                        admission => admission,
                    }
                }))
            }
            admission => admission,
        }
    }

    fn wait(&self, k: Hashed<'_, K>, waiter: &mut Waiter<'_>) -> Admission {
        if self.health.is_down(k.key) {
            self.secondary.wait(k, waiter)
        } else {
            self.primary.wait(k.key, waiter)
        }
    }

    fn finish(&self, k: Hashed<'_, K>, ticket: Ticket, outcome: Outcome) -> Finished {
        if !ticket.shared {
            return self.secondary.finish(k, ticket, outcome);
        }
        let recording = self.primary.finish(k.key, ticket, outcome);
        let (secondary, health) = (Arc::clone(&self.secondary), Arc::clone(&self.health));
        let (key, hash) = (k.key.clone(), k.hash);
        Finished::Later(Box::pin(async move {
            match recording.await {
                Some(recorded) => Some(recorded),
                // Redis could not record it: record it here, once.
                None => {
                    health.fell_back(&key);
                    Some(secondary.record(Hashed { key: &key, hash }, outcome))
                }
            }
        }))
    }

    fn record(&self, k: Hashed<'_, K>, outcome: Outcome) -> Recorded {
        self.secondary.record(k, outcome)
    }

    fn locked(&self, k: Hashed<'_, K>) -> Option<(Record, Instant)> {
        self.primary
            .cached(k.key)
            .or_else(|| self.secondary.locked(k))
    }

    fn failures(&self, k: Hashed<'_, K>) -> u32 {
        self.secondary.failures(k)
    }

    fn unlock(&self, k: Hashed<'_, K>) -> bool {
        let shared = self.primary.unlock(k.key);
        self.secondary.unlock(k) || shared
    }

    fn locked_keys(&self) -> Vec<(K, Record)> {
        let mut keys = self.secondary.locked_keys();
        keys.extend(self.primary.locked_keys());
        keys
    }

    fn stats(&self, stats: &mut Stats) {
        self.secondary.stats(stats);
        stats.locked_out += self.primary.locked_keys().len() as u64;
        stats.fallbacks = self.health.fallbacks();
    }
}
