//! The caching validator: cached outcomes, single flight, invalidation.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::OnceCell, time::Instant};

use super::{
    entry::{self, Carrier, Outcome, Settled, Slot},
    invalidation::{Invalidations, Target},
};
use crate::{
    Credential, CredentialSource, ValidationError, Validator,
    validate::{KeyDigest, ValidationErrorKind, identity::deadline_after},
};

/// How many times one request asks the backend when each answer is
/// invalidated before it can be given.
const ATTEMPTS: usize = 3;

/// Where single-flight backend calls are found: the secret and its carrier.
type FlightKey = (KeyDigest, CredentialSource);
type Flight<I> = Arc<OnceCell<Settled<I>>>;

/// Reads the subject of an identity.
pub(super) type SubjectOf<I> = fn(&I) -> Option<&str>;

/// A bounded cache in front of any validator.
///
/// [`CachingValidator`] remembers outcomes of a slower validator (a database
/// lookup, a token-introspection call) for a while, and makes concurrent
/// requests that present the same credential share one backend call.
///
/// # Example
///
/// ```
/// use std::{sync::{Arc, atomic::{AtomicUsize, Ordering}}, time::Duration};
/// use portcullis::{Credential, CredentialSource, ValidationError, Validator};
/// use portcullis::validate::CachingValidator;
///
/// let calls = Arc::new(AtomicUsize::new(0));
/// let counter = calls.clone();
/// let backend = move |credential: Credential| {
///     counter.fetch_add(1, Ordering::SeqCst);
///     async move {
///         match credential.secret() {
///             "alice-token" => Ok("alice"),
///             _ => Err(ValidationError::invalid()),
///         }
///     }
/// };
///
/// // `&str` has no expiry of its own: say so with `builder_with_expiry`.
/// let cached = CachingValidator::builder_with_expiry(backend, |_| None)
///     .max_capacity(10_000)
///     .ttl(Duration::from_secs(60))
///     .build()?;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let alice = Credential::new("alice-token", CredentialSource::Bearer);
/// assert_eq!(cached.validate(&alice).await.unwrap(), "alice");
/// assert_eq!(cached.validate(&alice).await.unwrap(), "alice");
/// assert_eq!(calls.load(Ordering::SeqCst), 1);
/// # });
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
///
/// # Guarantees
///
/// - **Keys.** Outcomes are kept per secret, under the SHA-256 digest of the
///   secret ([`KeyDigest`]), and within a secret per carrier (bearer, a
///   cookie, a header…): a validator may answer the same secret differently
///   depending on where it was found. The secret itself is never stored,
///   logged or put in a key.
/// - **Positive entries** are served until the configured
///   [`ttl`](super::CachingValidatorBuilder::ttl) has passed, and never past
///   the identity's own expiry ([`ExpiresAt`](crate::validate::ExpiresAt));
///   an identity that has already expired is not cached.
/// - **Negative entries** (invalid, revoked, expired, insufficient scope) are
///   served for [`negative_ttl`](super::CachingValidatorBuilder::negative_ttl)
///   (default 2 seconds; zero turns negative caching off).
/// - **Unavailable is never cached**: the next request asks the backend
///   again.
/// - **Single flight.** Concurrent requests that miss on the same credential
///   make one backend call and all receive its outcome. If the request that
///   makes the call is dropped, a waiting one takes over.
/// - **Invalidation** (SECURITY.md B12). After
///   [`invalidate`](Self::invalidate),
///   [`invalidate_digest`](Self::invalidate_digest),
///   [`invalidate_subject`](Self::invalidate_subject) or
///   [`invalidate_all`](Self::invalidate_all) returns, no request is
///   answered from an outcome whose backend call started before it: not
///   from the cache, in any carrier, and not from a backend call still in
///   flight. The requests of such a call, including those already waiting
///   on it, ask the backend again. A request whose answer is invalidated
///   three times in a row gets [`unavailable`](ValidationError::unavailable)
///   (never counted as a failure) rather than asking forever.
/// - **Time.** Deadlines are checked against tokio's clock, and saturate
///   instead of overflowing. moka's own expiry (real time) only reclaims
///   memory.
/// - **Bounded.** At most
///   [`max_capacity`](super::CachingValidatorBuilder::max_capacity) secrets;
///   moka evicts the rest. The bookkeeping for invalidations is bounded too:
///   the last 1,024 invalidations (a backend call that spans more is treated
///   as invalidated) and one small record per subject that still has cached
///   outcomes.
///
/// Cheap to clone: clones share the cache.
///
/// # Revoking
///
/// The cache only forgets: revoke in the backend first (delete the session,
/// [`ApiKeys::revoke`](crate::validate::ApiKeys::revoke)), then invalidate,
/// so that the backend call the next request makes says no. A JWT stays
/// valid until its `exp` whatever the cache forgets.
///
/// A handler holds the caller's identity, not the credential. Two ways
/// reach the cache from there:
///
/// - **Sign out everywhere:** with a [`subject`](super::CachingValidatorBuilder::subject)
///   function configured, [`invalidate_subject`](Self::invalidate_subject)
///   reaches every cached credential of the caller.
/// - **Sign out this credential:** let the backend put the credential's
///   [`KeyDigest`] into the identity it returns, and give it to
///   [`invalidate_digest`](Self::invalidate_digest).
///
/// ```
/// use std::{collections::HashMap, sync::{Arc, Mutex}};
/// use portcullis::{Credential, CredentialSource, ValidationError, Validator};
/// use portcullis::validate::{CachingValidator, KeyDigest};
///
/// /// The identity handlers receive.
/// #[derive(Clone)]
/// struct User {
///     id: String,
///     /// The digest of the session token this request presented.
///     session: KeyDigest,
/// }
///
/// // Session tokens (by digest) and whose they are.
/// let sessions = Arc::new(Mutex::new(HashMap::from([
///     (KeyDigest::of("s-laptop"), "alice".to_owned()),
///     (KeyDigest::of("s-phone"), "alice".to_owned()),
/// ])));
/// let store = sessions.clone();
/// let backend = move |credential: Credential| {
///     let session = KeyDigest::of(credential.secret());
///     let owner = store.lock().unwrap().get(&session).cloned();
///     async move {
///         match owner {
///             Some(id) => Ok(User { id, session }),
///             None => Err(ValidationError::revoked()),
///         }
///     }
/// };
/// let cache = CachingValidator::builder_with_expiry(backend, |_| None)
///     .subject(|user| Some(&user.id))
///     .build()?;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let laptop = Credential::new("s-laptop", CredentialSource::Bearer);
/// let phone = Credential::new("s-phone", CredentialSource::Cookie("session".into()));
/// let user = cache.validate(&laptop).await.unwrap();
/// cache.validate(&phone).await.unwrap();
///
/// // `POST /logout`, in a handler that was given `user`:
/// sessions.lock().unwrap().remove(&user.session);
/// cache.invalidate_digest(&user.session);
/// assert!(cache.validate(&laptop).await.is_err());
/// assert!(cache.validate(&phone).await.is_ok());
///
/// // `POST /logout?all=1`:
/// sessions.lock().unwrap().retain(|_, id| *id != user.id);
/// cache.invalidate_subject(&user.id);
/// assert!(cache.validate(&phone).await.is_err());
/// # });
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
pub struct CachingValidator<V: Validator> {
    shared: Arc<Shared<V>>,
}

