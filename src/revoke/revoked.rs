//! [`Revoked`]: a revocation in effect here, on its way to the other
//! replicas.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

#[cfg(feature = "redis")]
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
/// A [`RevokeError`] says what happened instead:
///
/// - [`Queued`](RevokeErrorKind::Queued): the shared store is unreachable
///   (or did not answer within its timeout). The revocation is in effect on
///   this replica and queued; it reaches the store, and every replica, when
///   Redis is back. Answered at once while the list knows Redis is away,
///   never later than one store timeout: a sign-out need not wait for Redis.
/// - [`Overflow`](RevokeErrorKind::Overflow): too many revocations were
///   waiting for the store. In effect on this replica only.
/// - [`Full`](RevokeErrorKind::Full): the table is full of revocations still
///   in effect. Nothing was revoked; answer 503 and let the client try again
///   (SECURITY.md V5: a live revocation is never dropped to make room).
#[must_use = "a revocation is in effect here at once; await it to know the other replicas have it"]
pub struct Revoked {
    state: State,
}

enum State {
    Done(Option<Result<(), RevokeError>>),
    /// Only a shared store answers later.
    #[cfg(feature = "redis")]
    Storing(oneshot::Receiver<Result<(), RevokeError>>),
}

impl Revoked {
    /// In effect everywhere it needs to be.
    pub(crate) fn done() -> Self {
        Self {
            state: State::Done(Some(Ok(()))),
        }
    }

    /// Resolved at once with `error`.
    pub(crate) fn failed(error: RevokeError) -> Self {
        Self {
            state: State::Done(Some(Err(error))),
        }
    }

    /// Resolved by whoever stores it.
    #[cfg(feature = "redis")]
    pub(crate) fn storing(receiver: oneshot::Receiver<Result<(), RevokeError>>) -> Self {
        Self {
            state: State::Storing(receiver),
        }
    }
}

impl Future for Revoked {
    type Output = Result<(), RevokeError>;

    // `_cx`: only a shared store's revocation waits (for Redis to store
    // it); without one, every revocation is done at once.
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Done(result) => Poll::Ready(result.take().unwrap_or(Ok(()))),
            #[cfg(feature = "redis")]
            State::Storing(receiver) => {
                Poll::Ready(match std::task::ready!(Pin::new(receiver).poll(_cx)) {
                    Ok(result) => result,
                    Err(_) => Err(RevokeError::new(
                        RevokeErrorKind::Queued,
                        "the revocation list was dropped before the revocation was stored",
                    )),
                })
            }
        }
    }
}

impl fmt::Debug for Revoked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Done(_) => "done",
            #[cfg(feature = "redis")]
            State::Storing(_) => "storing",
        };
        f.debug_struct("Revoked").field("state", &state).finish()
    }
}

/// A revocation that is not (yet) where [`Revoked`] promises: see
/// [`kind`](Self::kind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", kind.describe())]
pub struct RevokeError {
    kind: RevokeErrorKind,
    reason: &'static str,
}

/// What happened to a revocation that the shared store does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RevokeErrorKind {
    /// In effect on this replica, queued for the shared store: it reaches
    /// every replica when the store answers again.
    Queued,
    /// In effect on this replica only: the queue of revocations waiting for
    /// the shared store was full (counted in
    /// [`Stats::dropped`](super::Stats::dropped), logged).
    Overflow,
    /// Not in effect anywhere: the table is full of revocations still in
    /// effect (counted in [`Stats::refused`](super::Stats::refused),
    /// logged).
    Full,
}

impl RevokeErrorKind {
    fn describe(self) -> &'static str {
        match self {
            Self::Queued => "the revocation is in effect here and queued for the other replicas",
            Self::Overflow => {
                "the revocation is in effect here but not shared with the other replicas"
            }
            Self::Full => "the revocation is not in effect",
        }
    }
}

impl RevokeError {
    pub(crate) fn new(kind: RevokeErrorKind, reason: &'static str) -> Self {
        Self { kind, reason }
    }

    /// What happened.
    pub fn kind(&self) -> RevokeErrorKind {
        self.kind
    }

    /// Whether the revocation is in effect on this replica (everything but
    /// [`Full`](RevokeErrorKind::Full)): a sign-out may answer success for
    /// this replica's clients.
    pub fn in_effect_here(&self) -> bool {
        self.kind != RevokeErrorKind::Full
    }
}
