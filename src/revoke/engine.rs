//! The engine of a revocation list: its table, how revocations are applied
//! and checked, and its sync with a shared store.

use std::{
    hash::{BuildHasher, Hasher, RandomState},
    sync::{
        Arc, Mutex, OnceLock, PoisonError, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use tokio::{sync::Notify, time::Instant};

use super::{
    Revoked,
    revocable::Facts,
    table::{Entry, RevocationTable},
};
use crate::{
    ConfigError, Fingerprint, ValidationError,
    credential::KeyDigest,
    events::{self, Reaches, Record, RevocationOrigin},
};

/// The longest [`max_lifetime`](super::RevocationsBuilder::max_lifetime) plus
/// [`leeway`](super::RevocationsBuilder::leeway): ten years, far from what any
/// clock can add without overflowing.
const LONGEST: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

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

impl Target {
    /// What the revocation reaches, for its audit event.
    fn reaches(&self) -> Reaches<'_> {
        match self {
            Self::Secret(digest) => Reaches::Secret(digest),
            Self::Id(id) => Reaches::Id(id),
            Self::Subject(subject) => Reaches::Subject(subject),
        }
    }
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
    #[cfg(feature = "redis")]
    fn resynced(&self) {}
}

/// Where revocations are stored for the other replicas (Redis).
pub(crate) trait Remote: Send + Sync {
    /// Stores and publishes a revocation already applied here.
    fn publish(&self, revocation: &Revocation) -> Revoked;

    /// Revocations waiting to be stored.
    fn backlog(&self) -> u64;

    /// Revocations made here that the shared store never got: the queue
    /// of revocations waiting for it was full.
    fn dropped(&self) -> u64;
}

/// The identity facts of a lease, hashed once so that they can be checked
/// again later without the identity.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Hashed {
    pub(crate) subject: Option<u64>,
    pub(crate) ids: [Option<u64>; 2],
    pub(crate) issued_at: Option<SystemTime>,
}

/// What every clone of a [`Revocations`](super::Revocations) shares: the table, the sync
/// state, and who listens.
pub(crate) struct Inner {
    pub(super) table: RevocationTable,
    /// One key per kind of target, so that a secret, an id and a subject
    /// never share a hash by construction.
    hashers: [RandomState; 3],
    /// Bumped by every revocation applied and every change of sync: a lease
    /// that saw the same generation need not look again.
    generation: AtomicU64,
    /// Woken with every generation: the leases of open streams wait on it.
    changed: Arc<Notify>,
    pub(super) listeners: Mutex<Vec<Weak<dyn Listener>>>,
    pub(super) max_lifetime: Duration,
    /// How long past its known end a revocation is held, in milliseconds:
    /// the longest leeway of the validators that honour the list.
    leeway: AtomicU64,
    pub(super) in_sync: AtomicBool,
    /// Whether the list has caught up with its shared store once: its
    /// local copy is worth serving while the store is unreachable.
    pub(super) ever_synced: AtomicBool,
    /// Since when the shared store is unreachable, while the list serves
    /// its local copy (`None` while in sync).
    pub(super) lost_at: Mutex<Option<Instant>>,
    /// Counts outages: the timer of one outage ends nothing of the next.
    #[cfg(feature = "redis")]
    pub(super) outages: AtomicU64,
    pub(super) staleness: Duration,
    pub(super) when_stale: WhenStale,
    /// Whether being out of sync was logged since the list was last in
    /// sync (once per outage, and once before the first catch-up).
    #[cfg(feature = "redis")]
    pub(super) complained: AtomicBool,
    pub(super) synced: Notify,
    pub(super) catch_ups: AtomicU64,
    pub(super) applied: AtomicU64,
    /// Revocations refused because the table was full of live ones.
    pub(super) refused: AtomicU64,
    pub(crate) remote: OnceLock<Box<dyn Remote>>,
}

/// What a list shared through Redis answers once Redis has been unreachable
/// for longer than its [`staleness`](super::RevocationsBuilder::staleness) bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WhenStale {
    /// Every check answers [`unavailable`](crate::ValidationError::unavailable)
    /// (503 with `Retry-After: 1`) and open streams end, until the list
    /// has caught up again (the default). A revocation made on another
    /// replica during the outage is never missed; every client is refused
    /// while Redis is away.
    #[default]
    Refuse,
    /// The list keeps answering from its local copy: revocations made on
    /// this replica are honoured, those made on other replicas reach it
    /// only when Redis is back. Clients keep being served; a credential
    /// revoked on another replica during the outage is accepted here until
    /// then.
    Serve,
}

impl WhenStale {
    /// `refuse` or `serve`, for logs.
    #[cfg(feature = "redis")]
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Serve => "serve",
        }
    }
}

/// How a list is configured.
pub(super) struct Settings {
    pub(super) capacity: u64,
    pub(super) max_lifetime: Duration,
    pub(super) leeway: Duration,
    pub(super) staleness: Duration,
    pub(super) when_stale: WhenStale,
    pub(super) in_sync: bool,
}

