//! [`Revocations`]: the list every validator and every lease consults.

use std::{
    fmt,
    hash::{BuildHasher, Hasher, RandomState},
    sync::{
        Arc, Mutex, OnceLock, PoisonError, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::{sync::Notify, time::Instant};

use super::{
    Revocable, Revoked,
    revocable::Facts,
    table::{Entry, Table},
};
use crate::{ConfigError, Credential, Fingerprint, ValidationError, validate::KeyDigest};

/// How long a client is told to wait while the list is out of sync.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What one revocation reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One secret, in every carrier, by its digest.
    Secret(KeyDigest),
    /// A token or session id (`jti`, `sid`).
    Id(Box<str>),
    /// Every credential of a subject issued at or before the cutoff.
    Subject(Box<str>),
}

/// One revocation, as it is applied on every replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Revocation {
    pub(crate) target: Target,
    /// For a subject: credentials issued at or before this are revoked.
    pub(crate) cutoff: Option<SystemTime>,
    /// When what it revokes would have expired (on tokio's clock).
    pub(crate) until: Instant,
}

/// Told of every revocation applied to a list, and of every catch-up with
/// the shared store: the caches and key tables that hold what a revocation
/// may reach.
pub(crate) trait Listener: Send + Sync {
    /// A revocation was applied (made here, or received from another
    /// replica).
    fn revoked(&self, revocation: &Revocation);

    /// The list caught up with the shared store after being out of sync:
    /// whatever was cached meanwhile may predate revocations it missed.
    fn resynced(&self) {}
}

/// Where revocations are stored for the other replicas (Redis).
pub(crate) trait Remote: Send + Sync {
    /// Stores and publishes a revocation already applied here.
    fn publish(&self, revocation: &Revocation) -> Revoked;

    /// Revocations waiting to be stored.
    fn backlog(&self) -> u64;
}

/// The identity facts of a lease, hashed once so that they can be checked
/// again later without the identity.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Hashed {
    pub(crate) subject: Option<u64>,
    pub(crate) ids: [Option<u64>; 2],
    pub(crate) issued_at: Option<SystemTime>,
}

