//! Integration with axum and tonic.
//!
//! Both are optional: the layers themselves work with any hyper-based
//! service; these modules only make the identity convenient to read.

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "tonic")]
pub mod tonic;

/// Explains a missing identity when the request was never authenticated.
#[cfg(any(feature = "axum", feature = "tonic"))]
fn layer_missing<T>() -> String {
    format!(
        "portcullis: no `{}` in the request extensions: the route is not behind an AuthLayer \
         whose validator produces this identity type",
        std::any::type_name::<T>()
    )
}
