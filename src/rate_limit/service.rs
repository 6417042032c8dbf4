//! [`RateLimit`]: the service built by [`RateLimitLayer`](super::RateLimitLayer).

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{
    ResponseFuture,
    headers::Headers,
    shared::Shared,
    store::{Decision, Verdict},
};
#[cfg(feature = "redis")]
use crate::gate::{Admit, Refusal};
use crate::{
    AuthRejection, ClientIp, KeyExtractor, ResponseBody,
    client_list::Listed,
    gate::{self, Gate},
    reject::{self, DefaultRenderer, RejectionKind, Renderer},
};

/// The service made by [`RateLimitLayer`](super::RateLimitLayer): lets a
/// request through to the inner service while its client has allowance
/// left, and answers it with [`RejectionKind::RateLimited`] otherwise.
pub struct RateLimit<S, K: KeyExtractor = ClientIp, R = DefaultRenderer> {
    inner: S,
    shared: Arc<Shared<K, R>>,
}

impl<S, K: KeyExtractor, R> RateLimit<S, K, R> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<K, R>>) -> Self {
        Self { inner, shared }
    }

    gate::inner_accessors!();
}

impl<S: Clone, K: KeyExtractor, R> Clone for RateLimit<S, K, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, K: KeyExtractor, R> fmt::Debug for RateLimit<S, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// What a verdict means for the request: through, or refused.
fn decided<K: KeyExtractor, R>(
    shared: &Shared<K, R>,
    key: &K::Key,
    verdict: Verdict,
) -> Result<Option<Headers>, (AuthRejection, Option<Headers>)> {
    match verdict {
        Verdict::Allowed { remaining } => Ok(shared.allowed(remaining)),
        Verdict::Refused { retry_after } => {
            let rejection =
                AuthRejection::new(RejectionKind::RateLimited).with_retry_after(retry_after);
            Err((rejection, shared.refused(key, retry_after)))
        }
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
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let (parts, body) = req.into_parts();
        // B16: listed clients are let through uncounted, or refused.
        if !shared.lists.is_empty() {
            match shared.lists.check(&parts) {
                Listed::Neither => {}
                Listed::Allowed => {
                    let future = self.inner.call(Request::from_parts(parts, body));
                    return ResponseFuture::new(Gate::pass(future, None));
                }
                Listed::Denied => {
                    let rejection = AuthRejection::new(RejectionKind::Denied);
                    let response = reject::render(&*shared.renderer, rejection, &parts);
                    return ResponseFuture::new(Gate::refuse(response, None));
                }
            }
        }
        let key = match shared.extractor.extract(&parts) {
            Ok(key) => key,
            // B10: no key is an error, never a bucket shared by everyone.
            Err(rejection) => {
                let response = reject::render(&*shared.renderer, rejection, &parts);
                return ResponseFuture::new(Gate::refuse(response, None));
            }
        };
        match shared.store.decide(&key) {
            Decision::Now(verdict) => match decided(shared, &key, verdict) {
                Ok(headers) => {
                    let future = self.inner.call(Request::from_parts(parts, body));
                    ResponseFuture::new(Gate::pass(future, headers))
                }
                Err((rejection, headers)) => {
                    let response = reject::render(&*shared.renderer, rejection, &parts);
                    ResponseFuture::new(Gate::refuse(response, headers))
                }
            },
            #[cfg(feature = "redis")]
            Decision::Ask(verdict) => {
                let shared = Arc::clone(&self.shared);
                let renderer: Arc<dyn Renderer> = shared.renderer.clone();
                let decision = Box::pin(async move {
                    match decided(&shared, &key, verdict.await) {
                        Ok(hook) => Ok(Admit {
                            hook,
                            extensions: None,
                        }),
                        Err((rejection, hook)) => Err(Refusal { rejection, hook }),
                    }
                });
                let inner = gate::take_ready(&mut self.inner);
                ResponseFuture::new(Gate::wait(
                    decision,
                    inner,
                    Request::from_parts(parts, body),
                    renderer,
                ))
            }
        }
    }
}
