//! Several keys per decision (SECURITY.md B13): each key a
//! [`KeyExtractor`] with a [`Tracker`] of its own, type-erased so that one
//! [`LockoutLayer`](super::LockoutLayer) can enforce keys of different
//! types (an address, an account, an account and an address, a device).
//!
//! A request is admitted only when every key that applies to it admits it;
//! the keys are asked in the order they were added, and a request that has
//! to wait for a key holds only the slots of the keys before it, so two
//! requests can never wait for each other (each waits for a key later than
//! every key it holds).
//!
//! In [shadow mode](super::LockoutLayer::shadow) nothing is reserved: a
//! [`ShadowRecord`] records the outcome under each key.

use std::{fmt, hash::Hash, sync::Arc, time::Duration};

use http::{request::Parts, response};

use super::{
    Acquire, Classifier, Failed, Locked, Outcome, Refused, Tracker, classify,
    reservation::{Settle, Slot},
    store::Admission,
};
use crate::{AuthRejection, Fingerprint, KeyExtractor, future::BoxFuture, handoff::Release};

/// A slot reserved under one key, with the progressive delay to wait out.
pub(crate) type Reserved = (Arc<dyn Settle>, Option<Duration>);

/// A key as the refusal event names it (allocated only for a refusal).
pub(crate) type KeyName = Arc<dyn fmt::Debug + Send + Sync>;

/// Waits for a slot under one key; a refusal names its key.
pub(crate) type Waiting = BoxFuture<Result<Arc<dyn Settle>, (Refused, KeyName)>>;

/// What one key says about a request, without waiting.
pub(crate) enum Step {
    /// The key does not apply to this request.
    Skip,
    /// A slot was reserved.
    Admitted(Reserved),
    /// The key refuses the request.
    Refused(Refused, KeyName),
    /// The key's answer needs waiting (a round trip, a free slot, a delay).
    Wait(Waiting),
}

/// Records the outcome of a request directly, without a reservation
/// (shadow mode).
pub(crate) trait Record: Send + Sync {
    fn record(&self, outcome: Outcome, guess: Option<Fingerprint>);
}

/// One key of a lockout layer.
pub(crate) trait Rule: Send + Sync + 'static {
    /// Asks the key's tracker once, reserving a slot if it admits.
    fn admit(
        &self,
        parts: &Parts,
        classifier: Option<&Arc<dyn Classifier>>,
    ) -> Result<Step, AuthRejection>;

    /// A future that waits for a slot under the key (nothing happens until
    /// it is polled); `None` when the key does not apply.
    fn acquire(
        &self,
        parts: &Parts,
        classifier: Option<&Arc<dyn Classifier>>,
    ) -> Result<Option<Waiting>, AuthRejection>;

    /// The key's lockout, if it is locked out, and the key.
    fn locked(&self, parts: &Parts) -> Option<(Locked, KeyName)>;

    /// Shadow mode: the key's lockout, if any, and a recorder of the
    /// request's outcome; `None` when the key does not apply.
    #[allow(clippy::type_complexity)]
    fn shadow(
        &self,
        parts: &Parts,
    ) -> Result<Option<(Option<Locked>, Box<dyn Record>)>, AuthRejection>;
}

/// How a rule finds its key: required (the layer's first key) or optional
/// (a further key, which may not apply).
pub(crate) trait KeyOf: Send + Sync + 'static {
    type Key: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static;
    fn key_of(&self, parts: &Parts) -> Result<Option<Self::Key>, AuthRejection>;
}

/// A key every request has (or is refused without).
pub(crate) struct Required<E>(pub(crate) Arc<E>);

impl<E: KeyExtractor> KeyOf for Required<E> {
    type Key = E::Key;

    fn key_of(&self, parts: &Parts) -> Result<Option<E::Key>, AuthRejection> {
        self.0.extract(parts).map(Some)
    }
}

/// A key that applies to some requests only (`None` for the others).
pub(crate) struct Optional<E>(pub(crate) E);

impl<E, K> KeyOf for Optional<E>
where
    E: KeyExtractor<Key = Option<K>>,
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    type Key = K;

    fn key_of(&self, parts: &Parts) -> Result<Option<K>, AuthRejection> {
        self.0.extract(parts)
    }
}

/// A key and its tracker.
pub(crate) struct KeyRule<E: KeyOf> {
    pub(crate) key: E,
    pub(crate) tracker: Tracker<E::Key>,
}

