//! Audit events: one typed stream of what portcullis decided.
//!
//! Every decision that matters to an operator (a credential accepted or
//! rejected, a failed attempt counted, a key locked out or unlocked, a
//! request refused by a limiter,
//! a limiter deciding locally because Redis did not answer, a credential
//! revoked, a refresh token reused, a session ended) is an
//! [`Event`]. Subscribe with [`subscribe`]: each subscription is a bounded
//! queue that the request path fills with `try_send`, so a slow or stuck
//! subscriber never blocks a request; events that find its queue full are
//! dropped and counted ([`Subscription::dropped`]).
//!
//! With the `metrics` feature, [`metrics::install`] turns the same events
//! into counters and histograms through the `metrics` facade, and
//! [`metrics::record_stats`] sets gauges from the stats of any component
//! that reports them ([`Gauges`]).
//!
//! Nothing is built or sent while nobody listens: the request path checks
//! one atomic and moves on.
//!
//! # Security
//!
//! Events never carry a secret: a credential appears as its source and its
//! keyed [`Fingerprint`]. Limiter keys (client addresses, account names)
//! appear in events, as they do in logs; the metrics never carry them.
//!
//! A key is written as its `Debug` form, except that a key which is a plain
//! string (an account) is written without quotes: `alice`, not `"alice"`.
//! A string that `Debug` has to escape (a quote, a backslash, a control
//! character) keeps its quotes and escapes, so a key can never forge a line
//! or a field of a log.
//!
//! # Example
//!
//! ```
//! use portcullis::events::{self, Event};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mut audit = events::subscribe(1024);
//! tokio::spawn(async move {
//!     while let Some(event) = audit.recv().await {
//!         if let Event::LockedOut { key, .. } = &event {
//!             eprintln!("locked out: {key}");
//!         }
//!     }
//! });
//! # }
//! ```

#[cfg(feature = "metrics")]
pub mod metrics;

use std::{
    fmt,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::sync::mpsc;

use crate::{CredentialSource, Fingerprint, credential::KeyDigest, reject::RejectionKind};

/// Something portcullis decided.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// `AuthLayer` accepted a credential.
    Authenticated {
        /// Where the credential was found.
        source: CredentialSource,
    },
    /// A request was refused before it reached the service: by `AuthLayer`
    /// (missing, malformed, invalid, revoked, expired, unavailable…), by a
    /// scope check, or by a limiter without a key for it.
    Rejected {
        /// Why.
        kind: RejectionKind,
        /// Where the credential was found, when one was presented.
        source: Option<CredentialSource>,
        /// The keyed fingerprint of the credential, when one was presented.
        fingerprint: Option<Fingerprint>,
    },
    /// A failed attempt was counted against a key: a credential the
    /// validator rejected, a [`Failed`](crate::lockout::Failed) marker or a
    /// 401 from a login handler, a refused refresh token
    /// (`session::Sessions`). One event per key of the request that counted
    /// it; a wrong guess the key repeats within its window is not counted
    /// again, and makes no event (SECURITY.md B14).
    FailureCounted {
        /// The key (a client address, an account, a device), as in the
        /// logs.
        key: String,
        /// The key's failures within its window, this one included.
        failures: u32,
        /// Failures left before the key is locked out (0: this one locked
        /// it out, and an [`Event::LockedOut`] follows).
        remaining: u32,
    },
    /// A key was locked out after too many failed attempts.
    LockedOut {
        /// The key (a client address, an account), as in the logs.
        key: String,
        /// How long the lockout lasts.
        lockout: Duration,
        /// How many times the key has been locked out while remembered.
        lockouts: u32,
    },
    /// An operator lifted the lockout of a key.
    Unlocked {
        /// The key.
        key: String,
    },
    /// The lockout refused a request: its key is locked out, or too many of
    /// its requests wait already.
    LockoutRefused {
        /// The key that refused it. With several keys (address, account,
        /// device), the one whose answer was sent: the lockout with the
        /// longest `Retry-After`.
        key: String,
        /// Refused because the queue of waiting requests was full, not
        /// because the key is locked out.
        crowded: bool,
    },
    /// The rate limiter refused a request.
    RateLimited {
        /// The key.
        key: String,
        /// When the next request of the key is allowed.
        retry_after: Duration,
    },
    /// A limiter decided with local state because Redis did not answer.
    Fallback {
        /// `"lockout"` or `"rate_limit"`.
        limiter: &'static str,
    },
    /// A revocation was applied to a [`Revocations`](crate::revoke::Revocations)
    /// list: made on this replica, received from another one, or read from
    /// the shared store when the list caught up after an outage.
    Revoked {
        /// What it reaches.
        target: RevocationTarget,
        /// Where it came from.
        origin: RevocationOrigin,
        /// How long it lasts (until what it revokes would have expired).
        lasts: Duration,
    },
    /// A refresh token was presented again after it had been used (outside
    /// the grace window): its session was revoked, access tokens and open
    /// streams included (`session::Sessions`, SECURITY.md S2).
    SessionReused {
        /// The session's subject.
        subject: String,
        /// The session id (`sid`), which is not a secret.
        session: String,
    },
    /// A session ended before its time, or was found ended
    /// (`session::Sessions`, SECURITY.md S5, S6).
    SessionEnded {
        /// The session's subject.
        subject: String,
        /// The session id (`sid`), which is not a secret.
        session: String,
        /// Why.
        reason: SessionEndReason,
    },
}

