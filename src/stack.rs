//! One layer that composes portcullis's layers in the one order that works
//! (SECURITY.md B17).
//!
//! The order matters, and is easy to get wrong: `tower::ServiceBuilder`
//! lists layers outermost first, axum's `Router::layer` makes the *last*
//! call the outermost. Written in the wrong order, a lockout ends up inside
//! `AuthLayer` and never sees a rejected credential (it logs a warning once
//! when that happens). [`Stack`] takes the layers by role and always wraps
//! them, outermost first:
//!
//! 1. [`RateLimitLayer`]: a flood is refused before it costs anything;
//! 2. the [per-route rate limit](Stack::route_rate_limit): a stricter limit
//!    for one route (the login form);
//! 3. [`CrossOriginLayer`]: cross-site form posts are refused and never
//!    counted (then the check of the login routes, which leaves the
//!    requests the first one checked to it);
//! 4. [`BodyKeyLayer`]: the account of a login request is read before the
//!    lockout needs it (on the login route the layer is given: other bodies
//!    are never buffered);
//! 5. [`LockoutLayer`]: locked-out keys are refused before a validator or
//!    handler runs, and failures are counted;
//! 6. [`AuthLayer`]: the credential is checked.
//!
//! Only the auth layer is required; add the stack to an axum `Router` or a
//! tonic `Server` with one `layer` call. Each slot takes its own layer type
//! and nothing else, once: a layer in the wrong slot, or a second layer for
//! a slot that is taken, does not compile (nothing is replaced silently).
//!
//! # The login route
//!
//! A login route needs three settings that must agree: the route is public
//! (the request carries a password, not a credential: without
//! [`AuthLayer::public`] the right password gets a bare 401 and the
//! handler never runs), its body names the account ([`BodyKeyLayer`]), and
//! it is checked against cross-site posts (login CSRF, [`CrossOriginLayer`]).
//! [`Stack::login_route`] sets all three from one path.
//!
//! # Example
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # async fn example() {
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode, header::AUTHORIZATION};
//! use portcullis::{AuthLayer, Credential, PeerAddr, ValidationError, lockout::{LockoutLayer, Policy}, stack::Stack};
//! use tower::ServiceExt;
//!
//! let validate = |c: Credential| async move {
//!     if c.secret() == "alice-token" { Ok(()) } else { Err(ValidationError::invalid()) }
//! };
//! let stack = Stack::new(AuthLayer::new(validate))
//!     .lockout(LockoutLayer::new(Policy::builder().max_failures(1).build().unwrap()));
//! let app = Router::new().route("/", get(|| async { "hi" })).layer(stack);
//!
//! let req = |token: &str| {
//!     Request::get("/")
//!         .header(AUTHORIZATION, format!("Bearer {token}"))
//!         .extension(PeerAddr("192.0.2.1:1".parse().unwrap()))
//!         .body(Body::empty())
//!         .unwrap()
//! };
//! assert_eq!(app.clone().oneshot(req("guess")).await.unwrap().status(), StatusCode::UNAUTHORIZED);
//! // The lockout is outside AuthLayer, so the failure counted.
//! assert_eq!(app.oneshot(req("alice-token")).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
//! # }
//! # #[cfg(feature = "axum")]
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(example());
//! ```
//!
//! A layer in the wrong slot is a compile error:
//!
//! ```compile_fail
//! use portcullis::{AuthLayer, Credential, ValidationError, rate_limit::RateLimitLayer, stack::Stack};
//!
//! let validate = |_: Credential| async { Err::<(), _>(ValidationError::invalid()) };
//! let rate_limit = RateLimitLayer::builder().per_second(10).build().unwrap();
//! // `lockout` takes a `LockoutLayer`, not a `RateLimitLayer`.
//! let stack = Stack::new(AuthLayer::new(validate)).lockout(rate_limit);
//! ```
//!
//! ```compile_fail
//! use portcullis::{lockout::{LockoutLayer, Policy}, stack::Stack};
//!
//! // The stack is built around an `AuthLayer`, nothing else.
//! let stack = Stack::new(LockoutLayer::new(Policy::default()));
//! ```
//!
//! ```compile_fail
//! use portcullis::{AuthLayer, Credential, ValidationError, body_key::BodyKeyLayer, stack::Stack};
//!
//! let validate = |_: Credential| async { Err::<(), _>(ValidationError::invalid()) };
//! let body_key = BodyKeyLayer::new("username", |req| req.uri.path() == "/login");
//! // `rate_limit` takes a `RateLimitLayer`.
//! let stack = Stack::new(AuthLayer::new(validate)).rate_limit(body_key);
//! ```
//!
//! A slot given twice is a compile error too, not a silent replacement:
//! [`Stack::login_route`] fills the body key slot with the `username` field
//! of the login routes, so another body key cannot be added beside it.
//!
//! ```compile_fail
//! use portcullis::{AuthLayer, Credential, ValidationError, body_key::BodyKeyLayer, stack::Stack};
//!
//! let validate = |_: Credential| async { Err::<(), _>(ValidationError::invalid()) };
//! let email = BodyKeyLayer::new("email", |req| req.uri.path() == "/signin");
//! let stack = Stack::new(AuthLayer::new(validate)).login_route("/login").body_key(email);
//! ```
//!
//! ```compile_fail
//! use portcullis::{AuthLayer, Credential, ValidationError, rate_limit::RateLimitLayer, stack::Stack};
//!
//! let validate = |_: Credential| async { Err::<(), _>(ValidationError::invalid()) };
//! let limit = || RateLimitLayer::builder().per_second(10).build().unwrap();
//! let stack = Stack::new(AuthLayer::new(validate)).rate_limit(limit()).rate_limit(limit());
//! ```

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use http::{Request, Response, request::Parts};
use pin_project_lite::pin_project;
use tower_layer::{Identity, Layer};
use tower_service::Service;

