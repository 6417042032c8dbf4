//! A bounded cache in front of any validator.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use sha2::{Digest as _, Sha256};
use tokio::{sync::OnceCell, time::Instant};

use super::identity::{ExpiresAt, deadline_after};
use crate::{
    ConfigError, Credential, CredentialSource, ValidationError, Validator,
    validate::ValidationErrorKind,
};

/// The longest time moka keeps an entry before reclaiming its memory.
const RECLAIM_LIMIT: Duration = Duration::from_secs(365 * 86_400);

type Key = [u8; 32];
type Outcome<I> = Result<I, ValidationError>;
type Flight<I> = Arc<OnceCell<Outcome<I>>>;

#[derive(Clone)]
struct Entry<I> {
    outcome: Outcome<I>,
    deadline: Instant,
}

/// A bounded cache in front of any validator.
///
/// [`CachingValidator`] remembers outcomes of a slower validator (a database
/// lookup, a token-introspection call) for a while, keyed by a SHA-256
/// digest of the credential, and makes concurrent requests that present the
/// same credential share one backend call.
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
/// - **Keys.** The cache key is the SHA-256 digest of the credential's
///   source and secret. The secret itself is never stored, logged or put in
///   a key.
/// - **Positive entries** are served until the configured
///   [`ttl`](CachingValidatorBuilder::ttl) has passed, and never past the
///   identity's own expiry ([`ExpiresAt`]); an identity that has already
///   expired is not cached.
/// - **Negative entries** (invalid, revoked, expired, insufficient scope) are
///   served for [`negative_ttl`](CachingValidatorBuilder::negative_ttl)
///   (default 2 seconds; zero turns negative caching off).
/// - **Unavailable is never cached**: the next request asks the backend
///   again.
/// - **Single flight.** Concurrent requests that miss on the same credential
///   make one backend call and all receive its outcome. If the request that
///   makes the call is dropped, a waiting one takes over.
/// - **Revocation.** After [`invalidate`](CachingValidator::invalidate) (or
///   [`invalidate_all`](CachingValidator::invalidate_all)) returns, the next
///   request for that credential goes to the backend, and an outcome of a
///   backend call that started before it is not cached.
/// - **Time.** Deadlines are checked against tokio's clock. moka's own expiry
///   (real time) only reclaims memory.
/// - **Bounded.** At most [`max_capacity`](CachingValidatorBuilder::max_capacity)
///   entries; moka evicts the rest.
///
/// Cheap to clone: clones share the cache.
pub struct CachingValidator<V: Validator> {
    shared: Arc<Shared<V>>,
}

struct Shared<V: Validator> {
    inner: V,
    cache: moka::sync::Cache<Key, Entry<V::Identity>>,
    in_flight: Mutex<HashMap<Key, Flight<V::Identity>>>,
    generation: AtomicU64,
    ttl: Duration,
    negative_ttl: Duration,
    expiry: fn(&V::Identity) -> Option<Instant>,
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
            .finish_non_exhaustive()
    }
}

impl<V> CachingValidator<V>
where
    V: Validator,
    V::Identity: ExpiresAt,
{
    /// Starts building a cache in front of `inner`, whose identities know
    /// their own expiry.
    pub fn builder(inner: V) -> CachingValidatorBuilder<V> {
        Self::builder_with_expiry(inner, |identity| identity.expires_at())
    }
}

impl<V: Validator> CachingValidator<V> {
    /// Starts building a cache in front of `inner`, reading each identity's
    /// expiry with `expiry` (return `None` for identities that do not expire
    /// on their own).
    pub fn builder_with_expiry(
        inner: V,
        expiry: fn(&V::Identity) -> Option<Instant>,
    ) -> CachingValidatorBuilder<V> {
        CachingValidatorBuilder {
            inner,
            expiry,
            max_capacity: 10_000,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(2),
        }
    }

    /// The wrapped validator.
    pub fn get_ref(&self) -> &V {
        &self.shared.inner
    }

