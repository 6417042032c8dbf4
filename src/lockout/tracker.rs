//! [`Tracker`]: the lockout's decision engine over a store, its direct
//! API, and [`Acquire`], the future that waits for an attempt.

use std::{
    fmt,
    future::Future,
    hash::{BuildHasher, Hash},
    pin::Pin,
    sync::{
        Arc, PoisonError, RwLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use pin_project_lite::pin_project;
use tokio::{
    sync::futures::OwnedNotified,
    time::{Instant, Sleep},
};

use super::{
    Failed, Outcome, Policy,
    attempt::{Attempt, FailureOutcome, Finisher, Locked, Refused, Reserved},
    recent::Recent,
    stats::LockoutStats,
    store::{
        ASK_AGAIN, Admission, Finished, Hashed, Recorded, Store, Ticket, Waiter,
        memory::MemoryStore,
    },
};
use crate::{
    Fingerprint,
    events::{self, KeyText, Record},
    future::BoxFuture,
    key::KeyHasher,
    reject::retry_after_secs,
};

type Hook<K> = Arc<dyn Fn(&K, Instant) + Send + Sync>;

/// The failed-attempt state shared by every clone: failure counts, active
/// lockouts and reservations, per key.
///
/// A [`LockoutLayer`](super::LockoutLayer) owns one; handlers and operator
/// endpoints can hold clones of it (cloning is cheap: an `Arc`) and use the
/// direct API: [`check`](Self::check), [`record_failure`](Self::record_failure),
/// [`record_success`](Self::record_success), [`attempt`](Self::attempt) (the
/// reserving variant the layer uses), [`unlock`](Self::unlock),
/// [`stats`](Self::stats) and [`locked_keys`](Self::locked_keys).
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
///   `failures + reservations < max_failures`, atomically, so concurrent
///   attempts cannot overshoot the threshold. Further attempts wait (up to
///   [`max_waiting`](super::PolicyBuilder::max_waiting) of them per key)
///   until a reservation ends.
/// - Memory is bounded: at most `capacity` failure counters, `capacity`
///   lockouts and `capacity` escalation records (the last one a moka cache,
///   which may briefly hold a few more between maintenance runs), plus
///   small entries for the `capacity` clients seen most recently (so a
///   returning client's request costs a lookup, not an insert and a removal;
///   they cannot push a failure counter out) and for keys with reservations.
///   No background task is needed.
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
/// - Keys appear in logs and in [`locked_keys`](Self::locked_keys): never key on
///   a credential.
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
    engine: Arc<Engine<K>>,
}

/// What every clone of a tracker shares.
struct Engine<K> {
    /// The engine itself, for work that outlives a call (a round trip to
    /// the shared store).
    this: Weak<Engine<K>>,
    store: Box<dyn Store<K>>,
    /// The last wrong guesses of each key (smart counting).
    recent: Option<Recent<K>>,
    policy: Policy,
    /// SipHash with a random key: an attacker cannot aim keys at one shard.
    hasher: KeyHasher,
    hook: RwLock<Option<Hook<K>>>,
    failures: AtomicU64,
    lockouts: AtomicU64,
}

impl<K> Clone for Tracker<K> {
    fn clone(&self) -> Self {
        Self {
            engine: Arc::clone(&self.engine),
        }
    }
}

impl<K> fmt::Debug for Tracker<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("policy", &self.engine.policy)
            .finish_non_exhaustive()
    }
}

/// An active lockout, as listed by [`Tracker::locked_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockedKey<K> {
    /// The key.
    pub key: K,
    /// When the lockout ends.
    pub until: Instant,
    /// How long the lockout still lasts.
    pub retry_after: Duration,
    /// How many times the key has been locked out while remembered.
    pub lockouts: u32,
}

