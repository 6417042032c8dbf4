//! Shadow mode (SECURITY.md B16): the layer decides, counts and logs as
//! usual, but lets every request through and marks the responses it would
//! have refused, so operators can roll limits out safely.

use crate::AuthRejection;

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
