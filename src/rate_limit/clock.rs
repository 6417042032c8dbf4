//! A governor clock over tokio time, so paused-time tests drive the limiter.

use governor::{clock::Clock, nanos::Nanos};
use tokio::time::Instant;

/// Nanoseconds of tokio time since the limiter was built.
///
/// Under `#[tokio::test(start_paused = true)]` it moves only with
/// `tokio::time::advance`; in production it is the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokioClock {
    /// When the limiter was built, on tokio's clock.
    origin: std::time::Instant,
}

impl TokioClock {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now().into_std(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    #[inline]
    fn now(&self) -> Nanos {
        // One read of tokio's clock (paused and advanced in tests) and one
        // subtraction of std instants, which saturates at zero; u64
        // nanoseconds last 584 years.
        let elapsed = Instant::now()
            .into_std()
            .saturating_duration_since(self.origin);
        Nanos::new(
            elapsed
                .as_secs()
                .saturating_mul(1_000_000_000)
                .saturating_add(u64::from(elapsed.subsec_nanos())),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_tokio_time() {
        let clock = TokioClock::new();
        let before = clock.now();
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(clock.now().as_u64() - before.as_u64(), 1_500_000_000);
    }
}
