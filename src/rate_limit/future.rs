//! [`ResponseFuture`] of the [`RateLimit`](super::RateLimit) service.

use super::headers::Headers;

crate::gate::response_future! {
    /// The response future of [`RateLimit`](super::RateLimit).
    Option<Headers>
}