/// Why a session ended, in an [`Event::SessionEnded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionEndReason {
    /// Signed out with its refresh token.
    SignedOut,
    /// Ended by its owner from the list of their sessions.
    EndedByUser,
    /// Its subject signed out everywhere.
    SignedOutEverywhere,
    /// Its subject signed in once more than its cap allows, and it was the
    /// least recently used.
    Cap,
    /// A used refresh token of it was presented again.
    Reuse,
    /// Its idle or absolute lifetime ended (reported when the in-memory
    /// store drops it; Redis expires sessions silently).
    Expired,
}

impl SessionEndReason {
    /// The reason as a metric label: `signed_out`, `ended_by_user`,
    /// `signed_out_everywhere`, `cap`, `reuse` or `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignedOut => "signed_out",
            Self::EndedByUser => "ended_by_user",
            Self::SignedOutEverywhere => "signed_out_everywhere",
            Self::Cap => "cap",
            Self::Reuse => "reuse",
            Self::Expired => "expired",
        }
    }
}

/// What a revocation reaches, in an [`Event::Revoked`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevocationTarget {
    /// One secret, in every carrier it can arrive in.
    Secret {
        /// The keyed fingerprint of the secret, computed from its digest
        /// (lists hold digests only, and receive nothing else from other
        /// replicas): `Fingerprint::of(secret)`, the fingerprint rejections
        /// and `Credential` print, the same on every replica that installed
        /// the same [`FingerprintKey`](crate::FingerprintKey).
        fingerprint: Fingerprint,
    },
    /// A token id (`jti`) or session id (`sid`).
    Id {
        /// The id, which is not a secret.
        id: String,
    },
    /// Every credential of a subject issued until the revocation ("sign out
    /// everywhere").
    Subject {
        /// The subject.
        subject: String,
    },
}

/// Where a revocation in an [`Event::Revoked`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevocationOrigin {
    /// Made on this replica.
    Here,
    /// Made on another replica and received through the shared store.
    Replica,
    /// Read from the shared store when the list caught up after losing it
    /// (it may have been seen before the outage).
    CatchUp,
}

impl RevocationOrigin {
    /// The origin as a metric label: `here`, `replica` or `catch_up`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Here => "here",
            Self::Replica => "replica",
            Self::CatchUp => "catch_up",
        }
    }
}

/// What the request path reports: borrowed, so nothing is formatted or
/// allocated unless a subscription needs an owned [`Event`].
#[derive(Clone, Copy)]
pub(crate) enum Record<'a> {
    Authenticated {
        source: &'a CredentialSource,
    },
    Rejected {
        kind: RejectionKind,
        source: Option<&'a CredentialSource>,
        fingerprint: Option<Fingerprint>,
    },
    FailureCounted {
        key: &'a dyn fmt::Debug,
        failures: u32,
        remaining: u32,
    },
    LockedOut {
        key: &'a dyn fmt::Debug,
        lockout: Duration,
        lockouts: u32,
    },
    Unlocked {
        key: &'a dyn fmt::Debug,
    },
    LockoutRefused {
        key: &'a dyn fmt::Debug,
        crowded: bool,
    },
    RateLimited {
        key: &'a dyn fmt::Debug,
        retry_after: Duration,
    },
    #[cfg(feature = "redis")]
    Fallback {
        limiter: &'static str,
    },
    Revoked {
        target: Reaches<'a>,
        origin: RevocationOrigin,
        lasts: Duration,
    },
    #[cfg(feature = "sessions")]
    SessionReused {
        subject: &'a str,
        session: &'a str,
    },
    #[cfg(feature = "sessions")]
    SessionEnded {
        subject: &'a str,
        session: &'a str,
        reason: SessionEndReason,
    },
    /// How long a validator took: for the metrics only, not an event.
    #[cfg(feature = "metrics")]
    Validated {
        source: &'a CredentialSource,
        elapsed: Duration,
    },
}

