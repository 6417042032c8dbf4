//! Sessions (feature `sessions`): short access tokens, rotated refresh
//! cookies with reuse detection, shared through Redis.
//!
//! A sign-in starts a *session* (a token family: a session id, a subject,
//! when it was created, an absolute and an idle lifetime) and answers with
//! a short-lived access token (a JWT signed by [`AccessTokens`], carrying
//! `sub`, `sid`, `jti`, `iat`, `exp`, `iss`, `aud`) and a refresh token in
//! an `HttpOnly` cookie. The client sends the access token as
//! `Authorization: Bearer`; when it expires, it posts to the refresh
//! endpoint, which *rotates* the refresh token: the one presented is used
//! up, and its successor comes back with a new access token (RFC 9700
//! §4.14.2).
//!
//! A used refresh token presented again means two parties hold the
//! session, one of them a thief: the whole session is revoked, its
//! refresh tokens in the store and its access tokens (by `sid`) through
//! the [`Revocations`](crate::revoke::Revocations) list, which also ends
//! its open streams ([leases](crate::lease)), and an audit
//! [`Event::SessionReused`](crate::events::Event::SessionReused) is
//! emitted.
//!
//! # Endpoints
//!
//! [`Sessions::sign_in`] (after your password check), [`Sessions::refresh`]
//! and [`Sessions::sign_out`] take the request's parts and answer with a
//! [`Grant`], [`SignedOut`] or [`SessionError`], each a response
//! (`Response::from`, or returned from an axum handler):
//!
//! | endpoint | answer |
//! |---|---|
//! | sign-in | 200 `{"access_token": …, "token_type": "Bearer", "expires_in": …}`, `Set-Cookie: refresh=…; HttpOnly; SameSite=Strict; Secure; Path=/auth; Max-Age=…`, `Cache-Control: no-store` |
//! | refresh | the same, with the successor in the cookie |
//! | sign-out | 204, the cookie cleared |
//! | unknown, reused or revoked refresh token | 401 `invalid_token` (identical for the three), the cookie cleared; a failed attempt for the lockout |
//! | no refresh cookie | 401, not a failed attempt |
//! | cross-site browser request | 403, not a failed attempt (C1) |
//! | a race lost within the grace window | 409, nothing revoked |
//! | store or revocation list unavailable | 503 with `Retry-After` |
//!
//! Put the endpoints behind a [`LockoutLayer`](crate::lockout::LockoutLayer)
//! (outside, like every lockout): refusals of unknown, reused and revoked
//! refresh tokens carry an [`AuthRejection`](crate::AuthRejection) it
//! counts, each distinct token once.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use portcullis::{Credential, CredentialSource, Validator, ValidationErrorKind};
//! use portcullis::revoke::Revocations;
//! use portcullis::session::{AccessTokens, SessionErrorKind, Sessions};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap().block_on(async {
//! let revocations = Revocations::new();
//! let sessions = Sessions::builder(AccessTokens::generate()?, &revocations)
//!     .grace(Duration::from_secs(5))
//!     .build()?;
//! let validator = sessions.validator::<serde_json::Value>().build()?;
//! let bearer = |grant: &portcullis::session::Grant| Credential::new(grant.access_token(), CredentialSource::Bearer);
//!
//! // alice's password was right: her session starts.
//! let first = sessions.sign_in("alice").await?;
//! assert_eq!(validator.validate(&bearer(&first)).await?.subject(), Some("alice"));
//!
//! // Her access token expires; the refresh rotates her refresh token.
//! let second = sessions.refresh_with(first.refresh_token()).await?;
//! assert_ne!(second.refresh_token(), first.refresh_token());
//!
//! // A thief replays the first refresh token, later: the session is revoked.
//! tokio::time::advance(Duration::from_secs(60)).await;
//! let refused = sessions.refresh_with(first.refresh_token()).await.unwrap_err();
//! assert_eq!(refused.kind(), SessionErrorKind::Reused);
//! assert_eq!(refused.response().status(), 401);
//! // Every token of the session is refused now.
//! let kind = validator.validate(&bearer(&second)).await.unwrap_err().kind();
//! assert_eq!(kind, ValidationErrorKind::Revoked);
//! let refused = sessions.refresh_with(second.refresh_token()).await.unwrap_err();
//! assert_eq!(refused.kind(), SessionErrorKind::Revoked);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! An axum service (`no_run`: it serves; `examples/sessions.rs` is the
//! whole server):
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # mod example {
//! use axum::{Form, Router, extract::State, response::{IntoResponse, Response}, routing::post};
//! use http::{StatusCode, request::Parts};
//! use portcullis::{ClientIp, lockout::{LockoutLayer, Policy}, session::Sessions};
//!
//! #[derive(serde::Deserialize)]
//! struct Login { username: String, password: String }
//!
//! async fn login(State(sessions): State<Sessions>, Form(form): Form<Login>) -> Response {
//!     if form.password != "wonderland" {
//!         return StatusCode::UNAUTHORIZED.into_response(); // a failed attempt
//!     }
//!     sessions.sign_in(&form.username).await.into_response()
//! }
//!
//! async fn refresh(State(sessions): State<Sessions>, parts: Parts) -> Response {
//!     sessions.refresh(&parts).await.into_response()
//! }
//!
//! async fn logout(State(sessions): State<Sessions>, parts: Parts) -> Response {
//!     sessions.sign_out(&parts).await.into_response()
//! }
//!
//! fn routes(sessions: Sessions) -> Router {
//!     Router::new()
//!         .route("/auth/login", post(login))
//!         .route("/auth/refresh", post(refresh))
//!         .route("/auth/logout", post(logout))
//!         .with_state(sessions)
//!         .layer(LockoutLayer::keyed(ClientIp::new(), Policy::default()))
//! }
//! # }
//! ```
//!
//! # Guarantees
//!
//! - **Exactly one successor per token** (S1). Rotation is one atomic step
//!   of the store (one lock in memory, one Lua script in Redis): of two
//!   refreshes of one token, only one makes it used. Within the grace
//!   window ([`SessionsBuilder::grace`], default 5 s) a token presented
//!   again while its successor is current is answered with that same
//!   successor, so two tabs refreshing at once, or a client whose answer
//!   was lost, keep their session; if the successor was rotated already,
//!   the answer is 409 and nothing is revoked.
//! - **Reuse revokes the session** (S2). A used token presented after the
//!   grace window revokes the session everywhere: its refresh tokens are
//!   gone from the store at once, and its access tokens and open streams
//!   end through the revocation list (at once on this replica, within a
//!   second on the others with a list shared through Redis). The last 17
//!   used tokens of a session are remembered; an older one is merely
//!   unknown.
//! - **Lifetimes.** A session ends after its idle lifetime without a
//!   refresh (default 7 days) or its absolute lifetime (default 30 days),
//!   whichever comes first; then it is forgotten and its token is unknown.
//!   The cookie's `Max-Age` ends it in the browser at the same time, and
//!   an access token never outlives its session. Times are tokio's clock
//!   in memory, the server's in Redis.
//! - **Revocation.** A session whose id is revoked, or whose subject was
//!   signed out everywhere after it started
//!   ([`Revocations::revoke_subject`](crate::revoke::Revocations::revoke_subject)),
//!   refreshes no more. While the list is out of sync with its shared
//!   store, refreshes are answered 503 and no token is used up.
//! - **Stores** (S4). In memory ([`SessionsBuilder::build`]): at most
//!   [`capacity`](SessionsBuilder::capacity) live sessions; when full, a
//!   sign-in first drops ended sessions (at most once a second), then is
//!   refused with [`Full`](SessionErrorKind::Full) — a live session is
//!   never dropped to make room. In Redis (`SessionsBuilder::build_with_redis`,
//!   feature `redis`): shared by every replica, kept across restarts,
//!   expiring with their lifetimes.
//!
//! # Security
//!
//! - Refresh tokens are a session id and 256 random bits from the
//!   operating system; stores keep their SHA-256 digests only, compared in
//!   constant time in memory (in Redis, digests of secrets an attacker
//!   cannot choose, so timing tells nothing). For the grace window the
//!   successor is kept encrypted under the token it replaces: reading the
//!   store does not yield a usable token.
//! - The refresh cookie is `HttpOnly` (scripts cannot read it), `Secure`,
//!   `SameSite=Strict`, and its `Path` is the endpoints' prefix (default
//!   `/auth`), so it travels to them only. The refresh and sign-out
//!   helpers refuse cross-site browser requests first (SECURITY.md C1).
//! - Unknown, reused and revoked refresh tokens get byte-identical
//!   responses; logs carry the session id (not a secret) and a keyed
//!   fingerprint, never a token.
//! - Sessions in memory end when the process does: every refresh token is
//!   then unknown, and counted as a failed attempt. Share sessions through
//!   Redis when restarts must keep users signed in.

#[cfg(feature = "axum")]
mod axum;
mod cookie;
mod endpoints;
mod error;
mod family;
mod secret;
mod sessions;
mod store;
mod token;

pub use endpoints::{Grant, SignedOut};
pub use error::{SessionError, SessionErrorKind};
pub use sessions::{Sessions, SessionsBuilder, Stats};
pub use token::AccessTokens;
