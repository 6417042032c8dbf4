//! A request's reservation in the [`LockoutLayer`](super::LockoutLayer),
//! and its two handles.
//!
//! An admitted request holds a reservation while its outcome can still
//! become a failure. The lockout layer keeps one handle (the [`Held`] hook
//! of its response future) and puts another (a
//! [`Reservation`](crate::handoff::Reservation)) into the request
//! extensions. Whoever settles first decides:
//!
//! - `AuthLayer` releases it as soon as the validator accepts the
//!   credential, so the handler runs without holding a slot (B11); the
//!   response is still judged, and a failure (or a success) it shows is
//!   recorded without a reservation (B20);
//! - otherwise the response settles it, classified (a login handler's 401);
//! - a request dropped before either (the client went away) settles it as
//!   neutral.

use std::sync::{
    Arc,
    atomic::{AtomicU8, Ordering},
};

use http::response;

use super::{Classifier, Outcome, Shadowed, attempt::Reserved, classify};
use crate::{Fingerprint, gate::Hook, handoff::Release};

/// A reservation that can be settled once, from either handle (or released
/// early by the layers inside).
pub(crate) trait Settle: Release {
    /// Ends the reservation with `outcome` (a failure with the fingerprint
    /// of its guess, when known), unless it ended already.
    fn settle(&self, outcome: Outcome, guess: Option<Fingerprint>);

    /// Ends the reservation with the outcome `response` shows, unless it
    /// ended already; after a [`release`](Self::release), records that
    /// outcome without a reservation.
    fn settle_with(&self, response: &response::Parts);
}

/// A [`Slot`] whose reservation is still held.
const OPEN: u8 = 0;
/// Released early: the response is still to be judged.
const RELEASED: u8 = 1;
/// Settled: nothing more to do.
const SETTLED: u8 = 2;

/// The reservation of one admitted request.
pub(crate) struct Slot<K> {
    reserved: Reserved<K>,
    state: AtomicU8,
    classifier: Option<Arc<dyn Classifier>>,
}

impl<K: Send + Sync + 'static> Slot<K> {
    /// The reservation, shared by the two handles.
    pub(crate) fn shared(
        reserved: Reserved<K>,
        classifier: Option<Arc<dyn Classifier>>,
    ) -> Arc<dyn Settle> {
        Arc::new(Self {
            reserved,
            state: AtomicU8::new(OPEN),
            classifier,
        })
    }
}

impl<K: Send + Sync> Settle for Slot<K> {
    fn settle(&self, outcome: Outcome, guess: Option<Fingerprint>) {
        if self.state.swap(SETTLED, Ordering::AcqRel) == OPEN {
            self.reserved.end(outcome, guess);
        }
    }

    fn settle_with(&self, response: &response::Parts) {
        match self.state.load(Ordering::Acquire) {
            OPEN => {
                let (outcome, guess) = classify::judge(response, self.classifier.as_deref());
                self.settle(outcome, guess);
            }
            RELEASED if self.state.swap(SETTLED, Ordering::AcqRel) == RELEASED => {
                // B20: an early release never swallows what the handler
                // answered (a `Failed` marker, a 401).
                let (outcome, guess) = classify::judge(response, self.classifier.as_deref());
                if outcome != Outcome::Neutral {
                    self.reserved.record(outcome, guess);
                }
            }
            _ => {}
        }
    }
}

impl<K: Send + Sync> Release for Slot<K> {
    fn release(&self) {
        if self
            .state
            .compare_exchange(OPEN, RELEASED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.reserved.end(Outcome::Neutral, None);
        }
    }
}

impl<K> Drop for Slot<K> {
    /// A reservation nobody settled (a request refused by another key of
    /// the same layer, a decision abandoned) ends as neutral.
    fn drop(&mut self) {
        if *self.state.get_mut() == OPEN {
            self.reserved.end(Outcome::Neutral, None);
        }
    }
}

/// The reservations of one request under several keys of one layer,
/// settled together.
pub(crate) struct Slots(pub(crate) Vec<Arc<dyn Settle>>);

impl Settle for Slots {
    fn settle(&self, outcome: Outcome, guess: Option<Fingerprint>) {
        for slot in &self.0 {
            slot.settle(outcome, guess);
        }
    }

    fn settle_with(&self, response: &response::Parts) {
        for slot in &self.0 {
            slot.settle_with(response);
        }
    }
}

impl Release for Slots {
    fn release(&self) {
        for slot in &self.0 {
            slot.release();
        }
    }
}

/// The lockout layer's handle, the hook of its response future: settles
/// the reservation with the response, or as neutral when the request is
/// dropped; in shadow mode, marks the response the layer would have
/// refused.
pub(crate) struct Held {
    slot: Option<Arc<dyn Settle>>,
    mark: Option<Box<Shadowed>>,
}

impl Held {
    /// Nothing to settle (a refused or unlimited request).
    pub(crate) const NONE: Self = Self {
        slot: None,
        mark: None,
    };

    pub(crate) fn slot(slot: Arc<dyn Settle>) -> Self {
        Self {
            slot: Some(slot),
            mark: None,
        }
    }

    /// Shadow mode: `slot` records the outcome; `mark` goes on the response.
    pub(crate) fn shadow(slot: Option<Arc<dyn Settle>>, mark: Option<Shadowed>) -> Self {
        Self {
            slot,
            mark: mark.map(Box::new),
        }
    }
}

impl Hook for Held {
    fn on_response(mut self, response: &mut response::Parts) {
        if let Some(slot) = self.slot.take() {
            slot.settle_with(response);
        }
        if let Some(mark) = self.mark.take() {
            response.extensions.insert(*mark);
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.settle(Outcome::Neutral, None);
        }
    }
}
