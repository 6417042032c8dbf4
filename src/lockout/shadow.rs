//! Shadow mode (SECURITY.md B16): the layer decides, counts and logs as
//! usual, but lets every request through and marks the responses it would
//! have refused, so operators can roll limits out safely.

use std::sync::Arc;

use http::response;

use super::{Classifier, Outcome, classify, keys::Record, reservation::Settle};
use crate::{AuthRejection, Fingerprint, handoff::Release};

/// Marks a response that a [`LockoutLayer`](super::LockoutLayer) in
/// [shadow mode](super::LockoutBuilder::shadow) would have refused: it sits in
/// the response extensions, with the rejection the layer would have
/// answered with.
///
/// # Example
///
/// ```
/// use http::Response;
/// use portcullis::lockout::Shadowed;
///
/// let res = Response::new(());
/// assert!(res.extensions().get::<Shadowed>().is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadowed {
    rejection: AuthRejection,
}

impl Shadowed {
    pub(crate) fn new(rejection: AuthRejection) -> Self {
        Self { rejection }
    }

    /// What the layer would have answered.
    pub fn rejection(&self) -> &AuthRejection {
        &self.rejection
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
