//! The shared lockout state and its direct API.

use std::{
    fmt,
    future::Future,
    hash::Hash,
    pin::Pin,
    sync::{Arc, PoisonError, RwLock, atomic::Ordering},
    task::{Context, Poll, ready},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use pin_project_lite::pin_project;
use tokio::{
    sync::{Notify, futures::OwnedNotified},
    time::Instant,
};

use super::{
    Policy,
    store::{Admission, Finish, Hashed, MemoryStore, Record, Recorded},
};
use crate::{
    AuthRejection,
    reject::{RejectionKind, retry_after_secs},
};

type Hook<K> = Arc<dyn Fn(&K, Instant) + Send + Sync>;

/// The failed-attempt state shared by every clone: failure counts, active
/// lockouts and attempts in flight, per key.
///
/// A [`LockoutLayer`](super::LockoutLayer) owns one; handlers and operator
/// endpoints can hold clones of it (cloning is cheap: an `Arc`) and use the
/// direct API: [`check`](Self::check), [`record_failure`](Self::record_failure),
/// [`record_success`](Self::record_success), [`attempt`](Self::attempt) (the
/// reserving variant the layer uses), [`unlock`](Self::unlock),
/// [`stats`](Self::stats) and [`blocked_keys`](Self::blocked_keys).
///
/// Time is tokio's clock ([`tokio::time::Instant`]), so tests can pause
/// and advance it.
///
/// # Guarantees
///
/// - A key is locked out by its `max_failures`-th failure within the
///   window; failures are forgotten `window` after the last one.
/// - While locked out, failures are not counted and do not extend the
///   lockout; [`check`](Self::check) and [`attempt`](Self::attempt) refuse
///   the key until the lockout ends or [`unlock`](Self::unlock) lifts it.
/// - [`attempt`](Self::attempt) admits a key only while
///   `failures + attempts in flight < max_failures`, atomically, so
///   concurrent attempts cannot overshoot the threshold. Further attempts
///   wait (they are not refused) until one in flight ends.
/// - Memory is bounded: at most `capacity` failure counters, `capacity`
///   lockouts and `capacity` escalation records (the last one a moka cache,
///   which may briefly hold a few more between maintenance runs), plus one
///   small entry per key with attempts in flight. No background task is
///   needed.
///
/// # Security
///
/// - Each table is split over up to 64 shards by a keyed hash of the key
///   (an attacker cannot choose the shard), each shard holding its share of
///   the capacity; "full" below means the key's shard is full.
/// - When the counter table is full, a counter that was not used recently
///   is dropped (CLOCK, an approximation of LRU), never the new one: a
///   brand-new attacker key is always counted. Flushing one particular
///   counter takes failures from about `capacity` other new keys since that
///   key was last used; put a rate limit in front and, for account keys, an
///   address-keyed lockout too.
/// - Lockouts live in their own table, so floods of failures from other keys
///   cannot evict them. When it is full, lockouts that ended go first, then
///   the one that ends soonest: evicting an active lockout takes about
///   `capacity` other keys locked out at the same time, and logs a warning.
/// - The escalation history (how often a key was locked out) is an LRU
///   table of its own; only other lockouts can push a key out of it.
/// - Keys appear in logs and in [`blocked_keys`](Self::blocked_keys): never
///   key on a credential.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use portcullis::lockout::{FailureOutcome, Policy, Tracker};
///
/// let tracker = Tracker::new(Policy::builder().max_failures(2).build().unwrap());
/// let user = "alice".to_owned();
///
/// assert!(tracker.check(&user).is_ok());
/// assert!(matches!(tracker.record_failure(&user), FailureOutcome::Counted { remaining: 1, .. }));
/// assert!(matches!(tracker.record_failure(&user), FailureOutcome::LockedOut(_)));
///
/// let locked = tracker.check(&user).unwrap_err();
/// assert!(locked.retry_after() > Duration::from_secs(29 * 60));
/// assert_eq!(locked.lockouts(), 1);
/// assert_eq!(tracker.stats().lockouts, 1);
///
/// assert!(tracker.unlock(&user));
/// assert!(tracker.check(&user).is_ok());
/// ```
pub struct Tracker<K> {
    shared: Arc<Shared<K>>,
}

// The layer talks to the tracker only through `try_attempt`,
// `acquire_hashed`, `Acquire` and `Attempt`, so another store (shared state
// for several replicas) can sit behind `Shared` next to the in-memory one,
// with its own `Acquire` state, without changing the layer.
struct Shared<K> {
    store: MemoryStore<K>,
    hook: RwLock<Option<Hook<K>>>,
    #[cfg(feature = "redis")]
    remote: Option<super::redis::Remote>,
}

impl<K> Clone for Tracker<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> fmt::Debug for Tracker<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("store", &self.shared.store)
            .finish_non_exhaustive()
    }
}

