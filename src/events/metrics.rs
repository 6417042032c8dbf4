//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature
//! `metrics`): one subscriber of the audit [events](super).
//!
//! Call [`install`] once; any `metrics` recorder (Prometheus, StatsD,
//! OpenTelemetry…) then receives:
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `portcullis_auth_decisions_total` | counter | `outcome`, `source` | every decision of `AuthLayer` and of the scope check |
//! | `portcullis_failed_attempts_total` | counter | | failed attempts counted, one per key of the request |
//! | `portcullis_lockouts_total` | counter | | keys locked out |
//! | `portcullis_unlocks_total` | counter | | lockouts lifted by an operator |
//! | `portcullis_lockout_refusals_total` | counter | `reason` | requests the lockout refused |
//! | `portcullis_rate_limit_refusals_total` | counter | | requests the rate limiter refused |
//! | `portcullis_redis_fallbacks_total` | counter | `limiter` | decisions made locally because Redis did not answer (feature `redis`) |
//! | `portcullis_revocations_total` | counter | `target`, `origin` | revocations applied to a revocation list |
//! | `portcullis_session_reuses_total` | counter | | refresh tokens presented again after use: sessions revoked (feature `sessions`) |
//! | `portcullis_sessions_ended_total` | counter | `reason` | sessions ended (feature `sessions`) |
//! | `portcullis_validator_seconds` | histogram | `source` | time the validator took |
//! | `portcullis_lockout_tracked`, `portcullis_lockout_locked_out` | gauge | | table sizes, from [`record_stats`] |
//! | `portcullis_rate_limit_entries`, `portcullis_rate_limit_limited` | gauge | | table sizes, from [`record_stats`] |
//! | `portcullis_revocations_entries`, `portcullis_revocations_in_sync`, `portcullis_revocations_backlog` | gauge | | revocations in effect, whether the list is in sync with its shared store (1 or 0), revocations not stored yet, from [`record_stats`] |
//! | `portcullis_revocations_state` | gauge | `state` | 1 for the list's [`SyncState`](crate::revoke::SyncState), 0 for the others (alert on `refusing`, warn on `stale`), from [`record_stats`] |
//! | `portcullis_revocations_refused`, `portcullis_revocations_dropped` | gauge | | revocations refused by a table full of live ones, revocations that never reached the shared store (queue full), from [`record_stats`] |
//!
//! Label values come from fixed sets, so cardinality is bounded:
//!
//! - `outcome`: `authenticated`, `missing`, `malformed`, `ambiguous`,
//!   `too_large`, `invalid`, `expired`, `revoked`, `insufficient_scope`,
//!   `unavailable`, `no_client_address`, `locked_out`, `rate_limited`,
//!   `cross_origin`, `denied`, `body_too_large`, `malformed_body`;
//! - `source`: `bearer`, `cookie`, `header`, `query`, `websocket_protocol`,
//!   `none`;
//! - `reason`: `locked_out`, `crowded`;
//! - `state`: `in_sync`, `catching_up`, `stale`, `refusing`, `serving`;
//! - `limiter`: `lockout`, `rate_limit`;
//! - `target`: `secret`, `id`, `subject`;
//! - `origin`: `here`, `replica`, `catch_up`;
//! - `reason` of a session's end: `signed_out`, `ended_by_user`,
//!   `signed_out_everywhere`, `cap`, `reuse`, `expired`.
//!
//! # Security
//!
//! Labels never carry a secret, a limiter key or an address: only the
//! fixed values above (a cookie or header *name* is reduced to `cookie` or
//! `header`).
//!
//! # Example
//!
//! ```
//! portcullis::events::metrics::install();
//! ```

use std::sync::{Arc, Once};

use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge,
    histogram,
};

#[cfg(feature = "sessions")]
use super::SessionEndReason;
use super::{Gauge, Gauges, Reaches, Record, RevocationOrigin, Sink};
use crate::{CredentialSource, reject::RejectionKind};

