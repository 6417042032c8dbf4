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

use tonic::{Request, Status};

use crate::auth::Anonymous;

/// The caller's identity, as produced by the [`Validator`](crate::Validator)
/// of the [`AuthLayer`](crate::AuthLayer) in front of the service.
///
/// # Errors
///
/// - `UNAUTHENTICATED` when the layer let the request through anonymous
///   (optional mode or a public method).
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
        return Err(Status::unauthenticated("no credential was presented"));
    }
    let message = super::layer_missing::<T>();
    tracing::error!(target: "portcullis::tonic", "{message}");
    Err(Status::internal(message))
}