/// What the clones of one cache share.
pub(super) struct Shared<V: Validator> {
    pub(super) inner: V,
    /// Outcomes by secret; within a slot, by carrier.
    pub(super) cache: moka::sync::Cache<KeyDigest, Slot<V::Identity>>,
    /// The generation of the last invalidation. Written only with `state`
    /// locked, read without.
    pub(super) generation: AtomicU64,
    /// The generation of the last `invalidate_all`: outcomes whose call
    /// started before it are not served. (moka's own `invalidate_all` is
    /// only for memory: it may keep an entry written in the same clock
    /// tick.)
    pub(super) cleared: AtomicU64,
    pub(super) state: Mutex<State<V::Identity>>,
    pub(super) ttl: Duration,
    pub(super) negative_ttl: Duration,
    pub(super) expiry: fn(&V::Identity) -> Option<Instant>,
    pub(super) subject: Option<SubjectOf<V::Identity>>,
}

/// What changes only under the lock: storing an outcome, joining or ending
/// a flight, invalidating.
pub(super) struct State<I> {
    in_flight: HashMap<FlightKey, Flight<I>>,
    invalidations: Invalidations,
}

impl<I> Default for State<I> {
    fn default() -> Self {
        Self {
            in_flight: HashMap::new(),
            invalidations: Invalidations::default(),
        }
    }
}