use crate::{
    AuthLayer, KeyExtractor, ResponseBody, auth::Auth, body_key::BodyKeyLayer,
    cross_origin::CrossOriginLayer, lockout::LockoutLayer, rate_limit::RateLimitLayer,
};

/// The slot type of [`Stack::route_rate_limit`].
type RouteLimit<K, R> = RouteRateLimit<RateLimitLayer<K, R>>;

/// The body field [`Stack::login_route`] reads the account from.
const LOGIN_FIELD: &str = "username";

/// The layers of portcullis in the right order; see the
/// [module docs](self).
///
/// The type parameters are the layers in each slot (`Identity` for an empty
/// one); you never write them: the setters fill them in.
///
/// # Performance
///
/// A stack costs less than the same layers put together by hand. Its
/// lockout sits directly outside its auth layer, so each admitted request's
/// reservation (released once the credential is accepted, SECURITY.md B11)
/// goes to the auth service with the call itself instead of through the
/// request extensions: one allocation and an extensions insert fewer per
/// request. Reservations of lockout layers outside the stack still travel
/// in the extensions, and are released with it.
#[derive(Debug, Clone)]
#[must_use]
pub struct Stack<
    A,
    L = Identity,
    B = Identity,
    C = Identity,
    RL = Identity,
    PR = Identity,
    LO = Identity,
> {
    auth: A,
    lockout: L,
    body_key: B,
    cross_origin: C,
    rate_limit: RL,
    route_rate_limit: PR,
    /// The cross-origin check of the login routes, inside `cross_origin`.
    login_origin: LO,
    /// The paths given to [`Stack::login_route`].
    login: Vec<Arc<str>>,
}

/// The [`BodyKeyLayer`] of the login routes, in the body key slot of a
/// [`Stack`] after [`Stack::login_route`]; you never write this type.
#[derive(Debug, Clone)]
#[must_use]
pub struct LoginKey(BodyKeyLayer);