/// Credentials that are no longer accepted, though their signature or
/// digest still matches: revoked by secret, by token or session id, or by
/// subject with a cutoff ("sign out everywhere").
///
/// One list serves every validator that honours it ([`CachingValidator`],
/// [`ApiKeys`], `JwtValidator` (feature `jwt`), or yours through
/// [`check`](Self::check))
/// and every [`Lease`](crate::lease::Lease) (open streams end when their
/// credential is revoked). With `Revocations::with_redis` (feature
/// `redis`) revocations reach every replica.
///
/// [`CachingValidator`]: crate::validate::CachingValidator
/// [`ApiKeys`]: crate::validate::ApiKeys
///
/// # Example
///
/// ```
/// use portcullis::{Credential, CredentialSource, ValidationErrorKind, Validator};
/// use portcullis::revoke::{Revocable, Revocations};
/// use portcullis::validate::{ApiKeyIdentity, ApiKeys, GeneratedKey};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let revocations = Revocations::new();
/// let key = GeneratedKey::new("acme_")?;
/// let keys = ApiKeys::builder("acme_")
///     .key(key.digest(), ApiKeyIdentity::new("ci-bot"))
///     .revocations(&revocations)
///     .build()?;
/// let presented = Credential::new(key.secret(), CredentialSource::Bearer);
/// assert!(keys.validate(&presented).await.is_ok());
///
/// // The key leaked: revoke it, whatever carrier it comes in.
/// revocations.revoke_secret(key.secret(), None).await?;
/// let refused = keys.validate(&presented).await.unwrap_err();
/// assert_eq!(refused.kind(), ValidationErrorKind::Revoked);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
///
/// # Guarantees
///
/// - **At once, here.** When a `revoke_*` method returns, every check made
///   on this replica from then on refuses what it revoked, and the open
///   streams it reaches are told to end. The caches and key tables that
///   listen to the list have forgotten it.
/// - **Everywhere, with Redis.** The [`Revoked`] it returns resolves once
///   the shared store holds it; replicas in sync apply it within a second.
///   A replica out of sync with the shared store (disconnected, or catching
///   up after a reconnect) answers [`unavailable`](ValidationError::unavailable)
///   to every check, never "valid", logs it, and reports it in
///   [`stats`](Self::stats), until it has caught up.
/// - **Bounded.** At most [`capacity`](RevocationsBuilder::capacity)
///   revocations are held (default 100,000). Each is held until what it
///   revokes would have expired: the credential's expiry, given when it is
///   revoked, and at most [`max_lifetime`](RevocationsBuilder::max_lifetime)
///   (default 24 hours), which is also how long a subject's cutoff lasts.
///   When the table is full, ended revocations make room first, then the
///   one that ends soonest goes (counted in [`Stats::evictions`], logged
///   as a warning): size the capacity above the revocations alive at once.
/// - **Time.** Ends are on tokio's clock; a subject's cutoff is compared
///   with the credential's issue time, on the wall clock (JWT `iat`).
///
/// # Security
///
/// - A revocation lasts at most `max_lifetime`. Credentials that live
///   longer must also be removed where they are issued:
///   [`ApiKeys`] removes a revoked key from its table for good, and a
///   `JwtValidator` that honours a list refuses tokens whose `exp` is
///   further away than `max_lifetime`.
/// - Secrets are held by their SHA-256 digest ([`KeyDigest`]), never in
///   clear, and logged only by a keyed fingerprint.
///
/// Cheap to clone: clones share the list.
#[derive(Clone)]
pub struct Revocations {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    table: Table,
    /// One key per kind of target, so that a secret, an id and a subject
    /// never share a hash by construction.
    hashers: [RandomState; 3],
    /// Bumped by every revocation applied and every change of sync: a lease
    /// that saw the same generation need not look again.
    generation: AtomicU64,
    /// Woken with every generation: the leases of open streams wait on it.
    changed: Arc<Notify>,
    listeners: Mutex<Vec<Weak<dyn Listener>>>,
    max_lifetime: Duration,
    in_sync: AtomicBool,
    /// Whether being out of sync was logged since the list was last in
    /// sync (once per outage, and once before the first catch-up).
    complained: AtomicBool,
    synced: Notify,
    catch_ups: AtomicU64,
    applied: AtomicU64,
    pub(crate) remote: OnceLock<Box<dyn Remote>>,
}

/// Counts since the list was created, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Revocations held that are still in effect.
    pub entries: u64,
    /// Revocations applied: made here, received from other replicas, and
    /// read again while catching up.
    pub applied: u64,
    /// Revocations still in effect that were dropped because the table
    /// was full.
    pub evictions: u64,
    /// Whether the list is in sync with the shared store (always, without
    /// one). Out of sync, every check answers unavailable.
    pub in_sync: bool,
    /// Times the list caught up with the shared store (the first time
    /// included).
    pub catch_ups: u64,
    /// Revocations made here that the shared store has not stored yet.
    pub backlog: u64,
}

impl Default for Revocations {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Revocations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Revocations")
            .field("entries", &self.inner.table.held())
            .field("max_lifetime", &self.inner.max_lifetime)
            .field("in_sync", &self.is_in_sync())
            .field("shared", &self.inner.remote.get().is_some())
            .finish()
    }
}