impl<E: KeyExtractor> Clone for KeyRule<Required<E>> {
    fn clone(&self) -> Self {
        Self {
            key: Required(Arc::clone(&self.key.0)),
            tracker: self.tracker.clone(),
        }
    }
}

impl<E: KeyOf> Rule for KeyRule<E> {
    #[inline]
    fn admit(
        &self,
        parts: &Parts,
        classifier: Option<&Arc<dyn Classifier>>,
    ) -> Result<Step, AuthRejection> {
        let Some(key) = self.key.key_of(parts)? else {
            return Ok(Step::Skip);
        };
        let tracker = &self.tracker;
        let hash = tracker.hash(&key);
        let asking = match tracker.admit(&key, hash) {
            Admission::Admitted(ticket, failures) => {
                let slot = Slot::shared(tracker.reserved(key, hash, ticket), classifier.cloned());
                let delay = tracker.policy().delay_for(failures);
                return Ok(Step::Admitted((slot, delay)));
            }
            // B3: a locked-out key is answered before the inner service
            // runs.
            Admission::Locked(record, now) => {
                let locked = Refused::LockedOut(Locked::new(record, now));
                return Ok(Step::Refused(locked, Arc::new(key)));
            }
            Admission::Crowded => return Ok(Step::Refused(Refused::Crowded, Arc::new(key))),
            #[cfg(feature = "redis")]
            Admission::Ask(asking) => Some(asking),
            // Full, or a shared store unavailable: wait.
            _ => None,
        };
        let acquire = Acquire::new(tracker.clone(), key.clone(), hash, asking);
        Ok(Step::Wait(waiting(acquire, key, classifier.cloned())))
    }

    fn acquire(
        &self,
        parts: &Parts,
        classifier: Option<&Arc<dyn Classifier>>,
    ) -> Result<Option<Waiting>, AuthRejection> {
        let Some(key) = self.key.key_of(parts)? else {
            return Ok(None);
        };
        let hash = self.tracker.hash(&key);
        let acquire = Acquire::new(self.tracker.clone(), key.clone(), hash, None);
        Ok(Some(waiting(acquire, key, classifier.cloned())))
    }

    fn locked(&self, parts: &Parts) -> Option<(Locked, KeyName)> {
        let key = self.key.key_of(parts).ok()??;
        let locked = self.tracker.check(&key).err()?;
        Some((locked, Arc::new(key)))
    }

    fn shadow(
        &self,
        parts: &Parts,
    ) -> Result<Option<(Option<Locked>, Box<dyn Record>)>, AuthRejection> {
        let Some(key) = self.key.key_of(parts)? else {
            return Ok(None);
        };
        let locked = self.tracker.check(&key).err();
        let recorder = Recorder {
            tracker: self.tracker.clone(),
            key,
        };
        Ok(Some((locked, Box::new(recorder))))
    }
}

fn waiting<K>(acquire: Acquire<K>, key: K, classifier: Option<Arc<dyn Classifier>>) -> Waiting
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    Box::pin(async move {
        match acquire.await {
            Ok(attempt) => Ok(Slot::shared(attempt.into_reserved(), classifier)),
            Err(refused) => Err((refused, Arc::new(key) as KeyName)),
        }
    })
}

/// Records one key's outcome in shadow mode.
struct Recorder<K> {
    tracker: Tracker<K>,
    key: K,
}

impl<K> Record for Recorder<K>
where
    K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    fn record(&self, outcome: Outcome, guess: Option<Fingerprint>) {
        match outcome {
            Outcome::Failure => {
                let failed = guess.map_or(Failed::new(), Failed::fingerprint_of);
                self.tracker.record_failure_with(&self.key, failed);
            }
            Outcome::Success => self.tracker.record_success(&self.key),
            Outcome::Neutral => {}
        }
    }
}

/// Records a request's outcome under each of its keys, without
/// reservations.
pub(crate) struct ShadowRecord {
    pub(crate) keys: Vec<Box<dyn Record>>,
    pub(crate) classifier: Option<Arc<dyn Classifier>>,
}

impl Settle for ShadowRecord {
    fn settle(&self, outcome: Outcome, guess: Option<Fingerprint>) {
        for key in &self.keys {
            key.record(outcome, guess);
        }
    }

    fn settle_with(&self, response: &response::Parts) {
        let (outcome, guess) = classify::judge(response, self.classifier.as_deref());
        self.settle(outcome, guess);
    }
}

impl Release for ShadowRecord {
    /// Nothing is reserved in shadow mode; the response is recorded when
    /// it comes.
    fn release(&self) {}
}
