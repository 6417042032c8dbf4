//! [`Revocations`]: the list every validator and every lease consults.

use std::{
    fmt,
    sync::{Arc, PoisonError, Weak, atomic::Ordering},
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use super::{
    Revocable, RevokeError, RevokeErrorKind, Revoked, SyncState,
    engine::{Inner, Listener, Revocation, Target},
    revocable::Facts,
};
use crate::{
    Credential, ValidationError,
    credential::KeyDigest,
    events::{Gauge, Gauges, RevocationOrigin},
};

/// Credentials that are no longer accepted, though their signature or
/// digest still matches: revoked by secret, by token or session id, or by
/// subject with a cutoff ("sign out everywhere").
///
/// One list serves every validator that honours it ([`CachingValidator`],
/// [`ApiKeys`], `JwtValidator` (feature `jwt`), or yours through
/// [`check`](Self::check))
/// and every [`Lease`](crate::lease::Lease) (open streams end when their
/// credential is revoked). With `RevocationsBuilder::redis` (feature
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
///   While Redis is unreachable a revocation made here is in effect here at
///   once, answered at once ([`RevokeErrorKind::Queued`]) and queued; it
///   reaches every replica when Redis is back. A replica that lost Redis
///   serves its local copy for the [staleness](super::RevocationsBuilder::staleness)
///   bound (default 30 s), then refuses with
///   [`unavailable`](ValidationError::unavailable) (or keeps serving, as
///   [`when_stale`](super::RevocationsBuilder::when_stale) says); before its first
///   catch-up it answers unavailable, never "valid". It logs each change and
///   reports its [`SyncState`] in [`stats`](Self::stats).
/// - **Long enough.** A revocation with a known end lasts past it by the
///   [leeway](super::RevocationsBuilder::leeway) of the validators that honour the
///   list, so it lasts as long as any of them would accept what it revokes.
/// - **Bounded.** At most [`capacity`](super::RevocationsBuilder::capacity)
///   revocations are held (default 100,000). Each is held until what it
///   revokes would have expired: the credential's expiry (plus the
///   leeway), given when it is revoked, and at most
///   [`max_lifetime`](super::RevocationsBuilder::max_lifetime) (default 24 hours),
///   which is also how long a subject's cutoff lasts. When the table is
///   full, ended revocations make room; a table full of revocations still
///   in effect refuses new ones ([`RevokeErrorKind::Full`], counted in
///   [`RevocationStats::refused`], logged as an error) and never drops a live one to
///   make room, so nobody's sign-outs can push out another's revocation:
///   size the capacity above the revocations alive at once.
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

/// Counts since the list was created, and its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RevocationStats {
    /// Revocations held that are still in effect.
    pub entries: u64,
    /// Revocations applied: made here, received from other replicas, and
    /// read again while catching up.
    pub applied: u64,
    /// Revocations refused because the table was full of revocations still
    /// in effect ([`RevokeErrorKind::Full`]).
    pub refused: u64,
    /// Whether the list is in sync with the shared store (always, without
    /// one). See [`state`](Self::state) for what it answers meanwhile.
    pub in_sync: bool,
    /// Where the list stands with its shared store.
    pub state: SyncState,
    /// Times the list caught up with the shared store (the first time
    /// included).
    pub catch_ups: u64,
    /// Revocations made here that the shared store has not stored yet.
    pub backlog: u64,
    /// Revocations made here that never reached the shared store because
    /// too many were waiting for it ([`RevokeErrorKind::Overflow`]).
    pub dropped: u64,
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

    /// Revokes a secret in every carrier it can arrive in (a header, a
    /// cookie, a query parameter…), until `until` (its expiry, on tokio's
    /// clock, to which the [leeway](super::RevocationsBuilder::leeway) is added;
    /// `None` for "unknown": [`max_lifetime`](super::RevocationsBuilder::max_lifetime)).
    pub fn revoke_secret(&self, secret: &str, until: Option<Instant>) -> Revoked {
        self.revoke_digest(&KeyDigest::of(secret), until)
    }

    /// Like [`revoke_secret`](Self::revoke_secret), for a secret known only
    /// by its digest (a stored API key, a session token kept hashed).
    pub fn revoke_digest(&self, digest: &KeyDigest, until: Option<Instant>) -> Revoked {
        self.revoke(Target::Secret(*digest), None, until)
    }

    /// Revokes a token id (`jti`) or session id (`sid`): every credential
    /// whose identity has it as either is refused, until `until` plus the
    /// [leeway](super::RevocationsBuilder::leeway) (`None`:
    /// [`max_lifetime`](super::RevocationsBuilder::max_lifetime)).
    pub fn revoke_id(&self, id: &str, until: Option<Instant>) -> Revoked {
        self.revoke(Target::Id(id.into()), None, until)
    }

    /// Revokes every credential of `subject` issued until now ("sign out
    /// everywhere"), for [`max_lifetime`](super::RevocationsBuilder::max_lifetime).
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
        let until = self.inner.ends(now, until);
        if until <= now {
            // What it would revoke has expired already.
            return Revoked::done();
        }
        let revocation = Revocation {
            target,
            cutoff,
            until,
        };
        if !self.inner.apply(&revocation, RevocationOrigin::Here) {
            return Revoked::failed(RevokeError::new(
                RevokeErrorKind::Full,
                "the revocation table is full of revocations still in effect",
            ));
        }
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
    /// `Retry-After: 1`) while the list does not answer from its copy
    /// ([`SyncState::answers`]: not caught up yet, or stale past its bound
    /// and refusing).
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
    /// revocations.revoke_subject("alice").await.unwrap();
    /// assert!(validate(token).await.is_err());
    /// # });
    /// ```
    pub fn check<I: Revocable + ?Sized>(
        &self,
        credential: &Credential,
        identity: &I,
    ) -> Result<(), ValidationError> {
        self.check_digest(|| KeyDigest::of(credential.secret()), &Facts::of(identity))
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

    /// How long past its known end a revocation is held: the longest
    /// leeway of the list and of the validators that honour it.
    pub fn leeway(&self) -> Duration {
        self.inner.leeway()
    }

    /// Where the list stands with its shared store.
    pub fn state(&self) -> SyncState {
        self.inner.state(Instant::now())
    }

    /// Counts and size. Walks the table: linear in the revocations held.
    pub fn stats(&self) -> RevocationStats {
        let inner = &self.inner;
        let now = Instant::now();
        RevocationStats {
            entries: inner.table.live(now),
            applied: inner.applied.load(Ordering::Relaxed),
            refused: inner.refused.load(Ordering::Relaxed),
            in_sync: self.is_in_sync(),
            state: inner.state(now),
            catch_ups: inner.catch_ups.load(Ordering::Relaxed),
            backlog: inner.remote.get().map_or(0, |remote| remote.backlog()),
            dropped: inner.remote.get().map_or(0, |remote| remote.dropped()),
        }
    }

    /// [`check`](Self::check) for a secret known by its digest (computed
    /// only when needed) and facts read already: a stored refresh token, a
    /// cached or stored key.
    pub(crate) fn check_digest(
        &self,
        digest: impl FnOnce() -> KeyDigest,
        facts: &Facts<'_>,
    ) -> Result<(), ValidationError> {
        self.inner.check(digest, facts)
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

impl Gauges for RevocationStats {
    fn gauges(&self, set: &mut dyn FnMut(Gauge, f64)) {
        set(Gauge::RevocationsEntries, self.entries as f64);
        set(
            Gauge::RevocationsInSync,
            if self.in_sync { 1.0 } else { 0.0 },
        );
        set(Gauge::RevocationsBacklog, self.backlog as f64);
        set(Gauge::RevocationsRefused, self.refused as f64);
        set(Gauge::RevocationsDropped, self.dropped as f64);
        for &state in SyncState::ALL {
            let on = if state == self.state { 1.0 } else { 0.0 };
            set(Gauge::RevocationsState(state.as_str()), on);
        }
    }
}
