//! Where a revocation list stands with its shared store: in sync, catching
//! up, or serving its local copy for a bounded staleness while the store is
//! unreachable, then refusing or serving as the operator chose.

#[cfg(feature = "redis")]
use std::sync::Arc;
use std::sync::{PoisonError, atomic::Ordering};

use tokio::time::Instant;

use super::engine::{Inner, WhenStale, later};

/// Where a revocation list stands with its shared store, and so what its
/// checks answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SyncState {
    /// In sync (always, for a list without a shared store): checks answer
    /// from the list.
    #[default]
    InSync,
    /// Not caught up with the shared store yet (starting, before the first
    /// catch-up): every check answers unavailable.
    CatchingUp,
    /// The shared store is unreachable, within the staleness bound: checks
    /// answer from the local copy.
    Stale,
    /// The shared store has been unreachable past the staleness bound, and
    /// the list refuses ([`WhenStale::Refuse`](super::WhenStale::Refuse)):
    /// every check answers unavailable.
    Refusing,
    /// The shared store has been unreachable past the staleness bound, and
    /// the list keeps answering from its local copy
    /// ([`WhenStale::Serve`](super::WhenStale::Serve)).
    Serving,
}

impl SyncState {
    /// Whether checks are answered from the list (rather than refused as
    /// unavailable).
    pub fn answers(self) -> bool {
        matches!(self, Self::InSync | Self::Stale | Self::Serving)
    }

    /// `in_sync`, `catching_up`, `stale`, `refusing` or `serving`: for
    /// metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InSync => "in_sync",
            Self::CatchingUp => "catching_up",
            Self::Stale => "stale",
            Self::Refusing => "refusing",
            Self::Serving => "serving",
        }
    }

    /// Every state, for metrics that set one gauge per state.
    pub const ALL: &'static [Self] = &[
        Self::InSync,
        Self::CatchingUp,
        Self::Stale,
        Self::Refusing,
        Self::Serving,
    ];
}

#[cfg(feature = "redis")]
impl Inner {
    /// The list lost its shared store. It serves its local copy for the
    /// staleness bound, then does what the operator chose; before its first
    /// catch-up (no local copy yet) every check answers unavailable.
    pub(crate) fn lost(self: &Arc<Self>, why: &str) {
        let was_in_sync = self.in_sync.swap(false, Ordering::SeqCst);
        if !was_in_sync {
            if !self.complained.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    target: "portcullis::revoke",
                    why,
                    "revocations are not in sync with redis yet: every credential is answered \
                     unavailable until they have caught up"
                );
            }
            return;
        }
        let now = Instant::now();
        *self.lost_at.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        let outage = self.outages.fetch_add(1, Ordering::SeqCst) + 1;
        self.complained.store(true, Ordering::SeqCst);
        tracing::warn!(
            target: "portcullis::revoke",
            why,
            staleness_secs = self.staleness.as_secs_f64(),
            then = self.when_stale.as_str(),
            "revocations are out of sync with redis: serving the local copy (revocations made \
             here take effect at once and are queued for redis)"
        );
        self.bump();
        // Past the bound, open streams look again (and end when refusing).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let list = Arc::downgrade(self);
            let staleness = self.staleness;
            runtime.spawn(async move {
                tokio::time::sleep_until(later(now, staleness)).await;
                let Some(list) = list.upgrade() else { return };
                if list.is_in_sync() || list.outages.load(Ordering::SeqCst) != outage {
                    return;
                }
                match list.when_stale {
                    WhenStale::Refuse => tracing::error!(
                        target: "portcullis::revoke",
                        staleness_secs = list.staleness.as_secs_f64(),
                        "revocations are stale (redis unreachable past the staleness bound): \
                         every credential is answered unavailable until they have caught up"
                    ),
                    WhenStale::Serve => tracing::error!(
                        target: "portcullis::revoke",
                        staleness_secs = list.staleness.as_secs_f64(),
                        "revocations are stale (redis unreachable past the staleness bound): \
                         still serving the local copy, as configured (WhenStale::Serve)"
                    ),
                }
                list.bump();
            });
        }
    }

    /// The list has applied every revocation the shared store holds.
    pub(crate) fn caught_up(&self, revocations: usize) {
        // Caches forget what they learned while out of sync, before anything
        // is answered from them again.
        for listener in self.listeners() {
            listener.resynced();
        }
        let catch_ups = self.catch_ups.fetch_add(1, Ordering::Relaxed) + 1;
        self.complained.store(false, Ordering::SeqCst);
        *self.lost_at.lock().unwrap_or_else(PoisonError::into_inner) = None;
        self.ever_synced.store(true, Ordering::SeqCst);
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
}

