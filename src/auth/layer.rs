use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Response, request::Parts};
use tower_layer::Layer;

use super::{Auth, Shared};
use crate::{
    Validator,
    cross_origin::CrossOriginProtection,
    extract::Extractor,
    lease::Leases,
    reject::DefaultRenderer,
    revoke::{Revocable, Revocations},
    validate::ExpiresAt,
};

/// Authenticates requests: finds the credential, validates it, and inserts
/// the caller's identity into the request extensions.
///
/// See the [module docs](crate::auth) for what happens to each request.
#[must_use]
pub struct AuthLayer<V, R = DefaultRenderer> {
    /// What every service the layer builds shares: a service is the inner
    /// service plus this `Arc`.
    shared: Arc<Shared<V, R>>,
}

impl<V: Validator> AuthLayer<V> {
    /// Validates `Authorization: Bearer` credentials with `validator`.
    pub fn new(validator: V) -> Self {
        Self {
            shared: Arc::new(Shared {
                validator: Arc::new(validator),
                extractor: Extractor::default(),
                renderer: Arc::new(DefaultRenderer::new()),
                optional: false,
                public: None,
                preflight: None,
                timeout: None,
                cross_origin: CrossOriginProtection::new(),
                clear_stale_cookies: true,
                leases: None,
            }),
        }
    }
}

impl<V, R> AuthLayer<V, R> {
    /// Where to look for the credential (default: `Authorization: Bearer`).
    pub fn extractor(self, extractor: Extractor) -> Self {
        self.edit(|shared| shared.extractor = extractor)
    }

    /// Lets requests without any credential through, anonymous.
    ///
    /// A credential that *is* presented is still validated, and a bad one is
    /// still rejected: optional means "may be absent", not "may be wrong".
    pub fn optional(self) -> Self {
        self.edit(|shared| shared.optional = true)
    }

    /// Marks requests that need no credential (health checks, a login page).
    ///
    /// Public requests go to the inner service without extraction or
    /// validation, holding the reservations of the lockout layers outside
    /// until their response (a public login handler is judged by its
    /// answer).
    pub fn public<F>(self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.edit(|shared| shared.public = Some(Arc::new(predicate)))
    }

    /// Adds `predicate` to the public requests: a request either predicate
    /// selects is public ([`Stack::login_route`](crate::stack::Stack::login_route)).
    pub(crate) fn also_public<F>(self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        match self.shared.public.clone() {
            None => self.public(predicate),
            Some(before) => self.public(move |req| before(req) || predicate(req)),
        }
    }

    /// The cross-origin check of cookie credentials.
    pub(crate) fn cross_origin_protection(&self) -> &CrossOriginProtection {
        &self.shared.cross_origin
    }

    /// Answers CORS preflight requests (`OPTIONS` with
    /// `Access-Control-Request-Method`) with `responder` instead of
    /// authenticating them.
    ///
    /// By default a preflight is authenticated like any other request: it
    /// carries no credential, so it is answered 401. The right place for
    /// CORS is a CORS layer *outside* `AuthLayer` (tower-http's `CorsLayer`
    /// answers preflights itself). Use this only when that is not possible.
    ///
    /// # Security
    ///
    /// A preflight never reaches the inner service: an axum `any()` route,
    /// a fallback or a proxying service behind `AuthLayer` would otherwise
    /// run for anyone who sends `OPTIONS` with that header. The responder's
    /// answer carries an [`AuthRejection`](crate::AuthRejection) of kind
    /// `Missing` in its extensions, so a lockout layer outside never counts
    /// it, neither as a failure nor as a success.
    ///
    /// # Example
    ///
    /// ```
    /// use bytes::Bytes;
    /// use http::{Response, StatusCode, request::Parts};
    /// use portcullis::{AuthLayer, Credential, ValidationError};
    ///
    /// let validate = |_: Credential| async { Err::<(), _>(ValidationError::invalid()) };
    /// let layer = AuthLayer::new(validate).preflight(|_: &Parts| {
    ///     Response::builder()
    ///         .status(StatusCode::NO_CONTENT)
    ///         .header("access-control-allow-origin", "https://app.example")
    ///         .header("access-control-allow-methods", "GET, POST")
    ///         .header("access-control-allow-headers", "authorization")
    ///         .body(Bytes::new())
    ///         .unwrap()
    /// });
    /// # let _ = layer;
    /// ```
    pub fn preflight<F>(self, responder: F) -> Self
    where
        F: Fn(&Parts) -> Response<Bytes> + Send + Sync + 'static,
    {
        self.edit(|shared| shared.preflight = Some(Arc::new(responder)))
    }