/// A key is locked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    until: Instant,
    retry_after: Duration,
    lockouts: u32,
}

impl Locked {
    fn new(record: Record, now: Instant) -> Self {
        Self {
            until: record.until,
            retry_after: record.until.saturating_duration_since(now),
            lockouts: record.lockouts,
        }
    }

    /// When the lockout ends.
    pub fn until(&self) -> Instant {
        self.until
    }

    /// How long the lockout still lasts, as of when it was reported.
    pub fn retry_after(&self) -> Duration {
        self.retry_after
    }

    /// How many times the key has been locked out while remembered
    /// (1 for a first lockout).
    pub fn lockouts(&self) -> u32 {
        self.lockouts
    }

    /// The rejection the layer answers with:
    /// [`RejectionKind::LockedOut`] with `Retry-After`.
    pub fn to_rejection(&self) -> AuthRejection {
        AuthRejection::new(RejectionKind::LockedOut).with_retry_after(self.retry_after)
    }
}

impl fmt::Display for Locked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "locked out after too many failed attempts, retry in {} s",
            retry_after_secs(self.retry_after)
        )
    }
}

impl std::error::Error for Locked {}

/// What recording a failure did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureOutcome {
    /// The failure was counted; the key is not locked out.
    Counted {
        /// Failures within the window, this one included.
        failures: u32,
        /// Failures left before a lockout.
        remaining: u32,
    },
    /// This failure locked the key out.
    LockedOut(Locked),
    /// The key was already locked out: the failure was not counted and the
    /// lockout is unchanged.
    AlreadyLocked(Locked),
    /// The failure is being recorded in the shared store (Redis) in the
    /// background; what it did is logged and, for a lockout, passed to the
    /// hook.
    Deferred,
}

/// Counts since the tracker was created, and table sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Failure counters held (at most the capacity). May include counters
    /// whose window has passed and that were not reclaimed yet.
    pub tracked: u64,
    /// Keys locked out right now.
    pub blocked: u64,
    /// Failures counted (failures while locked out are not).
    pub failures: u64,
    /// Lockouts imposed.
    pub lockouts: u64,
    /// Entries dropped because a table was full.
    pub evictions: u64,
    /// Decisions made with the local tables because the shared store
    /// (Redis, feature `redis`) was unavailable.
    pub fallbacks: u64,
}

/// A key that is locked out, as listed by [`Tracker::blocked_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockedKey<K> {
    /// The key.
    pub key: K,
    /// When its lockout ends.
    pub until: Instant,
    /// How long its lockout still lasts.
    pub retry_after: Duration,
    /// How many times it has been locked out while remembered.
    pub lockouts: u32,
}

