//! Requiring scopes per route.
//!
//! [`RequireScopeLayer`] goes inside an [`AuthLayer`](crate::AuthLayer) (on
//! the routes that need it): it reads the identity the auth layer inserted
//! into the request extensions and checks its scopes through the [`Scopes`]
//! trait, which JWT claims and [`ApiKeyIdentity`](crate::validate::ApiKeyIdentity)
//! implement.
//!
//! | situation | answer |
//! |---|---|
//! | identity has every required scope | the inner service runs |
//! | a scope is missing | [`InsufficientScope`](RejectionKind::InsufficientScope): HTTP 403 `error="insufficient_scope"`, `scope="…"` listing the required scopes; gRPC 7 `PERMISSION_DENIED` |
//! | no identity of that type in the request | [`Missing`](RejectionKind::Missing): HTTP 401 with a bare `Bearer` challenge; gRPC 16 `UNAUTHENTICATED` |
//!
//! An absent identity happens when the auth layer runs in optional mode and
//! the request carried no credential (the client should authenticate, hence
//! 401), or when the layers are in the wrong order or use a different
//! identity type (a configuration mistake; the request is refused rather
//! than let through).
//!
//! # Example
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use portcullis::scope::RequireScopeLayer;
//! use portcullis::validate::ApiKeyIdentity;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let admin_only = ServiceBuilder::new()
//!     .layer(RequireScopeLayer::<ApiKeyIdentity>::new("admin"))
//!     .service(service_fn(|_req: Request<()>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(()))
//!     }));
//!
//! // The AuthLayer inserts the identity; here we do it by hand.
//! let mut req = Request::new(());
//! req.extensions_mut().insert(ApiKeyIdentity::new("ci-bot").with_scopes(["read"]));
//! let res = admin_only.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     res.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="insufficient_scope", error_description="the access token lacks the required scope", scope="admin""#,
//! );
//! # });
//! ```

use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    ResponseBody,
    gate::{self, Gate},
    reject::{self, AuthRejection, DefaultRenderer, RejectionKind, Renderer},
};

pub use crate::validate::Scopes;

#[derive(Debug)]
struct Required {
    scopes: Vec<Box<str>>,
    /// The scopes, space-separated, as announced in `scope="…"`.
    joined: Arc<str>,
}

/// Requires scopes of the identity `I` found in the request extensions.
///
/// See the [module docs](self) for the answers it gives.
#[must_use]
pub struct RequireScopeLayer<I, R = DefaultRenderer> {
    required: Arc<Required>,
    renderer: R,
    _identity: PhantomData<fn() -> I>,
}

impl<I> RequireScopeLayer<I> {
    /// Requires `scope`.
    pub fn new(scope: impl Into<Box<str>>) -> Self {
        Self::all([scope])
    }

    /// Requires every one of `scopes`.
    pub fn all<S: Into<Box<str>>>(scopes: impl IntoIterator<Item = S>) -> Self {
        let scopes: Vec<Box<str>> = scopes.into_iter().map(Into::into).collect();
        let joined = scopes.join(" ").into();
        Self {
            required: Arc::new(Required { scopes, joined }),
            renderer: DefaultRenderer::new(),
            _identity: PhantomData,
        }
    }
}

impl<I, R> RequireScopeLayer<I, R> {
    /// Renders rejections with `renderer` (use the same one as your
    /// [`AuthLayer`](crate::AuthLayer), so the realm matches).
    pub fn renderer<R2: Renderer>(self, renderer: R2) -> RequireScopeLayer<I, R2> {
        RequireScopeLayer {
            required: self.required,
            renderer,
            _identity: PhantomData,
        }
    }
}

impl<I, R: Clone> Clone for RequireScopeLayer<I, R> {
    fn clone(&self) -> Self {
        Self {
            required: self.required.clone(),
            renderer: self.renderer.clone(),
            _identity: PhantomData,
        }
    }
}

impl<I, R: fmt::Debug> fmt::Debug for RequireScopeLayer<I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopeLayer")
            .field("scopes", &self.required.joined)
            .field("identity", &std::any::type_name::<I>())
            .field("renderer", &self.renderer)
            .finish()
    }
}

impl<S, I, R: Clone> Layer<S> for RequireScopeLayer<I, R> {
    type Service = RequireScope<S, I, R>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            required: self.required.clone(),
            renderer: self.renderer.clone(),
            _identity: PhantomData,
        }
    }
}

/// The service of a [`RequireScopeLayer`].
pub struct RequireScope<S, I, R = DefaultRenderer> {
    inner: S,
    required: Arc<Required>,
    renderer: R,
    _identity: PhantomData<fn() -> I>,
}

impl<S, I, R> RequireScope<S, I, R> {
    gate::inner_accessors!();
}

impl<S: Clone, I, R: Clone> Clone for RequireScope<S, I, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            required: self.required.clone(),
            renderer: self.renderer.clone(),
            _identity: PhantomData,
        }
    }
}

impl<S: fmt::Debug, I, R: fmt::Debug> fmt::Debug for RequireScope<S, I, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScope")
            .field("inner", &self.inner)
            .field("scopes", &self.required.joined)
            .field("identity", &std::any::type_name::<I>())
            .field("renderer", &self.renderer)
            .finish()
    }
}

impl<S, I, R, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScope<S, I, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    I: Scopes + Send + Sync + 'static,
    R: Renderer,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let rejection = match req.extensions().get::<I>() {
            None => Some(AuthRejection::new(RejectionKind::Missing)),
            Some(identity) => {
                if self.required.scopes.iter().all(|s| identity.has_scope(s)) {
                    None
                } else {
                    Some(
                        AuthRejection::new(RejectionKind::InsufficientScope)
                            .with_scope(self.required.joined.clone()),
                    )
                }
            }
        };
        match rejection {
            None => ResponseFuture::new(Gate::pass(self.inner.call(req), ())),
            Some(rejection) => {
                tracing::debug!(
                    kind = ?rejection.kind(),
                    scopes = %self.required.joined,
                    "request refused by scope check"
                );
                crate::events::emit(crate::events::Record::Rejected {
                    kind: rejection.kind(),
                    source: None,
                    fingerprint: None,
                });
                let (parts, _body) = req.into_parts();
                let response = reject::render(&self.renderer, rejection, &parts);
                ResponseFuture::new(Gate::refuse(response, ()))
            }
        }
    }
}

gate::response_future! {
    /// The response future of [`RequireScope`].
    ()
}