/// The counter of `AuthLayer` decisions.
pub const AUTH_DECISIONS: &str = "portcullis_auth_decisions_total";
/// The counter of failed attempts counted (one per key).
pub const FAILED_ATTEMPTS: &str = "portcullis_failed_attempts_total";
/// The counter of lockouts started.
pub const LOCKOUTS: &str = "portcullis_lockouts_total";
/// The counter of lockouts lifted by an operator.
pub const UNLOCKS: &str = "portcullis_unlocks_total";
/// The counter of requests the lockout refused.
pub const LOCKOUT_REFUSALS: &str = "portcullis_lockout_refusals_total";
/// The counter of requests the rate limiter refused.
pub const RATE_LIMIT_REFUSALS: &str = "portcullis_rate_limit_refusals_total";
/// The counter of decisions made locally because Redis did not answer.
pub const REDIS_FALLBACKS: &str = "portcullis_redis_fallbacks_total";
/// The counter of revocations applied to a revocation list.
pub const REVOCATIONS: &str = "portcullis_revocations_total";
/// The counter of refresh tokens presented again after use (each revoked
/// its session).
pub const SESSION_REUSES: &str = "portcullis_session_reuses_total";
/// The counter of sessions ended, by reason.
pub const SESSIONS_ENDED: &str = "portcullis_sessions_ended_total";
/// The histogram of validator latency, in seconds.
pub const VALIDATOR_SECONDS: &str = "portcullis_validator_seconds";
/// The gauge of failure counters held by a tracker.
pub const LOCKOUT_TRACKED: &str = "portcullis_lockout_tracked";
/// The gauge of keys locked out.
pub const LOCKOUT_LOCKED_OUT: &str = "portcullis_lockout_locked_out";
/// The gauge of keys in the rate limiter's table.
pub const RATE_LIMIT_ENTRIES: &str = "portcullis_rate_limit_entries";
/// The gauge of keys the rate limiter keeps because they were refused.
pub const RATE_LIMIT_LIMITED: &str = "portcullis_rate_limit_limited";
/// The gauge of revocations in effect.
pub const REVOCATIONS_ENTRIES: &str = "portcullis_revocations_entries";
/// The gauge that is 1 while the revocation list is in sync with its shared
/// store, 0 while it is not (see [`REVOCATIONS_STATE`] for what it answers
/// meanwhile).
pub const REVOCATIONS_IN_SYNC: &str = "portcullis_revocations_in_sync";
/// The gauge of revocations made here that the shared store has not stored
/// yet.
pub const REVOCATIONS_BACKLOG: &str = "portcullis_revocations_backlog";
/// The gauge, labelled `state`, that is 1 for the revocation list's
/// [`SyncState`](crate::revoke::SyncState) and 0 for the others.
pub const REVOCATIONS_STATE: &str = "portcullis_revocations_state";
/// The gauge of revocations refused because the table was full of live
/// ones.
pub const REVOCATIONS_REFUSED: &str = "portcullis_revocations_refused";
/// The gauge of revocations made here that never reached the shared store
/// (its queue was full).
pub const REVOCATIONS_DROPPED: &str = "portcullis_revocations_dropped";

/// Subscribes the metrics to the audit events (once per process; further
/// calls do nothing) and describes every metric to the recorder.
///
/// Install the recorder first: the metrics are registered with the recorder
/// in place when this runs, so that the request path only increments
/// handles it already holds.
pub fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        describe();
        super::register(Arc::new(Metrics::register()));
    });
}