impl<K> Tracker<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    /// A tracker with `policy` and in-memory tables.
    pub fn new(policy: Policy) -> Self {
        Self {
            shared: Arc::new(Shared {
                store: MemoryStore::new(policy),
                hook: RwLock::new(None),
                #[cfg(feature = "redis")]
                remote: None,
            }),
        }
    }

    /// A tracker whose state is shared with other replicas through Redis,
    /// with in-memory tables as a cache of lockouts and as the fallback
    /// while Redis is unavailable; see [`RedisStore`](super::RedisStore).
    ///
    /// [`attempt`](Self::attempt), [`unlock`](Self::unlock) and the
    /// [`LockoutLayer`](super::LockoutLayer) use Redis. The other direct
    /// methods ([`check`](Self::check), [`record_failure`](Self::record_failure),
    /// [`record_success`](Self::record_success), [`failures`](Self::failures))
    /// are synchronous and act on the local tables only (which include the
    /// lockouts seen in Redis).
    #[cfg(feature = "redis")]
    pub fn with_redis(policy: Policy, store: super::RedisStore) -> Self {
        Self {
            shared: Arc::new(Shared {
                store: MemoryStore::new(policy),
                hook: RwLock::new(None),
                remote: Some(super::redis::Remote::new(store)),
            }),
        }
    }

    /// Calls `hook` with the key and the end of the lockout each time a key
    /// is locked out. Applies to every clone of this tracker and replaces an
    /// earlier hook.
    ///
    /// The hook runs on the request's task after the tracker's locks are
    /// released; keep it short (send to a channel for slow work).
    ///
    /// # Example
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use portcullis::lockout::{Policy, Tracker};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = Arc::clone(&seen);
    /// let tracker = Tracker::new(Policy::builder().max_failures(1).build().unwrap())
    ///     .on_lockout(move |key: &u32, _until| log.lock().unwrap().push(*key));
    /// tracker.record_failure(&7);
    /// assert_eq!(*seen.lock().unwrap(), [7]);
    /// ```
    #[must_use]
    pub fn on_lockout(self, hook: impl Fn(&K, Instant) + Send + Sync + 'static) -> Self {
        *self
            .shared
            .hook
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(hook));
        self
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        self.shared.store.policy()
    }

    /// Whether `key` may try now.
    ///
    /// # Errors
    ///
    /// [`Locked`] while the key is locked out.
    pub fn check(&self, key: &K) -> Result<(), Locked> {
        let now = Instant::now();
        match self.shared.store.locked(self.hashed(key), now) {
            Some(record) => Err(Locked::new(record, now)),
            None => Ok(()),
        }
    }

    /// Failures of `key` within the window (0 while it is locked out).
    pub fn failures(&self, key: &K) -> u32 {
        self.shared
            .store
            .failures_of(self.hashed(key), Instant::now())
    }

    /// Records a failed attempt of `key`, locking it out at the threshold.
    ///
    /// Prefer [`attempt`](Self::attempt) when requests for one key can run
    /// concurrently: `check` followed by `record_failure` lets parallel
    /// attempts through before the first failure is recorded.
    pub fn record_failure(&self, key: &K) -> FailureOutcome {
        let now = Instant::now();
        let recorded = self
            .shared
            .store
            .record(self.hashed(key), Finish::Failure, || now);
        self.shared
            .report(key, recorded, now)
            .expect("a failure is always reported")
    }

    /// Records a successful attempt of `key`. Clears its failures only when
    /// the policy resets on success; never lifts a lockout.
    pub fn record_success(&self, key: &K) {
        self.shared
            .store
            .record(self.hashed(key), Finish::Success, Instant::now);
    }

    /// Lifts the lockout of `key` and forgets its failures (its escalation
    /// history too). Returns whether it was locked out.
    pub fn unlock(&self, key: &K) -> bool {
        let was_locked = self.shared.store.unlock(self.hashed(key), Instant::now());
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.shared.remote
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(remote.unlock(key));
        }
        tracing::info!(
            target: "portcullis::lockout",
            key = ?key,
            was_locked,
            "lockout lifted by an operator"
        );
        was_locked
    }

    /// Waits for a free slot for `key` and reserves it, or reports the
    /// lockout.
    ///
    /// The attempt is admitted only while
    /// `failures + attempts in flight < max_failures`; otherwise the future
    /// waits until an attempt in flight for the key ends, then asks again.
    /// End the [`Attempt`] with [`failed`](Attempt::failed) or
    /// [`succeeded`](Attempt::succeeded); dropping it releases the slot
    /// without recording anything.
    ///
    /// # Errors
    ///
    /// [`Locked`] while the key is locked out, including when it becomes
    /// locked out while waiting.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::lockout::{Policy, Tracker};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let tracker = Tracker::new(Policy::builder().max_failures(1).build().unwrap());
    /// let attempt = tracker.attempt("alice").await.unwrap();
    /// // ...check the password; it was wrong:
    /// attempt.failed();
    /// assert!(tracker.attempt("alice").await.is_err());
    /// # });
    /// ```
    pub fn attempt(&self, key: K) -> Acquire<K> {
        let hash = self.shared.store.hash(&key);
        self.acquire_hashed(key, hash)
    }

    /// Admits without waiting; the layer's fast path.
    pub(crate) fn try_attempt(&self, key: K) -> TryAttempt<K> {
        let hash = self.shared.store.hash(&key);
        let k = Hashed { key: &key, hash };
        #[cfg(feature = "redis")]
        if self.shared.remote().is_some() {
            // Lockouts seen in Redis are cached locally: refuse those at
            // once; ask Redis about the rest.
            let now = Instant::now();
            return match self.shared.store.locked(k, now) {
                Some(record) => TryAttempt::Locked(Locked::new(record, now)),
                None => TryAttempt::Full(key, hash),
            };
        }
        match self.shared.store.admit(k, Instant::now, None) {
            Admission::Admitted => TryAttempt::Admitted(self.admitted(key, hash)),
            Admission::Locked(record, now) => TryAttempt::Locked(Locked::new(record, now)),
            Admission::Full => TryAttempt::Full(key, hash),
        }
    }

    /// [`attempt`](Self::attempt) with the hash already computed.
    pub(crate) fn acquire_hashed(&self, key: K, hash: u64) -> Acquire<K> {
        Acquire {
            tracker: self.clone(),
            key: Some(key),
            hash,
            remote: Default::default(),
            notified: None,
        }
    }

    fn admitted(&self, key: K, hash: u64) -> Attempt<K> {
        Attempt {
            release: Arc::clone(&self.shared) as Arc<dyn Release<K>>,
            key: Some(key),
            hash,
            remote: false,
        }
    }

    fn hashed<'a>(&self, key: &'a K) -> Hashed<'a, K> {
        Hashed {
            key,
            hash: self.shared.store.hash(key),
        }
    }

    /// Counts and table sizes. `blocked` walks the lockout table, so this
    /// costs time linear in the number of keys locked out recently.
    pub fn stats(&self) -> Stats {
        let now = Instant::now();
        let store = &self.shared.store;
        let totals = store.totals();
        Stats {
            tracked: store.tracked(),
            blocked: store.blocked(now),
            failures: totals.failures.load(Ordering::Relaxed),
            lockouts: totals.lockouts.load(Ordering::Relaxed),
            evictions: totals.evictions.load(Ordering::Relaxed),
            fallbacks: totals.fallbacks.load(Ordering::Relaxed),
        }
    }

    /// The keys locked out right now, the lockout ending last first.
    pub fn blocked_keys(&self) -> Vec<BlockedKey<K>> {
        let now = Instant::now();
        let mut keys: Vec<_> = self
            .shared
            .store
            .locked_keys(now)
            .into_iter()
            .map(|(key, record)| BlockedKey {
                key,
                until: record.until,
                retry_after: record.until.saturating_duration_since(now),
                lockouts: record.lockouts,
            })
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.until));
        keys
    }

    /// Runs the pending maintenance of the escalation history (a moka
    /// cache: evictions, expirations) now. Never needed for correctness.
    pub fn run_pending_tasks(&self) {
        self.shared.store.run_pending_tasks();
    }
}

