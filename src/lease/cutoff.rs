//! Ending a response body with its lease.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::{Body, Frame};
use tokio::time::Instant;

use super::{End, Lease, watch::Watch};
use crate::{
    BoxError,
    reject::{
        Protocol, RejectionKind, connect_end_of_stream, grpc_percent_encode, grpc_web_trailers,
    },
};

/// The state of a leased body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No frame yet: the lease was checked when the request was accepted.
    Fresh,
    /// Frames flow; the lease is looked at before each.
    Open,
    /// The lease ended the body (or the inner body ended).
    Closed,
}

/// Ends a streaming body when its lease ends, in the framing of its
/// protocol: a gRPC body with trailers (`grpc-status` 16, or 14 when
/// revocations are unavailable), a gRPC-Web body with the same trailers as
/// its last frame, a Connect stream with an end-of-stream message holding
/// the error; any other body with a [`Truncated`] error, so that the
/// server aborts it (no terminating chunk on HTTP/1.1, a stream reset on
/// HTTP/2) and the client sees a cut, never a complete download.
///
/// A body that completes without waiting costs nothing beyond the lease
/// itself: the lease is looked at before each frame after the first (a
/// clock read and an atomic load, unless the revocation list changed), and
/// a timer and a notification are registered only when the body waits.
pub(crate) struct Cutoff {
    lease: Lease,
    /// The response's RPC framing, from its content type (`None`: plain).
    protocol: Option<Protocol>,
    state: State,
    /// The list generation last looked at, before the watch exists
    /// (`u64::MAX`: none yet).
    seen: u64,
    /// Registered when the body first waits (boxed: most bodies never wait,
    /// and every response body of every layer has room for this one).
    watch: Option<Box<Watch>>,
}

impl Cutoff {
    pub(crate) fn new(lease: Lease, protocol: Option<Protocol>) -> Self {
        Self {
            lease,
            protocol,
            state: State::Fresh,
            seen: u64::MAX,
            watch: None,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether the lease has ended, without waiting.
    fn ended(&mut self, cx: &mut Context<'_>) -> Option<End> {
        if let Some(watch) = &mut self.watch {
            return match watch.poll(&self.lease, cx) {
                Poll::Ready(end) => Some(end),
                Poll::Pending => None,
            };
        }
        if self
            .lease
            .expires_at()
            .is_some_and(|at| Instant::now() >= at)
        {
            return Some(End::Expired);
        }
        let generation = self.lease.revocations().inner.generation();
        if self.seen == generation {
            return None;
        }
        self.seen = generation;
        self.lease.revocation_end()
    }

    /// Ends the body: the frame to send last, or the error that aborts it.
    fn close(&mut self, end: End) -> Option<Result<Frame<Bytes>, BoxError>> {
        self.state = State::Closed;
        let credential = self.lease.credential();
        tracing::info!(
            target: "portcullis::lease",
            %credential,
            reason = %end,
            protocol = self.protocol.map_or("http", Protocol::as_str),
            "response stream ended with its lease"
        );
        let Some(protocol) = self.protocol else {
            // A plain body: only an error tells its client it was cut.
            return Some(Err(Box::new(Truncated { end })));
        };
        let last = match protocol {
            Protocol::Grpc => Frame::trailers(grpc_trailers(end)),
            text @ (Protocol::GrpcWeb | Protocol::GrpcWebText) => {
                let trailers = grpc_trailers(end);
                Frame::data(grpc_web_trailers(
                    &trailers["grpc-status"],
                    &trailers["grpc-message"],
                    text == Protocol::GrpcWebText,
                ))
            }
            Protocol::ConnectStreaming => {
                let kind = match end {
                    End::Expired => RejectionKind::Expired,
                    End::Revoked => RejectionKind::Revoked,
                    End::Unavailable => RejectionKind::Unavailable,
                };
                Frame::data(connect_end_of_stream(kind, end.message()))
            }
            _ => return Some(Err(Box::new(Truncated { end }))),
        };
        Some(Ok(last))
    }

    pub(crate) fn poll_frame<B>(
        &mut self,
        mut body: Pin<&mut B>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        match self.state {
            State::Closed => return Poll::Ready(None),
            State::Open if !body.is_end_stream() => {
                if let Some(end) = self.ended(cx) {
                    return Poll::Ready(self.close(end));
                }
            }
            State::Open | State::Fresh => {}
        }
        match body.as_mut().poll_frame(cx) {
            Poll::Ready(Some(frame)) => {
                self.state = State::Open;
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Ready(None) => {
                self.state = State::Closed;
                Poll::Ready(None)
            }
            Poll::Pending => {
                self.state = State::Open;
                if self.watch.is_none() {
                    self.watch = Some(Box::new(Watch::new(&self.lease)));
                    // Registers the task's waker with the watch.
                    if let Some(end) = self.ended(cx) {
                        return Poll::Ready(self.close(end));
                    }
                }
                Poll::Pending
            }
        }
    }
}

/// The error that ends a plain response body (SSE, a chunked download, a
/// body with a `Content-Length`) whose lease ended before the body did.
///
/// The server aborts the response when its body fails: hyper sends no
/// terminating chunk on HTTP/1.1 (and closes the connection) and resets the
/// stream on HTTP/2 (`RST_STREAM`), so the client sees an incomplete
/// response rather than a complete download (SECURITY.md V5). It is the
/// error of the [`ResponseBody`](crate::ResponseBody); the server logs it
/// and the client reports a truncated transfer.
///
/// # Example
///
/// ```
/// use portcullis::lease::{End, Truncated};
///
/// fn why(error: &(dyn std::error::Error + 'static)) -> Option<End> {
///     error.downcast_ref::<Truncated>().map(Truncated::end)
/// }
/// # let _ = why;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the response was cut short: {end}")]
pub struct Truncated {
    end: End,
}

impl Truncated {
    /// Why the lease ended.
    pub fn end(&self) -> End {
        self.end
    }
}

/// The trailers that end a gRPC response whose lease ended: the client
/// re-authenticates on UNAUTHENTICATED instead of retrying the same call.
fn grpc_trailers(end: End) -> HeaderMap {
    let code: u16 = match end {
        End::Expired | End::Revoked => 16,
        End::Unavailable => 14,
    };
    let mut trailers = HeaderMap::with_capacity(2);
    trailers.insert("grpc-status", HeaderValue::from(code));
    trailers.insert(
        "grpc-message",
        HeaderValue::try_from(grpc_percent_encode(end.message()))
            .expect("percent-encoding leaves only visible ASCII"),
    );
    trailers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_streams_end_unauthenticated_or_unavailable_with_a_readable_reason() {
        let expired = grpc_trailers(End::Expired);
        assert_eq!(expired["grpc-status"], "16");
        assert_eq!(expired["grpc-message"], "the credential expired");
        let revoked = grpc_trailers(End::Revoked);
        assert_eq!(revoked["grpc-status"], "16");
        assert_eq!(revoked["grpc-message"], "the credential was revoked");
        let unavailable = grpc_trailers(End::Unavailable);
        assert_eq!(unavailable["grpc-status"], "14");
        assert_eq!(
            unavailable["grpc-message"],
            "revocations are unavailable, sign in again later"
        );
    }
}
