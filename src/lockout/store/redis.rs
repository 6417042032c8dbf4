//! Lockout state shared by several replicas through Redis (feature
//! `redis`), with the in-memory store as the fallback.
//!
//! Redis is the authority, not the hot path: it grants each replica a few
//! admission credits per key ([`credits`](super::credits)), never more than
//! the key's budget (`failures + credits granted ≤ max_failures`), and the
//! replica admits undecided attempts against them locally. A returning
//! client costs no round trip; a new one costs one (the grant, sent beside
//! the rate limiter's own round trip when one on the same store counts the
//! same keys: see [`Prefetch`](crate::redis::Prefetch)); a failure is
//! recorded against a credit already counted, in the background.

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
    ASK_AGAIN, Admission, Finished, Hashed, Record, Recorded, Store, Ticket, Waiter,
    credits::{Ask, Grants, Reply, Take, Waiting},
    memory::MemoryStore,
};
use crate::{
    future::BoxFuture,
    lockout::{Outcome, Policy, stats::LockoutStats},
    redis::{
        Connection, Fallback, Health, Primary, RedisStore, Unlocks, millis,
        unlock::{WANTED, Wanted},
    },
};

/// A key's tag: a hash of its name in Redis, the same on every replica.
fn tag(base: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(base)
}

/// Grants (or, with a negative `ARGV[5]`, takes back) credits of a key to
/// this replica (`ARGV[3]`) for its grant `ARGV[4]` (the epoch), and renews
/// the grant's lease (`ARGV[2]` ms). Grants live in the hash `KEYS[2]`,
/// one field per replica: `credits:deadline:epoch` on the server's clock;
/// expired grants are dropped first, and a grant of another epoch of the
/// same replica is replaced. Never grants more than
/// `max (ARGV[1]) - failures - credits of the other replicas` (one in all
/// while the key's attempts are delayed: `failures >= ARGV[6] > 0`); when
/// it cannot grant what was asked, it marks the key as wanted (`KEYS[4]`)
/// and says so on the channel `ARGV[7]` (message `ARGV[8]`), so that the
/// holders give back what they do not use and keep only what they use. Replies `{2, ttl, lockouts}`
/// for a locked-out key, else `{1, added, failures, wanted, found}`.
const GRANT: &str = r"
local locked = redis.call('PTTL', KEYS[3])
if locked > 0 then return {2, locked, tonumber(redis.call('GET', KEYS[3]) or '1'), 0, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local failures = tonumber(redis.call('GET', KEYS[1]) or '0')
local mine, others, found = 0, 0, 0
local grants = redis.call('HGETALL', KEYS[2])
for i = 1, #grants, 2 do
  local n, d, e = string.match(grants[i + 1], '^(%d+):(%d+):(%d+)$')
  if d == nil or tonumber(d) <= now then
    redis.call('HDEL', KEYS[2], grants[i])
  elseif grants[i] == ARGV[3] then
    if e == ARGV[4] then mine = tonumber(n); found = 1 end
  else
    others = others + tonumber(n)
  end
end
local budget = tonumber(ARGV[1]) - failures
local after = tonumber(ARGV[6])
if after > 0 and failures >= after and budget > 1 then budget = 1 end
local more = tonumber(ARGV[5])
local added = more
if more > 0 then
  local room = budget - others - mine
  if room < added then added = room end
  if added < 0 then added = 0 end
  if added < more then
    redis.call('SET', KEYS[4], '1', 'PX', ARGV[2])
    redis.call('PUBLISH', ARGV[7], ARGV[8])
  end
elseif mine + more < 0 then
  added = -mine
end
local count = mine + added
local lease = tonumber(ARGV[2])
if count > 0 then
  redis.call('HSET', KEYS[2], ARGV[3], count .. ':' .. (now + lease) .. ':' .. ARGV[4])
  redis.call('PEXPIRE', KEYS[2], lease)
elseif found == 1 then
  redis.call('HDEL', KEYS[2], ARGV[3])
end
local wanted = 0
if redis.call('PTTL', KEYS[4]) > 0 then wanted = 1 end
return {1, added, failures, wanted, found}
";

/// Records a failure made with a credit of grant `ARGV[2]` of replica
/// `ARGV[1]`: counted once however often it is retried (the marker
/// `KEYS[5]`), the credit consumed, and the key locked out at the
/// threshold unless it is locked out already. The credit was counted in
/// the key's budget, so `failures + credits` does not grow.
const FAIL: &str = r"
if not redis.call('SET', KEYS[5], '1', 'NX', 'PX', ARGV[8]) then return {0, 0, 0} end
local g = redis.call('HGET', KEYS[2], ARGV[1])
if g then
  local n, d, e = string.match(g, '^(%d+):(%d+):(%d+)$')
  if e == ARGV[2] then
    n = tonumber(n) - 1
    if n > 0 then
      redis.call('HSET', KEYS[2], ARGV[1], n .. ':' .. d .. ':' .. e)
    else
      redis.call('HDEL', KEYS[2], ARGV[1])
    end
  end
end
local locked = redis.call('PTTL', KEYS[3])
if locked > 0 then return {3, locked, 0} end
local failures = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if failures < tonumber(ARGV[4]) then return {1, failures, 0} end
local previous = tonumber(redis.call('GET', KEYS[4]) or '0')
local lockout = tonumber(ARGV[5]) * (tonumber(ARGV[6]) ^ previous)
if lockout > tonumber(ARGV[7]) then lockout = tonumber(ARGV[7]) end
lockout = math.floor(lockout)
redis.call('SET', KEYS[3], previous + 1, 'PX', lockout)
redis.call('SET', KEYS[4], previous + 1, 'PX', lockout + tonumber(ARGV[3]))
redis.call('DEL', KEYS[1])
return {2, lockout, previous + 1}
";

/// How long the marker that a failure was counted lives: longer than any
/// retry of its recording.
const COUNTED_MARKER: Duration = Duration::from_secs(60);

/// How often the recording of a failure is tried before it is recorded
/// locally instead.
const FINISH_TRIES: u32 = 3;

/// The Redis keys of one limiter key, all in its hash tag (one slot).
#[derive(Clone)]
struct Keys {
    failures: String,
    grants: String,
    lockout: String,
    history: String,
    wanted: String,
}

impl Keys {
    fn new(conn: &Connection, key: &impl fmt::Debug) -> Self {
        let base = conn.key_base(key);
        Self {
            failures: format!("{base}:f"),
            grants: format!("{base}:c"),
            lockout: format!("{base}:l"),
            history: format!("{base}:h"),
            wanted: format!("{base}:w"),
        }
    }
}

/// The Redis side of a tracker.
pub(crate) struct RedisLockout<K> {
    inner: Arc<Inner<K>>,
    /// Unlocks made on any replica clear `lockouts` here.
    unlocks: Arc<Unlocks<K, Record>>,
}

struct Inner<K> {
    conn: Connection,
    policy: Policy,
    grant: Script,
    fail: Script,
    /// This replica's name in the grants of every key.
    replica: u64,
    /// The channel of unlocks and of keys whose credits are wanted.
    channel: String,
    /// Failure ids, for the markers that count each failure once.
    next_failure: AtomicU64,
    /// Moved on at every unlock, here or heard from another replica: a
    /// lockout answered after an unlock that came meanwhile is not cached
    /// (it would refuse a client Redis no longer locks out).
    unlocked: Arc<AtomicU64>,
    grants: Grants<K>,
    /// Lockouts seen in Redis, so a locked-out client is refused without a
    /// round trip; deadlines in the value, on tokio time.
    lockouts: Cache<K, Record>,
    /// Woken when a key's lockout is lifted on any replica.
    waiting: Cache<K, Arc<Notify>>,
}

/// The credits one grant asks for: half the budget, at least one. Two
/// replicas serving one client each hold a share; a third waits for a
/// share to come back (holders keep only what they use once someone
/// waits).
fn share(policy: &Policy) -> u32 {
    policy.max_failures().div_ceil(2).max(1)
}

impl<K> RedisLockout<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    fn new(store: RedisStore, policy: Policy) -> Self {
        let mut seed = [0; 16];
        // Without randomness two replicas could take the same name; each
        // would then use the other's credits as its own, which only ever
        // grants less.
        let _ = getrandom::fill(&mut seed);
        let (replica, failure_base) = seed.split_at(8);
        let conn = Connection::new(store, "portcullis:lockout:");
        let (lockouts, waiting) = (lru(policy.capacity()), lru(policy.capacity()));
        let grants = Grants::new(
            policy.capacity(),
            conn.lease,
            share(&policy),
            policy.delay_after(),
            policy.max_waiting(),
        );
        let unlocked = Arc::new(AtomicU64::new(0));
        let inner = Arc::new(Inner {
            unlocked: Arc::clone(&unlocked),
            channel: Unlocks::<K, Record>::channel_of(&conn),
            conn: conn.clone(),
            grant: Script::new(GRANT),
            fail: Script::new(FAIL),
            replica: u64::from_le_bytes(replica.try_into().unwrap_or_default()) >> 1,
            next_failure: AtomicU64::new(u64::from_le_bytes(
                failure_base.try_into().unwrap_or_default(),
            )),
            grants,
            lockouts: lockouts.clone(),
            waiting: waiting.clone(),
            policy,
        });
        let weak = Arc::downgrade(&inner);
        let wanted: Wanted = Box::new(move |base| {
            if let Some(inner) = weak.upgrade() {
                Inner::wanted(&inner, base);
            }
        });
        Self {
            unlocks: Unlocks::start(&conn, lockouts, waiting, wanted, unlocked),
            inner,
        }
    }

    /// The lockout of `key` seen in Redis, if it still lasts.
    fn cached(&self, key: &K) -> Option<(Record, Instant)> {
        self.inner.cached(key)
    }

    fn admit(&self, k: Hashed<'_, K>) -> Admission {
        if let Some((record, now)) = self.cached(k.key) {
            return Admission::Locked(record, now);
        }
        match self.inner.grants.take(k) {
            Take::Taken {
                epoch,
                failures,
                renew,
            } => {
                if let Some(ask) = renew {
                    // Off the request path; what it answers is applied by
                    // its task.
                    let _ = Inner::spawn_ask(&self.inner, k, ask, None);
                }
                Admission::Admitted(Ticket::shared(epoch), failures)
            }
            Take::Wait => Admission::Full,
            Take::Ask(ask) => {
                // The grant is asked for on a task of its own, so that it
                // is applied even if this request goes away meanwhile: the
                // credits then wait here for the key's next request.
                let Some(asking) = Inner::spawn_ask(&self.inner, k, ask, None) else {
                    return Admission::Unavailable;
                };
                let inner = Arc::clone(&self.inner);
                let key = k.key.clone();
                Admission::Ask(Box::pin(async move {
                    match asking.await {
                        // Credits came (or not): take one as any waiter
                        // would, through `wait`.
                        Ok(Answer::Granted) => Admission::Full,
                        Ok(Answer::Locked) => match inner.cached(&key) {
                            Some((record, now)) => Admission::Locked(record, now),
                            None => Admission::Full,
                        },
                        Ok(Answer::Unavailable) | Err(_) => Admission::Unavailable,
                    }
                }))
            }
        }
    }

    fn wait(&self, k: Hashed<'_, K>, waiter: &mut Waiter<'_>) -> Admission {
        if let Some((record, now)) = self.cached(k.key) {
            return Admission::Locked(record, now);
        }
        match self.inner.grants.wait(k, |notify| waiter.wait_on(notify)) {
            Waiting::Ready => self.admit(k),
            Waiting::Crowded => Admission::Crowded,
            Waiting::Registered => {
                // Credits held by another replica come back without a word
                // to this one: ask again after a while.
                waiter.retry_in(ASK_AGAIN);
                Admission::Full
            }
        }
    }

    fn finish(&self, k: Hashed<'_, K>, ticket: &Ticket, outcome: Outcome) -> Finished {
        let inner = &self.inner;
        let failed = outcome == Outcome::Failure;
        let reset = outcome == Outcome::Success && inner.policy.reset_on_success();
        inner.grants.release(k, ticket.id, failed, reset);
        if reset {
            // Nobody waits for it: a reset that does not reach Redis leaves
            // a count that only limits more, never less.
            let mut forget = ::redis::cmd("DEL");
            forget.arg(Keys::new(&inner.conn, k.key).failures);
            inner.conn.send(forget);
        }
        if !failed {
            return Finished::Now(Recorded::NotAFailure);
        }
        Finished::Later(Inner::record_failure(inner, k.key.clone(), ticket.id))
    }

    fn unlock(&self, key: &K) -> bool {
        let inner = &self.inner;
        let was_locked = self.cached(key).is_some();
        inner.unlocked.fetch_add(1, Ordering::Relaxed);
        inner.lockouts.invalidate(key);
        // Forgets the lockout, the failures and the history, and tells the
        // other replicas; credits in flight stay.
        let keys = Keys::new(&inner.conn, key);
        self.unlocks
            .forget(key, [keys.failures, keys.lockout, keys.history]);
        if let Some(notify) = inner.waiting.get(key) {
            notify.notify_waiters();
        }
        inner.grants.wake_all();
        was_locked
    }

    fn locked_keys(&self) -> Vec<(K, Record)> {
        let now = Instant::now();
        self.inner
            .lockouts
            .iter()
            .filter(|(_, record)| now < record.until)
            .map(|(key, record)| ((*key).clone(), record))
            .collect()
    }
}