impl<V: Validator> Clone for CachingValidator<V> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<V: Validator> fmt::Debug for CachingValidator<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingValidator")
            .field("entries", &self.shared.cache.entry_count())
            .field("ttl", &self.shared.ttl)
            .field("negative_ttl", &self.shared.negative_ttl)
            .field("subjects", &self.shared.subject.is_some())
            .finish_non_exhaustive()
    }
}

impl<V: Validator> CachingValidator<V> {
    pub(super) fn from_shared(shared: Shared<V>) -> Self {
        Self {
            shared: Arc::new(shared),
        }
    }

    /// The wrapped validator.
    pub fn get_ref(&self) -> &V {
        &self.shared.inner
    }

    /// Forgets the cached outcomes of `credential`'s secret, in every
    /// carrier (whichever carrier `credential` came in), so the next request
    /// that presents it asks the backend. Call it when you revoke a
    /// credential; see [Revoking](Self#revoking).
    pub fn invalidate(&self, credential: &Credential) {
        self.invalidate_digest(&KeyDigest::of(credential.secret()));
    }

    /// Like [`invalidate`](Self::invalidate), for a secret known only by its
    /// digest: a stored API key ([`ApiKeys::revoke`](crate::validate::ApiKeys::revoke)
    /// takes the same digest), or a digest the backend put into the identity.
    pub fn invalidate_digest(&self, digest: &KeyDigest) {
        let mut state = self.shared.lock();
        self.shared.record(&mut state, Target::Secret(*digest));
        // New requests must not join a call that started before.
        state.in_flight.retain(|(secret, _), _| secret != digest);
        self.shared.cache.invalidate(digest);
    }

    /// Forgets the cached outcomes of every credential whose identity has
    /// `subject`, in every carrier ("sign out everywhere"); see
    /// [Revoking](Self#revoking).
    ///
    /// The subject is read with the function given to
    /// [`subject`](super::CachingValidatorBuilder::subject). Without one,
    /// this forgets every outcome, as
    /// [`invalidate_all`](Self::invalidate_all) does (and logs a warning
    /// once): forgetting too much only costs backend calls, forgetting too
    /// little would keep a signed-out subject signed in.
    pub fn invalidate_subject(&self, subject: &str) {
        if self.shared.subject.is_none() {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "invalidate_subject on a cache without a subject function forgets \
                     every outcome; configure CachingValidatorBuilder::subject"
                );
            }
            return self.invalidate_all();
        }
        let mut state = self.shared.lock();
        let generation = self
            .shared
            .record(&mut state, Target::Subject(subject.into()));
        state.invalidations.mark(subject, generation);
    }

    /// Forgets every cached outcome.
    pub fn invalidate_all(&self) {
        let mut state = self.shared.lock();
        let generation = self.shared.record(&mut state, Target::All);
        self.shared.cleared.store(generation, Ordering::SeqCst);
        state.in_flight.clear();
        self.shared.cache.invalidate_all();
    }

    /// The number of secrets with cached outcomes (approximate while moka
    /// has pending maintenance work).
    pub fn entry_count(&self) -> u64 {
        self.shared.cache.run_pending_tasks();
        self.shared.cache.entry_count()
    }
}