impl Revocations {
    /// An in-memory list with the default capacity (100,000) and maximum
    /// lifetime (24 hours).
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default capacity and lifetime are valid")
    }

    /// Starts configuring a list.
    pub fn builder() -> RevocationsBuilder {
        RevocationsBuilder {
            capacity: 100_000,
            max_lifetime: Duration::from_secs(24 * 3600),
        }
    }

    /// Revokes a secret in every carrier it can arrive in (a header, a
    /// cookie, a query parameter…), until `until` (its expiry, on tokio's
    /// clock; `None` for "unknown": [`max_lifetime`](RevocationsBuilder::max_lifetime)).
    pub fn revoke_secret(&self, secret: &str, until: Option<Instant>) -> Revoked {
        self.revoke_digest(&KeyDigest::of(secret), until)
    }

    /// Like [`revoke_secret`](Self::revoke_secret), for a secret known only
    /// by its digest (a stored API key, a session token kept hashed).
    pub fn revoke_digest(&self, digest: &KeyDigest, until: Option<Instant>) -> Revoked {
        self.revoke(Target::Secret(*digest), None, until)
    }

    /// Revokes a token id (`jti`) or session id (`sid`): every credential
    /// whose identity has it as either is refused, until `until` (`None`:
    /// [`max_lifetime`](RevocationsBuilder::max_lifetime)).
    pub fn revoke_id(&self, id: &str, until: Option<Instant>) -> Revoked {
        self.revoke(Target::Id(id.into()), None, until)
    }

    /// Revokes every credential of `subject` issued until now ("sign out
    /// everywhere"), for [`max_lifetime`](RevocationsBuilder::max_lifetime).
    ///
    /// Credentials whose identity says it was issued later
    /// ([`Revocable::issued_at`]) are accepted. JWT `iat` has whole seconds:
    /// a token issued in the same second as the cutoff is revoked too.
    pub fn revoke_subject(&self, subject: &str) -> Revoked {
        self.revoke(
            Target::Subject(subject.into()),
            Some(SystemTime::now()),
            None,
        )
    }

    fn revoke(
        &self,
        target: Target,
        cutoff: Option<SystemTime>,
        until: Option<Instant>,
    ) -> Revoked {
        let now = Instant::now();
        let horizon = now.checked_add(self.inner.max_lifetime).unwrap_or(now);
        let until = until.map_or(horizon, |until| until.min(horizon));
        if until <= now {
            // What it would revoke has expired already.
            return Revoked::done();
        }
        let revocation = Revocation {
            target,
            cutoff,
            until,
        };
        self.inner.apply(&revocation);
        match self.inner.remote.get() {
            Some(remote) => remote.publish(&revocation),
            None => Revoked::done(),
        }
    }

    /// Checks an accepted credential and its identity against the list:
    /// for validators of your own.
    ///
    /// # Errors
    ///
    /// [`revoked`](ValidationError::revoked) when its secret, its token or
    /// session id, or its subject (issued at or before the cutoff) is
    /// revoked; [`unavailable`](ValidationError::unavailable) (with
    /// `Retry-After: 1`) while the list is out of sync with its shared
    /// store.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::{Credential, CredentialSource, ValidationError};
    /// use portcullis::revoke::{Revocable, Revocations};
    ///
    /// #[derive(Clone)]
    /// struct User(String);
    /// impl Revocable for User {
    ///     fn subject(&self) -> Option<&str> { Some(&self.0) }
    /// }
    ///
    /// let revocations = Revocations::new();
    /// let validate = {
    ///     let revocations = revocations.clone();
    ///     move |credential: Credential| {
    ///         let revocations = revocations.clone();
    ///         async move {
    ///             let user = User("alice".into()); // your lookup
    ///             revocations.check(&credential, &user)?;
    ///             Ok::<_, ValidationError>(user)
    ///         }
    ///     }
    /// };
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let token = Credential::new("t", CredentialSource::Bearer);
    /// assert!(validate(token.clone()).await.is_ok());
    /// let _ = revocations.revoke_subject("alice");
    /// assert!(validate(token).await.is_err());
    /// # });
    /// ```
    pub fn check<I: Revocable + ?Sized>(
        &self,
        credential: &Credential,
        identity: &I,
    ) -> Result<(), ValidationError> {
        self.inner
            .check(|| KeyDigest::of(credential.secret()), &Facts::of(identity))
    }

    /// Whether the list is in sync with its shared store (always true for
    /// an in-memory list).
    pub fn is_in_sync(&self) -> bool {
        self.inner.in_sync.load(Ordering::SeqCst)
    }

    /// Resolves once the list is in sync with its shared store (at once for
    /// an in-memory list): wait for it at start-up, before serving.
    pub async fn synced(&self) {
        loop {
            let notified = self.inner.synced.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_in_sync() {
                return;
            }
            notified.await;
        }
    }

    /// The longest a revocation is held.
    pub fn max_lifetime(&self) -> Duration {
        self.inner.max_lifetime
    }

    /// Counts and size. Walks the table: linear in the revocations held.
    pub fn stats(&self) -> Stats {
        let inner = &self.inner;
        Stats {
            entries: inner.table.live(Instant::now()),
            applied: inner.applied.load(Ordering::Relaxed),
            evictions: inner.table.evictions(),
            in_sync: self.is_in_sync(),
            catch_ups: inner.catch_ups.load(Ordering::Relaxed),
            backlog: inner.remote.get().map_or(0, |remote| remote.backlog()),
        }
    }

    /// Tells `listener` of every revocation from now on, as long as it
    /// lives.
    pub(crate) fn listen(&self, listener: Weak<dyn Listener>) {
        let mut listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listener| listener.strong_count() > 0);
        listeners.push(listener);
    }
}

