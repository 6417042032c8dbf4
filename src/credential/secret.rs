//! The secret of a [`Credential`](super::Credential): read in place from a
//! header value of the request, or one copy shared by the credential's
//! clones, overwritten with zeros when the last of them is dropped.

use std::sync::{Arc, Mutex, PoisonError};

use http::HeaderValue;
use zeroize::Zeroize;

/// Locks that order the drops of the clones of one secret. A secret is
/// wiped by the clone that finds itself the only one left, so that check
/// and the drop of the clone's reference must be one step with respect to
/// every other clone's: two clones dropped at once on two threads would
/// otherwise each see the other and neither wipe. Clones of one secret
/// always take the same lock (chosen by the address of their shared copy);
/// distinct secrets rarely share one, and never wait for long: the lock is
/// held for a comparison, the wipe and a free.
static DROPS: [Mutex<()>; 64] = [const { Mutex::new(()) }; 64];

/// A credential's secret.
#[derive(Clone)]
pub(super) enum Secret {
    /// Bytes `start..end` of a header field value of the request, read in
    /// place: a clone of a `HeaderValue` shares its bytes (a reference
    /// count, nothing for a static value), so nothing is copied, and there
    /// is no copy to wipe. The bytes were checked to be visible ASCII when
    /// they were found.
    InPlace {
        value: HeaderValue,
        start: usize,
        end: usize,
    },
    /// A copy: decoded from the request, or given to `Credential::new`.
    Copy(Shared),
}

impl Secret {
    pub(super) fn copy(secret: Arc<str>) -> Self {
        Self::Copy(Shared(Some(secret)))
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            // Never fails: the range is visible ASCII (see `InPlace`).
            Self::InPlace { value, start, end } => value
                .as_bytes()
                .get(*start..*end)
                .and_then(|bytes| std::str::from_utf8(bytes).ok())
                .unwrap_or_default(),
            // `None` only inside `drop`.
            Self::Copy(shared) => shared.0.as_deref().unwrap_or_default(),
        }
    }
}

/// The shared copy of a credential's secret.
///
/// One allocation, as a plain `Arc<str>` (an `Arc` of a wiping buffer would
/// be two): what is wiped is the `str` inside the `Arc`, by the last clone,
/// through [`Arc::get_mut`]. No weak reference to it is ever made, so
/// `get_mut` succeeds exactly when the clone is the last one.
#[derive(Clone)]
pub(super) struct Shared(Option<Arc<str>>);

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(secret) = self.0.take() {
            release(secret);
        }
    }
}

/// Drops one reference to `secret`, wiping the shared copy first when it
/// is the last one: whether it was.
fn release(mut secret: Arc<str>) -> bool {
    // The only reference (the common case: a request's credential dropped
    // with its request) needs no lock: no other clone exists to race with,
    // and none can be made from it any more.
    if wipe_if_alone(&mut secret) {
        return true;
    }
    // The address of the shared copy, only to choose a lock: the same for
    // every clone.
    let stripe = (Arc::as_ptr(&secret).cast::<u8>() as usize >> 4) % DROPS.len();
    let _order = DROPS[stripe].lock().unwrap_or_else(PoisonError::into_inner);
    let wiped = wipe_if_alone(&mut secret);
    // The reference goes while the lock is held (see `DROPS`).
    drop(secret);
    wiped
}

/// Overwrites the shared copy with zeros if `secret` is its only
/// reference: whether it did.
fn wipe_if_alone(secret: &mut Arc<str>) -> bool {
    Arc::get_mut(secret).map(|alone| alone.zeroize()).is_some()
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;

    #[test]
    fn only_the_last_reference_wipes_the_copy() {
        let mut secret: Arc<str> = Arc::from("alice-token");
        let other = Arc::clone(&secret);
        assert!(!wipe_if_alone(&mut secret));
        assert_eq!(&*other, "alice-token");
        drop(other);
        assert!(wipe_if_alone(&mut secret));
        assert_eq!(secret.len(), "alice-token".len());
        assert!(secret.bytes().all(|b| b == 0));
    }

    #[test]
    fn one_of_two_clones_dropped_at_once_wipes() {
        // Without the lock both may see the other and neither wipe.
        for _ in 0..500 {
            let secret: Arc<str> = Arc::from("alice-token");
            let clones = [Arc::clone(&secret), secret];
            let barrier = Barrier::new(2);
            let wipes: usize = std::thread::scope(|scope| {
                let threads = clones.map(|clone| {
                    let barrier = &barrier;
                    scope.spawn(move || {
                        barrier.wait();
                        release(clone)
                    })
                });
                threads
                    .into_iter()
                    .map(|thread| usize::from(thread.join().unwrap()))
                    .sum()
            });
            assert_eq!(wipes, 1);
        }
    }

    #[test]
    fn a_clone_reads_the_secret_after_another_is_dropped() {
        let secret = Secret::copy(Arc::from("alice-token"));
        let clone = secret.clone();
        drop(secret);
        assert_eq!(clone.as_str(), "alice-token");
    }

    #[test]
    fn a_secret_in_place_is_its_range_of_the_value() {
        let value = HeaderValue::from_static("Bearer alice-token");
        let secret = Secret::InPlace {
            value: value.clone(),
            start: 7,
            end: value.len(),
        };
        assert_eq!(secret.clone().as_str(), "alice-token");
        // A range that does not fit reads as empty, never panics.
        let outside = Secret::InPlace {
            value,
            start: 7,
            end: 99,
        };
        assert_eq!(outside.as_str(), "");
    }
}