impl<K> Tracker<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    /// A tracker with `policy` and in-memory tables, for direct use without
    /// a layer. A layer makes its own trackers (shared through Redis with
    /// [`LockoutBuilder::redis`](super::LockoutBuilder::redis)) and hands
    /// them out with [`LockoutLayer::tracker`](super::LockoutLayer::tracker).
    pub fn new(policy: Policy) -> Self {
        Self::with_store(policy.clone(), MemoryStore::new(policy))
    }

    /// A tracker over `store`.
    pub(crate) fn with_store(policy: Policy, store: impl Store<K>) -> Self {
        Self {
            engine: Arc::new_cyclic(|this| Engine {
                this: this.clone(),
                store: Box::new(store),
                recent: Recent::new(
                    policy.remember_guesses(),
                    policy.window(),
                    policy.capacity(),
                ),
                policy,
                hasher: KeyHasher::new(),
                hook: RwLock::new(None),
                failures: AtomicU64::new(0),
                lockouts: AtomicU64::new(0),
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
            .engine
            .hook
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(hook));
        self
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.engine.policy
    }

    /// Whether `key` may try now.
    ///
    /// # Errors
    ///
    /// [`Locked`] while the key is locked out.
    pub fn check(&self, key: &K) -> Result<(), Locked> {
        match self.engine.store.locked(self.hashed(key)) {
            Some((record, now)) => Err(Locked::new(record, now)),
            None => Ok(()),
        }
    }

    /// Failures of `key` within the window (0 while it is locked out).
    pub fn failures(&self, key: &K) -> u32 {
        self.engine.store.failures(self.hashed(key))
    }

    /// Records a failed attempt of `key`, locking it out at the threshold.
    ///
    /// Prefer [`attempt`](Self::attempt) when requests for one key can run
    /// concurrently: `check` followed by `record_failure` lets parallel
    /// attempts through before the first failure is recorded.
    pub fn record_failure(&self, key: &K) -> FailureOutcome {
        self.record_failure_with(key, Failed::new())
    }

    /// Records the failed attempt `failed` of `key`: with
    /// [`Failed::guess`], a wrong guess the key repeats within the window
    /// counts once ([`FailureOutcome::Repeated`]).
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::lockout::{Failed, FailureOutcome, Policy, Tracker};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let tracker = Tracker::new(Policy::default());
    /// let user = "alice".to_owned();
    /// tracker.record_failure_with(&user, Failed::guess("alice", "hunter3"));
    /// let again = tracker.record_failure_with(&user, Failed::guess("alice", "hunter3"));
    /// assert_eq!(again, FailureOutcome::Repeated);
    /// assert_eq!(tracker.failures(&user), 1);
    /// # });
    /// ```
    pub fn record_failure_with(&self, key: &K, failed: Failed) -> FailureOutcome {
        if self.engine.repeated(key, failed.fingerprint()) {
            return FailureOutcome::Repeated;
        }
        let recorded = self.engine.store.record(self.hashed(key), Outcome::Failure);
        self.engine
            .report(key, recorded)
            .unwrap_or(FailureOutcome::Deferred)
    }

    /// Records a successful attempt of `key`. Clears its failures only when
    /// the policy resets on success; never lifts a lockout.
    pub fn record_success(&self, key: &K) {
        self.engine.store.record(self.hashed(key), Outcome::Success);
    }

    /// Lifts the lockout of `key` and forgets its failures (its escalation
    /// history too). Returns whether it was locked out.
    pub fn unlock(&self, key: &K) -> bool {
        let was_locked = self.engine.store.unlock(self.hashed(key));
        if was_locked {
            // The event and its metric count lockouts lifted, not calls.
            events::emit(Record::Unlocked { key });
        }
        if let Some(recent) = &self.engine.recent {
            recent.forget(key);
        }
        tracing::info!(
            target: "portcullis::lockout",
            key = %KeyText(key),
            was_locked,
            "lockout lifted by an operator"
        );
        was_locked
    }

    /// Waits for a free slot for `key` and reserves it, or reports why not.
    ///
    /// The attempt is admitted only while
    /// `failures + reservations < max_failures`; otherwise the future waits
    /// until a reservation of the key ends, then asks again. End the
    /// [`Attempt`](super::Attempt) with [`failed`](super::Attempt::failed)
    /// or [`succeeded`](super::Attempt::succeeded); dropping it releases the
    /// slot without recording anything.
    ///
    /// # Errors
    ///
    /// [`Refused::LockedOut`](super::Refused::LockedOut) while the key is
    /// locked out, including when it becomes locked out while waiting;
    /// [`Refused::Crowded`](super::Refused::Crowded) when
    /// [`max_waiting`](super::PolicyBuilder::max_waiting) requests of the
    /// key wait already.
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
        let hash = self.hash(&key);
        Acquire::new(self.clone(), key, hash, None)
    }

    /// Counts and table sizes. Walks the lockout table, so this costs time
    /// linear in the number of keys locked out recently.
    pub fn stats(&self) -> LockoutStats {
        let mut stats = LockoutStats {
            failures: self.engine.failures.load(Ordering::Relaxed),
            lockouts: self.engine.lockouts.load(Ordering::Relaxed),
            ..LockoutStats::default()
        };
        self.engine.store.stats(&mut stats);
        stats
    }

    /// The keys locked out right now (as far as this replica knows), the
    /// lockout ending last first.
    pub fn locked_keys(&self) -> Vec<LockedKey<K>> {
        let now = Instant::now();
        let mut keys: Vec<_> = self
            .engine
            .store
            .locked_keys()
            .into_iter()
            .map(|(key, record)| LockedKey {
                key,
                until: record.until,
                retry_after: record.until.saturating_duration_since(now),
                lockouts: record.lockouts,
            })
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse(k.until));
        keys
    }

    /// The hash of `key`, computed once per request.
    pub(crate) fn hash(&self, key: &K) -> u64 {
        self.engine.hasher.hash_one(key)
    }

    fn hashed<'a>(&self, key: &'a K) -> Hashed<'a, K> {
        Hashed {
            key,
            hash: self.hash(key),
        }
    }

    /// Asks the store once, without waiting.
    pub(crate) fn admit(&self, key: &K, hash: u64) -> Admission {
        self.engine.store.admit(Hashed { key, hash })
    }

    pub(crate) fn store(&self) -> &dyn Store<K> {
        &*self.engine.store
    }

    /// The reservation `ticket` of `key`, to be ended once.
    pub(crate) fn reserved(&self, key: K, hash: u64, ticket: Ticket) -> Reserved<K> {
        let finisher = Arc::clone(&self.engine) as Arc<dyn Finisher<K>>;
        Reserved::new(finisher, key, hash, ticket)
    }
}

