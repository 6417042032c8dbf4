//! Rejections carried by a `tonic::Status` (feature `tonic`).

use std::error::Error;

use tonic::Status;

use super::AuthRejection;

/// The [`AuthRejection`] in the source chain of `status`, if any.
pub(super) fn rejection(status: &Status) -> Option<&AuthRejection> {
    let mut source = status.source();
    while let Some(error) = source {
        if let Some(rejection) = error.downcast_ref::<AuthRejection>() {
            return Some(rejection);
        }
        source = error.source();
    }
    None
}
