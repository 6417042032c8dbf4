//! [`Lockout`]: the service built by [`LockoutLayer`](super::LockoutLayer).

use std::{
    fmt, mem,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{future::ResponseFuture, layer::Config, tracker::TryAttempt};
use crate::{
    ClientIp, KeyExtractor, ResponseBody,
    reject::{DefaultRenderer, Renderer},
};

/// Answers locked-out clients itself and counts the failed attempts of the
/// others; built by [`LockoutLayer`](super::LockoutLayer).
pub struct Lockout<S, K = ClientIp, R = DefaultRenderer>
where
    K: KeyExtractor,
{
    inner: S,
    config: Arc<Config<K, R>>,
}

impl<S, K: KeyExtractor, R> Lockout<S, K, R> {
    pub(crate) fn new(inner: S, config: Arc<Config<K, R>>) -> Self {
        Self { inner, config }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes `self`, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The tracker this service records into.
    pub fn tracker(&self) -> &super::Tracker<K::Key> {
        &self.config.tracker
    }
}

impl<S: Clone, K: KeyExtractor, R> Clone for Lockout<S, K, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, K: KeyExtractor, R> fmt::Debug for Lockout<S, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lockout")
            .field("inner", &self.inner)
            .field("tracker", &self.config.tracker)
            .finish_non_exhaustive()
    }
}

impl<S, K, R, ReqBody, ResBody> Service<Request<ReqBody>> for Lockout<S, K, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyExtractor,
    R: Renderer,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, K::Key>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let (parts, body) = request.into_parts();
        let key = match config.extractor.extract(&parts) {
            Ok(key) => key,
            // B10: no key (no client address) is an error, never a bucket
            // shared by everyone.
            Err(rejection) => {
                return ResponseFuture::rejected(rejection, parts, config.renderer.clone());
            }
        };
        match config.tracker.try_attempt(key) {
            TryAttempt::Admitted(attempt) => {
                let future = self.inner.call(Request::from_parts(parts, body));
                ResponseFuture::inner(future, attempt, config.classifier.clone())
            }
            // B3: a blocked client is answered before the inner service runs.
            TryAttempt::Locked(locked) => {
                ResponseFuture::rejected(locked.to_rejection(), parts, config.renderer.clone())
            }
            TryAttempt::Full(key, hash) => {
                // The service that was driven to readiness goes with the
                // request; a fresh clone takes its place.
                let clone = self.inner.clone();
                let inner = mem::replace(&mut self.inner, clone);
                ResponseFuture::waiting(
                    config.tracker.acquire_hashed(key, hash),
                    inner,
                    Request::from_parts(parts, body),
                    config.renderer.clone(),
                    config.classifier.clone(),
                )
            }
        }
    }
}