impl Inner {
    /// One pass of the kind's keyed SipHash over `bytes` (on every request
    /// with leases on: kept to the minimum).
    fn hash(&self, kind: usize, bytes: &[u8]) -> u64 {
        let mut hasher = self.hashers[kind].build_hasher();
        hasher.write(bytes);
        hasher.finish()
    }

    pub(crate) fn hash_secret(&self, digest: &KeyDigest) -> u64 {
        self.hash(SECRET, digest.as_bytes())
    }

    fn hash_target(&self, target: &Target) -> u64 {
        match target {
            Target::Secret(digest) => self.hash_secret(digest),
            Target::Id(id) => self.hash(ID, id.as_bytes()),
            Target::Subject(subject) => self.hash(SUBJECT, subject.as_bytes()),
        }
    }

    /// The facts of an identity, hashed for later checks.
    pub(crate) fn hash_facts(&self, facts: &Facts<'_>) -> Hashed {
        Hashed {
            subject: facts.subject.map(|s| self.hash(SUBJECT, s.as_bytes())),
            ids: facts
                .ids
                .map(|id| id.map(|id| self.hash(ID, id.as_bytes()))),
            issued_at: facts.issued_at,
        }
    }

    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // remote revocations are capped by it
    pub(crate) fn max_lifetime(&self) -> Duration {
        self.max_lifetime
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub(crate) fn changed(&self) -> &Arc<Notify> {
        &self.changed
    }

    pub(crate) fn is_in_sync(&self) -> bool {
        self.in_sync.load(Ordering::SeqCst)
    }

    /// Whether nothing is revoked at all: the request path's first check.
    pub(crate) fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Applies `revocation` here: the table first, then the open streams and
    /// the listeners.
    pub(crate) fn apply(&self, revocation: &Revocation) {
        let now = Instant::now();
        let hash = self.hash_target(&revocation.target);
        let entry = Entry {
            until: revocation.until,
            cutoff: revocation.cutoff,
        };
        let inserted = self.table.insert(hash, entry, now);
        if inserted.evicted_live {
            tracing::warn!(
                target: "portcullis::revoke",
                capacity = self.table.held(),
                "the revocation table is full: the revocation that ends soonest was dropped \
                 to make room; raise RevocationsBuilder::capacity"
            );
        }
        self.applied.fetch_add(1, Ordering::Relaxed);
        let for_secs = revocation.until.saturating_duration_since(now).as_secs();
        match &revocation.target {
            Target::Secret(digest) => {
                let fingerprint = Fingerprint::of(digest.as_bytes());
                tracing::info!(target: "portcullis::revoke", %fingerprint, for_secs, "secret revoked");
            }
            Target::Id(id) => {
                tracing::info!(target: "portcullis::revoke", id = %id, for_secs, "token or session id revoked");
            }
            Target::Subject(subject) => {
                tracing::info!(target: "portcullis::revoke", subject = %subject, for_secs, "credentials of a subject revoked");
            }
        }
        self.bump();
        for listener in self.listeners() {
            listener.revoked(revocation);
        }
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    fn listeners(&self) -> Vec<Arc<dyn Listener>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The list lost its shared store: every check answers unavailable
    /// until [`caught_up`](Self::caught_up), and open streams end.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only a shared store is lost
    pub(crate) fn lost(&self, why: &str) {
        let was_in_sync = self.in_sync.swap(false, Ordering::SeqCst);
        if !self.complained.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                target: "portcullis::revoke",
                why,
                "revocations are out of sync with redis: every credential is answered \
                 unavailable until they have caught up"
            );
        }
        if was_in_sync {
            self.bump();
        }
    }