impl<K> Engine<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    /// Whether `guess` repeats one of the key's remembered wrong guesses
    /// (B14); remembers it if not.
    fn repeated(&self, key: &K, guess: Option<Fingerprint>) -> bool {
        let (Some(recent), Some(guess)) = (&self.recent, guess) else {
            return false;
        };
        let repeated = recent.repeated(key, guess);
        if repeated {
            tracing::debug!(
                target: "portcullis::lockout",
                key = %KeyText(key),
                guess = %guess,
                "repeated wrong guess not counted again"
            );
        }
        repeated
    }

    /// Logs what a recorded outcome did, counts it and calls the hook on
    /// lockout.
    fn report(&self, key: &K, recorded: Recorded) -> Option<FailureOutcome> {
        match recorded {
            Recorded::Counted { failures } => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let remaining = self.policy.max_failures().saturating_sub(failures);
                tracing::info!(
                    target: "portcullis::lockout",
                    key = %KeyText(key),
                    failures,
                    remaining,
                    "failed attempt counted"
                );
                events::emit(Record::FailureCounted {
                    key,
                    failures,
                    remaining,
                });
                Some(FailureOutcome::Counted {
                    failures,
                    remaining,
                })
            }
            Recorded::LockedOut { record, failures } => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.lockouts.fetch_add(1, Ordering::Relaxed);
                let locked = Locked::new(record, Instant::now());
                let until_unix = (SystemTime::now() + locked.retry_after())
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                tracing::info!(
                    target: "portcullis::lockout",
                    key = %KeyText(key),
                    failures,
                    remaining = 0,
                    "failed attempt counted"
                );
                events::emit(Record::FailureCounted {
                    key,
                    failures,
                    remaining: 0,
                });
                tracing::warn!(
                    target: "portcullis::lockout",
                    key = %KeyText(key),
                    failures,
                    lockouts = record.lockouts,
                    locked_for_secs = retry_after_secs(locked.retry_after()),
                    until_unix,
                    "key locked out after too many failed attempts"
                );
                events::emit(Record::LockedOut {
                    key,
                    lockout: locked.retry_after(),
                    lockouts: record.lockouts,
                });
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
            Recorded::AlreadyLocked { record } => Some(FailureOutcome::AlreadyLocked(Locked::new(
                record,
                Instant::now(),
            ))),
            Recorded::NotAFailure => None,
        }
    }
}

