use std::{
    fmt, mem,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Method, Request, Response, header, request::Parts};
use tower_service::Service;

use super::{Anonymous, ResponseFuture, Shared, future::Validation};
use crate::{
    AuthRejection, Credential, ResponseBody, ValidationError, Validator,
    reject::{self, RejectionKind, Renderer},
};

/// The service built by [`AuthLayer`](crate::AuthLayer).
pub struct Auth<S, V, R> {
    inner: S,
    shared: Arc<Shared<V, R>>,
}

impl<S, V, R> Auth<S, V, R> {
    pub(super) fn new(inner: S, shared: Arc<Shared<V, R>>) -> Self {
        Self { inner, shared }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, V, R> Clone for Auth<S, V, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, V, R> fmt::Debug for Auth<S, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("validator", &std::any::type_name::<V>())
            .finish_non_exhaustive()
    }
}

impl<S, V, R, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S, V, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    V: Validator,
    R: Renderer,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, V, R>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The inner service was driven to readiness; take it and leave a clone.
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        let shared = &self.shared;
        let (mut parts, body) = req.into_parts();

        if is_preflight(&parts) || shared.public.as_ref().is_some_and(|public| public(&parts)) {
            shared.pass_anonymous(&mut parts);
            return ResponseFuture::inner(inner.call(Request::from_parts(parts, body)));
        }

        match shared.extractor.extract(&parts) {
            Ok(Some(credential)) => {
                shared.extractor.strip(&mut parts);
                let validation = shared.validate(credential);
                ResponseFuture::validating(validation, inner, parts, body, shared.clone())
            }
            Ok(None) if shared.optional => {
                shared.pass_anonymous(&mut parts);
                ResponseFuture::inner(inner.call(Request::from_parts(parts, body)))
            }
            Ok(None) => {
                tracing::debug!(target: "portcullis::auth", "no credential presented");
                ResponseFuture::rejected(
                    shared.reject(AuthRejection::new(RejectionKind::Missing), &parts),
                )
            }
            Err(error) => {
                tracing::debug!(target: "portcullis::auth", %error, "credential refused before validation");
                ResponseFuture::rejected(shared.reject(AuthRejection::from(&error), &parts))
            }
        }
    }
}

/// A CORS preflight: `OPTIONS` with `Access-Control-Request-Method`.
fn is_preflight(parts: &Parts) -> bool {
    parts.method == Method::OPTIONS
        && parts
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

impl<V: Validator, R: Renderer> Shared<V, R> {
    pub(super) fn reject(&self, rejection: AuthRejection, parts: &Parts) -> Response<Bytes> {
        reject::render(&*self.renderer, rejection, parts)
    }

    fn pass_anonymous(&self, parts: &mut Parts) {
        self.extractor.strip(parts);
        parts
            .extensions
            .insert(Anonymous(self.renderer.clone() as Arc<dyn Renderer>));
    }

    fn validate(&self, credential: Credential) -> Validation<V::Identity> {
        let validator = self.validator.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let validation = validator.validate(&credential);
            let outcome = match timeout {
                None => validation.await,
                Some(limit) => tokio::time::timeout(limit, validation)
                    .await
                    .unwrap_or_else(|_| {
                        Err(ValidationError::unavailable().with_reason("validator timed out"))
                    }),
            };
            (credential, outcome)
        })
    }
}
