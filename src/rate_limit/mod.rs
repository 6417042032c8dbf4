//! Per-client rate limiting: GCRA (governor) over a bounded table.
//!
//! [`RateLimitLayer`] gives every client (by default every [`ClientIp`]
//! key) a steady rate and a burst, with the Generic Cell Rate Algorithm of
//! the [`governor`] crate: a client that has been quiet may send `burst`
//! requests at once, then one more every `period / requests`. A request
//! over the limit is answered before the inner service runs:
//!
//! - HTTP: `429 Too Many Requests` with `Retry-After` in whole seconds,
//!   rounded up and never 0;
//! - gRPC: trailers-only `RESOURCE_EXHAUSTED` (8), with `Retry-After` too.
//!
//! Both come from the [`Renderer`](crate::reject::Renderer) (replaceable),
//! and the [`AuthRejection`](crate::AuthRejection) is attached to the
//! response extensions. With
//! [`rate_limit_headers`](RateLimitBuilder::rate_limit_headers) every
//! response also carries `RateLimit-Limit` (the burst),
//! `RateLimit-Remaining` (requests left right now) and `RateLimit-Reset`
//! (seconds until the whole burst is back, rounded up), after the IETF
//! `ratelimit-headers` draft; with
//! [`header_fields`](RateLimitBuilder::header_fields) the current draft's
//! structured `RateLimit-Policy` and `RateLimit` instead, or as well
//! ([`HeaderFields`]).
//!
//! Put it outermost, before the lockout and authentication layers, so a
//! flood is refused before it costs a validation.
//!
//! # Guarantees
//!
//! - **What counts.** Every request whose key can be derived counts when it
//!   arrives, whatever the inner service answers. Refused requests do not
//!   use up allowance, so a client hammering a limit gets through at exactly
//!   the configured rate, no faster and no slower.
//! - **No shared bucket.** A request without a key (no socket peer: the
//!   server was not run with connect info, see [`ClientIp`]) is answered
//!   500 / gRPC `INTERNAL` with the fix in the body, never counted with
//!   everyone else.
//! - **Time.** Decisions use tokio time, so tests run with
//!   `#[tokio::test(start_paused = true)]` and `tokio::time::advance`.
//!   Build the layer inside the runtime.
//! - **Memory.** The table holds at most
//!   [`max_capacity`](RateLimitBuilder::max_capacity) keys (default
//!   100,000), plus at most
//!   [`limited_capacity`](RateLimitBuilder::limited_capacity) limited keys;
//!   there is no cleanup task. A key is forgotten once it has been quiet
//!   long enough for its whole burst to come back, which loses nothing: its
//!   state then equals a fresh one.
//! - **At capacity.** The least recently seen key is forgotten, and that
//!   client starts again with a full burst. A brand-new key is always
//!   admitted, so it is limited from its first request, even when the table
//!   is full of busy keys (an admission filter that refused new keys would
//!   reset an attacker's state on every request).
//!
//! # Several replicas
//!
//! With `RateLimitBuilder::redis` (feature `redis`), replicas
//! behind a load balancer share each client's allowance through Redis, one
//! Lua script per request on the Redis server's clock, and fall back to
//! their local tables while Redis is unavailable.
//!
//! # Security
//!
//! An attacker can spread requests over many keys (addresses, IPv6 /64s);
//! each key has its own budget, which is what per-client limiting means.
//! What an attacker cannot do is reset a limit it has hit: keys that have
//! been refused are also kept in a separate table until their whole burst
//! is back, so a flood of unique keys that churns the main table does not
//! give a limited client a new burst. A client that is under its limit can
//! be churned out by such a flood, which costs the flooder `max_capacity`
//! requests to win back at most one burst.
//!
//! # Example
//!
//! ```
//! use std::{convert::Infallible, net::SocketAddr};
//! use http::{Request, Response, StatusCode, header};
//! use portcullis::{PeerAddr, rate_limit::RateLimitLayer};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let layer = RateLimitLayer::builder().per_minute(2).build().unwrap();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|_req: Request<String>| async { Ok::<_, Infallible>(Response::new(String::new())) });
//!
//! let peer: SocketAddr = "192.0.2.7:40000".parse().unwrap();
//! let request = || Request::builder().extension(PeerAddr(peer)).body(String::new()).unwrap();
//!
//! for _ in 0..2 {
//!     let res = svc.ready().await.unwrap().call(request()).await.unwrap();
//!     assert_eq!(res.status(), StatusCode::OK);
//! }
//! let res = svc.ready().await.unwrap().call(request()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()[header::RETRY_AFTER], "30");
//! # });
//! ```
//!
//! [`ClientIp`]: crate::ClientIp

mod builder;
mod clock;
mod future;
mod headers;
mod layer;
mod service;
mod shared;
mod stats;
mod store;

pub use self::{
    builder::RateLimitBuilder, future::ResponseFuture, headers::HeaderFields,
    layer::RateLimitLayer, service::RateLimit, stats::RateLimitStats,
};