impl<V: Validator> Shared<V> {
    fn lock(&self) -> MutexGuard<'_, State<V::Identity>> {
        // Every critical section leaves the state consistent after each
        // single map operation, and calls no user code, so a poisoned lock
        // is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Numbers and remembers one invalidation; returns its generation.
    fn record(&self, state: &mut State<V::Identity>, target: Target) -> u64 {
        state.invalidations.push(target);
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn subject_of<'a>(&self, outcome: &'a Outcome<V::Identity>) -> Option<&'a str> {
        let subject = self.subject?;
        subject(outcome.as_ref().ok()?)
    }

    fn cached(
        &self,
        digest: &KeyDigest,
        source: &CredentialSource,
    ) -> Option<Outcome<V::Identity>> {
        let slot = self.cache.get(digest)?;
        entry::lookup(
            &slot,
            source,
            Instant::now(),
            self.cleared.load(Ordering::SeqCst),
        )
    }

    /// Whether an invalidation made after `settled`'s call started reaches
    /// it, so it must not be answered.
    fn invalidated(&self, digest: &KeyDigest, settled: &Settled<V::Identity>) -> bool {
        if self.generation.load(Ordering::SeqCst) == settled.started {
            return false;
        }
        let subject = self.subject_of(&settled.outcome);
        let state = self.lock();
        let current = self.generation.load(Ordering::SeqCst);
        state
            .invalidations
            .reach(settled.started, current, digest, subject)
    }

    /// When an outcome obtained now stops being served, if it is cached at all.
    fn deadline(&self, outcome: &Outcome<V::Identity>, now: Instant) -> Option<Instant> {
        let deadline = match outcome {
            Ok(identity) => {
                let deadline = deadline_after(now, self.ttl);
                match (self.expiry)(identity) {
                    Some(expiry) => deadline.min(expiry),
                    None => deadline,
                }
            }
            // B2: an unavailable backend says nothing about the credential.
            Err(e) if e.kind() == ValidationErrorKind::Unavailable => return None,
            Err(_) => deadline_after(now, self.negative_ttl),
        };
        (deadline > now).then_some(deadline)
    }

    /// Asks the backend (one flight's call) and stores the outcome unless an
    /// invalidation made meanwhile reaches it.
    async fn ask(
        &self,
        credential: &Credential,
        key: &FlightKey,
        flight: &Flight<V::Identity>,
    ) -> Settled<V::Identity> {
        // Read before anything else: whatever happens from now on is
        // "after the call started".
        let started = self.generation.load(Ordering::SeqCst);
        // A call that finished between our cache check and joining the
        // flight may have left an entry behind.
        if let Some(outcome) = self.cached(&key.0, &key.1) {
            return Settled { outcome, started };
        }
        tracing::trace!(%credential, "validation cache miss, asking the backend");
        let outcome = self.inner.validate(credential).await;
        let now = Instant::now();
        let deadline = self.deadline(&outcome, now);
        let subject = self.subject_of(&outcome);

        let mut state = self.lock();
        // Checked and stored under the lock that invalidations hold: an
        // invalidation either comes first (and is seen here) or removes
        // what is stored.
        let current = self.generation.load(Ordering::SeqCst);
        let reached = state.invalidations.reach(started, current, &key.0, subject);
        if let (Some(deadline), false) = (deadline, reached) {
            let carrier = Carrier {
                source: key.1.clone(),
                outcome: outcome.clone(),
                deadline,
                started,
                subject: subject.map(|subject| state.invalidations.cell(subject)),
            };
            let cleared = self.cleared.load(Ordering::SeqCst);
            let slot = entry::with(self.cache.get(&key.0).as_ref(), carrier, now, cleared);
            self.cache.insert(key.0, slot);
        }
        // Requests arriving from now on must not join this flight: an
        // outcome that was not stored is for the requests already waiting.
        if state
            .in_flight
            .get(key)
            .is_some_and(|current| Arc::ptr_eq(current, flight))
        {
            state.in_flight.remove(key);
        }
        Settled { outcome, started }
    }

    async fn validate(&self, credential: &Credential) -> Outcome<V::Identity> {
        let digest = KeyDigest::of(credential.secret());
        let source = credential.source();
        for _ in 0..ATTEMPTS {
            if let Some(outcome) = self.cached(&digest, source) {
                tracing::trace!(%credential, ok = outcome.is_ok(), "validation cache hit");
                return outcome;
            }
            let key = (digest, source.clone());
            let flight = self
                .lock()
                .in_flight
                .entry(key.clone())
                .or_default()
                .clone();
            let settled = {
                let _guard = FlightGuard {
                    shared: self,
                    key: &key,
                    flight: &flight,
                };
                flight
                    .get_or_init(|| self.ask(credential, &key, &flight))
                    .await
                    .clone()
            };
            // B12: an outcome from before an invalidation answers nobody,
            // not even the requests that were waiting for it.
            if !self.invalidated(&digest, &settled) {
                return settled.outcome;
            }
            tracing::debug!(%credential, "credential invalidated while validating, asking again");
        }
        Err(ValidationError::unavailable()
            .with_reason("the credential was invalidated during every validation attempt"))
    }
}

