//! The request path every layer shares: pass a request through, wait for a
//! decision, or refuse it, with rejections rendered one way.
//!
//! A layer decides in its `call` what happens to a request:
//!
//! - [`Gate::pass`]: call the inner service now. The request path stays as
//!   cheap as the inner service's own future plus a [`Hook`].
//! - [`Gate::wait`]: the decision needs time (a validator, a reservation
//!   freed by another request, a round trip to Redis). The request and a
//!   ready clone of the inner service wait in a box; the decision may add
//!   extensions to the request (an identity, a reservation) before it goes on.
//! - [`Gate::refuse`]: answer with a rendered [`AuthRejection`] without
//!   calling the inner service.
//!
//! A [`Hook`] goes with every request that is not refused outright and sees
//! the response head: the lockout classifies it and ends the attempt, the
//! rate limiter adds its headers.

use std::{
    fmt,
    future::Future,
    mem,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Extensions, Request, Response, response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::{
    AuthRejection, ResponseBody,
    reject::{self, Renderer},
};

pub(crate) use crate::future::BoxFuture;

/// Sees the head of every response a request produced (the inner service's
/// or a refusal), once. Dropped without being called when the request is
/// abandoned (the client went away).
pub(crate) trait Hook: Sized {
    fn on_response(self, response: &mut response::Parts);

    /// Sees the head of the inner service's response and makes its body:
    /// the body as it is, unless the hook wraps it (a lease ends it).
    fn respond<B>(self, response: &mut response::Parts, body: B) -> ResponseBody<B> {
        self.on_response(response);
        ResponseBody::inner(body)
    }
}

impl Hook for () {
    fn on_response(self, _: &mut response::Parts) {}
}

impl<H: Hook> Hook for Option<H> {
    fn on_response(self, response: &mut response::Parts) {
        if let Some(hook) = self {
            hook.on_response(response);
        }
    }

    fn respond<B>(self, response: &mut response::Parts, body: B) -> ResponseBody<B> {
        match self {
            Some(hook) => hook.respond(response, body),
            None => ResponseBody::inner(body),
        }
    }
}

/// A decision that let the request through.
pub(crate) struct Admit<H> {
    pub(crate) hook: H,
    /// Added to the request's extensions before it goes on.
    pub(crate) extensions: Option<Extensions>,
}

/// A decision that refused the request.
pub(crate) struct Refusal<H> {
    pub(crate) rejection: AuthRejection,
    pub(crate) hook: H,
}

/// What a waiting request is waiting for.
pub(crate) type Decision<H> = BoxFuture<Result<Admit<H>, Refusal<H>>>;

pin_project! {
    /// The response future of every layer (each layer names it
    /// `ResponseFuture` through [`response_future!`]).
    pub(crate) struct Gate<S, ReqBody, H>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        kind: Kind<S, ReqBody, H>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, H>
    where
        S: Service<Request<ReqBody>>,
    {
        Inner {
            #[pin]
            future: S::Future,
            hook: Option<H>,
        },
        // The rare states are boxed so that the common one, `Inner`, keeps
        // the future small: it is moved on every request.
        Waiting {
            decision: Decision<H>,
            pending: Option<Box<Pending<S, ReqBody>>>,
        },
        Refused {
            refused: Option<Box<(Response<Bytes>, H)>>,
        },
    }
}

/// A waiting request and the inner service that will take it.
struct Pending<S, ReqBody> {
    inner: S,
    request: Request<ReqBody>,
    renderer: Arc<dyn Renderer>,
}

impl<S, ReqBody, H> Gate<S, ReqBody, H>
where
    S: Service<Request<ReqBody>>,
{
    /// The inner service has the request.
    pub(crate) fn pass(future: S::Future, hook: H) -> Self {
        Self {
            kind: Kind::Inner {
                future,
                hook: Some(hook),
            },
        }
    }

    /// The request waits for `decision`; `inner` is ready to take it.
    pub(crate) fn wait(
        decision: Decision<H>,
        inner: S,
        request: Request<ReqBody>,
        renderer: Arc<dyn Renderer>,
    ) -> Self {
        Self {
            kind: Kind::Waiting {
                decision,
                pending: Some(Box::new(Pending {
                    inner,
                    request,
                    renderer,
                })),
            },
        }
    }

    /// The request is refused with `response` (rendered by
    /// [`reject::render`]).
    pub(crate) fn refuse(response: Response<Bytes>, hook: impl Into<H>) -> Self {
        Self {
            kind: Kind::Refused {
                refused: Some(Box::new((response, hook.into()))),
            },
        }
    }

    pub(crate) fn state(&self) -> &'static str {
        match self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Waiting { .. } => "waiting",
            Kind::Refused { .. } => "refused",
        }
    }
}

