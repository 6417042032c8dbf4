//! The `RateLimit-*` response fields (IETF draft `ratelimit-headers`).

use std::time::Duration;

use http::{HeaderName, HeaderValue, response};

use crate::{gate::Hook, reject::retry_after_secs};

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The `RateLimit-*` fields of one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Headers {
    limit: u32,
    remaining: u32,
    /// Seconds until the whole burst is back, rounded up.
    reset: u64,
}

impl Headers {
    /// An allowed request with `remaining` requests left. The whole burst is
    /// back after at most one interval per used request (GCRA's exact time
    /// is not exposed).
    pub(crate) fn allowed(burst: u32, remaining: u32, interval: Duration) -> Self {
        let used = burst.saturating_sub(remaining);
        Self {
            limit: burst,
            remaining,
            reset: retry_after_secs(interval.saturating_mul(used)),
        }
    }

    /// A refused request: nothing left, and the whole burst is back one
    /// burst's tolerance after the next request is allowed.
    pub(crate) fn refused(burst: u32, retry_after: Duration, interval: Duration) -> Self {
        let tolerance = interval.saturating_mul(burst.saturating_sub(1));
        Self {
            limit: burst,
            remaining: 0,
            reset: retry_after_secs(retry_after.saturating_add(tolerance)),
        }
    }
}

impl Hook for Headers {
    fn on_response(self, response: &mut response::Parts) {
        let headers = &mut response.headers;
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(self.limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(self.reset));
    }
}