fn describe() {
    describe_counter!(
        AUTH_DECISIONS,
        "authentication decisions by outcome and credential source"
    );
    describe_counter!(
        FAILED_ATTEMPTS,
        "failed attempts counted, one per key of the request"
    );
    describe_counter!(LOCKOUTS, "keys locked out after too many failed attempts");
    describe_counter!(UNLOCKS, "lockouts lifted by an operator");
    describe_counter!(LOCKOUT_REFUSALS, "requests refused by the lockout");
    describe_counter!(RATE_LIMIT_REFUSALS, "requests refused by the rate limiter");
    describe_counter!(
        REDIS_FALLBACKS,
        "decisions made locally because redis did not answer"
    );
    describe_counter!(
        REVOCATIONS,
        "revocations applied, by what they reach and where they were made"
    );
    describe_counter!(
        SESSION_REUSES,
        "refresh tokens presented again after use: sessions revoked"
    );
    describe_counter!(SESSIONS_ENDED, "sessions ended, by reason");
    describe_histogram!(VALIDATOR_SECONDS, Unit::Seconds, "time the validator took");
    describe_gauge!(LOCKOUT_TRACKED, "failure counters held by the lockout");
    describe_gauge!(LOCKOUT_LOCKED_OUT, "keys locked out");
    describe_gauge!(RATE_LIMIT_ENTRIES, "keys in the rate limiter's table");
    describe_gauge!(
        RATE_LIMIT_LIMITED,
        "keys the rate limiter keeps because they were refused"
    );
    describe_gauge!(REVOCATIONS_ENTRIES, "revocations in effect");
    describe_gauge!(
        REVOCATIONS_IN_SYNC,
        "1 while the revocation list is in sync with its shared store, 0 while it is not"
    );
    describe_gauge!(
        REVOCATIONS_BACKLOG,
        "revocations made here that the shared store has not stored yet"
    );
    describe_gauge!(
        REVOCATIONS_STATE,
        "1 for the revocation list's state with its shared store (in_sync, catching_up, stale, refusing, serving), 0 for the others"
    );
    describe_gauge!(
        REVOCATIONS_REFUSED,
        "revocations refused because the table was full of live ones"
    );
    describe_gauge!(
        REVOCATIONS_DROPPED,
        "revocations made here that never reached the shared store (queue full)"
    );
}

/// Sets the gauges of a component from its stats (call it when the metrics
/// are scraped; the tables are not walked on the request path): the lockout's
/// table sizes from [`Tracker::stats`](crate::lockout::Tracker::stats), the
/// rate limiter's from
/// [`RateLimitLayer::stats`](crate::rate_limit::RateLimitLayer::stats), the
/// revocation list's from
/// [`Revocations::stats`](crate::revoke::Revocations::stats): warn on
/// `portcullis_revocations_state{state="stale"}` at 1 (the list lost its
/// shared store and serves its local copy), alert on `refusing` at 1
/// (requests it decides are answered 503 until it catches up).
///
/// # Example
///
/// ```
/// use portcullis::{events::metrics::record_stats, revoke::Revocations};
///
/// let revocations = Revocations::new();
/// // In your scrape handler, before rendering:
/// record_stats(&revocations.stats());
/// ```
pub fn record_stats(stats: &impl Gauges) {
    stats.gauges(&mut |which, value| {
        let name = match which {
            Gauge::LockoutTracked => LOCKOUT_TRACKED,
            Gauge::LockoutLockedOut => LOCKOUT_LOCKED_OUT,
            Gauge::RateLimitEntries => RATE_LIMIT_ENTRIES,
            Gauge::RateLimitLimited => RATE_LIMIT_LIMITED,
            Gauge::RevocationsEntries => REVOCATIONS_ENTRIES,
            Gauge::RevocationsInSync => REVOCATIONS_IN_SYNC,
            Gauge::RevocationsBacklog => REVOCATIONS_BACKLOG,
            Gauge::RevocationsRefused => REVOCATIONS_REFUSED,
            Gauge::RevocationsDropped => REVOCATIONS_DROPPED,
            Gauge::RevocationsState(state) => {
                gauge!(REVOCATIONS_STATE, "state" => state).set(value);
                return;
            }
        };
        gauge!(name).set(value);
    });
}

/// Credential sources, as labels: their kind, never their name.
const SOURCES: [&str; 6] = [
    "none",
    "bearer",
    "cookie",
    "header",
    "query",
    "websocket_protocol",
];

