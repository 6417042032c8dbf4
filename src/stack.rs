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
//! 1. [`RateLimitLayer`](crate::rate_limit::RateLimitLayer): a flood is
//!    refused before it costs anything;
//! 2. [`CrossOriginLayer`](crate::cross_origin::CrossOriginLayer):
//!    cross-site form posts are refused and never counted;
//! 3. [`BodyKeyLayer`](crate::body_key::BodyKeyLayer): the account of a
//!    login request is read before the lockout needs it (on the login
//!    route the layer is given: other bodies are never buffered);
//! 4. [`LockoutLayer`](crate::lockout::LockoutLayer): locked-out keys are
//!    refused before a validator or handler runs, and failures are counted;
//! 5. [`AuthLayer`](crate::AuthLayer): the credential is checked.
//!
//! Only the auth layer is required; add it to an axum `Router` or a tonic
//! `Server` with one `layer` call.
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

use tower_layer::{Identity, Layer};

/// The layers of portcullis in the right order; see the
/// [module docs](self).
#[derive(Debug, Clone)]
#[must_use]
pub struct Stack<A, L = Identity, B = Identity, C = Identity, RL = Identity> {
    auth: A,
    lockout: L,
    body_key: B,
    cross_origin: C,
    rate_limit: RL,
}

impl<A> Stack<A> {
    /// A stack around `auth`, an [`AuthLayer`](crate::AuthLayer).
    pub fn new(auth: A) -> Self {
        Self {
            auth,
            lockout: Identity::new(),
            body_key: Identity::new(),
            cross_origin: Identity::new(),
            rate_limit: Identity::new(),
        }
    }
}

impl<A, L, B, C, RL> Stack<A, L, B, C, RL> {
    /// Adds the [`LockoutLayer`](crate::lockout::LockoutLayer), outside the
    /// auth layer.
    pub fn lockout<L2>(self, lockout: L2) -> Stack<A, L2, B, C, RL> {
        Stack {
            auth: self.auth,
            lockout,
            body_key: self.body_key,
            cross_origin: self.cross_origin,
            rate_limit: self.rate_limit,
        }
    }

    /// Adds the [`BodyKeyLayer`](crate::body_key::BodyKeyLayer), outside the
    /// lockout.
    pub fn body_key<B2>(self, body_key: B2) -> Stack<A, L, B2, C, RL> {
        Stack {
            auth: self.auth,
            lockout: self.lockout,
            body_key,
            cross_origin: self.cross_origin,
            rate_limit: self.rate_limit,
        }
    }

    /// Adds the [`CrossOriginLayer`](crate::cross_origin::CrossOriginLayer),
    /// outside the body key and the lockout.
    pub fn cross_origin<C2>(self, cross_origin: C2) -> Stack<A, L, B, C2, RL> {
        Stack {
            auth: self.auth,
            lockout: self.lockout,
            body_key: self.body_key,
            cross_origin,
            rate_limit: self.rate_limit,
        }
    }

    /// Adds the [`RateLimitLayer`](crate::rate_limit::RateLimitLayer),
    /// outermost.
    pub fn rate_limit<RL2>(self, rate_limit: RL2) -> Stack<A, L, B, C, RL2> {
        Stack {
            auth: self.auth,
            lockout: self.lockout,
            body_key: self.body_key,
            cross_origin: self.cross_origin,
            rate_limit,
        }
    }
}

impl<S, A, L, B, C, RL> Layer<S> for Stack<A, L, B, C, RL>
where
    A: Layer<S>,
    L: Layer<A::Service>,
    B: Layer<L::Service>,
    C: Layer<B::Service>,
    RL: Layer<C::Service>,
{
    type Service = RL::Service;

    fn layer(&self, inner: S) -> Self::Service {
        let auth = self.auth.layer(inner);
        let lockout = self.lockout.layer(auth);
        let body_key = self.body_key.layer(lockout);
        let cross_origin = self.cross_origin.layer(body_key);
        self.rate_limit.layer(cross_origin)
    }
}
