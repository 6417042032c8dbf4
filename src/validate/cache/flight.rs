//! Single flight: one backend call per missed credential, whose outcome
//! is stored and answered only if no invalidation made meanwhile reaches it.

use std::sync::{Arc, atomic::Ordering};

use tokio::time::Instant;

use super::{
    entry::{self, Carrier, Outcome, Settled},
    validator::{Flight, FlightKey, Shared},
};
use crate::{
    Credential, CredentialSource, ValidationError, Validator,
    credential::KeyDigest,
    validate::{ValidationErrorKind, identity::deadline_after},
};

/// How many times one request asks the backend when each answer is
/// invalidated before it can be given.
const ATTEMPTS: usize = 3;

impl<V: Validator> Shared<V> {
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

    /// The cached outcome for the credential of `digest`, if there is one.
    pub(super) fn cached_now(
        &self,
        credential: &Credential,
        digest: &KeyDigest,
    ) -> Option<Outcome<V::Identity>> {
        let outcome = self.cached(digest, credential.source())?;
        tracing::trace!(%credential, ok = outcome.is_ok(), "validation cache hit");
        Some(outcome)
    }

    /// The outcome for `credential`, whose digest is `digest`: cached, or
    /// from the backend (one call for every concurrent miss).
    pub(super) async fn validate(
        &self,
        credential: &Credential,
        digest: KeyDigest,
    ) -> Outcome<V::Identity> {
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