fn source(source: Option<&CredentialSource>) -> usize {
    match source {
        None => 0,
        Some(CredentialSource::Bearer) => 1,
        Some(CredentialSource::Cookie(_)) => 2,
        Some(CredentialSource::Header(_)) => 3,
        Some(CredentialSource::Query(_)) => 4,
        Some(CredentialSource::WebSocketProtocol) => 5,
    }
}

/// Where revocations come from, in label order.
const ORIGINS: [RevocationOrigin; 3] = [
    RevocationOrigin::Here,
    RevocationOrigin::Replica,
    RevocationOrigin::CatchUp,
];

/// Decision outcomes, as labels.
const OUTCOMES: [&str; 17] = [
    "authenticated",
    "missing",
    "malformed",
    "ambiguous",
    "too_large",
    "invalid",
    "expired",
    "revoked",
    "insufficient_scope",
    "unavailable",
    "no_client_address",
    "locked_out",
    "rate_limited",
    "cross_origin",
    "denied",
    "body_too_large",
    "malformed_body",
];

fn outcome(kind: RejectionKind) -> usize {
    match kind {
        RejectionKind::Missing => 1,
        RejectionKind::Malformed => 2,
        RejectionKind::Ambiguous => 3,
        RejectionKind::TooLarge => 4,
        RejectionKind::Invalid => 5,
        RejectionKind::Expired => 6,
        RejectionKind::Revoked => 7,
        RejectionKind::InsufficientScope => 8,
        RejectionKind::Unavailable => 9,
        RejectionKind::NoClientAddress => 10,
        RejectionKind::LockedOut => 11,
        RejectionKind::RateLimited => 12,
        RejectionKind::CrossOrigin => 13,
        RejectionKind::Denied => 14,
        RejectionKind::BodyTooLarge => 15,
        RejectionKind::MalformedBody => 16,
    }
}

/// The metrics subscriber: every handle registered once, so the request
/// path increments a handle instead of building and looking up a key.
struct Metrics {
    decisions: Vec<Counter>,
    validator: Vec<Histogram>,
    failed_attempts: Counter,
    lockouts: Counter,
    unlocks: Counter,
    locked_out: Counter,
    crowded: Counter,
    rate_limited: Counter,
    #[cfg(feature = "redis")]
    lockout_fallbacks: Counter,
    #[cfg(feature = "redis")]
    rate_limit_fallbacks: Counter,
    /// By target, then origin.
    revocations: [[Counter; 3]; 3],
    #[cfg(feature = "sessions")]
    session_reuses: Counter,
    /// By [`SESSION_END_REASONS`].
    #[cfg(feature = "sessions")]
    sessions_ended: [Counter; 6],
}

/// Every reason a session ends, in the order of `Metrics::sessions_ended`.
#[cfg(feature = "sessions")]
const SESSION_END_REASONS: [SessionEndReason; 6] = [
    SessionEndReason::SignedOut,
    SessionEndReason::EndedByUser,
    SessionEndReason::SignedOutEverywhere,
    SessionEndReason::Cap,
    SessionEndReason::Reuse,
    SessionEndReason::Expired,
];

impl Metrics {
    fn register() -> Self {
        let decisions = OUTCOMES
            .iter()
            .flat_map(|outcome| {
                SOURCES.iter().map(move |source| {
                    counter!(AUTH_DECISIONS, "outcome" => *outcome, "source" => *source)
                })
            })
            .collect();
        let validator = SOURCES
            .iter()
            .map(|source| histogram!(VALIDATOR_SECONDS, "source" => *source))
            .collect();
        Self {
            decisions,
            validator,
            failed_attempts: counter!(FAILED_ATTEMPTS),
            lockouts: counter!(LOCKOUTS),
            unlocks: counter!(UNLOCKS),
            locked_out: counter!(LOCKOUT_REFUSALS, "reason" => "locked_out"),
            crowded: counter!(LOCKOUT_REFUSALS, "reason" => "crowded"),
            rate_limited: counter!(RATE_LIMIT_REFUSALS),
            #[cfg(feature = "redis")]
            lockout_fallbacks: counter!(REDIS_FALLBACKS, "limiter" => "lockout"),
            #[cfg(feature = "redis")]
            rate_limit_fallbacks: counter!(REDIS_FALLBACKS, "limiter" => "rate_limit"),
            revocations: ["secret", "id", "subject"].map(|target| {
                ORIGINS.map(
                    |origin| counter!(REVOCATIONS, "target" => target, "origin" => origin.as_str()),
                )
            }),
            #[cfg(feature = "sessions")]
            session_reuses: counter!(SESSION_REUSES),
            #[cfg(feature = "sessions")]
            sessions_ended: SESSION_END_REASONS
                .map(|reason| counter!(SESSIONS_ENDED, "reason" => reason.as_str())),
        }
    }

