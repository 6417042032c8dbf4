//! [`ResponseFuture`] of the [`Lockout`](super::Lockout) service.

use super::reservation::Held;

crate::gate::response_future! {
    /// Response future of [`Lockout`](super::Lockout).
    Held
}
