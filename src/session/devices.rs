//! A subject's sessions: the list, ending one, signing out everywhere for
//! good, an operator's revocation, and the retry of what the store did not
//! take.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use http::request::Parts;
use tokio::time::Instant;

use super::{
    SessionError, SessionErrorKind, SessionInfo, SessionList, Sessions, SignedOut, family::Ending,
    secret::Presented, sessions::PROPAGATION, store::Unreachable,
};
use crate::events::{self, Record, SessionEndReason};

/// The longest wait between two tries of a sign-out the store did not
/// take.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// A change the store did not take, retried until it does.
enum Pending {
    /// Remove a session.
    Remove(Box<str>),
    /// End every session of a subject created until a cutoff.
    EndAll(Arc<str>, SystemTime),
}

impl Sessions {
    /// Ends session `session_id` (the `sid` of its access tokens) whatever
    /// its tokens and whoever its subject: for an operator. Returns whether
    /// the session was live. A user ends their own with [`end`](Self::end).
    ///
    /// # Errors
    ///
    /// [`Unavailable`](SessionErrorKind::Unavailable) when the store did not
    /// answer: the session is revoked here all the same (its access tokens,
    /// streams and refreshes, for the revocation list's
    /// [`max_lifetime`](crate::revoke::RevocationsBuilder::max_lifetime)),
    /// and its removal from the store is retried in the background until
    /// the store takes it or the session would have ended anyway.
    pub async fn revoke_session(&self, session_id: &str) -> Result<bool, SessionError> {
        drop(self.revoke_id(session_id));
        match self.inner.store.remove(session_id).await {
            Ok(live) => {
                tracing::info!(target: "portcullis::session", session = %session_id, live, "session revoked");
                Ok(live)
            }
            Err(Unreachable) => {
                // Not shortened to an access token's lifetime: refused
                // until the store forgets the session.
                drop(self.inner.revocations.revoke_id(session_id, None));
                self.retry(Pending::Remove(session_id.into()));
                Err(self.unreachable(None))
            }
        }
    }

    /// The live sessions of `subject`, most recently used first, with
    /// `current` (the caller's session id: the `sid` of its access token)
    /// marked: what a "where you're signed in" page shows.
    ///
    /// # Errors
    ///
    /// [`Unavailable`](SessionErrorKind::Unavailable) when the store did not
    /// answer.
    pub async fn list(
        &self,
        subject: &str,
        current: Option<&str>,
    ) -> Result<SessionList, SessionError> {
        match self.inner.store.list(subject).await {
            Ok(listed) => Ok(SessionList::new(
                listed
                    .into_iter()
                    .map(|l| {
                        let is_current = current == Some(&*l.sid);
                        SessionInfo::new(l.sid, l.created, l.last_used, is_current, l.device)
                    })
                    .collect(),
            )),
            Err(Unreachable) => Err(self.unreachable(None)),
        }
    }

