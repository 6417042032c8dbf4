//! Tower middleware that authenticates requests and shuts the gate on brute
//! force.
//!
//! portcullis finds the credential in a request (`Authorization: Bearer`, a
//! cookie, a custom header, and opt-in a query parameter or the WebSocket
//! subprotocol), validates it through your async [`Validator`], hands the
//! caller's identity to your handlers, and answers failures the way HTTP,
//! gRPC, gRPC-Web and Connect clients understand them. It works with any hyper-based service: axum
//! routers, tonic servers and plain hyper.
//!
//! # Which piece for which job
//!
//! Each common job takes at most five portcullis types, besides your
//! [`Validator`] (an async function from a [`Credential`] to the caller's
//! identity or a [`ValidationError`]). The layers go together one way:
//! `Router::layer(Stack::new(auth)…)`, in the order that works.
//!
//! | job | portcullis types |
//! |---|---|
//! | bearer auth on an axum router | [`AuthLayer`], `integration::axum::Identity` (the handler's extractor, feature `axum`) |
//! | the same, with a lockout of clients that keep failing | [`stack::Stack`], [`AuthLayer`], [`lockout::LockoutLayer`], [`lockout::Policy`], [`ClientIp`] (behind a load balancer) |
//! | login protection: a password form, guesses limited per address and per account | [`Stack`](stack::Stack) ([`login_route`](stack::Stack::login_route)), [`AuthLayer`], [`LockoutLayer`](lockout::LockoutLayer), [`Policy`](lockout::Policy), [`body_key::BodyField`] (and [`lockout::Failed`] to count a repeated password once) |
//! | sessions: short access tokens, rotated refresh cookies, sign-out (feature `sessions`) | `session::Sessions`, `session::AccessTokens`, [`revoke::Revocations`], [`AuthLayer`], `validate::Claims` (the identity `Sessions::validator` produces) |
//! | all of it behind a load balancer | the last two rows, and [`ClientIpBuilder::trust_proxies`](client_ip::ClientIpBuilder::trust_proxies); `cargo run --example login_sessions --features sessions` |
//!
//! To install, with sessions and what an axum app needs beside:
//!
//! ```toml
//! [dependencies]
//! portcullis = { version = "0.1", features = ["sessions"] } # default features: axum, cookie
//! axum = "0.8"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread", "net", "signal"] }
//! serde = { version = "1", features = ["derive"] } # your login form (axum's `Form`)
//! serde_json = "1"                                  # `Claims<serde_json::Value>`, JSON answers
//! ```
//!
//! # Quick start
//!
//! ```
//! # #[cfg(feature = "axum")]
//! # async fn quick_start() {
//! use axum::{Router, body::Body, routing::get};
//! use http::{Request, StatusCode, header::AUTHORIZATION};
//! use portcullis::{AuthLayer, Credential, ValidationError, integration::axum::Identity};
//! use tower::ServiceExt;
//!
//! #[derive(Clone)]
//! struct User(String);
//!
//! // Your lookup: a database, a hashed API-key table, a JWT check…
//! async fn validate(credential: Credential) -> Result<User, ValidationError> {
//!     match credential.secret() {
//!         "alice-token" => Ok(User("alice".into())),
//!         _ => Err(ValidationError::invalid()),
//!     }
//! }
//!
//! async fn me(Identity(user): Identity<User>) -> String {
//!     format!("hello {}", user.0)
//! }
//!
//! let app = Router::new()
//!     .route("/me", get(me))
//!     .layer(AuthLayer::new(validate));
//!
//! let res = app
//!     .oneshot(Request::get("/me").header(AUTHORIZATION, "Bearer wrong").body(Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(
//!     res.headers()["www-authenticate"],
//!     r#"Bearer realm="api", error="invalid_token", error_description="the access token is invalid""#,
//! );
//! # }
//! # #[cfg(feature = "axum")]
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(quick_start());
//! ```
//!
//! # Shutting the gate
//!
//! Two limiters sit in front of [`AuthLayer`], both keyed per client by
//! [`ClientIp`] (socket peer, trusted proxies, IPv6 grouped by /64) or any
//! other [`KeyExtractor`], both on tables of fixed capacity that forget idle
//! clients by themselves:
//!
//! - [`lockout::LockoutLayer`] counts failed attempts (a credential the
//!   validator rejected, a 401 from your login handler) and answers 429
//!   before your service runs once a client has failed too often. Attempts
//!   in flight are reserved, so parallel guesses cannot overshoot.
//! - [`rate_limit::RateLimitLayer`] limits requests per client (GCRA).
//!
//! ```
//! use portcullis::{AuthLayer, ClientIp, Credential, ValidationError, lockout::{LockoutLayer, Policy}, stack::Stack};
//!
//! # fn main() -> Result<(), portcullis::ConfigError> {
//! let validate = |_: Credential| async { Err::<(), _>(ValidationError::invalid()) };
//! let clients = ClientIp::builder().trust_proxies(["10.0.0.0/8"]).build()?;
//! let policy = Policy::builder().max_failures(5).build()?;
//! let stack = Stack::new(AuthLayer::new(validate))
//!     .lockout(LockoutLayer::builder(policy).key(clients).build()?);
//! # let _ = stack;
//! # Ok(())
//! # }
//! ```
//!
//! # Signing out means disconnected
//!
//! One [`revoke::Revocations`] list revokes a secret in every carrier, a
//! token or session id, or everything a subject was issued until now; the
//! validators honour it ([`validate::CachingValidator`] in front of any
//! backend, [`validate::ApiKeys`], `JwtValidator`), and with
//! [`AuthLayer::leases`] open streams end with their credential: gRPC
//! streams with `grpc-status: 16`, other bodies by ending, WebSockets
//! through [`lease::Lease::ended`]. With Redis (feature `redis`) a
//! revocation reaches every replica within a second.
//!
//! ```
//! use portcullis::{AuthLayer, Credential, ValidationError, revoke::{Revocable, Revocations}};
//! use portcullis::validate::{CachingValidator, ExpiresAt};
//!
//! #[derive(Clone)]
//! struct User(String);
//! impl ExpiresAt for User {
//!     fn expires_at(&self) -> Option<tokio::time::Instant> { None }
//! }
//! impl Revocable for User {
//!     fn subject(&self) -> Option<&str> { Some(&self.0) }
//! }
//!
//! # fn main() -> Result<(), portcullis::ConfigError> {
//! let sessions = |_: Credential| async { Ok::<_, ValidationError>(User("alice".into())) };
//! let revocations = Revocations::new();
//! let validator = CachingValidator::builder(sessions).revocations(&revocations).build()?;
//! let layer = AuthLayer::new(validator).leases(&revocations);
//! # let _ = layer;
//! # Ok(())
//! # }
//! ```
//!
//! # Configuration
//!
//! Every component is built one way, the same way:
//!
//! - `new(..)` builds the common case and cannot fail:
//!   [`ClientIp::new`], [`lockout::LockoutLayer::new`],
//!   [`revoke::Revocations::new`], [`AuthLayer::new`].
//! - `builder(..)` takes every other setting, and its `build()` checks
//!   them all at once and returns `Result<_, ConfigError>`:
//!   [`ClientIp::builder`], [`lockout::LockoutLayer::builder`],
//!   [`rate_limit::RateLimitLayer::builder`],
//!   [`revoke::Revocations::builder`],
//!   [`cross_origin::CrossOriginProtection::builder`]. No method partway
//!   through a chain returns a `Result`.
//! - A value made from input that must be parsed (a key, a PEM file, a
//!   cookie name) comes from a constructor that returns
//!   `Result<_, ConfigError>` (`Cookie::try_new`, `DeviceCookies::new`,
//!   `AccessTokens::hs256`).
//! - Options that cannot fail and only shape a value (`optional`,
//!   `renderer`, `realm`, `max_age`) return `Self`: on the builder when the
//!   component has one, otherwise on the value itself, the tower-http way.
//! - State shared between replicas is one `RedisStore` (feature `redis`), given
//!   the same way to every component that keeps state: `redis(store.clone())`
//!   on its builder.
//!
//! # Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | yes | `integration::axum::Identity`, the handler extractor |
//! | `cookie` | yes | `extract::Cookie`, the named-cookie source |
//! | `tonic` | no | `integration::tonic::identity`, and [`ClientIp`] reads tonic's connect info: without it [`AuthLayer`] still works with tonic, but limiters keyed by [`ClientIp`] answer every call `INTERNAL` |
//! | `jwt` | no | JWT validation (jsonwebtoken, pure-Rust crypto) |
//! | `jwks` | no | JWT keys from a JWKS URL or an OpenID Connect issuer's discovery document, fetched over rustls (no OpenSSL) |
//! | `redis` | no | shared limiter state and revocations for several replicas (one Redis node or a Redis Cluster) |
//! | `sessions` | no | [`session`]: short access JWTs, rotated refresh cookies with reuse detection (with `jwt` and `cookie`) |
//! | `json` | no | [`body_key::BodyKeyLayer`] reads JSON bodies too (forms always) |
//! | `test-util` | no | helpers for testing services that use portcullis |
//!
//! With `default-features = false` the core pulls in neither axum nor tonic
//! nor a TLS stack.
//!
//! # Security
//!
//! - Parsing is strict (RFC 6750, RFC 9110, RFC 6265bis) and works on bytes:
//!   malformed credentials are refused with 400, never repaired; two
//!   different credentials in one request are refused, never first-wins.
//! - A credential longer than 8 KiB is refused before it is decoded,
//!   validated or logged.
//! - Secrets never appear in `Debug`, `Display`, logs or responses: a
//!   [`Fingerprint`] identifies a credential in logs.
//! - Unknown, revoked and otherwise invalid credentials get byte-identical
//!   responses; an expired one says so (clients refresh on it); a validator
//!   that is down answers 503, never "invalid".
//! - Every rejection carries an [`AuthRejection`] in the response
//!   extensions, which outer layers use to count failed attempts.
//! - Login protection: one [`lockout::LockoutLayer`] enforces several keys
//!   (address, account from the body with [`body_key`], device cookies);
//!   a body the account key cannot be read from is refused, never passed
//!   on without it; only a sign-in the handler marks
//!   [`Succeeded`](lockout::Succeeded) clears an account, and a failure
//!   counts whatever valid credential came with it;
//!   a repeated wrong guess counts once; cookie credentials are refused on
//!   cross-site unsafe requests ([`cross_origin`]) and removed when stale;
//!   [`stack::Stack`] assembles the layers in the one order that works.
//!
//! # Layers of the crate
//!
//! Modules import downwards only, and the files of a folder import each
//! other without cycles (`.ci/check-layers` fails on an import cycle):
//! inside a folder the configuration a layer shares with its services sits
//! below both (in the service's file or a file of its own), the layer
//! builds the service, and a builder sits above the layer.
//! From the bottom:
//!
//! 1. Vocabulary: `error` (`ConfigError`, `ValidationError`, `BoxError`),
//!    `credential` (credentials, fingerprints, `KeyDigest`, the key-length
//!    floor), [`reject`] (rejection kinds and their rendering for every
//!    protocol), `key` ([`KeyExtractor`]), `table`, `future`, and
//!    [`events`], the audit stream everything above reports into (its
//!    metrics read gauges through [`events::Gauges`], knowing no limiter).
//! 2. Shared state and revocation: `redis` (the shared store, its
//!    connections and fallback) and [`revoke`] (the revocation list, which
//!    the validators above honour).
//! 3. Extraction and validation: [`extract`], [`client_ip`],
//!    [`client_list`], [`validate`] (validators, caches, JWT) and [`lease`]
//!    (how long an accepted identity may go on).
//! 4. Tower layers over their decision engines: `body` and `gate` (the
//!    response body and the one request path every layer shares),
//!    `handoff` (the one place [`auth`] and [`lockout`] meet: reservations
//!    released on acceptance, the mark of an accepted request),
//!    [`cross_origin`], [`body_key`], [`scope`], [`rate_limit`],
//!    [`lockout`], [`auth`], and `session` (feature `sessions`), built on
//!    them.
//! 5. Integration: [`integration`] (axum, tonic), [`stack`] and
//!    `test_util`.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod auth;
mod body;
pub mod body_key;
pub mod client_ip;
pub mod client_list;
mod credential;
pub mod cross_origin;
mod error;
pub mod events;
pub mod extract;
mod future;
mod gate;
mod handoff;
pub mod integration;
mod key;
pub mod lease;
pub mod lockout;
pub mod rate_limit;
#[cfg(feature = "redis")]
mod redis;
pub mod reject;
pub mod revoke;
pub mod scope;
#[cfg(feature = "sessions")]
pub mod session;
pub mod stack;
mod table;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod validate;

pub use auth::AuthLayer;
pub use body::ResponseBody;
pub use client_ip::{ClientIp, PeerAddr};
pub use credential::{Credential, CredentialSource, Fingerprint, FingerprintKey};
pub use error::{BoxError, ConfigError, ValidationError, ValidationErrorKind};
pub use key::KeyExtractor;
#[cfg(feature = "redis")]
pub use redis::{RedisConnectError, RedisStore};
pub use reject::AuthRejection;
pub use validate::Validator;

/// The README's code blocks, compiled and run as doctests (they use the
/// `axum`, `redis` and `sessions` features).
#[cfg(all(doctest, feature = "axum", feature = "redis", feature = "sessions"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