impl<K> Finisher<K> for Engine<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    /// B20: an outcome that came after its reservation was released. A
    /// failure is counted as an attempt of its own, reserved and ended at
    /// once (waiting for a slot in the background when none is free), so
    /// that a shared store counts it like any other failure; a locked-out
    /// key does not count it (B7).
    fn record(&self, key: &K, hash: u64, outcome: Outcome, guess: Option<Fingerprint>) {
        let k = Hashed { key, hash };
        if outcome != Outcome::Failure {
            self.store.record(k, outcome);
            return;
        }
        if self.repeated(key, guess) {
            return;
        }
        match self.store.admit(k) {
            Admission::Admitted(ticket, _) => {
                self.finish_as(key, hash, &ticket, outcome);
            }
            Admission::Locked(..) => {}
            Admission::Crowded => {
                let recorded = self.store.record(k, outcome);
                self.report(key, recorded);
            }
            // A round trip, or every slot of the key in flight: wait for
            // one in the background (the guess was checked above, so the
            // attempt fails without it).
            admission => {
                let (Ok(runtime), Some(engine)) =
                    (tokio::runtime::Handle::try_current(), self.this.upgrade())
                else {
                    let recorded = self.store.record(k, outcome);
                    self.report(key, recorded);
                    return;
                };
                let acquire =
                    Acquire::new(Tracker { engine }, key.clone(), hash, admission.asking());
                runtime.spawn(async move {
                    if let Ok(attempt) = acquire.await {
                        attempt.failed();
                    }
                });
            }
        }
    }

    fn finish(
        &self,
        key: &K,
        hash: u64,
        ticket: &Ticket,
        outcome: Outcome,
        guess: Option<Fingerprint>,
    ) -> Option<FailureOutcome> {
        // B14: a repeated wrong guess ends the reservation as neutral.
        let repeated = outcome == Outcome::Failure && self.repeated(key, guess);
        let outcome = if repeated { Outcome::Neutral } else { outcome };
        let reported = self.finish_as(key, hash, ticket, outcome);
        if repeated {
            Some(FailureOutcome::Repeated)
        } else {
            reported
        }
    }
}

pin_project! {
    /// Future returned by [`Tracker::attempt`]: an admitted [`Attempt`], or
    /// why the key was refused.
    ///
    /// While it waits, it holds a place in the key's queue of waiting
    /// requests; dropping it gives the place up.
    #[must_use = "futures do nothing unless polled"]
    pub struct Acquire<K> {
        tracker: Tracker<K>,
        key: Option<K>,
        hash: u64,
        #[pin]
        notified: Option<OwnedNotified>,
        retry: Option<Pin<Box<Sleep>>>,
        asking: Option<BoxFuture<Admission>>,
        // An admitted attempt waiting out its progressive delay; dropping
        // it (a cancelled request) frees the slot.
        delaying: Option<(Attempt<K>, Pin<Box<Sleep>>)>,
    }
}

impl<K> Acquire<K> {
    /// Waits for `key`, starting with a round trip already under way.
    pub(crate) fn new(
        tracker: Tracker<K>,
        key: K,
        hash: u64,
        asking: Option<BoxFuture<Admission>>,
    ) -> Self {
        Self {
            tracker,
            key: Some(key),
            hash,
            notified: None,
            retry: None,
            asking,
            delaying: None,
        }
    }
}

impl<K: fmt::Debug> fmt::Debug for Acquire<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("key", &self.key)
            .field(
                "waiting",
                &(self.notified.is_some() || self.retry.is_some() || self.delaying.is_some()),
            )
            .finish()
    }
}