/// A gauge a component reports when the metrics are scraped: what its
/// tables hold, and where it stands with its shared store.
///
/// The metrics subscriber maps each to its metric
/// (`portcullis_lockout_tracked`, …, see `events::metrics`, feature
/// `metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Gauge {
    /// Failure counters the lockout holds.
    LockoutTracked,
    /// Keys the lockout refuses.
    LockoutLockedOut,
    /// Keys in the rate limiter's table.
    RateLimitEntries,
    /// Keys the rate limiter keeps because they were refused.
    RateLimitLimited,
    /// Revocations in effect.
    RevocationsEntries,
    /// 1 while the revocation list is in sync with its shared store.
    RevocationsInSync,
    /// Revocations made here that the shared store has not stored yet.
    RevocationsBacklog,
    /// Revocations refused because the table was full of live ones.
    RevocationsRefused,
    /// Revocations made here that never reached the shared store.
    RevocationsDropped,
    /// 1 for the revocation list's state with its shared store (named by
    /// [`SyncState::as_str`](crate::revoke::SyncState::as_str)), 0 for the
    /// others.
    RevocationsState(&'static str),
}

/// The stats of a component, read as [`Gauge`]s: implemented by the stats of
/// the lockout ([`Tracker::stats`](crate::lockout::Tracker::stats)), the
/// rate limiter and the revocation list, so that a metrics subscriber reads
/// them without knowing the components.
///
/// # Example
///
/// ```
/// use portcullis::{events::{Gauge, Gauges}, revoke::Revocations};
///
/// let mut entries = None;
/// Revocations::new().stats().gauges(&mut |gauge, value| {
///     if gauge == Gauge::RevocationsEntries {
///         entries = Some(value);
///     }
/// });
/// assert_eq!(entries, Some(0.0));
/// ```
pub trait Gauges {
    /// Calls `set` once for each gauge, with its value.
    fn gauges(&self, set: &mut dyn FnMut(Gauge, f64));
}

/// What a revocation reaches, borrowed from the list that applied it: made
/// into a [`RevocationTarget`] only when a subscriber listens.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reaches<'a> {
    Secret(&'a KeyDigest),
    Id(&'a str),
    Subject(&'a str),
}

impl Record<'_> {
    fn to_event(self) -> Option<Event> {
        let key = |key: &dyn fmt::Debug| KeyText(key).to_string();
        Some(match self {
            Self::Authenticated { source } => Event::Authenticated {
                source: source.clone(),
            },
            Self::Rejected {
                kind,
                source,
                fingerprint,
            } => Event::Rejected {
                kind,
                source: source.cloned(),
                fingerprint,
            },
            Self::FailureCounted {
                key: k,
                failures,
                remaining,
            } => Event::FailureCounted {
                key: key(k),
                failures,
                remaining,
            },
            Self::LockedOut {
                key: k,
                lockout,
                lockouts,
            } => Event::LockedOut {
                key: key(k),
                lockout,
                lockouts,
            },
            Self::Unlocked { key: k } => Event::Unlocked { key: key(k) },
            Self::LockoutRefused { key: k, crowded } => Event::LockoutRefused {
                key: key(k),
                crowded,
            },
            Self::RateLimited {
                key: k,
                retry_after,
            } => Event::RateLimited {
                key: key(k),
                retry_after,
            },
            #[cfg(feature = "redis")]
            Self::Fallback { limiter } => Event::Fallback { limiter },
            Self::Revoked {
                target,
                origin,
                lasts,
            } => Event::Revoked {
                target: match target {
                    Reaches::Secret(digest) => RevocationTarget::Secret {
                        fingerprint: Fingerprint::of_digest(digest.as_bytes()),
                    },
                    Reaches::Id(id) => RevocationTarget::Id { id: id.to_owned() },
                    Reaches::Subject(subject) => RevocationTarget::Subject {
                        subject: subject.to_owned(),
                    },
                },
                origin,
                lasts,
            },
            #[cfg(feature = "sessions")]
            Self::SessionReused { subject, session } => Event::SessionReused {
                subject: subject.to_owned(),
                session: session.to_owned(),
            },
            #[cfg(feature = "sessions")]
            Self::SessionEnded {
                subject,
                session,
                reason,
            } => Event::SessionEnded {
                subject: subject.to_owned(),
                session: session.to_owned(),
                reason,
            },
            #[cfg(feature = "metrics")]
            Self::Validated { .. } => return None,
        })
    }
}

/// A limiter key as events and logs write it: its `Debug` form, without the
/// quotes of a plain string (`alice`, not `"alice"`). A string that `Debug`
/// escapes keeps its quotes and escapes, so no key can forge a log line.
pub(crate) struct KeyText<'a>(pub(crate) &'a dyn fmt::Debug);