/// What Redis answered to a grant request (applied to the grants and the
/// lockouts already).
enum Answer {
    Granted,
    Locked,
    Unavailable,
}

impl<K> Inner<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    fn cached(&self, key: &K) -> Option<(Record, Instant)> {
        let record = self.lockouts.get(key)?;
        let now = Instant::now();
        (now < record.until).then_some((record, now))
    }

    /// Sends `ask` for `k` on a task of its own and applies the answer: the
    /// credits to the grants, a lockout to the cached lockouts. An answer
    /// that never comes abandons the grant here and releases it there;
    /// with `health` (a grant nobody waits on the task of), it also sends
    /// the key to the local fallback first, as the request that asks does
    /// itself otherwise. `None` without a runtime.
    fn spawn_ask(
        this: &Arc<Self>,
        k: Hashed<'_, K>,
        ask: Ask,
        health: Option<Arc<Health>>,
    ) -> Option<tokio::task::JoinHandle<Answer>> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            this.grants.abandon(k, ask);
            return None;
        };
        let keys = Keys::new(&this.conn, k.key);
        let base = this.conn.key_base(k.key);
        let tag = tag(base.as_bytes());
        let mut wanted = Vec::with_capacity(base.len() + 1);
        wanted.push(WANTED);
        wanted.extend_from_slice(base.as_bytes());
        let policy = &this.policy;
        let args = (
            policy.max_failures(),
            millis(this.conn.lease),
            this.replica,
            ask.epoch,
            ask.more,
            policy.delay_after().unwrap_or(0),
            this.channel.clone(),
        );
        let call = this.conn.invoke::<(i64, i64, i64, i64, i64)>(&this.grant, {
            let keys = keys.clone();
            move |invocation| {
                invocation
                    .key(keys.failures)
                    .key(keys.grants)
                    .key(keys.lockout)
                    .key(keys.wanted)
                    .arg(args.0)
                    .arg(args.1)
                    .arg(args.2)
                    .arg(args.3)
                    .arg(args.4)
                    .arg(args.5)
                    .arg(args.6)
                    .arg(wanted);
            }
        });
        let inner = Arc::clone(this);
        let (key, hash) = (k.key.clone(), k.hash);
        let generation = this.unlocked.load(Ordering::Relaxed);
        Some(runtime.spawn(async move {
            let k = Hashed { key: &key, hash };
            match call.await {
                Some((1, added, failures, wanted, found)) => {
                    let reply = Reply {
                        added,
                        failures: u32::try_from(failures.max(0)).unwrap_or(u32::MAX),
                        demand: wanted == 1,
                        found: found == 1,
                        tag,
                    };
                    inner.grants.granted(k, ask, reply, false);
                    Answer::Granted
                }
                Some((_, ttl, lockouts_so_far, ..)) => {
                    let record =
                        Record::lasting(ms(ttl), u32::try_from(lockouts_so_far).unwrap_or(1));
                    inner.remember_lockout(key.clone(), record, generation);
                    inner.grants.forget(k);
                    inner.grants.abandon(k, ask);
                    Answer::Locked
                }
                None => {
                    // Before the waiters wake: they then decide locally
                    // rather than ask again.
                    if let Some(health) = health {
                        health.fell_back(&key);
                    }
                    // Redis may have granted what was asked: give it all
                    // back there (the release follows the request on the
                    // connection), and start afresh here.
                    if inner.grants.abandon(k, ask) {
                        inner.release(keys, ask.epoch);
                    }
                    Answer::Unavailable
                }
            }
        }))
    }

    /// Gives back every credit of grant `epoch`, in the background.
    fn release(&self, keys: Keys, epoch: u64) {
        let mut release = ::redis::cmd("EVAL");
        release
            .arg(GRANT)
            .arg(4)
            .arg(keys.failures)
            .arg(keys.grants)
            .arg(keys.lockout)
            .arg(keys.wanted)
            .arg(self.policy.max_failures())
            .arg(millis(self.conn.lease))
            .arg(self.replica)
            .arg(epoch)
            .arg(i64::from(i32::MIN))
            .arg(0)
            .arg(&self.channel)
            .arg("");
        self.conn.send(release);
    }

    /// Another replica waits for credits of the key named `base`: gives
    /// back what this one holds and does not use.
    fn wanted(this: &Arc<Self>, base: &[u8]) {
        if let Some((key, hash, ask)) = this.grants.spare(tag(base)) {
            let _ = Self::spawn_ask(this, Hashed { key: &key, hash }, ask, None);
        }
    }

    /// Records a failure made with a credit of `epoch`, retrying a few
    /// times; `None` when Redis could not record it.
    fn record_failure(this: &Arc<Self>, key: K, epoch: u64) -> BoxFuture<Option<Recorded>> {
        let keys = Keys::new(&this.conn, &key);
        let id = this.next_failure.fetch_add(1, Ordering::Relaxed);
        let generation = this.unlocked.load(Ordering::Relaxed);
        let counted = format!("{}:d:{:x}:{id:x}", this.conn.key_base(&key), this.replica);
        let policy = &this.policy;
        let args = [
            policy.max_failures().into(),
            millis(policy.window()),
            millis(policy.lockout()),
            millis(policy.max_lockout()),
            millis(COUNTED_MARKER),
        ];
        let multiplier = policy.multiplier();
        let max_failures = policy.max_failures();
        let (inner, replica) = (Arc::clone(this), this.replica);
        Box::pin(async move {
            let mut reply = None;
            for attempt in 0..FINISH_TRIES {
                if attempt > 0 {
                    tokio::time::sleep(ASK_AGAIN).await;
                }
                let (keys, counted) = (keys.clone(), counted.clone());
                reply = inner
                    .conn
                    .invoke::<(i64, i64, i64)>(&inner.fail, move |invocation| {
                        invocation
                            .key(keys.failures)
                            .key(keys.grants)
                            .key(keys.lockout)
                            .key(keys.history)
                            .key(counted)
                            .arg(replica)
                            .arg(epoch)
                            .arg(args[1])
                            .arg(args[0])
                            .arg(args[2])
                            .arg(multiplier)
                            .arg(args[3])
                            .arg(args[4]);
                    })
                    .await;
                if reply.is_some() {
                    break;
                }
            }
            Some(match reply? {
                (1, failures, _) => Recorded::Counted {
                    failures: u32::try_from(failures).unwrap_or(u32::MAX),
                },
                (2, lockout, lockouts_so_far) => {
                    let record =
                        Record::lasting(ms(lockout), u32::try_from(lockouts_so_far).unwrap_or(1));
                    inner.remember_lockout(key, record, generation);
                    Recorded::LockedOut {
                        record,
                        failures: max_failures,
                    }
                }
                (3, ttl, _) => {
                    let record = Record::lasting(ms(ttl), 1);
                    inner.remember_lockout(key, record, generation);
                    Recorded::AlreadyLocked { record }
                }
                _ => Recorded::NotAFailure,
            })
        })
    }

    /// Caches a lockout seen in Redis, asked for at unlock `generation`,
    /// and tells the waiting requests of the key, which are refused now.
    /// Not cached when an unlock came meanwhile: the next attempt asks
    /// Redis, which knows.
    fn remember_lockout(&self, key: K, record: Record, generation: u64) {
        if let Some(notify) = self.waiting.get(&key) {
            notify.notify_waiters();
        }
        if self.unlocked.load(Ordering::Relaxed) == generation {
            self.lockouts.insert(key, record);
        }
    }
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