    /// Forgets the cached outcome for `credential`, so the next request
    /// that presents it goes to the backend. Call it when you revoke a
    /// credential.
    pub fn invalidate(&self, credential: &Credential) {
        let key = cache_key(credential);
        // Bump first: a backend call already in flight re-checks the
        // generation after inserting and removes its own entry.
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.lock_in_flight().remove(&key);
        self.shared.cache.invalidate(&key);
    }

    /// Forgets every cached outcome.
    pub fn invalidate_all(&self) {
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.lock_in_flight().clear();
        self.shared.cache.invalidate_all();
    }

    /// The number of cached outcomes (approximate while moka has pending
    /// maintenance work).
    pub fn entry_count(&self) -> u64 {
        self.shared.cache.run_pending_tasks();
        self.shared.cache.entry_count()
    }
}

impl<V: Validator> Shared<V> {
    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Flight<V::Identity>>> {
        // Every critical section is a single map operation, so a poisoned
        // map is still consistent.
        self.in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, key: &Key) -> Option<Outcome<V::Identity>> {
        let entry = self.cache.get(key)?;
        if Instant::now() < entry.deadline {
            Some(entry.outcome)
        } else {
            None
        }
    }

    fn store(&self, key: Key, outcome: &Outcome<V::Identity>, generation: u64) {
        let now = Instant::now();
        let deadline = match outcome {
            Ok(identity) => {
                let deadline = deadline_after(now, self.ttl);
                match (self.expiry)(identity) {
                    Some(expiry) => deadline.min(expiry),
                    None => deadline,
                }
            }
            // B2: an unavailable backend says nothing about the credential.
            Err(e) if e.kind() == ValidationErrorKind::Unavailable => return,
            Err(_) => deadline_after(now, self.negative_ttl),
        };
        if deadline <= now {
            return;
        }
        self.cache.insert(
            key,
            Entry {
                outcome: outcome.clone(),
                deadline,
            },
        );
        if self.generation.load(Ordering::SeqCst) != generation {
            // Invalidated while the backend call was running.
            self.cache.invalidate(&key);
        }
    }

    async fn validate(&self, credential: &Credential) -> Outcome<V::Identity> {
        let key = cache_key(credential);
        if let Some(outcome) = self.cached(&key) {
            tracing::trace!(%credential, ok = outcome.is_ok(), "validation cache hit");
            return outcome;
        }
        let flight = {
            let mut in_flight = self.lock_in_flight();
            in_flight.entry(key).or_default().clone()
        };
        let _guard = FlightGuard {
            shared: self,
            key,
            flight: &flight,
        };
        let outcome = flight
            .get_or_init(|| async {
                // A call that finished between our cache check and joining
                // the flight may have left an entry behind.
                if let Some(outcome) = self.cached(&key) {
                    return outcome;
                }
                let generation = self.generation.load(Ordering::SeqCst);
                tracing::trace!(%credential, "validation cache miss, asking the backend");
                let outcome = self.inner.validate(credential).await;
                self.store(key, &outcome, generation);
                // Requests arriving from now on must not join this flight:
                // an outcome that was not stored (unavailable, B2) is for the
                // requests that were already waiting only.
                let mut in_flight = self.lock_in_flight();
                if in_flight.get(&key).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
                    in_flight.remove(&key);
                }
                outcome
            })
            .await;
        outcome.clone()
    }
}

/// Removes a flight from the in-flight table when its last participant is
/// dropped before the backend answered, so the table never outgrows what is
/// in flight. (A finished flight removes itself.)
struct FlightGuard<'a, V: Validator> {
    shared: &'a Shared<V>,
    key: Key,
    flight: &'a Flight<V::Identity>,
}

