//! [`ResponseFuture`] of the [`Lockout`](super::Lockout) service.

use std::{
    fmt,
    future::Future,
    hash::Hash,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Request, Response, request::Parts};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{
    Classifier, classify,
    tracker::{Acquire, Attempt},
};
use crate::{
    AuthRejection, ResponseBody,
    reject::{self, Renderer},
};

pin_project! {
    /// Response future of [`Lockout`](super::Lockout).
    pub struct ResponseFuture<S, ReqBody, Key>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        kind: Kind<S, ReqBody, Key>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, Key>
    where
        S: Service<Request<ReqBody>>,
    {
        // The rare states are boxed so that the common one, `Inner`, keeps
        // the future small: it is moved on every request.
        Rejected {
            rejected: Option<Box<Rejected>>,
        },
        Waiting {
            acquire: Pin<Box<Acquire<Key>>>,
            pending: Option<Box<Pending<S, ReqBody>>>,
        },
        Inner {
            #[pin]
            future: S::Future,
            attempt: Option<Attempt<Key>>,
            classifier: Option<Arc<dyn Classifier>>,
        },
    }
}

struct Rejected {
    rejection: AuthRejection,
    request: Parts,
    renderer: Arc<dyn Renderer>,
}

struct Pending<S, ReqBody> {
    inner: S,
    request: Request<ReqBody>,
    renderer: Arc<dyn Renderer>,
    classifier: Option<Arc<dyn Classifier>>,
}

impl<S, ReqBody, Key> ResponseFuture<S, ReqBody, Key>
where
    S: Service<Request<ReqBody>>,
{
    pub(crate) fn rejected(
        rejection: AuthRejection,
        request: Parts,
        renderer: Arc<dyn Renderer>,
    ) -> Self {
        Self {
            kind: Kind::Rejected {
                rejected: Some(Box::new(Rejected {
                    rejection,
                    request,
                    renderer,
                })),
            },
        }
    }

    pub(crate) fn inner(
        future: S::Future,
        attempt: Attempt<Key>,
        classifier: Option<Arc<dyn Classifier>>,
    ) -> Self {
        Self {
            kind: Kind::Inner {
                future,
                attempt: Some(attempt),
                classifier,
            },
        }
    }

    pub(crate) fn waiting(
        acquire: Acquire<Key>,
        inner: S,
        request: Request<ReqBody>,
        renderer: Arc<dyn Renderer>,
        classifier: Option<Arc<dyn Classifier>>,
    ) -> Self {
        Self {
            kind: Kind::Waiting {
                acquire: Box::pin(acquire),
                pending: Some(Box::new(Pending {
                    inner,
                    request,
                    renderer,
                    classifier,
                })),
            },
        }
    }
}

impl<S, ReqBody, Key> fmt::Debug for ResponseFuture<S, ReqBody, Key>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Rejected { .. } => "rejected",
            Kind::Waiting { .. } => "waiting",
            Kind::Inner { .. } => "inner",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<S, ReqBody, ResBody, Key> Future for ResponseFuture<S, ReqBody, Key>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    Key: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            match kind.as_mut().project() {
                KindProj::Rejected { rejected } => {
                    let Rejected {
                        rejection,
                        request,
                        renderer,
                    } = *rejected
                        .take()
                        .expect("`ResponseFuture` polled after completion");
                    return Poll::Ready(Ok(reject::respond(&renderer, rejection, &request)));
                }
                KindProj::Waiting { acquire, pending } => {
                    let admitted = ready!(acquire.as_mut().poll(cx));
                    let Pending {
                        mut inner,
                        request,
                        renderer,
                        classifier,
                    } = *pending
                        .take()
                        .expect("`ResponseFuture` polled after completion");
                    match admitted {
                        Ok(attempt) => {
                            let future = inner.call(request);
                            kind.set(Kind::Inner {
                                future,
                                attempt: Some(attempt),
                                classifier,
                            });
                        }
                        // B3: locked out while waiting; the inner service
                        // was never called.
                        Err(locked) => {
                            let (request, _) = request.into_parts();
                            kind.set(Kind::Rejected {
                                rejected: Some(Box::new(Rejected {
                                    rejection: locked.to_rejection(),
                                    request,
                                    renderer,
                                })),
                            });
                        }
                    }
                }
                KindProj::Inner {
                    future,
                    attempt,
                    classifier,
                } => {
                    let result = ready!(future.poll(cx));
                    let attempt = attempt.take();
                    return Poll::Ready(result.map(|response| {
                        let (parts, body) = response.into_parts();
                        if let Some(attempt) = attempt {
                            attempt.finish(classify::finish(&parts, classifier.as_deref()));
                        }
                        Response::from_parts(parts, ResponseBody::inner(body))
                    }));
                }
            }
        }
    }
}