impl<S> Layer<S> for LoginKey {
    type Service = <BodyKeyLayer as Layer<S>>::Service;

    fn layer(&self, inner: S) -> Self::Service {
        self.0.layer(inner)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for tower_layer::Identity {}
    impl Sealed for super::LoginKey {}
    impl<K: crate::KeyExtractor, R> Sealed for crate::lockout::LockoutLayer<K, R> {}
}

/// The lockout slot of a [`Stack`]: empty, or a [`LockoutLayer`]; you
/// never name this trait.
///
/// The stack puts its lockout directly outside its auth layer, so the
/// lockout hands each request's reservation to the auth service with the
/// call itself, not through the request extensions (see
/// [`Stack`](Stack#performance)).
pub trait LockoutSlot<S>: Layer<S> + sealed::Sealed {
    /// Whether the slot holds a lockout layer.
    #[doc(hidden)]
    const LOCKOUT: bool;

    /// Wraps `inner`, the stack's auth service, built to take the
    /// reservations from the call.
    #[doc(hidden)]
    fn layer_handing_over(&self, inner: S) -> Self::Service;
}

impl<S> LockoutSlot<S> for Identity {
    const LOCKOUT: bool = false;

    fn layer_handing_over(&self, inner: S) -> S {
        inner
    }
}

impl<S, K: KeyExtractor, R> LockoutSlot<S> for LockoutLayer<K, R> {
    const LOCKOUT: bool = true;