impl<V: Validator> Drop for FlightGuard<'_, V> {
    fn drop(&mut self) {
        let mut in_flight = self.shared.lock_in_flight();
        // Participants clone the flight only under this lock, so with the
        // lock held a count of 2 (table + us) means nobody else has it.
        if let Some(current) = in_flight.get(&self.key)
            && Arc::ptr_eq(current, self.flight)
            && Arc::strong_count(self.flight) <= 2
        {
            in_flight.remove(&self.key);
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

fn cache_key(credential: &Credential) -> Key {
    let mut hasher = Sha256::new();
    // The source is part of the key: a validator may treat the same secret
    // differently depending on where it was found.
    match credential.source() {
        CredentialSource::Bearer => hasher.update(b"b\0"),
        CredentialSource::Cookie(name) => {
            hasher.update(b"c\0");
            hasher.update(name.as_bytes());
        }
        CredentialSource::Header(name) => {
            hasher.update(b"h\0");
            hasher.update(name.as_str().as_bytes());
        }
        CredentialSource::Query(name) => {
            hasher.update(b"q\0");
            hasher.update(name.as_bytes());
        }
        CredentialSource::WebSocketProtocol => hasher.update(b"w\0"),
    }
    hasher.update(b"\0");
    hasher.update(credential.secret().as_bytes());
    hasher.finalize().into()
}

/// Builds a [`CachingValidator`].
#[must_use]
pub struct CachingValidatorBuilder<V: Validator> {
    inner: V,
    expiry: fn(&V::Identity) -> Option<Instant>,
    max_capacity: u64,
    ttl: Duration,
    negative_ttl: Duration,
}

impl<V: Validator> fmt::Debug for CachingValidatorBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingValidatorBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .finish_non_exhaustive()
    }
}

impl<V: Validator> CachingValidatorBuilder<V> {
    /// The most outcomes kept (default 10,000).
    pub fn max_capacity(mut self, max_capacity: u64) -> Self {
        self.max_capacity = max_capacity;
        self
    }

    /// How long an accepted credential is served from the cache (default 60
    /// seconds), capped by the identity's own expiry. This is also how long
    /// a revoked credential stays accepted if you do not
    /// [`invalidate`](CachingValidator::invalidate) it.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a rejected credential is answered from the cache (default 2
    /// seconds; `Duration::ZERO` turns negative caching off). Keep it short:
    /// a key created just after being tried stays rejected this long.
    pub fn negative_ttl(mut self, negative_ttl: Duration) -> Self {
        self.negative_ttl = negative_ttl;
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] when `max_capacity` or `ttl` is zero.
    pub fn build(self) -> Result<CachingValidator<V>, ConfigError> {
        if self.max_capacity == 0 {
            return Err(ConfigError::out_of_range(
                "max_capacity",
                "must be at least 1",
            ));
        }
        if self.ttl.is_zero() {
            return Err(ConfigError::out_of_range("ttl", "must be longer than zero"));
        }
        // moka's timer runs on real time and only reclaims memory; the
        // outcome deadlines are checked on tokio time.
        // moka refuses a time to live over 1,000 years; a year is plenty to
        // reclaim memory (capacity bounds it anyway).
        let reclaim_after = self.ttl.max(self.negative_ttl).min(RECLAIM_LIMIT);
        let cache = moka::sync::Cache::builder()
            .max_capacity(self.max_capacity)
            .time_to_live(reclaim_after)
            .build();
        Ok(CachingValidator {
            shared: Arc::new(Shared {
                inner: self.inner,
                cache,
                in_flight: Mutex::new(HashMap::new()),
                generation: AtomicU64::new(0),
                ttl: self.ttl,
                negative_ttl: self.negative_ttl,
                expiry: self.expiry,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_key_depends_on_source_and_secret_and_hides_the_secret() {
        let bearer = Credential::new("canary-secret", CredentialSource::Bearer);
        let cookie = Credential::new("canary-secret", CredentialSource::Cookie("sid".into()));
        let other = Credential::new("canary-secreT", CredentialSource::Bearer);
        assert_ne!(cache_key(&bearer), cache_key(&cookie));
        assert_ne!(cache_key(&bearer), cache_key(&other));
        assert_eq!(cache_key(&bearer), cache_key(&bearer.clone()));
    }

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
        let keys: Vec<Key> = cached.shared.cache.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys.len(), 1);
        for key in keys {
            assert!(!key.windows(canary.len()).any(|w| w == canary.as_bytes()));
            assert!(!format!("{key:?}").contains(canary));
        }
    }
}
