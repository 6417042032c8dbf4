//! The response future.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, request::Parts};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::RateLimitLayer;
#[cfg(feature = "redis")]
use super::service::Verdict;
use crate::{
    AuthRejection, KeyExtractor, ResponseBody,
    reject::{self, Renderer},
};

/// The decision of the shared store being waited for.
#[cfg(feature = "redis")]
pub(crate) type Decision = crate::lockout::redis::BoxFuture<super::redis::RemoteDecision>;
/// Without a shared store no decision is ever waited for.
#[cfg(not(feature = "redis"))]
pub(crate) type Decision = std::convert::Infallible;

pin_project! {
    /// The response future of [`RateLimit`](super::RateLimit).
    pub struct ResponseFuture<S, ReqBody, K, R>
    where
        S: Service<Request<ReqBody>>,
        K: KeyExtractor,
    {
        #[pin]
        kind: Kind<S, ReqBody, K, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, K, R>
    where
        S: Service<Request<ReqBody>>,
        K: KeyExtractor,
    {
        // The rare states are boxed so that the common one, `Inner`, keeps
        // the future small.
        Inner {
            #[pin]
            future: S::Future,
            headers: Option<RateLimitHeaders>,
        },
        Rejected {
            rejected: Option<Box<Rejected<K, R>>>,
        },
        Deciding {
            decision: Decision,
            pending: Option<Box<Pending<S, ReqBody, K, R>>>,
        },
    }
}

/// A refused request, rendered when the future is polled.
pub(crate) struct Rejected<K: KeyExtractor, R> {
    pub(crate) rejection: AuthRejection,
    pub(crate) parts: Parts,
    pub(crate) layer: RateLimitLayer<K, R>,
    pub(crate) headers: Option<RateLimitHeaders>,
}

/// A request waiting for the shared store's decision, with the inner
/// service that was driven to readiness.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Pending<S, ReqBody, K: KeyExtractor, R> {
    pub(crate) inner: S,
    pub(crate) request: Request<ReqBody>,
    pub(crate) layer: RateLimitLayer<K, R>,
    pub(crate) key: K::Key,
}

impl<S, ReqBody, K, R> ResponseFuture<S, ReqBody, K, R>
where
    S: Service<Request<ReqBody>>,
    K: KeyExtractor,
{
    pub(crate) fn inner(future: S::Future, headers: Option<RateLimitHeaders>) -> Self {
        Self {
            kind: Kind::Inner { future, headers },
        }
    }

    pub(crate) fn rejected(rejected: Rejected<K, R>) -> Self {
        Self {
            kind: Kind::Rejected {
                rejected: Some(Box::new(rejected)),
            },
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn deciding(decision: Decision, pending: Pending<S, ReqBody, K, R>) -> Self {
        Self {
            kind: Kind::Deciding {
                decision,
                pending: Some(Box::new(pending)),
            },
        }
    }
}

impl<S, ReqBody, K, R> fmt::Debug for ResponseFuture<S, ReqBody, K, R>
where
    S: Service<Request<ReqBody>>,
    K: KeyExtractor,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Rejected { .. } => "rejected",
            Kind::Deciding { .. } => "deciding",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody, K, R> Future for ResponseFuture<S, ReqBody, K, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    K: KeyExtractor,
    R: Renderer,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().kind.project() {
                KindProj::Inner { future, headers } => {
                    let mut res = ready!(future.poll(cx))?.map(ResponseBody::inner);
                    if let Some(headers) = headers.take() {
                        headers.apply(res.headers_mut());
                    }
                    return Poll::Ready(Ok(res));
                }
                KindProj::Rejected { rejected } => {
                    let Rejected {
                        rejection,
                        parts,
                        layer,
                        headers,
                    } = *rejected
                        .take()
                        .expect("a rejected ResponseFuture is polled only until it completes");
                    let mut res = reject::respond(&layer.shared.renderer, rejection, &parts);
                    if let Some(headers) = headers {
                        headers.apply(res.headers_mut());
                    }
                    return Poll::Ready(Ok(res));
                }
                KindProj::Deciding { decision, pending } => {
                    ready!(decided(decision, pending, cx))
                }
            };
            self.as_mut().project().kind.set(next);
        }
    }
}

/// Once the shared store has decided: the next state.
#[cfg(feature = "redis")]
fn decided<S, ReqBody, K, R>(
    decision: &mut Decision,
    pending: &mut Option<Box<Pending<S, ReqBody, K, R>>>,
    cx: &mut Context<'_>,
) -> Poll<Kind<S, ReqBody, K, R>>
where
    S: Service<Request<ReqBody>>,
    K: KeyExtractor,
{
    let decision = ready!(decision.as_mut().poll(cx));
    let Pending {
        mut inner,
        request,
        layer,
        key,
    } = *pending
        .take()
        .expect("a deciding ResponseFuture is polled only until it completes");
    Poll::Ready(match layer.shared.decide_remote(decision, &key) {
        Verdict::Allow(headers) => Kind::Inner {
            future: inner.call(request),
            headers,
        },
        Verdict::Refuse(rejection, headers) => {
            let (parts, _body) = request.into_parts();
            Kind::Rejected {
                rejected: Some(Box::new(Rejected {
                    rejection,
                    parts,
                    layer,
                    headers,
                })),
            }
        }
    })
}

/// Without a shared store no decision is ever waited for.
#[cfg(not(feature = "redis"))]
fn decided<S, ReqBody, K, R>(
    decision: &mut Decision,
    _pending: &mut Option<Box<Pending<S, ReqBody, K, R>>>,
    _cx: &mut Context<'_>,
) -> Poll<Kind<S, ReqBody, K, R>>
where
    S: Service<Request<ReqBody>>,
    K: KeyExtractor,
{
    match *decision {}
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The `RateLimit-*` fields of one response.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimitHeaders {
    pub(crate) limit: u32,
    pub(crate) remaining: u32,
    pub(crate) reset: u64,
}

impl RateLimitHeaders {
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        headers.insert(RATELIMIT_LIMIT, HeaderValue::from(self.limit));
        headers.insert(RATELIMIT_REMAINING, HeaderValue::from(self.remaining));
        headers.insert(RATELIMIT_RESET, HeaderValue::from(self.reset));
    }
}
