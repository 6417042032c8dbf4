//! The caching validator: cached outcomes, single flight, invalidation.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::OnceCell, time::Instant};

use super::{
    entry::{Outcome, Settled, Slot},
    honour::Honour,
    invalidation::{Invalidations, Target},
};
use crate::{Credential, CredentialSource, ValidationError, Validator, credential::KeyDigest};

/// Where single-flight backend calls are found: the secret and its carrier.
pub(super) type FlightKey = (KeyDigest, CredentialSource);
pub(super) type Flight<I> = Arc<OnceCell<Settled<I>>>;

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
    pub(super) shared: Arc<Shared<V>>,
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
    /// The revocation list the cache honours, if any.
    pub(super) revocations: Option<Honour<V::Identity>>,
}

/// What changes only under the lock: storing an outcome, joining or ending
/// a flight, invalidating.
pub(super) struct State<I> {
    pub(super) in_flight: HashMap<FlightKey, Flight<I>>,
    pub(super) invalidations: Invalidations,
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

    /// Registers the cache with the list it honours, if any.
    pub(super) fn listen(self) -> Self {
        if let Some(honour) = &self.shared.revocations {
            let weak: Weak<Shared<V>> = Arc::downgrade(&self.shared);
            honour.list.listen(weak);
        }
        self
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
        self.shared.invalidate_digest(digest);
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
        self.shared.invalidate_subject(subject);
    }

    /// Forgets every cached outcome.
    pub fn invalidate_all(&self) {
        self.shared.invalidate_all();
    }

    /// The number of secrets with cached outcomes (approximate while moka
    /// has pending maintenance work).
    pub fn entry_count(&self) -> u64 {
        self.shared.cache.run_pending_tasks();
        self.shared.cache.entry_count()
    }
}

impl<V: Validator> Shared<V> {
    /// An accepted credential the list the cache honours revokes (or cannot
    /// vouch for) is refused; any other outcome stands.
    fn honour(&self, digest: &KeyDigest, outcome: Outcome<V::Identity>) -> Outcome<V::Identity> {
        match &self.revocations {
            Some(honour) => honour.check(digest, outcome),
            None => outcome,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State<V::Identity>> {
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

    pub(super) fn invalidate_digest(&self, digest: &KeyDigest) {
        let mut state = self.lock();
        self.record(&mut state, Target::Secret(*digest));
        // New requests must not join a call that started before.
        state.in_flight.retain(|(secret, _), _| secret != digest);
        self.cache.invalidate(digest);
    }

    pub(super) fn invalidate_subject(&self, subject: &str) {
        if self.subject.is_none() {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "invalidate_subject on a cache without a subject function forgets \
                     every outcome; configure CachingValidatorBuilder::subject"
                );
            }
            return self.invalidate_all();
        }
        let mut state = self.lock();
        let generation = self.record(&mut state, Target::Subject(subject.into()));
        state.invalidations.mark(subject, generation);
    }

    pub(super) fn invalidate_all(&self) {
        let mut state = self.lock();
        let generation = self.record(&mut state, Target::All);
        self.cleared.store(generation, Ordering::SeqCst);
        state.in_flight.clear();
        self.cache.invalidate_all();
    }
}

impl<V: Validator> Validator for CachingValidator<V> {
    type Identity = V::Identity;

    fn validate(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<Self::Identity, ValidationError>> + Send {
        let shared = &*self.shared;
        async move {
            // One digest for the cache and the revocation list.
            let digest = KeyDigest::of(credential.secret());
            let outcome = shared.validate(credential, digest).await;
            shared.honour(&digest, outcome)
        }
    }

    /// A hit answers at once; a miss asks [`validate`](Validator::validate).
    fn validate_now(
        &self,
        credential: &Credential,
    ) -> Option<Result<Self::Identity, ValidationError>> {
        let shared = &*self.shared;
        let digest = KeyDigest::of(credential.secret());
        let outcome = shared.cached_now(credential, &digest)?;
        Some(shared.honour(&digest, outcome))
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
