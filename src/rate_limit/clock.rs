//! A governor clock over tokio time, so paused-time tests drive the limiter.

use governor::{clock::Clock, nanos::Nanos};
use tokio::time::Instant;

/// Nanoseconds of tokio time since the limiter was built.
///
/// Under `#[tokio::test(start_paused = true)]` it moves only with
/// `tokio::time::advance`; in production it is the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokioClock {
    origin: Instant,
}

impl TokioClock {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        // `elapsed` saturates at zero; u64 nanoseconds last 584 years.
        Nanos::new(u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
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