    fn layer_handing_over(&self, inner: S) -> Self::Service {
        self.layer(inner).handing_over()
    }
}

/// A body key slot that [`Stack::login_route`] may fill: empty, or filled
/// by an earlier `login_route`. A [`BodyKeyLayer`] given with
/// [`Stack::body_key`] is not one of them: the two would read different
/// fields of the same route.
pub trait LoginSlot: sealed::Sealed {}

impl LoginSlot for Identity {}
impl LoginSlot for LoginKey {}

impl<V, R> Stack<AuthLayer<V, R>> {
    /// A stack around `auth`.
    pub fn new(auth: AuthLayer<V, R>) -> Self {
        Self {
            auth,
            lockout: Identity::new(),
            body_key: Identity::new(),
            cross_origin: Identity::new(),
            rate_limit: Identity::new(),
            route_rate_limit: Identity::new(),
            login_origin: Identity::new(),
            login: Vec::new(),
        }
    }
}

impl<V, R, L, B: LoginSlot, C, RL, PR, LO> Stack<AuthLayer<V, R>, L, B, C, RL, PR, LO> {
    /// Makes `path` a login route, with the three settings a login route
    /// needs:
    ///
    /// - it is public ([`AuthLayer::public`], added to the requests the
    ///   auth layer already lets through): the request carries a password,
    ///   not a credential, and the login handler's answer is what the
    ///   lockout judges;
    /// - its `username` form or JSON field is the account key
    ///   ([`BodyKeyLayer`], read for `path` only; give the lockout
    ///   [`BodyField::key`](crate::body_key::BodyField::key) or
    ///   [`DeviceCookies::untrusted_key`](crate::lockout::DeviceCookies::untrusted_key));
    /// - cross-site posts to it are refused, 403 and not counted
    ///   ([`CrossOriginLayer`] for `path` only, with no trusted origin:
    ///   login CSRF; one given with [`cross_origin`](Self::cross_origin),
    ///   trusting origins, is asked first and decides for the requests it
    ///   checks).
    ///
    /// Call it once per login route; each call adds one. It fills the
    /// [`body_key`](Self::body_key) slot, so the two cannot both be given
    /// (a compile error, where replacing one with the other would leave a
    /// route without its account key): for a field other than `username`,
    /// give [`AuthLayer::public`], [`body_key`](Self::body_key) and
    /// [`cross_origin`](Self::cross_origin) yourself.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "axum")]
    /// # async fn example() {
    /// use axum::{Extension, Router, body::Body, routing::post};
    /// use http::{Request, StatusCode, header};
    /// use portcullis::{AuthLayer, Credential, PeerAddr, ValidationError, body_key::BodyField};
    /// use portcullis::{lockout::{Failed, LockoutLayer, Policy}, stack::Stack};
    /// use tower::ServiceExt;
    ///
    /// let validate = |_: Credential| async { Err::<(), _>(ValidationError::invalid()) };
    /// let per_account = Policy::builder().max_failures(2).build().unwrap();
    /// let stack = Stack::new(AuthLayer::new(validate))
    ///     .lockout(
    ///         LockoutLayer::builder(Policy::default())
    ///             .also_key(BodyField::key, per_account)
    ///             .build()
    ///             .unwrap(),
    ///     )
    ///     .login_route("/login");
    /// // A handler that refuses every password.
    /// let login = || async { (StatusCode::UNAUTHORIZED, Extension(Failed::new())) };
    /// let app = Router::new().route("/login", post(login)).layer(stack);
    ///
    /// let attempt = |from: u8, site: &str| {
    ///     Request::post("/login")
    ///         .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
    ///         .header("sec-fetch-site", site)
    ///         .extension(PeerAddr(([192, 0, 2, from], 1).into()))
    ///         .body(Body::from("username=Alice&password=guess"))
    ///         .unwrap()
    /// };
    /// // The handler runs (the route is public) and the account counts…
    /// for from in 1..=2 {
    ///     let res = app.clone().oneshot(attempt(from, "same-origin")).await.unwrap();
    ///     assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    /// }
    /// // …so the account is locked, from any address.
    /// let res = app.clone().oneshot(attempt(3, "same-origin")).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    /// // A cross-site post is refused before anything else.
    /// let res = app.oneshot(attempt(4, "cross-site")).await.unwrap();
    /// assert_eq!(res.status(), StatusCode::FORBIDDEN);
    /// # }
    /// # #[cfg(feature = "axum")]
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(example());
    /// ```
    pub fn login_route(
        mut self,
        path: &str,
    ) -> Stack<AuthLayer<V, R>, L, LoginKey, C, RL, PR, CrossOriginLayer> {
        let path: Arc<str> = path.into();
        self.login.push(Arc::clone(&path));
        let auth = self.auth.also_public(move |req| req.uri.path() == &*path);
        let check = auth.cross_origin_protection().clone();
        let login: Arc<[Arc<str>]> = self.login.iter().cloned().collect();
        let paths = Arc::clone(&login);
        let body_key = BodyKeyLayer::new(LOGIN_FIELD, move |req| is_one_of(req, &paths));
        let login_origin = CrossOriginLayer::new(check).when(move |req| is_one_of(req, &login));
        Stack {
            auth,
            lockout: self.lockout,
            body_key: LoginKey(body_key),
            cross_origin: self.cross_origin,
            rate_limit: self.rate_limit,
            route_rate_limit: self.route_rate_limit,
            login_origin,
            login: self.login,
        }
    }
}

impl<A, B, C, RL, PR, LO> Stack<A, Identity, B, C, RL, PR, LO> {
    /// Adds the [`LockoutLayer`], outside the auth layer.
    pub fn lockout<K: KeyExtractor, R>(
        self,
        lockout: LockoutLayer<K, R>,
    ) -> Stack<A, LockoutLayer<K, R>, B, C, RL, PR, LO> {
        Stack {
            auth: self.auth,
            lockout,
            body_key: self.body_key,
            cross_origin: self.cross_origin,
            rate_limit: self.rate_limit,
            route_rate_limit: self.route_rate_limit,
            login_origin: self.login_origin,
            login: self.login,
        }
    }
}

impl<A, L, C, RL, PR, LO> Stack<A, L, Identity, C, RL, PR, LO> {
    /// Adds the [`BodyKeyLayer`], outside the lockout. Not with
    /// [`login_route`](Self::login_route), which adds its own.
    pub fn body_key(self, body_key: BodyKeyLayer) -> Stack<A, L, BodyKeyLayer, C, RL, PR, LO> {
        Stack {
            auth: self.auth,
            lockout: self.lockout,
            body_key,
            cross_origin: self.cross_origin,
            rate_limit: self.rate_limit,
            route_rate_limit: self.route_rate_limit,
            login_origin: self.login_origin,
            login: self.login,
        }
    }
}

impl<A, L, B, RL, PR, LO> Stack<A, L, B, Identity, RL, PR, LO> {
    /// Adds the [`CrossOriginLayer`], outside the body key and the lockout,
    /// and outside the check of the [login routes](Self::login_route): for
    /// the requests it checks, it decides.
    pub fn cross_origin<R>(
        self,
        cross_origin: CrossOriginLayer<R>,
    ) -> Stack<A, L, B, CrossOriginLayer<R>, RL, PR, LO> {
        Stack {
            auth: self.auth,
            lockout: self.lockout,
            body_key: self.body_key,
            cross_origin,
            rate_limit: self.rate_limit,
            route_rate_limit: self.route_rate_limit,
            login_origin: self.login_origin,
            login: self.login,
        }
    }
}

impl<A, L, B, C, PR, LO> Stack<A, L, B, C, Identity, PR, LO> {
    /// Adds the [`RateLimitLayer`], outermost: it limits every request.
    pub fn rate_limit<K: KeyExtractor, R>(
        self,
        rate_limit: RateLimitLayer<K, R>,
    ) -> Stack<A, L, B, C, RateLimitLayer<K, R>, PR, LO> {
        Stack {
            auth: self.auth,
            lockout: self.lockout,
            body_key: self.body_key,
            cross_origin: self.cross_origin,
            rate_limit,
            route_rate_limit: self.route_rate_limit,
            login_origin: self.login_origin,
            login: self.login,
        }
    }
}

impl<A, L, B, C, RL, LO> Stack<A, L, B, C, RL, Identity, LO> {
    /// Adds a [`RateLimitLayer`] for the requests to `path` only (a
    /// stricter limit for the login route), inside the
    /// [`rate_limit`](Self::rate_limit) of every request: a request to
    /// `path` must pass both. Requests to other paths never reach it and
    /// are not counted by it. One per stack.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "axum")]
    /// # async fn example() {
    /// use axum::{Router, body::Body, routing::{get, post}};
    /// use http::{Request, StatusCode};
    /// use portcullis::{AuthLayer, Credential, PeerAddr, ValidationError, rate_limit::RateLimitLayer, stack::Stack};
    /// use tower::ServiceExt;
    ///
    /// let validate = |_: Credential| async { Ok::<_, ValidationError>(()) };
    /// let stack = Stack::new(AuthLayer::new(validate).public(|_| true))
    ///     .rate_limit(RateLimitLayer::builder().per_second(100).build().unwrap())
    ///     .route_rate_limit("/login", RateLimitLayer::builder().per_minute(1).build().unwrap());
    /// let app = Router::new()
    ///     .route("/login", post(|| async { "welcome" }))
    ///     .route("/page", get(|| async { "hi" }))
    ///     .layer(stack);
    /// let req = |method: &str, path: &str| {
    ///     Request::builder()
    ///         .method(method)
    ///         .uri(path)
    ///         .extension(PeerAddr("192.0.2.1:1".parse().unwrap()))
    ///         .body(Body::empty())
    ///         .unwrap()
    /// };
    /// assert_eq!(app.clone().oneshot(req("POST", "/login")).await.unwrap().status(), StatusCode::OK);
    /// assert_eq!(app.clone().oneshot(req("POST", "/login")).await.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    /// // Other routes have the general limit only.
    /// assert_eq!(app.oneshot(req("GET", "/page")).await.unwrap().status(), StatusCode::OK);
    /// # }
    /// # #[cfg(feature = "axum")]
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(example());
    /// ```
    pub fn route_rate_limit<K: KeyExtractor, R>(
        self,
        path: &str,
        rate_limit: RateLimitLayer<K, R>,
    ) -> Stack<A, L, B, C, RL, RouteLimit<K, R>, LO> {
        Stack {
            auth: self.auth,
            lockout: self.lockout,
            body_key: self.body_key,
            cross_origin: self.cross_origin,
            rate_limit: self.rate_limit,
            route_rate_limit: RouteRateLimit {
                path: path.into(),
                layer: rate_limit,
            },
            login_origin: self.login_origin,
            login: self.login,
        }
    }
}

impl<S, V, RA, L, B, C, RL, PR, LO> Layer<S> for Stack<AuthLayer<V, RA>, L, B, C, RL, PR, LO>
where
    L: LockoutSlot<Auth<S, V, RA>>,
    B: Layer<L::Service>,
    LO: Layer<B::Service>,
    C: Layer<LO::Service>,
    PR: Layer<C::Service>,
    RL: Layer<PR::Service>,
{
    type Service = RL::Service;

    fn layer(&self, inner: S) -> Self::Service {
        let mut auth = self.auth.layer(inner);
        if L::LOCKOUT {
            auth = auth.taking_over();
        }
        let lockout = self.lockout.layer_handing_over(auth);
        let body_key = self.body_key.layer(lockout);
        let login_origin = self.login_origin.layer(body_key);
        let cross_origin = self.cross_origin.layer(login_origin);
        let route_rate_limit = self.route_rate_limit.layer(cross_origin);
        self.rate_limit.layer(route_rate_limit)
    }
}

fn is_one_of(req: &Parts, paths: &[Arc<str>]) -> bool {
    let path = req.uri.path();
    paths.iter().any(|p| **p == *path)
}

/// A layer applied to the requests of one path only; see
/// [`Stack::route_rate_limit`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RouteRateLimit<L> {
    path: Arc<str>,
    layer: L,
}