    /// Ends session `session_id` if it is a live session of `subject` ("sign
    /// out that device"): its refresh token at once, its access tokens and
    /// open streams through the revocation list (within a second on every
    /// replica with a list shared through Redis). Returns whether it was:
    /// an id that is not one of `subject`'s sessions changes nothing (an
    /// endpoint answers 404).
    ///
    /// # Errors
    ///
    /// [`Unavailable`](SessionErrorKind::Unavailable) when the store did not
    /// answer in time; the session may end when the store runs the request
    /// late, and ending it again is harmless.
    pub async fn end(&self, subject: &str, session_id: &str) -> Result<bool, SessionError> {
        match self.inner.store.end_of(subject, session_id).await {
            Ok(true) => {
                tracing::info!(target: "portcullis::session", session = %session_id, subject = %subject, "session ended by its owner");
                events::emit(Record::SessionEnded {
                    subject,
                    session: session_id,
                    reason: SessionEndReason::EndedByUser,
                });
                if !self.revoke_and_wait(session_id).await {
                    return Err(self.refuse(SessionErrorKind::Unavailable, None, None));
                }
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(Unreachable) => Err(self.unreachable(None)),
        }
    }

    /// Signs `subject` out everywhere, for good (SECURITY.md S5): every
    /// session it started until now is deleted from the store, so that no
    /// refresh token issued before refreshes again, whenever it comes
    /// back (days later, after a restart, on another replica); its access
    /// tokens and open streams end through the revocation list
    /// ([`Revocations::revoke_subject`](crate::revoke::Revocations::revoke_subject)).
    /// Waits up to a second for the revocation to reach the shared store.
    /// Returns how many sessions ended.
    ///
    /// Sessions signed in afterwards are not affected.
    ///
    /// # Errors
    ///
    /// [`Unavailable`](SessionErrorKind::Unavailable) when the store did not
    /// answer. The sign-out is in effect on this replica at once (through
    /// the revocation list), and it is kept and retried in the background
    /// until the store takes it (or every session it ends would have ended
    /// anyway): tell the user it is under way.
    pub async fn sign_out_everywhere(&self, subject: &str) -> Result<usize, SessionError> {
        let revoked = self.inner.revocations.revoke_subject(subject);
        let cutoff = SystemTime::now();
        let ended = self.inner.store.end_all(subject, cutoff).await;
        match tokio::time::timeout(PROPAGATION, revoked).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(target: "portcullis::session", subject = %subject, %error, "sign-out everywhere not shared yet");
            }
            Err(_) => {
                tracing::warn!(target: "portcullis::session", subject = %subject, "sign-out everywhere not shared within a second (retrying)");
            }
        }
        match ended {
            Ok(ended) => {
                self.ended_everywhere(subject, &ended);
                Ok(ended.len())
            }
            Err(Unreachable) => {
                tracing::warn!(target: "portcullis::session", subject = %subject, "the session store did not take a sign-out everywhere: in effect here, retried until stored");
                self.retry(Pending::EndAll(subject.into(), cutoff));
                Err(self.unreachable(None))
            }
        }
    }

    /// Signs out everywhere the subject of the session whose refresh token
    /// the request's cookie carries, after the cross-origin check: the
    /// endpoint helper ("sign out of all devices" beside "sign out"). The
    /// cookie's own session ends as with [`sign_out`](Self::sign_out), then
    /// every other session of its subject as with
    /// [`sign_out_everywhere`](Self::sign_out_everywhere).
    ///
    /// # Errors
    ///
    /// As [`sign_out`](Self::sign_out) and
    /// [`sign_out_everywhere`](Self::sign_out_everywhere).
    pub async fn sign_out_everywhere_from(
        &self,
        request: &Parts,
    ) -> Result<SignedOut, SessionError> {
        let token = self.presented(request)?;
        let Some(presented) = Presented::parse(&token) else {
            return Err(self.refuse_clearing(
                SessionErrorKind::Unknown,
                Some(request),
                Some(&token),
                false,
            ));
        };
        let sid = presented.sid();
        match self.inner.store.end(sid, presented.digest()).await {
            Ok(Ending::Ended { subject }) => {
                events::emit(Record::SessionEnded {
                    subject: &subject,
                    session: sid,
                    reason: SessionEndReason::SignedOutEverywhere,
                });
                match self.sign_out_everywhere(&subject).await {
                    Ok(_) => Ok(SignedOut::new(self.inner.cookie.clear())),
                    Err(error) => Err(self.refuse(error.kind(), Some(request), None)),
                }
            }
            Ok(Ending::Reused { subject }) => {
                self.reused(sid, &subject);
                Err(self.refuse(SessionErrorKind::Reused, Some(request), Some(&token)))
            }
            Ok(Ending::Unknown) => {
                Err(self.refuse(SessionErrorKind::Unknown, Some(request), Some(&token)))
            }
            Err(Unreachable) => Err(self.unreachable(Some(request))),
        }
    }

    fn ended_everywhere(&self, subject: &str, ended: &[Box<str>]) {
        tracing::info!(target: "portcullis::session", subject = %subject, sessions = ended.len(), "signed out everywhere");
        for sid in ended {
            events::emit(Record::SessionEnded {
                subject,
                session: sid,
                reason: SessionEndReason::SignedOutEverywhere,
            });
        }
    }

    /// Retries `pending` in the background until the store takes it, or
    /// every session it could reach would have ended anyway (the absolute
    /// lifetime), or the sessions are dropped.
    fn retry(&self, pending: Pending) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let give_up = Instant::now() + self.inner.absolute;
        runtime.spawn(async move {
            let mut wait = Duration::from_millis(250);
            loop {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY_WAIT);
                let Some(inner) = weak.upgrade() else { return };
                if Instant::now() >= give_up {
                    return;
                }
                let sessions = Sessions { inner };
                match &pending {
                    Pending::Remove(sid) => {
                        if sessions.inner.store.remove(sid).await.is_ok() {
                            tracing::info!(target: "portcullis::session", session = %sid, "session revoked in the store");
                            return;
                        }
                    }
                    Pending::EndAll(subject, cutoff) => {
                        if let Ok(ended) = sessions.inner.store.end_all(subject, *cutoff).await {
                            sessions.ended_everywhere(subject, &ended);
                            return;
                        }
                    }
                }
            }
        });
    }
}
