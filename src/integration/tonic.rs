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

use std::sync::Arc;

use tonic::{Request, Status};

use crate::{
    AuthRejection,
    auth::Anonymous,
    reject::{DefaultRenderer, RejectionKind, Renderer},
};

/// The `Status` the [`DefaultRenderer`] answers gRPC calls with (code,
/// message, `retry-after` metadata), with the rejection as its
/// [source](std::error::Error::source), so a handler answers a refusal in one line and
/// a [`LockoutLayer`](crate::lockout::LockoutLayer) in front counts it as
/// the layers' own rejections (see [`rejection`](super::rejection)).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use portcullis::{AuthRejection, reject::RejectionKind};
/// use tonic::{Code, Status};
///
/// let locked = AuthRejection::new(RejectionKind::LockedOut).with_retry_after(Duration::from_secs(90));
/// let status = Status::from(locked);
/// assert_eq!(status.code(), Code::ResourceExhausted);
/// assert_eq!(status.metadata().get("retry-after").unwrap(), "90");
/// ```
impl From<AuthRejection> for Status {
    fn from(rejection: AuthRejection) -> Self {
        let (parts, ()) = http::Request::builder()
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(())
            .expect("a request with a static header is valid")
            .into_parts();
        let response = DefaultRenderer::new().render(&rejection, &parts);
        let mut status = Status::from_header_map(response.headers())
            .unwrap_or_else(|| Status::unauthenticated(rejection.to_string()));
        status.set_source(Arc::new(rejection));
        status
    }
}

/// The caller's identity, as produced by the [`Validator`](crate::Validator)
/// of the [`AuthLayer`](crate::AuthLayer) in front of the service.
///
/// # Errors
///
/// - `UNAUTHENTICATED` when the layer let the request through anonymous
///   (optional mode or a public method). The `Status` carries an
///   [`AuthRejection`] of kind [`Missing`](RejectionKind::Missing) as its
///   [source](std::error::Error::source), so a
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