impl<K> Future for Acquire<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    type Output = Result<Attempt<K>, Refused>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Some((_, sleep)) = this.delaying.as_mut() {
            ready!(sleep.as_mut().poll(cx));
            let (attempt, _) = this.delaying.take().expect("checked just above");
            return Poll::Ready(Ok(attempt));
        }
        loop {
            let key = this
                .key
                .as_ref()
                .expect("`Acquire` polled after completion");
            let k = Hashed {
                key,
                hash: *this.hash,
            };
            let store = this.tracker.store();
            let mut admission = if let Some(asking) = this.asking.as_mut() {
                let admission = ready!(asking.as_mut().poll(cx));
                *this.asking = None;
                admission
            } else if this.notified.is_some() || this.retry.is_some() {
                let notified = this
                    .notified
                    .as_mut()
                    .as_pin_mut()
                    .is_some_and(|n| n.poll(cx).is_ready());
                let retry = this
                    .retry
                    .as_mut()
                    .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
                if !notified && !retry {
                    return Poll::Pending;
                }
                this.notified.set(None);
                *this.retry = None;
                store.admit(k)
            } else {
                store.admit(k)
            };
            if admission.waits() {
                // Register for a wake-up; the store may answer at once if
                // the key's state changed meanwhile.
                let mut waiter = Waiter {
                    notified: this.notified.as_mut(),
                    #[cfg(feature = "redis")]
                    retry: &mut *this.retry,
                };
                admission = store.wait(k, &mut waiter);
            }
            match admission {
                Admission::Admitted(ticket, failures) => {
                    let key = this.key.take().expect("`Acquire` polled after completion");
                    let attempt =
                        Attempt::new(this.tracker.reserved(key, *this.hash, ticket), failures);
                    let Some(delay) = this.tracker.policy().delay_for(failures) else {
                        return Poll::Ready(Ok(attempt));
                    };
                    // Progressive delay: the attempt holds its key's one
                    // slot while it waits.
                    let mut sleep = Box::pin(tokio::time::sleep(delay));
                    if sleep.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Ok(attempt));
                    }
                    *this.delaying = Some((attempt, sleep));
                    return Poll::Pending;
                }
                Admission::Locked(record, now) => {
                    this.key.take();
                    return Poll::Ready(Err(Refused::LockedOut(Locked::new(record, now))));
                }
                Admission::Crowded => {
                    this.key.take();
                    return Poll::Ready(Err(Refused::Crowded));
                }
                #[cfg(feature = "redis")]
                Admission::Ask(asking) => *this.asking = Some(asking),
                // Full, or a shared store unavailable. Registered: poll the
                // wake-up. A store that registered nothing is asked again
                // after a while.
                _ => {
                    if this.notified.is_none() && this.retry.is_none() {
                        *this.retry = Some(Box::pin(tokio::time::sleep(ASK_AGAIN)));
                    }
                }
            }
        }
    }
}

#[cfg(feature = "redis")]
impl<K> Tracker<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    /// A tracker whose state is shared with other replicas through Redis,
    /// with in-memory tables as the fallback while Redis is unavailable;
    /// see [`LockoutBuilder::redis`](super::LockoutBuilder::redis).
    ///
    /// [`attempt`](Self::attempt), [`unlock`](Self::unlock) and the
    /// [`LockoutLayer`](super::LockoutLayer) use Redis. The other
    /// direct methods ([`check`](Self::check),
    /// [`record_failure`](Self::record_failure),
    /// [`record_success`](Self::record_success),
    /// [`failures`](Self::failures)) are synchronous and act on this
    /// replica's tables only (which include the lockouts seen in Redis).
    pub(crate) fn shared(policy: Policy, store: crate::redis::RedisStore) -> Self {
        let shared = super::store::redis::shared(policy.clone(), store);
        Self::with_store(policy, shared)
    }

    /// What starts this tracker's grant of a key ahead of the key's first
    /// request (a rate limiter on the same store does, with its own round
    /// trip). Weak: a tracker dropped is not kept alive by it.
    pub(crate) fn prefetcher(&self) -> Weak<dyn crate::redis::Prefetch<K>> {
        let engine: Weak<Engine<K>> = Arc::downgrade(&self.engine);
        engine
    }
}

#[cfg(feature = "redis")]
impl<K> crate::redis::Prefetch<K> for Engine<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    fn prefetch(&self, key: &K) {
        self.store.prefetch(Hashed {
            key,
            hash: self.hasher.hash_one(key),
        });
    }
}

impl<K> Engine<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    fn finish_as(
        &self,
        key: &K,
        hash: u64,
        ticket: &Ticket,
        outcome: Outcome,
    ) -> Option<FailureOutcome> {
        match self.store.finish(Hashed { key, hash }, ticket, outcome) {
            // The common case: nothing to report.
            Finished::Now(Recorded::NotAFailure) => None,
            Finished::Now(recorded) => self.report(key, recorded),
            #[cfg(feature = "redis")]
            Finished::Later(recording) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    // Nothing can talk to the shared store from here: the
                    // reservation frees itself by its lease, and a failure
                    // is recorded locally.
                    if outcome != Outcome::Failure {
                        return None;
                    }
                    let recorded = self.store.record(Hashed { key, hash }, outcome);
                    return self.report(key, recorded);
                };
                let key = key.clone();
                let engine = self.this.clone();
                runtime.spawn(async move {
                    if let (Some(recorded), Some(engine)) = (recording.await, engine.upgrade()) {
                        engine.report(&key, recorded);
                    }
                });
                (outcome == Outcome::Failure).then_some(FailureOutcome::Deferred)
            }
        }
    }
}