impl Inner {
    pub(super) fn new(settings: Settings) -> Self {
        Self {
            table: RevocationTable::new(settings.capacity),
            hashers: [RandomState::new(), RandomState::new(), RandomState::new()],
            generation: AtomicU64::new(0),
            changed: Arc::new(Notify::new()),
            listeners: Mutex::new(Vec::new()),
            max_lifetime: settings.max_lifetime,
            leeway: AtomicU64::new(as_millis(settings.leeway)),
            in_sync: AtomicBool::new(settings.in_sync),
            ever_synced: AtomicBool::new(settings.in_sync),
            lost_at: Mutex::new(None),
            #[cfg(feature = "redis")]
            outages: AtomicU64::new(0),
            staleness: settings.staleness,
            when_stale: settings.when_stale,
            #[cfg(feature = "redis")]
            complained: AtomicBool::new(false),
            synced: Notify::new(),
            catch_ups: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            remote: OnceLock::new(),
        }
    }

    /// Makes revocations with a known end last `leeway` longer, if that is
    /// longer than what they last past it now: for a validator that accepts
    /// credentials that long past their expiry.
    ///
    /// # Errors
    ///
    /// As [`check_leeway`](check_leeway): a leeway longer
    /// than the maximum lifetime.
    #[cfg(feature = "jwt")] // the validators with a leeway
    pub(crate) fn accept_leeway(&self, leeway: Duration) -> Result<(), crate::ConfigError> {
        check_leeway(leeway, self.max_lifetime)?;
        self.leeway.fetch_max(as_millis(leeway), Ordering::SeqCst);
        Ok(())
    }

    /// How long past its known end a revocation is held.
    pub(crate) fn leeway(&self) -> Duration {
        Duration::from_millis(self.leeway.load(Ordering::SeqCst))
    }

    /// When a revocation made at `now` that revokes what would have
    /// expired at `until` (`None`: unknown) ends: its end plus the leeway,
    /// at most the maximum lifetime from now.
    pub(super) fn ends(&self, now: Instant, until: Option<Instant>) -> Instant {
        let horizon = later(now, self.max_lifetime);
        match until {
            Some(until) => later(until, self.leeway()).min(horizon),
            None => horizon,
        }
    }

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
    /// the listeners. `false` when the table is full of live revocations:
    /// nothing was applied (logged, counted).
    pub(crate) fn apply(&self, revocation: &Revocation, origin: RevocationOrigin) -> bool {
        let now = Instant::now();
        let hash = self.hash_target(&revocation.target);
        let entry = Entry {
            until: revocation.until,
            cutoff: revocation.cutoff,
        };
        if !self.table.insert(hash, entry, now) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            tracing::error!(
                target: "portcullis::revoke",
                held = self.table.held(),
                origin = origin.as_str(),
                "the revocation table is full of revocations still in effect: this revocation \
                 is refused (live revocations are never dropped); raise \
                 RevocationsBuilder::capacity"
            );
            return false;
        }
        self.applied.fetch_add(1, Ordering::Relaxed);
        let for_secs = revocation.until.saturating_duration_since(now).as_secs();
        match &revocation.target {
            Target::Secret(digest) => {
                let fingerprint = Fingerprint::of_digest(digest.as_bytes());
                tracing::info!(target: "portcullis::revoke", %fingerprint, for_secs, "secret revoked");
            }
            Target::Id(id) => {
                tracing::info!(target: "portcullis::revoke", id = %id, for_secs, "token or session id revoked");
            }
            Target::Subject(subject) => {
                tracing::info!(target: "portcullis::revoke", subject = %subject, for_secs, "credentials of a subject revoked");
            }
        }
        events::emit(Record::Revoked {
            target: revocation.target.reaches(),
            origin,
            lasts: revocation.until.saturating_duration_since(now),
        });
        self.bump();
        for listener in self.listeners() {
            listener.revoked(revocation);
        }
        true
    }

    pub(super) fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    pub(super) fn listeners(&self) -> Vec<Arc<dyn Listener>> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The checks of a validator: `digest` is computed only when something
    /// is revoked.
    pub(crate) fn check(
        &self,
        digest: impl FnOnce() -> KeyDigest,
        facts: &Facts<'_>,
    ) -> Result<(), ValidationError> {
        if !self.answers() {
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

/// `at` plus `d`, or as much of `d` as the clock can add: a revocation is
/// never dropped because its end overflows the clock.
pub(super) fn later(at: Instant, mut d: Duration) -> Instant {
    loop {
        if let Some(later) = at.checked_add(d) {
            return later;
        }
        d /= 2;
    }
}

fn as_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The answer of a list that cannot vouch for anything.
fn unavailable() -> ValidationError {
    ValidationError::unavailable()
        .with_retry_after(RETRY_AFTER)
        .with_reason("revocations are out of sync with the shared store (past the staleness bound, or not caught up yet)")
}

/// A leeway longer than the maximum lifetime, or both together too long
/// for the clock, is a configuration error.
pub(crate) fn check_leeway(leeway: Duration, max_lifetime: Duration) -> Result<(), ConfigError> {
    if max_lifetime > LONGEST
        || max_lifetime
            .checked_add(leeway)
            .is_none_or(|total| total > LONGEST)
    {
        return Err(ConfigError::out_of_range(
            "max_lifetime",
            "max_lifetime and leeway together must be at most 10 years: longer overflows clocks",
        ));
    }
    if leeway > max_lifetime {
        return Err(ConfigError::out_of_range(
            "leeway",
            "must be at most the revocation list's max_lifetime",
        ));
    }
    Ok(())
}