/// Removes a flight from the in-flight table when its last participant is
/// dropped before the backend answered, so the table never outgrows what is
/// in flight. (A finished flight removes itself.)
struct FlightGuard<'a, V: Validator> {
    shared: &'a Shared<V>,
    key: &'a FlightKey,
    flight: &'a Flight<V::Identity>,
}

impl<V: Validator> Drop for FlightGuard<'_, V> {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        // Participants clone the flight only under this lock, so with the
        // lock held a count of 2 (table + us) means nobody else has it.
        if let Some(current) = state.in_flight.get(self.key)
            && Arc::ptr_eq(current, self.flight)
            && Arc::strong_count(self.flight) <= 2
        {
            state.in_flight.remove(self.key);
        }
    }
}

impl<V: Validator> Validator for CachingValidator<V> {
    type Identity = V::Identity;

    fn validate(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<Self::Identity, ValidationError>> + Send {
        self.shared.validate(credential)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // L1: what the cache stores as keys never contains the secret.
    #[tokio::test]
    async fn cached_keys_never_contain_the_secret() {
        let canary = "canary-7d1f0c9e-secret";
        let cached = CachingValidator::builder_with_expiry(
            |_: Credential| async { Ok::<_, ValidationError>("id") },
            |_| None,
        )
        .build()
        .unwrap();
        cached
            .validate(&Credential::new(canary, CredentialSource::Bearer))
            .await
            .unwrap();
        cached.shared.cache.run_pending_tasks();
        let keys: Vec<KeyDigest> = cached.shared.cache.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [KeyDigest::of(canary)]);
        for key in keys {
            let bytes = key.as_bytes();
            assert!(!bytes.windows(canary.len()).any(|w| w == canary.as_bytes()));
            assert!(!format!("{key:?}").contains(canary));
        }
    }

    // B12: one entry per secret holds the outcome of each carrier.
    #[tokio::test]
    async fn carriers_of_one_secret_share_one_entry_and_keep_their_own_outcomes() {
        let cached = CachingValidator::builder_with_expiry(
            |credential: Credential| async move {
                match credential.source() {
                    CredentialSource::Bearer => Ok::<_, ValidationError>("from a header"),
                    _ => Err(ValidationError::invalid()),
                }
            },
            |_| None,
        )
        .build()
        .unwrap();
        let bearer = Credential::new("s", CredentialSource::Bearer);
        let cookie = Credential::new("s", CredentialSource::Cookie("sid".into()));
        for _ in 0..2 {
            assert_eq!(cached.validate(&bearer).await.unwrap(), "from a header");
            assert!(cached.validate(&cookie).await.is_err());
        }
        assert_eq!(cached.entry_count(), 1);
        let slot = cached.shared.cache.get(&KeyDigest::of("s")).unwrap();
        assert_eq!(slot.len(), 2);
    }
}
