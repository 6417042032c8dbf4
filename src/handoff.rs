//! The hand-off between a `LockoutLayer` and the `AuthLayer` inside it: the
//! two meet here and nowhere else.
//!
//! An admitted request holds a reservation in every lockout layer it
//! passed while its outcome can still become a failure. Each lockout layer
//! keeps one handle (the hook of its response future) and puts another into
//! the request extensions ([`Reservation`]). `AuthLayer` releases them as
//! soon as the validator accepts the credential, so the handler runs
//! without holding a slot (B11); the response is still judged by each
//! lockout, and a failure (or a success) it shows is recorded without a
//! reservation (B20).
//!
//! The other way, `AuthLayer` marks the requests it accepted
//! ([`Authenticated`]), so that a lockout layer placed inside it by mistake
//! can say so (B17).
//!
//! The hand-off rides in the request's extensions, which costs an insert
//! and an allocation per admitted request (about 330 instructions, the
//! largest share of the lockout's success path; see BENCHMARKS.md). A
//! thread-local set while the lockout calls and polls the inner service
//! would cost almost nothing, but in general it names no request: an
//! `AuthLayer` that a handler runs for a request of its own (an in-process
//! sub-request) would release the reservation of the handler's request, a
//! login attempt among them. The extensions belong to one request, follow
//! it onto another task (behind a `Buffer`), and leave the sub-request's
//! alone.
//!
//! One composition names its request without them: a
//! [`Stack`](crate::stack::Stack) puts its `AuthLayer` directly inside its
//! `LockoutLayer`, so the lockout's call of the inner service *is* the auth
//! service's call, with nothing in between. There the lockout offers the
//! reservation in a thread-local for exactly that call ([`offering`]), and
//! the auth service, built to expect it, takes it first thing
//! ([`take_offered`]), before any code of the application runs. An auth
//! service not built by a stack never looks; a stack's lockout sets the
//! offer (to nothing, when it holds no reservation) around every call it
//! makes, so its auth service can only ever find its own.

use std::{cell::Cell, sync::Arc};

use http::Extensions;

/// A reservation that the layers inside may end early.
pub(crate) trait Release: Send + Sync {
    /// Ends the reservation early, recording nothing yet (B11): the
    /// response's outcome is still recorded when it comes (B20).
    fn release(&self);
}

/// The handle in the request extensions: every reservation the request
/// holds (one per lockout layer it passed), for the layers inside to
/// release.
#[derive(Clone)]
pub(crate) struct Reservation {
    slot: Arc<dyn Release>,
    outer: Option<Box<Reservation>>,
}

impl Reservation {
    /// Adds `slot` to the reservations in `extensions`.
    pub(crate) fn push(extensions: &mut Extensions, slot: Arc<dyn Release>) {
        // One lookup in the common case (no outer lockout layer): the
        // insert tells whether reservations were there.
        if let Some(outer) = extensions.insert(Self { slot, outer: None })
            && let Some(this) = extensions.get_mut::<Self>()
        {
            this.outer = Some(Box::new(outer));
        }
    }

    /// Takes the reservations out of `extensions`, to be released or put
    /// back later.
    pub(crate) fn take(extensions: &mut Extensions) -> Option<Self> {
        extensions.remove::<Self>()
    }

    /// Releases every reservation of the request early (B11); their
    /// responses are still judged (B20).
    pub(crate) fn release(self) {
        let mut next = Some(self);
        while let Some(reservation) = next {
            reservation.slot.release();
            next = reservation.outer.map(|outer| *outer);
        }
    }

    /// Chains `slot` in front of these reservations.
    pub(crate) fn with(outer: Option<Self>, slot: Arc<dyn Release>) -> Self {
        Self {
            slot,
            outer: outer.map(Box::new),
        }
    }

    /// The reservations of `inner` (offered directly, with nothing outside
    /// it) followed by `outer`'s.
    pub(crate) fn join(inner: Option<Self>, outer: Option<Self>) -> Option<Self> {
        match (inner, outer) {
            (Some(inner), outer @ Some(_)) => Some(Self::with(outer, inner.slot)),
            (inner, outer) => inner.or(outer),
        }
    }
}

thread_local! {
    /// The reservation a stack's lockout layer offers to the auth service
    /// directly inside it, for the time of one call (see the module docs).
    static OFFERED: Cell<Option<Reservation>> = const { Cell::new(None) };
}

/// Runs `call` (the lockout's call of the auth service directly inside it)
/// with `reservation` offered to it; an offer not taken is dropped after.
pub(crate) fn offering<T>(reservation: Option<Reservation>, call: impl FnOnce() -> T) -> T {
    /// Puts the previous offer back, also when `call` unwinds.
    struct Restore(Option<Reservation>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            // Only after the thread's locals are gone can this fail; then
            // nothing is left to offer to.
            let _ = OFFERED.try_with(|offered| offered.replace(previous));
        }
    }
    let previous = OFFERED
        .try_with(|offered| offered.replace(reservation))
        .unwrap_or_default();
    let _restore = Restore(previous);
    call()
}

/// Takes the reservation offered to this call, if any; only an auth
/// service that a stack put directly inside its lockout asks.
pub(crate) fn take_offered() -> Option<Reservation> {
    OFFERED.try_with(Cell::take).ok().flatten()
}

/// How many requests a lockout layer checks for the wrong order: the order
/// is a property of the stack, so the first requests tell; after them the
/// check costs one relaxed load.
pub(crate) const ORDER_CHECKS: u32 = 4096;

/// Inserted into the extensions of requests whose credential `AuthLayer`
/// accepted, so that a lockout layer placed inside it by mistake can say so
/// (SECURITY.md B17).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Authenticated;

impl Authenticated {
    /// Marks an accepted request: each thread's first [`ORDER_CHECKS`] of
    /// them, then one in 64.
    ///
    /// The order of the layers is a property of the stack, and a lockout
    /// looks for the mark among its own first `ORDER_CHECKS` requests, so
    /// the first accepted requests tell; the sampled ones after them cover
    /// a lockout that sees only some routes. The steady state costs a
    /// thread-local increment instead of an extensions insert.
    pub(crate) fn mark(extensions: &mut Extensions) {
        thread_local! {
            static ACCEPTED: Cell<u32> = const { Cell::new(0) };
        }
        let n = ACCEPTED.with(|accepted| {
            let n = accepted.get();
            accepted.set(n.wrapping_add(1));
            n
        });
        if n < ORDER_CHECKS || n.is_multiple_of(64) {
            extensions.insert(Self);
        }
    }

    /// Whether `extensions` carry the mark.
    pub(crate) fn marked(extensions: &Extensions) -> bool {
        extensions.get::<Self>().is_some()
    }
}
