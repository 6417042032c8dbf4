//! [`Revoked`]: a revocation in effect here, on its way to the other
//! replicas.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::sync::oneshot;

/// A revocation, in effect on this replica from the moment it was made.
///
/// Await it to know that the shared store (Redis) holds it, so that every
/// replica honours it: within a second for the replicas in sync, and before
/// they trust anything again for those that are not. With an in-memory
/// [`Revocations`](super::Revocations) it is ready at once.
///
/// Dropping it changes nothing: the revocation stays in effect here and
/// is still stored in the background.
///
/// # Errors
///
/// [`NotShared`] when the shared store did not take the revocation: it is
/// in effect on this replica only, for now. It is retried in the
/// background until it is stored or what it revokes expires; a caller that
/// must know (a sign-out endpoint) can answer 503 and let the client try
/// again.
#[must_use = "a revocation is in effect here at once; await it to know the other replicas have it"]
pub struct Revoked {
    state: State,
}

enum State {
    Done(Option<Result<(), NotShared>>),
    Storing(oneshot::Receiver<Result<(), NotShared>>),
}

impl Revoked {
    /// In effect everywhere it needs to be.
    pub(crate) fn done() -> Self {
        Self {
            state: State::Done(Some(Ok(()))),
        }
    }

    /// Not stored in the shared store, for `reason`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only a shared store fails
    pub(crate) fn failed(reason: &'static str) -> Self {
        Self {
            state: State::Done(Some(Err(NotShared { reason }))),
        }
    }

    /// Resolved by whoever stores it.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only a shared store answers later
    pub(crate) fn storing(receiver: oneshot::Receiver<Result<(), NotShared>>) -> Self {
        Self {
            state: State::Storing(receiver),
        }
    }
}

impl Future for Revoked {
    type Output = Result<(), NotShared>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Done(result) => Poll::Ready(result.take().unwrap_or(Ok(()))),
            State::Storing(receiver) => {
                Poll::Ready(match std::task::ready!(Pin::new(receiver).poll(cx)) {
                    Ok(result) => result,
                    Err(_) => Err(NotShared {
                        reason: "the revocation list was dropped before the revocation was stored",
                    }),
                })
            }
        }
    }
}

impl fmt::Debug for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Done(_) => "done",
            State::Storing(_) => "storing",
        };
        f.debug_struct("Revoked").field("state", &state).finish()
    }
}

/// The shared store did not take a revocation: it is in effect on this
/// replica only, for now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the revocation is in effect here but not stored for the other replicas: {reason}")]
pub struct NotShared {
    reason: &'static str,
}

impl NotShared {
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only a shared store fails
    pub(crate) fn new(reason: &'static str) -> Self {
        Self { reason }
    }
}