/// Result of [`Tracker::try_attempt`].
pub(crate) enum TryAttempt<K> {
    Admitted(Attempt<K>),
    Locked(Locked),
    /// Wait with [`Tracker::acquire_hashed`].
    Full(K, u64),
}

impl<K> Shared<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    /// The shared store, unless it failed a moment ago.
    #[cfg(feature = "redis")]
    fn remote(&self) -> Option<&super::redis::Remote> {
        self.remote.as_ref().filter(|r| !r.is_down())
    }

    /// Counts and logs a decision made locally because Redis failed.
    #[cfg(feature = "redis")]
    fn fell_back(&self, remote: &super::redis::Remote) {
        self.store
            .totals()
            .fallbacks
            .fetch_add(1, Ordering::Relaxed);
        if remote.mark_down() {
            tracing::warn!(
                target: "portcullis::lockout",
                "redis is unavailable; deciding with the local tracker until it answers again"
            );
        }
    }

    /// Logs what a recorded outcome did and calls the hook on lockout.
    fn report(&self, key: &K, recorded: Recorded, now: Instant) -> Option<FailureOutcome> {
        match recorded {
            Recorded::Counted { failures } => {
                let remaining = self.store.policy().max_failures().saturating_sub(failures);
                tracing::debug!(
                    target: "portcullis::lockout",
                    key = ?key,
                    failures,
                    remaining,
                    "failed attempt counted"
                );
                Some(FailureOutcome::Counted {
                    failures,
                    remaining,
                })
            }
            Recorded::LockedOut { record, failures } => {
                let locked = Locked::new(record, now);
                let until_unix = (SystemTime::now() + locked.retry_after)
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                tracing::warn!(
                    target: "portcullis::lockout",
                    key = ?key,
                    failures,
                    lockouts = record.lockouts,
                    locked_for_secs = retry_after_secs(locked.retry_after),
                    until_unix,
                    "key locked out after too many failed attempts"
                );
                let hook = self
                    .hook
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if let Some(hook) = hook {
                    hook(key, record.until);
                }
                Some(FailureOutcome::LockedOut(locked))
            }
            Recorded::AlreadyLocked { record } => {
                Some(FailureOutcome::AlreadyLocked(Locked::new(record, now)))
            }
            Recorded::NotAFailure => None,
        }
    }
}

