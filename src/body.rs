//! The response body of portcullis services.

use std::{
    fmt,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::{BoxError, lease::Cutoff};

pin_project! {
    /// The body of a response that went through a portcullis layer: either
    /// the inner service's body, untouched, or the bytes of a rejection.
    ///
    /// With [leases](crate::lease) on, the inner body ends when its lease
    /// ends (a gRPC body with `grpc-status` trailers; a plain HTTP body with
    /// a [`Truncated`](crate::lease::Truncated) error, so that the server
    /// aborts the response and the client sees it was cut short).
    ///
    /// Its error is a [`BoxError`]: the inner body's error, boxed, or
    /// [`Truncated`](crate::lease::Truncated).
    ///
    /// A rejection needs a body the inner service's body type cannot always
    /// provide, so the layers answer with this enum instead of asking for
    /// `B: Default`.
    pub struct ResponseBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B },
        // Boxed, so that a response with the inner body is no larger than
        // the inner service's own: a response is moved several times on its
        // way out, and a few bytes more turn each move into a `memcpy`.
        Other { other: Pin<Box<Other<B>>> },
    }
}

pin_project! {
    #[project = OtherProj]
    enum Other<B> {
        Rejection { data: Option<Bytes> },
        Leased { #[pin] body: B, cutoff: Cutoff },
    }
}

impl<B> ResponseBody<B> {
    /// Wraps the inner service's body.
    pub fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body },
        }
    }

    /// The inner service's body, ended by `cutoff` when its lease ends.
    pub(crate) fn leased(body: B, cutoff: Cutoff) -> Self {
        Self {
            kind: Kind::Other {
                other: Box::pin(Other::Leased { body, cutoff }),
            },
        }
    }

    /// A complete body holding `data`.
    pub fn rejection(data: Bytes) -> Self {
        let data = (!data.is_empty()).then_some(data);
        Self {
            kind: Kind::Other {
                other: Box::pin(Other::Rejection { data }),
            },
        }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner { body } => body
                .poll_frame(cx)
                .map(|frame| frame.map(|frame| frame.map_err(Into::into))),
            KindProj::Other { other } => match other.as_mut().project() {
                OtherProj::Rejection { data } => {
                    Poll::Ready(data.take().map(|d| Ok(Frame::data(d))))
                }
                OtherProj::Leased { body, cutoff } => cutoff.poll_frame(body, cx),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body } => body.is_end_stream(),
            Kind::Other { other } => match &**other {
                Other::Rejection { data } => data.is_none(),
                Other::Leased { body, cutoff } => cutoff.is_closed() || body.is_end_stream(),
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body } => body.size_hint(),
            Kind::Other { other } => match &**other {
                Other::Rejection { data } => {
                    SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
                }
                Other::Leased { body, cutoff } if !cutoff.is_closed() => body.size_hint(),
                Other::Leased { .. } => SizeHint::with_exact(0),
            },
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let other = match &self.kind {
            Kind::Inner { body } => return f.debug_tuple("Inner").field(body).finish(),
            Kind::Other { other } => other,
        };
        match &**other {
            Other::Rejection { data } => f.debug_tuple("Rejection").field(data).finish(),
            Other::Leased { body, cutoff } => f
                .debug_struct("Leased")
                .field("body", body)
                .field("closed", &cutoff.is_closed())
                .finish(),
        }
    }
}