    /// Gives the validator at most `timeout` per credential; a validator
    /// that takes longer is [unavailable](crate::ValidationError::unavailable)
    /// (503), so a slow backend cannot hold requests forever.
    pub fn timeout(self, timeout: Duration) -> Self {
        self.edit(|shared| shared.timeout = Some(timeout))
    }

    /// Configures the cross-origin check of requests authenticated by a
    /// cookie (SECURITY.md C1).
    ///
    /// Whether to remove a credential cookie the validator rejected
    /// (default on): the rejection carries a `Set-Cookie` with the same
    /// name, path and attributes and `Max-Age=0`
    /// ([`Cookie::removal`](crate::extract::Cookie::removal)), so a browser
    /// stops sending a session that was signed out elsewhere, expired, or
    /// forgotten by a restart, instead of failing with it on every page.
    pub fn clear_stale_cookies(self, clear: bool) -> Self {
        self.edit(|shared| shared.clear_stale_cookies = clear)
    }

    /// Renders rejections with `renderer` instead of the [`DefaultRenderer`].
    pub fn renderer<R2>(self, renderer: R2) -> AuthLayer<V, R2> {
        AuthLayer {
            shared: Arc::new(Shared::clone(&self.shared).with_renderer(Arc::new(renderer))),
        }
    }

    /// Changes the configuration; the services already built keep theirs.
    fn edit(mut self, edit: impl FnOnce(&mut Shared<V, R>)) -> Self {
        edit(Arc::make_mut(&mut self.shared));
        self
    }
}

impl<V, R> AuthLayer<V, R>
where
    V: Validator,
    V::Identity: ExpiresAt + Revocable,
{
    /// Grants every accepted request a [`Lease`](crate::lease::Lease) that
    /// ends when its identity expires or its credential is revoked in
    /// `revocations`, and ends streaming response bodies with it. Turn it on
    /// for services that stream (SSE, chunked downloads, gRPC streams,
    /// WebSockets): signed out then means disconnected.
    ///
    /// - gRPC response streams end with trailers `grpc-status: 16`
    ///   (UNAUTHENTICATED) and a `grpc-message` saying expired or revoked;
    ///   other bodies end.
    /// - The lease is in the request extensions (with axum, the `Lease`
    ///   extractor) for work the body does not cover: a WebSocket handler
    ///   `select!`s on [`Lease::ended`](crate::lease::Lease::ended) and
    ///   closes with code 1008.
    /// - Requests that do not stream pay for the lease only (see
    ///   [`lease`](crate::lease)).
    ///
    /// Give the same `revocations` to the validator (the
    /// [`CachingValidator`](crate::validate::CachingValidator),
    /// [`ApiKeys`](crate::validate::ApiKeys) or `JwtValidator` (feature
    /// `jwt`) builders' `revocations`), so that new requests with a revoked credential are
    /// refused too.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::{AuthLayer, Credential, ValidationError};
    /// use portcullis::revoke::{Revocable, Revocations};
    /// use portcullis::validate::ExpiresAt;
    /// use tokio::time::Instant;
    ///
    /// #[derive(Clone)]
    /// struct User(String);
    /// impl ExpiresAt for User {
    ///     fn expires_at(&self) -> Option<Instant> { None }
    /// }
    /// impl Revocable for User {
    ///     fn subject(&self) -> Option<&str> { Some(&self.0) }
    /// }
    ///
    /// let validate = |_: Credential| async { Ok::<_, ValidationError>(User("alice".into())) };
    /// let revocations = Revocations::new();
    /// let layer = AuthLayer::new(validate).leases(&revocations);
    /// # let _ = layer;
    /// ```
    pub fn leases(self, revocations: &Revocations) -> Self {
        let leases = Leases::new::<V::Identity>(revocations);
        self.edit(|shared| shared.leases = Some(leases))
    }
}

impl<V, R> Clone for AuthLayer<V, R> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<V, R: fmt::Debug> fmt::Debug for AuthLayer<V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("validator", &std::any::type_name::<V>())
            .field("extractor", &self.shared.extractor)
            .field("renderer", &self.shared.renderer)
            .field("optional", &self.shared.optional)
            .field("public", &self.shared.public.is_some())
            .field("preflight", &self.shared.preflight.is_some())
            .field("timeout", &self.shared.timeout)
            .field("cross_origin", &self.shared.cross_origin)
            .field("clear_stale_cookies", &self.shared.clear_stale_cookies)
            .field("leases", &self.shared.leases.is_some())
            .finish()
    }
}

impl<S, V, R> Layer<S> for AuthLayer<V, R> {
    type Service = Auth<S, V, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth::new(inner, Arc::clone(&self.shared))
    }
}