/// Ends attempts; erases the key bounds so [`Attempt`] needs none.
trait Release<K>: Send + Sync {
    fn release(&self, key: &K, hash: u64, finish: Finish) -> Option<FailureOutcome>;

    /// Ends an attempt admitted by the shared store.
    #[cfg(feature = "redis")]
    fn release_remote(self: Arc<Self>, key: K, hash: u64, finish: Finish)
    -> Option<FailureOutcome>;
}

impl<K> Release<K> for Shared<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    #[cfg(feature = "redis")]
    fn release_remote(
        self: Arc<Self>,
        key: K,
        hash: u64,
        finish: Finish,
    ) -> Option<FailureOutcome> {
        use super::redis::RemoteFinish;
        let outcome = match finish {
            Finish::Failure => 1,
            Finish::Success if self.store.policy().reset_on_success() => 2,
            Finish::Success | Finish::Neutral => 0,
        };
        let remote = self.remote.as_ref()?;
        let done = remote.finish(&key, true, outcome, self.store.policy());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime to talk to Redis from: the reservation expires by
            // its TTL; the outcome is recorded locally.
            self.fell_back(remote);
            let now = Instant::now();
            let recorded = self
                .store
                .record(Hashed { key: &key, hash }, finish, || now);
            return self.report(&key, recorded, now);
        };
        runtime.spawn(async move {
            let done = done.await;
            let now = Instant::now();
            let k = Hashed { key: &key, hash };
            match done {
                RemoteFinish::Counted(failures) => {
                    self.store.totals().failures.fetch_add(1, Ordering::Relaxed);
                    self.report(&key, Recorded::Counted { failures }, now);
                }
                RemoteFinish::LockedOut { lockout, lockouts } => {
                    let record = Record {
                        until: now + lockout,
                        lockouts,
                    };
                    self.store.cache_lockout(k, record, now);
                    self.store.totals().failures.fetch_add(1, Ordering::Relaxed);
                    self.store.totals().lockouts.fetch_add(1, Ordering::Relaxed);
                    let failures = self.store.policy().max_failures();
                    self.report(&key, Recorded::LockedOut { record, failures }, now);
                }
                RemoteFinish::AlreadyLocked(retry_after) => {
                    let record = Record {
                        until: now + retry_after,
                        lockouts: 1,
                    };
                    self.store.cache_lockout(k, record, now);
                }
                RemoteFinish::Done => {}
                RemoteFinish::Unavailable => {
                    if let Some(remote) = self.remote.as_ref() {
                        self.fell_back(remote);
                    }
                    let recorded = self.store.record(k, finish, || now);
                    self.report(&key, recorded, now);
                }
            }
        });
        (finish == Finish::Failure).then_some(FailureOutcome::Deferred)
    }

    fn release(&self, key: &K, hash: u64, finish: Finish) -> Option<FailureOutcome> {
        // Only a failure needs the time: successes stay off the clock.
        let now = std::cell::Cell::new(None);
        let clock = || {
            let at = now.get().unwrap_or_else(Instant::now);
            now.set(Some(at));
            at
        };
        let recorded = self.store.release(Hashed { key, hash }, finish, clock);
        match recorded {
            Recorded::NotAFailure => None,
            recorded => self.report(key, recorded, clock()),
        }
    }
}

