//! Integration with axum and tonic.
//!
//! Both are optional: [`AuthLayer`](crate::AuthLayer) and the limiters work
//! with any hyper-based service; these modules make the identity convenient
//! to read. With tonic, enable the `tonic` feature for the limiters too:
//! [`ClientIp`](crate::ClientIp) reads tonic's connect info only with it.
//!
//! # Security
//!
//! The helpers never turn a missing credential into a counted failure: the
//! answers they give an anonymous request carry an
//! [`AuthRejection`] of kind [`Missing`](crate::reject::RejectionKind::Missing), which
//! [`rejection`] finds and the [`LockoutLayer`](crate::lockout::LockoutLayer)
//! does not count (SECURITY B1).

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "tonic")]
pub mod tonic;

use http::Extensions;

use crate::AuthRejection;

/// The [`AuthRejection`] a response carries, wherever portcullis put it.
///
/// - In the response extensions: every layer's rejection, and the answer of
///   the axum `Identity` extractor (feature `axum`) to an anonymous request.
/// - With feature `tonic`, as the [source](std::error::Error::source) of the
///   `tonic::Status` that tonic stores in the extensions of an error
///   response. `integration::tonic::identity` answers anonymous calls that
///   way, because a `Status` cannot carry extensions of its own;
///   a tonic handler may attach an `AuthRejection` to a `Status` of its own
///   with `Status::set_source` to say what the outcome was.
///
/// Layers that classify outcomes (the lockout) read rejections through this
/// function, so both places count the same.
///
/// # Example
///
/// ```
/// use http::Response;
/// use portcullis::{AuthRejection, integration::rejection, reject::RejectionKind};
///
/// let mut res = Response::new(());
/// assert!(rejection(res.extensions()).is_none());
/// res.extensions_mut().insert(AuthRejection::new(RejectionKind::Missing));
/// assert_eq!(rejection(res.extensions()).unwrap().kind(), RejectionKind::Missing);
/// ```
pub fn rejection(extensions: &Extensions) -> Option<&AuthRejection> {
    crate::reject::carried(extensions)
}

/// Explains a missing identity when the request was never authenticated.
#[cfg(any(feature = "axum", feature = "tonic"))]
fn layer_missing<T>() -> String {
    format!(
        "portcullis: no `{}` in the request extensions: the route is not behind an AuthLayer \
         whose validator produces this identity type",
        std::any::type_name::<T>()
    )
}
