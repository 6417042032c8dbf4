//! Waiting for a lease to end: [`Lease::ended`], and the watch it shares
//! with streaming bodies.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use tokio::{
    sync::futures::OwnedNotified,
    time::{Sleep, sleep_until},
};

use super::{End, Lease};

/// Wakes its task when the lease may have ended: at the expiry, and at every
/// change of the revocation list.
pub(crate) struct Watch {
    notified: Pin<Box<OwnedNotified>>,
    expiry: Option<Pin<Box<Sleep>>>,
    /// The list generation last looked at.
    seen: Option<u64>,
}

impl Watch {
    pub(crate) fn new(lease: &Lease) -> Self {
        Self {
            notified: enabled(lease),
            expiry: lease.expires_at().map(|at| Box::pin(sleep_until(at))),
            seen: None,
        }
    }

    pub(crate) fn poll(&mut self, lease: &Lease, cx: &mut Context<'_>) -> Poll<End> {
        loop {
            // The notification is enabled before the list is read, so a
            // revocation made after this read wakes the task.
            let generation = lease.revocations().inner.generation();
            if self.seen != Some(generation) {
                self.seen = Some(generation);
                if let Some(end) = lease.revocation_end() {
                    return Poll::Ready(end);
                }
            }
            if let Some(expiry) = &mut self.expiry
                && expiry.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(End::Expired);
            }
            match self.notified.as_mut().poll(cx) {
                Poll::Ready(()) => self.notified = enabled(lease),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A notification of the next change of the lease's list, registered now.
fn enabled(lease: &Lease) -> Pin<Box<OwnedNotified>> {
    let changed = lease.revocations().inner.changed().clone();
    let mut notified = Box::pin(changed.notified_owned());
    notified.as_mut().enable();
    notified
}

impl Lease {
    /// A future that resolves when the lease ends, with the reason: at its
    /// expiry, or as soon as its credential is revoked (or the revocation
    /// list stops answering: past its staleness bound without its shared store).
    pub fn ended(&self) -> Ended {
        Ended::new(self.clone())
    }
}

/// Resolves when a [`Lease`] ends; see [`Lease::ended`].
///
/// Cheap to create; registers with the revocation list and a timer on its
/// first poll. `Unpin`, so `tokio::select!` can take `&mut ended` in a loop.
#[must_use = "futures do nothing unless polled"]
pub struct Ended {
    lease: Lease,
    watch: Option<Watch>,
}

impl Ended {
    fn new(lease: Lease) -> Self {
        Self { lease, watch: None }
    }
}

impl Future for Ended {
    type Output = End;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<End> {
        let this = self.get_mut();
        let lease = &this.lease;
        this.watch
            .get_or_insert_with(|| Watch::new(lease))
            .poll(lease, cx)
    }
}

impl fmt::Debug for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ended")
            .field("lease", &self.lease)
            .field("watching", &self.watch.is_some())
            .finish()
    }
}
