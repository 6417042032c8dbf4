use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Request, Response, request::Parts};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::Shared;
use crate::{
    AuthRejection, Credential, ResponseBody, ValidationError, Validator,
    reject::{RejectionKind, Renderer},
};

/// The validator's future, boxed because a trait method's future cannot be
/// named; it hands the credential back for logging.
pub(super) type Validation<I> =
    Pin<Box<dyn Future<Output = (Credential, Result<I, ValidationError>)> + Send>>;

pin_project! {
    /// The response future of [`Auth`](super::Auth).
    pub struct ResponseFuture<S, ReqBody, V, R>
    where
        S: Service<Request<ReqBody>>,
        V: Validator,
    {
        #[pin]
        kind: Kind<S, ReqBody, V, R>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, V, R>
    where
        S: Service<Request<ReqBody>>,
        V: Validator,
    {
        Validating {
            validation: Validation<V::Identity>,
            pending: Option<Pending<S, ReqBody, V, R>>,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
    }
}

/// What the validating state needs once the validator has answered.
pub(super) struct Pending<S, ReqBody, V, R> {
    inner: S,
    parts: Parts,
    body: ReqBody,
    shared: Arc<Shared<V, R>>,
}

impl<S, ReqBody, V, R> ResponseFuture<S, ReqBody, V, R>
where
    S: Service<Request<ReqBody>>,
    V: Validator,
{
    pub(super) fn inner(future: S::Future) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    pub(super) fn rejected(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
        }
    }

    pub(super) fn validating(
        validation: Validation<V::Identity>,
        inner: S,
        parts: Parts,
        body: ReqBody,
        shared: Arc<Shared<V, R>>,
    ) -> Self {
        Self {
            kind: Kind::Validating {
                validation,
                pending: Some(Pending {
                    inner,
                    parts,
                    body,
                    shared,
                }),
            },
        }
    }
}

impl<S, ReqBody, V, R, ResBody> Future for ResponseFuture<S, ReqBody, V, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    V: Validator,
    R: Renderer,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match self.as_mut().project().kind.project() {
                KindProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                KindProj::Rejected { response } => {
                    let response = response.take().expect("polled after completion");
                    return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                }
                KindProj::Validating {
                    validation,
                    pending,
                } => {
                    let (credential, outcome) = ready!(validation.as_mut().poll(cx));
                    let Pending {
                        mut inner,
                        mut parts,
                        body,
                        shared,
                    } = pending.take().expect("polled after completion");
                    let next = match outcome {
                        Ok(identity) => {
                            parts.extensions.insert(identity);
                            let future = inner.call(Request::from_parts(parts, body));
                            Kind::Inner { future }
                        }
                        Err(error) => {
                            let rejection = AuthRejection::from(&error);
                            log_rejection(&credential, &error, &rejection);
                            Kind::Rejected {
                                response: Some(shared.reject(rejection, &parts)),
                            }
                        }
                    };
                    self.as_mut().project().kind.set(next);
                }
            }
        }
    }
}

fn log_rejection(credential: &Credential, error: &ValidationError, rejection: &AuthRejection) {
    let kind = rejection.kind();
    let source = credential.source();
    let fingerprint = credential.fingerprint();
    let reason = error.reason().unwrap_or("");
    if kind == RejectionKind::Unavailable {
        tracing::warn!(target: "portcullis::auth", ?kind, %source, %fingerprint, reason, "validator unavailable");
    } else {
        tracing::info!(target: "portcullis::auth", ?kind, %source, %fingerprint, reason, "credential rejected");
    }
}
