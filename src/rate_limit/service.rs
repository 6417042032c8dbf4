//! The service.

use std::{
    fmt,
    task::{Context, Poll},
    time::Duration,
};

use governor::clock::Clock;
use http::{Request, Response};
use tower_service::Service;

use super::{RateLimitLayer, ResponseFuture, future::RateLimitHeaders};
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
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    K: KeyExtractor,
    R: Renderer,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.layer.shared;
        let (parts, body) = req.into_parts();
        let key = match shared.extractor.extract(&parts) {
            Ok(key) => key,
            Err(rejection) => {
                return ResponseFuture::rejected(reject::respond(
                    &shared.renderer,
                    rejection,
                    &parts,
                ));
            }
        };
        match shared.limiter.check_key(&key) {
            Ok(snapshot) => {
                let headers = shared.headers.then(|| {
                    let remaining = snapshot.remaining_burst_capacity();
                    // Until the whole burst is back: at most one interval per
                    // used request (GCRA's exact time is not exposed).
                    let used = shared.burst.saturating_sub(remaining);
                    RateLimitHeaders {
                        limit: shared.burst,
                        remaining,
                        reset: ceil_secs(shared.interval.saturating_mul(used)),
                    }
                });
                let future = self.inner.call(Request::from_parts(parts, body));
                ResponseFuture::inner(future, headers)
            }
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(shared.limiter.clock().now());
                tracing::debug!(?key, ?retry_after, "rate limited");
                let rejection =
                    AuthRejection::new(RejectionKind::RateLimited).with_retry_after(retry_after);
                let mut res = reject::respond(&shared.renderer, rejection, &parts);
                if shared.headers {
                    // Refused: nothing left, and the whole burst is back one
                    // burst's tolerance after the next request is allowed.
                    let tolerance = shared
                        .interval
                        .saturating_mul(shared.burst.saturating_sub(1));
                    RateLimitHeaders {
                        limit: shared.burst,
                        remaining: 0,
                        reset: ceil_secs(retry_after.saturating_add(tolerance)),
                    }
                    .apply(res.headers_mut());
                }
                ResponseFuture::rejected(res)
            }
        }
    }
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(d: Duration) -> u64 {
    reject::retry_after_secs(d)
}
