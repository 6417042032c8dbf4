//! The failed-attempt limiter: locks a client out after too many failed
//! attempts.
//!
//! [`LockoutLayer`] sits in front of whatever checks credentials (an
//! `AuthLayer`, a login handler) and watches its answers:
//!
//! - **What counts** (B1): a response carrying an [`AuthRejection`] whose
//!   [`counts_as_failure`](crate::AuthRejection::counts_as_failure) is true (an
//!   invalid or revoked credential); a response carrying the [`Failed`]
//!   marker; and whatever the [`Classifier`] says for other responses
//!   (default: a 401, or a gRPC `UNAUTHENTICATED` in the headers).
//!   Responses carrying any other rejection never count, even when they are
//!   401: a missing or malformed credential, a missing scope, an expired
//!   token, an unavailable validator. A failure counts on every key of the
//!   request even when an `AuthLayer` released its reservation before the
//!   handler ran (B20).
//! - **What resets** (B19): with
//!   [`reset_on_success`](PolicyBuilder::reset_on_success), a response
//!   carrying the [`Succeeded`] marker, which a login handler inserts when
//!   the password was right. A 2xx alone resets nothing.
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
//! Put the layer on the routes that check credentials. Because of the
//! reservations, one key never has more than `max_failures - failures`
//! requests inside the layer at once; the others queue. The work per
//! request is one hash of the key and two short critical sections on one of
//! 64 locks; no clock read, no allocation and no shared cache write for a
//! client without failures.
//!
//! Keys are whatever a [`KeyExtractor`](crate::KeyExtractor) derives: the
//! client's address usually, or an account name (or both, as a tuple) to
//! limit guesses per account. A request without a key (no client address)
//! is answered with the extractor's rejection, never lumped into a bucket
//! shared by everyone (B10).
//!
//! # Example
//!
//! Keyed by the client's address ([`ClientIp`](crate::ClientIp); the
//! server must record the socket peer, see [`client_ip`](crate::client_ip)):
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode};
//! use portcullis::{PeerAddr, lockout::{LockoutLayer, Policy}};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = LockoutLayer::new(Policy::builder().max_failures(3).build().unwrap());
//! let tracker = layer.tracker().clone();
//!
//! // A login handler: 401 for a wrong password.
//! let login = service_fn(|req: Request<String>| async move {
//!     let status = if req.body() == "hunter2" { StatusCode::OK } else { StatusCode::UNAUTHORIZED };
//!     Ok::<_, Infallible>(Response::builder().status(status).body(String::new()).unwrap())
//! });
//! let svc = ServiceBuilder::new().layer(layer).service(login);
//!
//! let from = |peer: &str, password: &str| {
//!     Request::builder()
//!         .extension(PeerAddr(peer.parse().unwrap()))
//!         .body(password.to_owned())
//!         .unwrap()
//! };
//! for port in 1..=3 {
//!     let res = svc.clone().oneshot(from(&format!("203.0.113.9:{port}"), "guess")).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! }
//! // Locked out: even the right password is refused without reaching the handler.
//! let res = svc.clone().oneshot(from("203.0.113.9:4", "hunter2")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["retry-after"], "1800");
//! // Other clients are not.
//! let res = svc.clone().oneshot(from("198.51.100.1:5", "hunter2")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//!
//! // An operator lifts the lockout.
//! assert!(tracker.unlock(&"203.0.113.9".parse().unwrap()));
//! let res = svc.oneshot(from("203.0.113.9:6", "hunter2")).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! # }
//! ```
//!
//! # Limiting per account
//!
//! Any [`KeyExtractor`](crate::KeyExtractor) works: key on the account being
//! logged into (as here), or on the account and the address together. Stack
//! an address-keyed layer in front as well, so that one address cannot try
//! many accounts.
//!
//! ```
//! use http::{Request, request::Parts};
//! use portcullis::{AuthRejection, lockout::{LockoutLayer, Policy}, reject::RejectionKind};
//!
//! let by_account = |req: &Parts| {
//!     req.headers
//!         .get("x-user")
//!         .and_then(|v| v.to_str().ok())
//!         .map(str::to_owned)
//!         .ok_or_else(|| AuthRejection::new(RejectionKind::Malformed))
//! };
//! let policy = Policy::builder().max_failures(10).reset_on_success(true).build().unwrap();
//! let layer = LockoutLayer::builder(policy).key(by_account).build().unwrap();
//! let tracker = layer.tracker().clone();
//! tracker.record_failure(&"alice".to_owned());
//! assert_eq!(tracker.failures(&"alice".to_owned()), 1);
//! ```
//!
//! # Login protection
//!
//! - **Several keys** ([`LockoutBuilder::also_key`], B13): the address, the
//!   account of a login (read from the body by
//!   [`BodyKeyLayer`](crate::body_key::BodyKeyLayer), which refuses a body
//!   it cannot read rather than let it go on without its key, B18), both
//!   together, a device; each with its own policy; the most restrictive
//!   answer wins.
//! - **Only a sign-in clears an account** ([`Succeeded`], B19), and a
//!   valid credential attached to a sign-in attempt hides none of its
//!   failures (B20).
//! - **Smart counting** ([`PolicyBuilder::remember_guesses`], B14): the same
//!   wrong credential or password (by keyed fingerprint, see
//!   [`Failed::guess`]) repeated by one key within the window counts once.
//! - **Device cookies** ([`DeviceCookies`], feature `cookie`, B15, B21): a
//!   browser the account signed in from is counted on its own and not
//!   refused by the account's lockout for untrusted clients; the cookie is
//!   `Secure`, and accounts keep the body key's case sensitivity.
//! - **Progressive delay** ([`PolicyBuilder::delay_after`]): slow a key
//!   down before locking it out.
//! - **Allow- and deny-lists, shadow mode** ([`LockoutBuilder::allow`],
//!   [`LockoutBuilder::deny`], [`LockoutBuilder::shadow`], B16).
//! - **Order** (B17): the layer belongs outside `AuthLayer`;
//!   [`Stack`](crate::stack::Stack) puts it there, and a layer that finds
//!   itself inside logs a warning once.
//!
//! [`AuthRejection`]: crate::AuthRejection

mod attempt;
mod builder;
mod classify;
mod config;
#[cfg(feature = "cookie")]
mod device;
mod future;
mod keys;
mod layer;
mod policy;
mod recent;
mod reservation;
mod service;
mod shadow;
mod stats;
mod store;
mod tracker;

pub use attempt::{Attempt, FailureOutcome, Locked, Refused};
pub use builder::LockoutBuilder;
pub use classify::{Classifier, DefaultClassifier, Failed, Outcome, Succeeded};
#[cfg(feature = "cookie")]
pub use device::{DeviceCookies, DeviceKey, TrustedDevice, UntrustedKey};
pub use future::ResponseFuture;
pub use layer::LockoutLayer;
pub use policy::{Policy, PolicyBuilder};
pub use service::Lockout;
pub use shadow::Shadowed;
pub use stats::LockoutStats;
pub use tracker::{Acquire, LockedKey, Tracker};