impl Inner {
    /// Where the list stands with its shared store at `now`.
    pub(crate) fn state(&self, now: Instant) -> SyncState {
        if self.is_in_sync() {
            return SyncState::InSync;
        }
        let lost_at = *self.lost_at.lock().unwrap_or_else(PoisonError::into_inner);
        match lost_at {
            Some(_) if !self.ever_synced.load(Ordering::SeqCst) => SyncState::CatchingUp,
            None => SyncState::CatchingUp,
            Some(at) if now < later(at, self.staleness) => SyncState::Stale,
            Some(_) => match self.when_stale {
                WhenStale::Refuse => SyncState::Refusing,
                WhenStale::Serve => SyncState::Serving,
            },
        }
    }

    /// Whether checks are answered at `now`: in sync, or serving the local
    /// copy while the shared store is unreachable.
    pub(crate) fn answers(&self) -> bool {
        self.is_in_sync() || self.state(Instant::now()).answers()
    }
}

// Only a shared store is lost and caught up with.
#[cfg(all(test, feature = "redis"))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{
        Credential, CredentialSource, ValidationErrorKind,
        lease::{End, Lease},
        revoke::{Revocable, Revocations},
        validate::ExpiresAt,
    };

    struct Anyone;
    impl Revocable for Anyone {}
    impl ExpiresAt for Anyone {
        fn expires_at(&self) -> Option<Instant> {
            None
        }
    }

    /// A list as a shared store leaves it: not caught up yet.
    fn shared(when_stale: WhenStale) -> Revocations {
        Revocations::builder()
            .staleness(Duration::from_secs(30))
            .when_stale(when_stale)
            .build_in_sync(false)
            .unwrap()
    }

    fn answer(list: &Revocations) -> Option<ValidationErrorKind> {
        let credential = Credential::new("alice-1", CredentialSource::Bearer);
        list.check(&credential, &Anyone).err().map(|e| e.kind())
    }

    // D6: served from the local copy for the staleness bound, then refused
    // (the default), and open streams end at the bound, not before.
    #[tokio::test(start_paused = true)]
    async fn a_lost_store_is_served_for_the_staleness_bound_then_refused() {
        let list = shared(WhenStale::Refuse);
        assert_eq!(list.state(), SyncState::CatchingUp);
        assert_eq!(answer(&list), Some(ValidationErrorKind::Unavailable));
        list.inner.caught_up(0);
        assert_eq!(list.state(), SyncState::InSync);
        let credential = Credential::new("alice-1", CredentialSource::Bearer);
        let lease = Lease::grant(&list, &credential, &Anyone);
        let mut ended = lease.ended();

        list.inner.lost("test");
        assert_eq!(list.state(), SyncState::Stale);
        assert_eq!(list.stats().state, SyncState::Stale);
        assert_eq!(answer(&list), None);
        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(answer(&list), None);
        assert_eq!(lease.end(), None);
        assert!(
            tokio::time::timeout(Duration::ZERO, &mut ended)
                .await
                .is_err()
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(list.state(), SyncState::Refusing);
        assert_eq!(answer(&list), Some(ValidationErrorKind::Unavailable));
        let end = tokio::time::timeout(Duration::from_millis(1), ended)
            .await
            .expect("the bound wakes open streams");
        assert_eq!(end, End::Unavailable);

        // Caught up again: answered, and a later outage starts its own
        // bound (a timer of the first one ends nothing).
        list.inner.caught_up(0);
        assert_eq!(answer(&list), None);
        tokio::time::advance(Duration::from_secs(20)).await;
        list.inner.lost("test");
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(list.state(), SyncState::Stale);
        assert_eq!(answer(&list), None);
    }

    // D6: the operator may choose to keep serving past the bound.
    #[tokio::test(start_paused = true)]
    async fn past_the_bound_a_list_told_to_serve_keeps_answering() {
        let list = shared(WhenStale::Serve);
        assert_eq!(answer(&list), Some(ValidationErrorKind::Unavailable));
        list.inner.caught_up(0);
        list.inner.lost("test");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(list.state(), SyncState::Serving);
        assert_eq!(answer(&list), None);
        // What is revoked here is still refused.
        drop(list.revoke_secret("alice-1", None));
        assert_eq!(answer(&list), Some(ValidationErrorKind::Revoked));
    }
}