/// A reserved attempt of one key; see [`Tracker::attempt`].
///
/// End it with [`failed`](Self::failed) or [`succeeded`](Self::succeeded).
/// Dropping it (a client that disconnected, a handler that returned early)
/// frees the reservation without recording anything.
#[must_use = "dropping an attempt records nothing; call `failed` or `succeeded`"]
pub struct Attempt<K> {
    release: Arc<dyn Release<K>>,
    key: Option<K>,
    hash: u64,
    /// Admitted by the shared store rather than the local tables.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    remote: bool,
}

impl<K> Attempt<K> {
    /// The key of this attempt.
    pub fn key(&self) -> &K {
        self.key
            .as_ref()
            .expect("the key is only taken when the attempt ends")
    }

    /// Records a failure, locking the key out at the threshold.
    pub fn failed(mut self) -> FailureOutcome {
        self.end(Finish::Failure)
            .expect("a failure is always reported")
    }

    /// Records a success (clears the failures only when the policy resets
    /// on success).
    pub fn succeeded(mut self) {
        self.end(Finish::Success);
    }

    /// Ends the attempt with an outcome decided by a classifier.
    pub(crate) fn finish(mut self, finish: Finish) {
        self.end(finish);
    }

    fn end(&mut self, finish: Finish) -> Option<FailureOutcome> {
        let key = self.key.take()?;
        #[cfg(feature = "redis")]
        if self.remote {
            return Arc::clone(&self.release).release_remote(key, self.hash, finish);
        }
        self.release.release(&key, self.hash, finish)
    }
}

impl<K> Drop for Attempt<K> {
    fn drop(&mut self) {
        self.end(Finish::Neutral);
    }
}

impl<K: fmt::Debug> fmt::Debug for Attempt<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt").field("key", &self.key).finish()
    }
}

pin_project! {
    /// Future returned by [`Tracker::attempt`]: an admitted [`Attempt`] or
    /// the lockout.
    #[must_use = "futures do nothing unless polled"]
    pub struct Acquire<K> {
        tracker: Tracker<K>,
        key: Option<K>,
        hash: u64,
        remote: RemoteWait,
        #[pin]
        notified: Option<OwnedNotified>,
    }
}

