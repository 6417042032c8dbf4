use std::{fmt, sync::Arc, time::Duration};

use http::request::Parts;
use tower_layer::Layer;

use super::{Auth, Predicate, Shared};
use crate::{Validator, extract::Extractor, reject::DefaultRenderer};

/// Authenticates requests: finds the credential, validates it, and inserts
/// the caller's identity into the request extensions.
///
/// See the [module docs](crate::auth) for what happens to each request.
#[must_use]
pub struct AuthLayer<V, R = DefaultRenderer> {
    validator: Arc<V>,
    extractor: Extractor,
    renderer: Arc<R>,
    optional: bool,
    public: Option<Predicate>,
    timeout: Option<Duration>,
}

impl<V: Validator> AuthLayer<V> {
    /// Validates `Authorization: Bearer` credentials with `validator`.
    pub fn new(validator: V) -> Self {
        Self {
            validator: Arc::new(validator),
            extractor: Extractor::default(),
            renderer: Arc::new(DefaultRenderer::new()),
            optional: false,
            public: None,
            timeout: None,
        }
    }
}

impl<V, R> AuthLayer<V, R> {
    /// Where to look for the credential (default: `Authorization: Bearer`).
    pub fn extractor(mut self, extractor: Extractor) -> Self {
        self.extractor = extractor;
        self
    }

    /// Lets requests without any credential through, anonymous.
    ///
    /// A credential that *is* presented is still validated, and a bad one is
    /// still rejected: optional means "may be absent", not "may be wrong".
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Marks requests that need no credential (health checks, a login page).
    ///
    /// Public requests go to the inner service without extraction or
    /// validation. CORS preflight requests always do.
    pub fn public<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.public = Some(Arc::new(predicate));
        self
    }

    /// Gives the validator at most `timeout` per credential; a validator
    /// that takes longer is [unavailable](crate::ValidationError::unavailable)
    /// (503), so a slow backend cannot hold requests forever.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Renders rejections with `renderer` instead of the [`DefaultRenderer`].
    pub fn renderer<R2>(self, renderer: R2) -> AuthLayer<V, R2> {
        AuthLayer {
            validator: self.validator,
            extractor: self.extractor,
            renderer: Arc::new(renderer),
            optional: self.optional,
            public: self.public,
            timeout: self.timeout,
        }
    }
}

impl<V, R> Clone for AuthLayer<V, R> {
    fn clone(&self) -> Self {
        Self {
            validator: self.validator.clone(),
            extractor: self.extractor.clone(),
            renderer: self.renderer.clone(),
            optional: self.optional,
            public: self.public.clone(),
            timeout: self.timeout,
        }
    }
}

impl<V, R: fmt::Debug> fmt::Debug for AuthLayer<V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("validator", &std::any::type_name::<V>())
            .field("extractor", &self.extractor)
            .field("renderer", &self.renderer)
            .field("optional", &self.optional)
            .field("public", &self.public.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<S, V, R> Layer<S> for AuthLayer<V, R> {
    type Service = Auth<S, V, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth::new(
            inner,
            Arc::new(Shared {
                validator: self.validator.clone(),
                extractor: self.extractor.clone(),
                renderer: self.renderer.clone(),
                optional: self.optional,
                public: self.public.clone(),
                timeout: self.timeout,
            }),
        )
    }
}
