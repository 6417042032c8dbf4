//! Smart counting: the last few wrong guesses of each key, so that the same
//! wrong credential or password repeated within the window counts once
//! (SECURITY.md B14).
//!
//! A bounded LRU table (moka), touched only when a failure with a known
//! guess is recorded. Its deadline (`forget_at`) is stored in the value and
//! compared with tokio's clock; moka's expiry only reclaims memory. Losing
//! an entry (eviction at capacity) only ever makes a repeat count again, so
//! an attacker gains nothing by churning the table.

use std::{hash::Hash, time::Duration};

use moka::{Expiry, ops::compute::Op, policy::EvictionPolicy, sync::Cache};
use tokio::time::Instant;

use super::policy::MAX_REMEMBERED;
use crate::Fingerprint;

/// The remembered guesses of one key.
#[derive(Debug, Clone, Copy)]
struct Guesses {
    ring: [Option<Fingerprint>; MAX_REMEMBERED],
    next: u8,
    /// `window` after the last remembered guess.
    forget_at: Instant,
}

/// Reclaims an entry once it is forgotten (on tokio's clock).
struct ReclaimAt;

impl<K> Expiry<K, Guesses> for ReclaimAt {
    fn expire_after_create(&self, _: &K, g: &Guesses, _: std::time::Instant) -> Option<Duration> {
        Some(g.forget_at.saturating_duration_since(Instant::now()))
    }

    fn expire_after_update(
        &self,
        _: &K,
        g: &Guesses,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(g.forget_at.saturating_duration_since(Instant::now()))
    }
}

/// The wrong guesses remembered per key.
pub(crate) struct Recent<K> {
    table: Cache<K, Guesses>,
    remember: u8,
    window: Duration,
}

impl<K> Recent<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    /// `None` when the policy remembers no guesses.
    pub(crate) fn new(remember: u8, window: Duration, capacity: u64) -> Option<Self> {
        (remember > 0).then(|| Self {
            table: Cache::builder()
                .max_capacity(capacity)
                // LRU: a new key is always admitted.
                .eviction_policy(EvictionPolicy::lru())
                .expire_after(ReclaimAt)
                .build(),
            remember: remember.min(MAX_REMEMBERED as u8),
            window,
        })
    }

    /// Whether `guess` is one of the remembered guesses of `key` within the
    /// window; remembers it if not. One atomic step per key, so of two
    /// concurrent identical guesses exactly one is new.
    pub(crate) fn repeated(&self, key: &K, guess: Fingerprint) -> bool {
        let now = Instant::now();
        let forget_at = now.checked_add(self.window).unwrap_or(now);
        let mut repeated = false;
        let remember = usize::from(self.remember);
        self.table.entry_by_ref(key).and_compute_with(|entry| {
            let mut guesses = match entry.map(|e| e.into_value()) {
                Some(g) if now < g.forget_at => g,
                _ => Guesses {
                    ring: [None; MAX_REMEMBERED],
                    next: 0,
                    forget_at,
                },
            };
            if guesses.ring[..remember].contains(&Some(guess)) {
                repeated = true;
                return Op::Nop;
            }
            let slot = usize::from(guesses.next) % remember;
            guesses.ring[slot] = Some(guess);
            guesses.next = ((slot + 1) % remember) as u8;
            guesses.forget_at = forget_at;
            Op::Put(guesses)
        });
        repeated
    }

    /// Forgets the guesses of `key` (an operator's unlock).
    pub(crate) fn forget(&self, key: &K) {
        self.table.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> Fingerprint {
        crate::FingerprintKey::new([7u8; 32])
            .unwrap()
            .fingerprint(&[n])
    }

    #[tokio::test(start_paused = true)]
    async fn a_guess_repeats_within_the_window_and_only_the_last_few_are_kept() {
        let recent = Recent::new(2, Duration::from_secs(60), 100).unwrap();
        assert!(!recent.repeated(&1u32, fp(1)));
        assert!(recent.repeated(&1, fp(1)));
        assert!(!recent.repeated(&2, fp(1)), "another key");
        assert!(!recent.repeated(&1, fp(2)));
        assert!(!recent.repeated(&1, fp(3)), "pushes fp(1) out");
        assert!(!recent.repeated(&1, fp(1)));
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(!recent.repeated(&1, fp(1)), "forgotten after the window");
        assert!(Recent::<u32>::new(0, Duration::from_secs(1), 1).is_none());
    }
}
