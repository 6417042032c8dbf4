//! [`BodyKey`]: buffers a body, reads the key field, hands the body on.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use bytes::Bytes;
use http::{Method, Request, Response, header, request::Parts};
use http_body_util::{BodyExt, Either, Full, LengthLimitError, Limited, combinators::Collect};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::{
    Body, BodyField,
    parse::{self, Field, Format},
};
use crate::{
    AuthRejection, BoxError, ResponseBody,
    gate::{self, take_ready},
    reject::{self, RejectionKind, Renderer},
};

type Predicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// What a [`BodyKeyLayer`](super::BodyKeyLayer) was configured with, shared
/// by the services it builds.
pub(super) struct Config {
    pub(super) field: Arc<str>,
    pub(super) limit: usize,
    pub(super) when: Predicate,
    pub(super) case_sensitive: bool,
    pub(super) renderer: Arc<dyn Renderer>,
}

/// The service built by [`BodyKeyLayer`](super::BodyKeyLayer).
pub struct BodyKey<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> BodyKey<S> {
    pub(super) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }

    gate::inner_accessors!();
}

impl<S: Clone> Clone for BodyKey<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for BodyKey<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyKey")
            .field("inner", &self.inner)
            .field("field", &self.config.field)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyKey<S>
where
    S: Service<Request<Body<ReqBody>>, Response = Response<ResBody>> + Clone,
    ReqBody: http_body::Body<Data = Bytes>,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let config = &self.config;
        // B18: safe methods are never body-keyed (a `GET` with a body is no
        // sign-in, and its answer clears nothing).
        if is_safe(&parts.method) || !(config.when)(&parts) {
            let future = self
                .inner
                .call(Request::from_parts(parts, Either::Left(body)));
            return ResponseFuture::inner(future);
        }
        // B18: a selected request in a format the layer cannot read would
        // reach a handler that reads it without its key.
        let Some(format) = parse::format(&parts.headers) else {
            return ResponseFuture::refused(config, RejectionKind::MalformedBody, &parts);
        };
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|len| len > config.limit as u64) {
            return ResponseFuture::refused(config, RejectionKind::BodyTooLarge, &parts);
        }
        // The request waits for its body: it carries the ready inner
        // service with it.
        let inner = take_ready(&mut self.inner);
        ResponseFuture {
            kind: Kind::Buffering {
                collect: Limited::new(body, config.limit).collect(),
                waiting: Some(Box::new(Waiting {
                    parts,
                    inner,
                    config: Arc::clone(config),
                    format,
                })),
            },
        }
    }
}

/// `GET`, `HEAD`, `OPTIONS` and `TRACE`: methods whose requests are never
/// a sign-in, so never body-keyed (B18).
fn is_safe(method: &Method) -> bool {
    [Method::GET, Method::HEAD, Method::OPTIONS, Method::TRACE].contains(method)
}

/// A request whose body is being read.
struct Waiting<S> {
    parts: Parts,
    inner: S,
    config: Arc<Config>,
    format: Format,
}

pin_project! {
    /// The response future of [`BodyKey`].
    pub struct ResponseFuture<S, ReqBody>
    where
        S: Service<Request<Body<ReqBody>>>,
        ReqBody: http_body::Body,
        ReqBody::Error: Into<BoxError>,
    {
        #[pin]
        kind: Kind<S, ReqBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody>
    where
        S: Service<Request<Body<ReqBody>>>,
        ReqBody: http_body::Body,
        ReqBody::Error: Into<BoxError>,
    {
        Buffering {
            #[pin]
            collect: Collect<Limited<ReqBody>>,
            waiting: Option<Box<Waiting<S>>>,
        },
        Inner {
            #[pin]
            future: S::Future,
        },
        Refused {
            response: Option<Response<Bytes>>,
        },
    }
}

impl<S, ReqBody> ResponseFuture<S, ReqBody>
where
    S: Service<Request<Body<ReqBody>>>,
    ReqBody: http_body::Body,
    ReqBody::Error: Into<BoxError>,
{
    fn inner(future: S::Future) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    fn refused(config: &Config, kind: RejectionKind, parts: &Parts) -> Self {
        tracing::debug!(target: "portcullis::body_key", ?kind, "request body refused");
        let response = reject::render(&*config.renderer, AuthRejection::new(kind), parts);
        Self {
            kind: Kind::Refused {
                response: Some(response),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody>
where
    S: Service<Request<Body<ReqBody>>, Response = Response<ResBody>>,
    ReqBody: http_body::Body<Data = Bytes>,
    ReqBody::Error: Into<BoxError>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            match kind.as_mut().project() {
                KindProj::Inner { future } => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(ResponseBody::inner)));
                }
                KindProj::Refused { response } => {
                    let response = response
                        .take()
                        .expect("a refused ResponseFuture is polled only until it completes");
                    return Poll::Ready(Ok(response.map(ResponseBody::rejection)));
                }
                KindProj::Buffering { collect, waiting } => {
                    let collected = ready!(collect.poll(cx));
                    let Waiting {
                        mut parts,
                        mut inner,
                        config,
                        format,
                    } = *waiting
                        .take()
                        .expect("a buffering ResponseFuture is polled only until it completes");
                    let bytes = match collected {
                        Ok(collected) => collected.to_bytes(),
                        Err(error) => {
                            let too_large = error.downcast_ref::<LengthLimitError>().is_some();
                            let reason = if too_large {
                                RejectionKind::BodyTooLarge
                            } else {
                                RejectionKind::MalformedBody
                            };
                            kind.set(Self::refused(&config, reason, &parts).kind);
                            continue;
                        }
                    };
                    match parse::field(format, &bytes, &config.field) {
                        Field::Value(value) => {
                            let key = parse::normalize(&value, config.case_sensitive);
                            let field = BodyField::new(key, config.case_sensitive);
                            parts.extensions.insert(field);
                        }
                        Field::Absent => {}
                        // B18: never passed on without its key.
                        Field::Ambiguous | Field::Unreadable => {
                            let refused =
                                Self::refused(&config, RejectionKind::MalformedBody, &parts);
                            kind.set(refused.kind);
                            continue;
                        }
                        Field::TooLong => {
                            let refused =
                                Self::refused(&config, RejectionKind::BodyTooLarge, &parts);
                            kind.set(refused.kind);
                            continue;
                        }
                    }
                    let body = Either::Right(Full::new(bytes));
                    let future = inner.call(Request::from_parts(parts, body));
                    kind.set(Kind::Inner { future });
                }
            }
        }
    }
}

impl<S, ReqBody> fmt::Debug for ResponseFuture<S, ReqBody>
where
    S: Service<Request<Body<ReqBody>>>,
    ReqBody: http_body::Body,
    ReqBody::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Buffering { .. } => "buffering",
            Kind::Inner { .. } => "inner",
            Kind::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
