//! tonic integration (feature `tonic`).
//!
//! The layers work with `tonic::transport::Server::builder().layer(..)` as
//! they are: gRPC requests (`content-type: application/grpc*`) are answered
//! with trailers-only responses carrying the right `grpc-status`. Handlers
//! read the caller's identity with [`identity`].
//!
//! # Example
//!
//! ```
//! use portcullis::integration::tonic::identity;
//! use tonic::{Code, Request};
//!
//! #[derive(Clone, Debug)]
//! struct User(&'static str);
//!
//! let mut request = Request::new(());
//! request.extensions_mut().insert(User("alice"));
//! assert_eq!(identity::<User, _>(&request).unwrap().0, "alice");
//!
//! let bare = Request::new(());
//! assert_eq!(identity::<User, _>(&bare).unwrap_err().code(), Code::Internal);
//! ```

use std::{error::Error, sync::Arc};

use tonic::{Request, Status};

use crate::{AuthRejection, auth::Anonymous, reject::RejectionKind};

/// The caller's identity, as produced by the [`Validator`](crate::Validator)
/// of the [`AuthLayer`](crate::AuthLayer) in front of the service.
///
/// # Errors
///
/// - `UNAUTHENTICATED` when the layer let the request through anonymous
///   (optional mode or a public method). The `Status` carries an
///   [`AuthRejection`] of kind [`Missing`](RejectionKind::Missing) as its
///   [source](Error::source), so a
///   [`LockoutLayer`](crate::lockout::LockoutLayer) in front does not count
///   the call as a failed attempt (see [`rejection`](super::rejection)); the
///   client sees only the code and message.
/// - `INTERNAL` when there is no `AuthLayer` in front of the service, or its
///   validator produces another type: a deployment bug, logged at `error`.
pub fn identity<T, M>(request: &Request<M>) -> Result<&T, Status>
where
    T: Send + Sync + 'static,
{
    let extensions = request.extensions();
    if let Some(identity) = extensions.get::<T>() {
        return Ok(identity);
    }
    if extensions.get::<Anonymous>().is_some() {
        let rejection = AuthRejection::new(RejectionKind::Missing);
        let mut status = Status::unauthenticated(rejection.to_string());
        status.set_source(Arc::new(rejection));
        return Err(status);
    }
    let message = super::layer_missing::<T>();
    tracing::error!(target: "portcullis::tonic", "{message}");
    Err(Status::internal(message))
}

/// The [`AuthRejection`] in the source chain of `status`, if any.
pub(super) fn status_rejection(status: &Status) -> Option<&AuthRejection> {
    let mut source = status.source();
    while let Some(error) = source {
        if let Some(rejection) = error.downcast_ref::<AuthRejection>() {
            return Some(rejection);
        }
        source = error.source();
    }
    None
}
