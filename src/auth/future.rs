//! [`ResponseFuture`] of the [`Auth`](super::Auth) service, and the hook
//! that ends a leased response body.

use http::response;

use crate::{
    ResponseBody,
    gate::Hook,
    lease::{Cutoff, Lease},
    reject::Protocol,
};

crate::gate::response_future! {
    /// The response future of [`Auth`](super::Auth).
    Cut
}

/// The hook of an `AuthLayer` request: with a lease, its response body
/// ends with it. `()` (a refusal, an anonymous request) has none.
#[derive(Default)]
pub(crate) struct Cut(pub(crate) Option<Lease>);

impl From<()> for Cut {
    fn from((): ()) -> Self {
        Self(None)
    }
}

impl Hook for Cut {
    fn on_response(self, _: &mut response::Parts) {}

    #[inline]
    fn respond<B>(self, head: &mut response::Parts, body: B) -> ResponseBody<B> {
        match self.0 {
            Some(lease) => {
                let protocol = Protocol::from_content_type(&head.headers);
                ResponseBody::leased(body, Cutoff::new(lease, protocol))
            }
            None => ResponseBody::inner(body),
        }
    }
}
