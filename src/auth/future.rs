//! [`ResponseFuture`] of the [`Auth`](super::Auth) service.

crate::gate::response_future! {
    /// The response future of [`Auth`](super::Auth).
    crate::lease::Cut
}
