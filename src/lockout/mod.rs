//! The failed-attempt limiter: locks a client out after too many failed
//! attempts.
//!
//! [`LockoutLayer`] sits in front of whatever checks credentials (an
//! `AuthLayer`, a login handler) and watches its answers:
//!
//! - **What counts** (B1): a response carrying an [`AuthRejection`] whose
//!   [`counts_as_failure`](AuthRejection::counts_as_failure) is true (an
//!   invalid or revoked credential); a response carrying the [`Failed`]
//!   marker; and whatever the [`Classifier`] says for other responses
//!   (default: a 401, or a gRPC `UNAUTHENTICATED` in the headers).
//!   Responses carrying any other rejection never count, even when they are
//!   401: a missing or malformed credential, a missing scope, an expired
//!   token, an unavailable validator.
//! - **When a client is blocked** (B3): after `max_failures` failures within
//!   the window it is answered `429 Too Many Requests` with `Retry-After`
//!   (gRPC: `RESOURCE_EXHAUSTED`) before the inner service runs, so a
//!   correct guess during a lockout learns nothing. Failures are forgotten
//!   `window` after the last one; lockouts escalate for repeat offenders and
//!   end by themselves, or through [`Tracker::unlock`].
//! - **Concurrency** (B6): a request is admitted only while
//!   `failures + requests in flight < max_failures` for its key, checked and
//!   reserved atomically, so parallel guesses cannot overshoot the
//!   threshold. Requests beyond that wait for one in flight to end instead
//!   of being refused, so a browser firing many requests at once is slowed,
//!   never locked out. A reservation is released when its response future
//!   is dropped (a client that disconnected).
//! - **Memory** (R3): bounded by the policy's capacity; see [`Tracker`] for
//!   exactly what an attacker can and cannot do to the tables.
//!
//! Keys are whatever a [`KeyExtractor`](crate::KeyExtractor) derives: the
//! client's address usually, or an account name (or both, as a tuple) to
//! limit guesses per account. A request without a key (no client address)
//! is answered with the extractor's rejection, never lumped into a bucket
//! shared by everyone (B10).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, request::Parts};
//! use portcullis::{AuthRejection, lockout::{LockoutLayer, Policy}, reject::RejectionKind};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // Key on the account being logged into.
//! let by_user = |req: &Parts| {
//!     req.headers
//!         .get("x-user")
//!         .and_then(|v| v.to_str().ok())
//!         .map(str::to_owned)
//!         .ok_or_else(|| AuthRejection::new(RejectionKind::Malformed))
//! };
//! let policy = Policy::builder().max_failures(3).build().unwrap();
//! let layer = LockoutLayer::keyed(by_user, policy);
//! let tracker = layer.tracker().clone();
//!
//! // A login handler: 401 for a wrong password.
//! let login = service_fn(|req: Request<String>| async move {
//!     let status = if req.body() == "hunter2" { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
//!     Ok::<_, Infallible>(Response::builder().status(status).body(String::new()).unwrap())
//! });
//! let svc = ServiceBuilder::new().layer(layer).service(login);
//!
//! let attempt = |password: &str| {
//!     Request::builder().header("x-user", "alice").body(password.to_owned()).unwrap()
//! };
//! for _ in 0..3 {
//!     let res = svc.clone().oneshot(attempt("guess")).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! }
//! // Locked out: even the right password is refused without reaching the handler.
//! let res = svc.clone().oneshot(attempt("hunter2")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["retry-after"], "1800");
//!
//! // An operator lifts it.
//! assert!(tracker.unlock(&"alice".to_owned()));
//! let res = svc.oneshot(attempt("hunter2")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! # }
//! ```
//!
//! [`AuthRejection`]: crate::AuthRejection

mod classify;
mod future;
mod layer;
mod policy;
mod service;
mod store;
mod tracker;

pub use classify::{Classifier, DefaultClassifier, Failed, Outcome};
pub use future::ResponseFuture;
pub use layer::LockoutLayer;
pub use policy::{Policy, PolicyBuilder};
pub use service::Lockout;
pub use tracker::{Acquire, Attempt, BlockedKey, FailureOutcome, Locked, Stats, Tracker};