impl fmt::Display for KeyText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format!("{:?}", self.0);
        match text
            .strip_prefix('"')
            .and_then(|rest| rest.strip_suffix('"'))
        {
            // Nothing escaped: the quotes held exactly the string.
            Some(inner) if !inner.contains(['"', '\\']) => f.write_str(inner),
            _ => f.write_str(&text),
        }
    }
}

impl fmt::Debug for KeyText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Where records go: a subscription's queue, or the metrics.
pub(crate) trait Sink: Send + Sync {
    fn record(&self, record: Record<'_>);

    /// Whether the sink is gone (its receiver was dropped).
    fn is_closed(&self) -> bool {
        false
    }
}

/// Every sink, and how many there are (the request path's fast check).
struct Registry {
    sinks: RwLock<Vec<Arc<dyn Sink>>>,
    count: AtomicUsize,
}

static REGISTRY: Registry = Registry {
    sinks: RwLock::new(Vec::new()),
    count: AtomicUsize::new(0),
};

/// Reports `record` to every sink; one atomic load when there is none
/// (inlined, so that a record nobody listens to is not even built).
#[inline]
pub(crate) fn emit(record: Record<'_>) {
    if REGISTRY.count.load(Ordering::Relaxed) != 0 {
        emit_to_sinks(record);
    }
}

fn emit_to_sinks(record: Record<'_>) {
    let mut closed = false;
    for sink in REGISTRY
        .sinks
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        sink.record(record);
        closed |= sink.is_closed();
    }
    if closed {
        let mut sinks = REGISTRY
            .sinks
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        sinks.retain(|sink| !sink.is_closed());
        REGISTRY.count.store(sinks.len(), Ordering::Relaxed);
    }
}

/// Whether anything listens: the request path skips work (a clock read for
/// the validator's latency, say) when nothing does.
#[cfg(feature = "metrics")]
pub(crate) fn listening() -> bool {
    REGISTRY.count.load(Ordering::Relaxed) > 0
}

pub(crate) fn register(sink: Arc<dyn Sink>) {
    let mut sinks = REGISTRY
        .sinks
        .write()
        .unwrap_or_else(PoisonError::into_inner);
    sinks.push(sink);
    REGISTRY.count.store(sinks.len(), Ordering::Relaxed);
}

/// A subscription's queue.
struct Queue {
    sender: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl Sink for Queue {
    fn record(&self, record: Record<'_>) {
        let Some(event) = record.to_event() else {
            return;
        };
        match self.sender.try_reserve() {
            Ok(permit) => permit.send(event),
            Err(mpsc::error::TrySendError::Full(())) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(())) => {}
        }
    }

    fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// Receives every [`Event`] from now on, from every layer in the process,
/// through a queue of `capacity` events (at least 1).
///
/// The request path never waits for the subscriber: an event that finds
/// the queue full is dropped and counted in [`Subscription::dropped`].
/// Dropping the subscription unsubscribes.
///
/// # Example
///
/// ```
/// use portcullis::events;
///
/// let audit = events::subscribe(256);
/// assert_eq!(audit.dropped(), 0);
/// ```
pub fn subscribe(capacity: usize) -> Subscription {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    register(Arc::new(Queue {
        sender,
        dropped: Arc::clone(&dropped),
    }));
    Subscription { receiver, dropped }
}

/// The receiving end of [`subscribe`].
#[derive(Debug)]
pub struct Subscription {
    receiver: mpsc::Receiver<Event>,
    dropped: Arc<AtomicU64>,
}

impl Subscription {
    /// The next event; waits for one.
    pub async fn recv(&mut self) -> Option<Event> {
        self.receiver.recv().await
    }

    /// The next event, if one is queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.receiver.try_recv().ok()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::KeyText;

    #[test]
    fn keys_are_written_without_the_quotes_of_a_plain_string() {
        let text = |key: &dyn std::fmt::Debug| KeyText(key).to_string();
        assert_eq!(text(&"alice".to_owned()), "alice");
        assert_eq!(text(&"Alice Liddell"), "Alice Liddell");
        let ip: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(text(&ip), "192.0.2.1");
        // Escaped strings keep their quotes: no key forges a log line.
        assert_eq!(text(&"a\nb"), r#""a\nb""#);
        assert_eq!(text(&"say \"hi\""), r#""say \"hi\"""#);
        assert_eq!(text(&"back\\slash"), r#""back\\slash""#);
        // Anything else is its Debug form.
        assert_eq!(text(&("alice", 7)), r#"("alice", 7)"#);
    }
}