impl<S, ReqBody, ResBody, H> Future for Gate<S, ReqBody, H>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    H: Hook,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            match kind.as_mut().project() {
                KindProj::Inner { future, hook } => {
                    let (mut head, body) = ready!(future.poll(cx))?.into_parts();
                    let body = hook.take().respond(&mut head, body);
                    return Poll::Ready(Ok(Response::from_parts(head, body)));
                }
                KindProj::Refused { refused } => {
                    let (response, hook) = *refused
                        .take()
                        .expect("a refused ResponseFuture is polled only until it completes");
                    let (mut head, body) = response.into_parts();
                    hook.on_response(&mut head);
                    return Poll::Ready(Ok(Response::from_parts(
                        head,
                        ResponseBody::rejection(body),
                    )));
                }
                KindProj::Waiting { decision, pending } => {
                    let decision = ready!(decision.as_mut().poll(cx));
                    let Pending {
                        mut inner,
                        mut request,
                        renderer,
                    } = *pending
                        .take()
                        .expect("a waiting ResponseFuture is polled only until it completes");
                    let next = match decision {
                        Ok(Admit { hook, extensions }) => {
                            if let Some(extensions) = extensions {
                                request.extensions_mut().extend(extensions);
                            }
                            Kind::Inner {
                                future: inner.call(request),
                                hook: Some(hook),
                            }
                        }
                        Err(Refusal { rejection, hook }) => {
                            let (parts, _body) = request.into_parts();
                            let response = reject::render(&*renderer, rejection, &parts);
                            Kind::Refused {
                                refused: Some(Box::new((response, hook))),
                            }
                        }
                    };
                    kind.set(next);
                }
            }
        }
    }
}

/// Takes the inner service that was driven to readiness, leaving a clone in
/// its place: a request that waits must carry the ready service with it.
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    mem::replace(inner, clone)
}

impl<S, ReqBody, H> fmt::Debug for Gate<S, ReqBody, H>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("state", &self.state())
            .finish()
    }
}

/// Declares a layer's public `ResponseFuture`: a [`Gate`] with the layer's
/// hook, under the layer's own name.
macro_rules! response_future {
    ($(#[$meta:meta])* $hook:ty) => {
        pin_project_lite::pin_project! {
            $(#[$meta])*
            pub struct ResponseFuture<S, ReqBody>
            where
                S: tower_service::Service<http::Request<ReqBody>>,
            {
                #[pin]
                gate: $crate::gate::Gate<S, ReqBody, $hook>,
            }
        }

        impl<S, ReqBody> ResponseFuture<S, ReqBody>
        where
            S: tower_service::Service<http::Request<ReqBody>>,
        {
            pub(crate) fn new(gate: $crate::gate::Gate<S, ReqBody, $hook>) -> Self {
                Self { gate }
            }
        }

        impl<S, ReqBody, ResBody> std::future::Future for ResponseFuture<S, ReqBody>
        where
            S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
        {
            type Output = Result<http::Response<$crate::ResponseBody<ResBody>>, S::Error>;

            fn poll(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Self::Output> {
                self.project().gate.poll(cx)
            }
        }

        impl<S, ReqBody> std::fmt::Debug for ResponseFuture<S, ReqBody>
        where
            S: tower_service::Service<http::Request<ReqBody>>,
        {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(&self.gate, f)
            }
        }
    };
}

/// The accessors of a middleware service over its `inner` field:
/// `get_ref`, `get_mut` and `into_inner`.
macro_rules! inner_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes the service, returning the inner one.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}

pub(crate) use {inner_accessors, response_future};
