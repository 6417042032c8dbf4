//! The service.

use std::{
    fmt,
    task::{Context, Poll},
    time::Duration,
};

use governor::clock::Clock;
use http::{Request, Response};
use tower_service::Service;

use super::{
    RateLimitLayer, ResponseFuture,
    future::{RateLimitHeaders, Rejected},
    layer::Shared,
};
use crate::{
    AuthRejection, ClientIp, KeyExtractor, ResponseBody,
    reject::{self, DefaultRenderer, RejectionKind, Renderer},
};

/// The service made by [`RateLimitLayer`]: lets a request through to the
/// inner service while its client has allowance left, and answers it with
/// [`RejectionKind::RateLimited`] otherwise.
#[must_use]
pub struct RateLimit<S, K: KeyExtractor = ClientIp, R = DefaultRenderer> {
    inner: S,
    layer: RateLimitLayer<K, R>,
}

impl<S, K: KeyExtractor, R> RateLimit<S, K, R> {
    /// Wraps `inner`, counting in the table of `layer`.
    pub fn new(inner: S, layer: RateLimitLayer<K, R>) -> Self {
        Self { inner, layer }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The layer this service counts with (for its table statistics).
    pub fn layer(&self) -> &RateLimitLayer<K, R> {
        &self.layer
    }
}

impl<S: Clone, K: KeyExtractor, R> Clone for RateLimit<S, K, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, K: KeyExtractor, R> fmt::Debug for RateLimit<S, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, K, R, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S, K, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyExtractor,
    R: Renderer,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, K, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.layer.shared;
        let (parts, body) = req.into_parts();
        let key = match shared.extractor.extract(&parts) {
            Ok(key) => key,
            Err(rejection) => {
                return ResponseFuture::rejected(Rejected {
                    rejection,
                    parts,
                    layer: self.layer.clone(),
                    headers: None,
                });
            }
        };
        #[cfg(feature = "redis")]
        if let Some(remote) = shared.remote() {
            let decision = remote.check(&key);
            // The service that was driven to readiness goes with the
            // request; a fresh clone takes its place.
            let clone = self.inner.clone();
            let inner = std::mem::replace(&mut self.inner, clone);
            return ResponseFuture::deciding(
                decision,
                super::future::Pending {
                    inner,
                    request: Request::from_parts(parts, body),
                    layer: self.layer.clone(),
                    key,
                },
            );
        }
        match shared.decide_locally(&key) {
            Verdict::Allow(headers) => {
                ResponseFuture::inner(self.inner.call(Request::from_parts(parts, body)), headers)
            }
            Verdict::Refuse(rejection, headers) => ResponseFuture::rejected(Rejected {
                rejection,
                parts,
                layer: self.layer.clone(),
                headers,
            }),
        }
    }
}

/// What the limiter decided about one request, with the `RateLimit-*`
/// headers to send when they are enabled.
pub(crate) enum Verdict {
    Allow(Option<RateLimitHeaders>),
    Refuse(AuthRejection, Option<RateLimitHeaders>),
}

impl<K: KeyExtractor, R> Shared<K, R> {
    /// Decides with the local table.
    pub(crate) fn decide_locally(&self, key: &K::Key) -> Verdict {
        match self.limiter.check_key(key) {
            Ok(snapshot) => self.allowed(snapshot.remaining_burst_capacity()),
            Err(not_until) => {
                self.refused(key, not_until.wait_time_from(self.limiter.clock().now()))
            }
        }
    }

    /// Decides with what the shared store said, or locally when it failed.
    #[cfg(feature = "redis")]
    pub(crate) fn decide_remote(
        &self,
        decision: super::redis::RemoteDecision,
        key: &K::Key,
    ) -> Verdict {
        use super::redis::RemoteDecision;
        match decision {
            RemoteDecision::Allowed(remaining) => self.allowed(remaining.min(self.burst)),
            RemoteDecision::Refused(retry_after) => self.refused(key, retry_after),
            RemoteDecision::Unavailable => {
                self.fell_back();
                self.decide_locally(key)
            }
        }
    }

    fn allowed(&self, remaining: u32) -> Verdict {
        Verdict::Allow(self.headers.then(|| {
            // Until the whole burst is back: at most one interval per used
            // request (GCRA's exact time is not exposed).
            let used = self.burst.saturating_sub(remaining);
            RateLimitHeaders {
                limit: self.burst,
                remaining,
                reset: ceil_secs(self.interval.saturating_mul(used)),
            }
        }))
    }

    fn refused(&self, key: &K::Key, retry_after: Duration) -> Verdict {
        tracing::debug!(?key, ?retry_after, "rate limited");
        let rejection =
            AuthRejection::new(RejectionKind::RateLimited).with_retry_after(retry_after);
        // Refused: nothing left, and the whole burst is back one burst's
        // tolerance after the next request is allowed.
        let headers = self.headers.then(|| {
            let tolerance = self.interval.saturating_mul(self.burst.saturating_sub(1));
            RateLimitHeaders {
                limit: self.burst,
                remaining: 0,
                reset: ceil_secs(retry_after.saturating_add(tolerance)),
            }
        });
        Verdict::Refuse(rejection, headers)
    }
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(d: Duration) -> u64 {
    reject::retry_after_secs(d)
}