impl<K> Primary for RedisLockout<K> {
    fn connection(&self) -> &Connection {
        &self.inner.conn
    }
}

pub(crate) type Shared<K> = Fallback<RedisLockout<K>, MemoryStore<K>>;

/// The store of a tracker shared through Redis: Redis, with in-memory
/// tables as the fallback while Redis is unavailable.
pub(crate) fn shared<K>(policy: Policy, store: RedisStore) -> Shared<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    Fallback::new(
        RedisLockout::new(store, policy.clone()),
        MemoryStore::new(policy),
        "lockout",
    )
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
        match self.primary.admit(k) {
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
            self.primary.wait(k, waiter)
        }
    }

    fn finish(&self, k: Hashed<'_, K>, ticket: &Ticket, outcome: Outcome) -> Finished {
        if !ticket.shared {
            return self.secondary.finish(k, ticket, outcome);
        }
        let recording = match self.primary.finish(k, ticket, outcome) {
            Finished::Now(recorded) => return Finished::Now(recorded),
            Finished::Later(recording) => recording,
        };
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

    /// The grant of a key's first request, started by a rate limiter on
    /// the same store with its own round trip: through the same table, at
    /// most one per key in flight; nothing while the key's slot falls back
    /// or the key is locked out. A grant that fails sends the key to the
    /// local fallback, as the failed grant of a request does.
    fn prefetch(&self, k: Hashed<'_, K>) {
        if self.health.is_down(k.key) || self.primary.cached(k.key).is_some() {
            return;
        }
        let inner = &self.primary.inner;
        if let Some(ask) = inner.grants.prefetch(k) {
            let _ = Inner::spawn_ask(inner, k, ask, Some(Arc::clone(&self.health)));
        }
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

    fn stats(&self, stats: &mut LockoutStats) {
        self.secondary.stats(stats);
        stats.locked_out += self.primary.locked_keys().len() as u64;
        stats.fallbacks = self.health.fallbacks();
        stats.leased = self.primary.inner.grants.len();
    }
}