    fn decision(&self, outcome: usize, source: usize) -> &Counter {
        &self.decisions[outcome * SOURCES.len() + source]
    }
}

impl Sink for Metrics {
    fn record(&self, record: Record<'_>) {
        match record {
            Record::Authenticated { source: s } => {
                self.decision(0, source(Some(s))).increment(1);
            }
            Record::Rejected {
                kind, source: s, ..
            } => {
                self.decision(outcome(kind), source(s)).increment(1);
            }
            Record::FailureCounted { .. } => self.failed_attempts.increment(1),
            Record::LockedOut { .. } => self.lockouts.increment(1),
            Record::Unlocked { .. } => self.unlocks.increment(1),
            Record::LockoutRefused { crowded, .. } => {
                if crowded {
                    self.crowded.increment(1);
                } else {
                    self.locked_out.increment(1);
                }
            }
            Record::RateLimited { .. } => self.rate_limited.increment(1),
            #[cfg(feature = "redis")]
            Record::Fallback { limiter } => {
                if limiter == "lockout" {
                    self.lockout_fallbacks.increment(1);
                } else {
                    self.rate_limit_fallbacks.increment(1);
                }
            }
            Record::Revoked { target, origin, .. } => {
                let target = match target {
                    Reaches::Secret(_) => 0,
                    Reaches::Id(_) => 1,
                    Reaches::Subject(_) => 2,
                };
                let origin = ORIGINS
                    .iter()
                    .position(|o| *o == origin)
                    .unwrap_or_default();
                self.revocations[target][origin].increment(1);
            }
            #[cfg(feature = "sessions")]
            Record::SessionReused { .. } => self.session_reuses.increment(1),
            #[cfg(feature = "sessions")]
            Record::SessionEnded { reason, .. } => {
                let reason = SESSION_END_REASONS
                    .iter()
                    .position(|r| *r == reason)
                    .unwrap_or_default();
                self.sessions_ended[reason].increment(1);
            }
            Record::Validated { source: s, elapsed } => {
                self.validator[source(Some(s))].record(elapsed);
            }
        }
    }
}

// The one unit test counts sessions.
#[cfg(all(test, feature = "sessions"))]
mod tests {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};

    use super::*;

    #[test]
    fn sessions_ended_are_counted_by_reason() {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let metrics = ::metrics::with_local_recorder(&recorder, Metrics::register);
        for reason in [
            SessionEndReason::Cap,
            SessionEndReason::Cap,
            SessionEndReason::Expired,
        ] {
            metrics.record(Record::SessionEnded {
                subject: "alice",
                session: "s",
                reason,
            });
        }
        // A snapshot takes the counts (they start again from zero).
        let snapshot = snapshotter.snapshot().into_vec();
        let count = |reason: &str| {
            snapshot
                .iter()
                .find(|(key, ..)| {
                    key.key().name() == SESSIONS_ENDED
                        && key.key().labels().any(|l| l.value() == reason)
                })
                .map(|(.., value)| value)
        };
        assert_eq!(count("cap"), Some(&DebugValue::Counter(2)));
        assert_eq!(count("expired"), Some(&DebugValue::Counter(1)));
        assert_eq!(count("reuse"), Some(&DebugValue::Counter(0)));
    }
}