    /// The list has applied every revocation the shared store holds.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only a shared store is caught up with
    pub(crate) fn caught_up(&self, revocations: usize) {
        // Caches forget what they learned while out of sync, before anything
        // is answered from them again.
        for listener in self.listeners() {
            listener.resynced();
        }
        let catch_ups = self.catch_ups.fetch_add(1, Ordering::Relaxed) + 1;
        self.complained.store(false, Ordering::SeqCst);
        self.in_sync.store(true, Ordering::SeqCst);
        self.synced.notify_waiters();
        self.bump();
        tracing::info!(
            target: "portcullis::revoke",
            revocations,
            catch_ups,
            "revocations caught up with redis"
        );
    }

    /// The checks of a validator: `digest` is computed only when something
    /// is revoked.
    pub(crate) fn check(
        &self,
        digest: impl FnOnce() -> KeyDigest,
        facts: &Facts<'_>,
    ) -> Result<(), ValidationError> {
        if !self.is_in_sync() {
            return Err(unavailable());
        }
        if self.is_empty() {
            return Ok(());
        }
        let hashed = self.hash_facts(facts);
        match self.revoked(|| self.hash_secret(&digest()), &hashed) {
            Some(reason) => Err(ValidationError::revoked().with_reason(reason)),
            None => Ok(()),
        }
    }

    /// Why the credential with this secret and these facts is revoked, if
    /// it is.
    pub(crate) fn revoked(
        &self,
        secret: impl FnOnce() -> u64,
        facts: &Hashed,
    ) -> Option<&'static str> {
        let now = Instant::now();
        if self.table.get(secret(), now).is_some() {
            return Some("the credential was revoked");
        }
        if facts
            .ids
            .iter()
            .flatten()
            .any(|id| self.table.get(*id, now).is_some())
        {
            return Some("its token or session id was revoked");
        }
        let entry = self.table.get(facts.subject?, now)?;
        let cut = match (facts.issued_at, entry.cutoff) {
            (Some(issued), Some(cutoff)) => issued <= cutoff,
            // Nothing shows it was issued after the cutoff.
            _ => true,
        };
        cut.then_some("its subject was signed out everywhere")
    }
}

/// The kinds of target, each hashed with a key of its own.
const SECRET: usize = 0;
const ID: usize = 1;
const SUBJECT: usize = 2;

/// The answer of a list that cannot vouch for anything.
fn unavailable() -> ValidationError {
    ValidationError::unavailable()
        .with_retry_after(RETRY_AFTER)
        .with_reason("revocations are out of sync with the shared store")
}

/// Configures [`Revocations`].
#[must_use]
#[derive(Debug, Clone)]
pub struct RevocationsBuilder {
    capacity: u64,
    max_lifetime: Duration,
}

impl RevocationsBuilder {
    /// The most revocations held at once (default 100,000).
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// The longest a revocation is held (default 24 hours): a revocation
    /// whose credential's expiry is unknown or later, and every cutoff of a
    /// subject, last this long. Set it to at least the lifetime of the
    /// credentials you issue.
    pub fn max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.max_lifetime = max_lifetime;
        self
    }

    /// Builds an in-memory list.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] when the capacity or the maximum
    /// lifetime is zero.
    pub fn build(self) -> Result<Revocations, ConfigError> {
        self.build_in_sync(true)
    }

    pub(crate) fn build_in_sync(self, in_sync: bool) -> Result<Revocations, ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::out_of_range("capacity", "must be at least 1"));
        }
        if self.max_lifetime.is_zero() {
            return Err(ConfigError::out_of_range(
                "max_lifetime",
                "must be longer than zero",
            ));
        }
        Ok(Revocations {
            inner: Arc::new(Inner {
                table: Table::new(self.capacity),
                hashers: [RandomState::new(), RandomState::new(), RandomState::new()],
                generation: AtomicU64::new(0),
                changed: Arc::new(Notify::new()),
                listeners: Mutex::new(Vec::new()),
                max_lifetime: self.max_lifetime,
                in_sync: AtomicBool::new(in_sync),
                complained: AtomicBool::new(false),
                synced: Notify::new(),
                catch_ups: AtomicU64::new(0),
                applied: AtomicU64::new(0),
                remote: OnceLock::new(),
            }),
        })
    }
}