/// What an [`Acquire`] waits for from the shared store.
#[cfg(feature = "redis")]
#[derive(Default)]
enum RemoteWait {
    #[default]
    Idle,
    Admit(super::redis::BoxFuture<super::redis::RemoteAdmission>),
    Retry(Pin<Box<tokio::time::Sleep>>),
}

#[cfg(not(feature = "redis"))]
type RemoteWait = ();

impl<K: fmt::Debug> fmt::Debug for Acquire<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("key", &self.key)
            .field("waiting", &self.notified.is_some())
            .finish()
    }
}

impl<K> Future for Acquire<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    type Output = Result<Attempt<K>, Locked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if let Some(notified) = this.notified.as_mut().as_pin_mut() {
                ready!(notified.poll(cx));
                this.notified.set(None);
            }
            let Some(key) = this.key.as_ref() else {
                panic!("`Acquire` polled after completion");
            };
            #[cfg(feature = "redis")]
            if let Some(remote) = this.tracker.shared.remote() {
                use super::redis::{FULL_RETRY, RemoteAdmission};
                match this.remote {
                    RemoteWait::Idle => {
                        *this.remote = RemoteWait::Admit(
                            remote.admit(key, this.tracker.shared.store.policy()),
                        );
                    }
                    RemoteWait::Retry(sleep) => {
                        ready!(sleep.as_mut().poll(cx));
                        *this.remote = RemoteWait::Idle;
                    }
                    RemoteWait::Admit(admit) => {
                        let admission = ready!(admit.as_mut().poll(cx));
                        *this.remote = RemoteWait::Idle;
                        match admission {
                            RemoteAdmission::Admitted => {
                                let key = this.key.take().expect("checked above");
                                let mut attempt = this.tracker.admitted(key, *this.hash);
                                attempt.remote = true;
                                return Poll::Ready(Ok(attempt));
                            }
                            RemoteAdmission::Locked(retry_after, lockouts) => {
                                let now = Instant::now();
                                let record = Record {
                                    until: now + retry_after,
                                    lockouts,
                                };
                                let k = Hashed {
                                    key,
                                    hash: *this.hash,
                                };
                                this.tracker.shared.store.cache_lockout(k, record, now);
                                this.key.take();
                                return Poll::Ready(Err(Locked::new(record, now)));
                            }
                            RemoteAdmission::Full => {
                                *this.remote =
                                    RemoteWait::Retry(Box::pin(tokio::time::sleep(FULL_RETRY)));
                            }
                            // Decide locally below.
                            RemoteAdmission::Unavailable => {
                                this.tracker.shared.fell_back(remote);
                                *this.remote = RemoteWait::Idle;
                            }
                        }
                    }
                }
                if !matches!(this.remote, RemoteWait::Idle)
                    || this.tracker.shared.remote().is_some()
                {
                    continue;
                }
            }
            let k = Hashed {
                key,
                hash: *this.hash,
            };
            let notified = &mut this.notified;
            let mut register = |notify: &Arc<Notify>| {
                // Registered while the key's shard is locked: the release
                // that frees a slot cannot slip in before this.
                notified.set(Some(Arc::clone(notify).notified_owned()));
                if let Some(pending) = notified.as_mut().as_pin_mut() {
                    pending.enable();
                }
            };
            match this
                .tracker
                .shared
                .store
                .admit(k, Instant::now, Some(&mut register))
            {
                Admission::Admitted => {
                    let key = this.key.take().expect("checked above");
                    return Poll::Ready(Ok(this.tracker.admitted(key, *this.hash)));
                }
                Admission::Locked(record, now) => {
                    this.key.take();
                    return Poll::Ready(Err(Locked::new(record, now)));
                }
                // Poll the notification registered above.
                Admission::Full => {}
            }
        }
    }
}