impl<S: Clone, L: Layer<S>> Layer<S> for RouteRateLimit<L> {
    type Service = Routed<S, L::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        Routed {
            limited: self.layer.layer(inner.clone()),
            inner,
            path: Arc::clone(&self.path),
        }
    }
}

/// The service built by [`RouteRateLimit`]: requests to its path go
/// through the limiter, the others straight to the inner service.
#[derive(Clone)]
pub struct Routed<S, T> {
    inner: S,
    limited: T,
    path: Arc<str>,
}

impl<S: fmt::Debug, T> fmt::Debug for Routed<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Routed")
            .field("inner", &self.inner)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl<S, T, ReqBody, ResBody> Service<Request<ReqBody>> for Routed<S, T>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    T: Service<Request<ReqBody>, Response = Response<ResponseBody<ResBody>>, Error = S::Error>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = RoutedFuture<S::Future, T::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both are ready before either is called: the route is known only
        // with the request.
        ready!(self.inner.poll_ready(cx))?;
        self.limited.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if request.uri().path() == &*self.path {
            RoutedFuture {
                kind: Kind::Limited {
                    future: self.limited.call(request),
                },
            }
        } else {
            RoutedFuture {
                kind: Kind::Inner {
                    future: self.inner.call(request),
                },
            }
        }
    }
}

pin_project! {
    /// The response future of [`Routed`].
    pub struct RoutedFuture<F, G> {
        #[pin]
        kind: Kind<F, G>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, G> {
        // A request to another path.
        Inner { #[pin] future: F },
        // A request to the limited path.
        Limited { #[pin] future: G },
    }
}

impl<F, G> fmt::Debug for RoutedFuture<F, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoutedFuture").finish_non_exhaustive()
    }
}

impl<F, G, ResBody, E> Future for RoutedFuture<F, G>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    G: Future<Output = Result<Response<ResponseBody<ResBody>>, E>>,
{
    type Output = Result<Response<ResponseBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => {
                let response = ready!(future.poll(cx))?;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Limited { future } => future.poll(cx),
        }
    }
}
