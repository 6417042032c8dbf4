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
//! [`Sessions::sign_in_from`] (after your password check),
//! [`Sessions::refresh`] and [`Sessions::sign_out`] take the request's
//! parts and answer with a [`Grant`], [`SignedOut`] or [`SessionError`],
//! each a response (`Response::from`, or returned from an axum handler).
//! With the access token's subject and session id, [`Sessions::list`]
//! answers a [`SessionList`] (the user's sessions), [`Sessions::end`] ends
//! one of them, and [`Sessions::sign_out_everywhere`] all:
//!
//! | endpoint | answer |
//! |---|---|
//! | sign-in | 200 `{"access_token": …, "token_type": "Bearer", "expires_in": …}`, `Set-Cookie: refresh=…; HttpOnly; SameSite=Strict; Secure; Path=/auth; Max-Age=…`, `Cache-Control: no-store` |
//! | refresh | the same, with the successor in the cookie |
//! | sign-out | 204, the cookie cleared |
//! | list | 200 `[{"id": …, "created_at": …, "last_used_at": …, "current": true, "user_agent": …, "address": …, "label": …}, …]` |
//! | unknown, reused or revoked refresh token | 401 `invalid_token` (identical for the three), the cookie cleared; a failed attempt for the lockout |
//! | no refresh cookie | 401, not a failed attempt |
//! | two refresh cookies, or a malformed one | 400 (two) or 401, nothing cleared (S7) |
//! | cross-site browser request (sign-in included) | 403, not a failed attempt (C1, S7) |
//! | a race lost within the grace window | 409, nothing revoked |
//! | store or revocation list unavailable | 503 with `Retry-After`; nothing changed, the refresh token still works |
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
//! use axum::{Form, Router, extract::{Path, State}, response::{IntoResponse, Response}};
//! use axum::routing::{delete, get, post};
//! use http::{StatusCode, request::Parts};
//! use portcullis::{integration::axum::Identity, lockout::{LockoutLayer, Policy}};
//! use portcullis::{revoke::Revocable, session::Sessions, validate::Claims};
//!
//! #[derive(serde::Deserialize)]
//! struct Login { username: String, password: String }
//!
//! async fn login(State(sessions): State<Sessions>, parts: Parts, Form(form): Form<Login>) -> Response {
//!     // Cross-site posts first: no login CSRF (S7), no password check.
//!     if let Err(refused) = sessions.check_origin(&parts) {
//!         return refused.into_response();
//!     }
//!     if form.password != "wonderland" {
//!         return StatusCode::UNAUTHORIZED.into_response(); // a failed attempt
//!     }
//!     sessions.sign_in_from(&parts, &form.username).await.into_response()
//! }
//!
//! type User = Claims<serde_json::Value>;
//!
//! // GET /auth/sessions, behind an AuthLayer with `sessions.validator()`.
//! async fn list(State(sessions): State<Sessions>, Identity(user): Identity<User>) -> Response {
//!     let subject = user.subject().unwrap_or_default();
//!     sessions.list(subject, user.session_id()).await.into_response()
//! }
//!
//! // DELETE /auth/sessions/{id}: only the owner's; 404 for any other id.
//! async fn end(
//!     State(sessions): State<Sessions>,
//!     Identity(user): Identity<User>,
//!     parts: Parts,
//!     Path(id): Path<String>,
//! ) -> Response {
//!     if let Err(refused) = sessions.check_origin(&parts) {
//!         return refused.into_response();
//!     }
//!     match sessions.end(user.subject().unwrap_or_default(), &id).await {
//!         Ok(true) => StatusCode::NO_CONTENT.into_response(),
//!         Ok(false) => StatusCode::NOT_FOUND.into_response(),
//!         Err(error) => error.into_response(),
//!     }
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
//!         .route("/auth/sessions", get(list))
//!         .route("/auth/sessions/{id}", delete(end))
//!         .with_state(sessions)
//!         .layer(LockoutLayer::new(Policy::default()))
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
//!   cut off after it started
//!   ([`Revocations::revoke_subject`](crate::revoke::Revocations::revoke_subject)),
//!   refreshes no more while the list holds the revocation (its
//!   [`max_lifetime`](crate::revoke::RevocationsBuilder::max_lifetime), 24
//!   hours by default): use [`Sessions::sign_out_everywhere`] to end a
//!   subject's sessions for good. While the list is out of sync with its
//!   shared store, refreshes are answered 503 and no token is used up.
//! - **Sign-out everywhere is for good** (S5).
//!   [`Sessions::sign_out_everywhere`] deletes every session of the
//!   subject from the store (each subject has an index of its sessions),
//!   so its refresh tokens are unknown whenever they come back — days
//!   later, after a restart, on another replica — long after the
//!   revocation list forgot the subject's cutoff; its access tokens and
//!   streams end through the list. When the store cannot be reached the
//!   caller gets [`Unavailable`](SessionErrorKind::Unavailable), the
//!   sign-out is in effect here, and it is retried until stored.
//! - **The user's sessions** (S6). [`Sessions::list`] shows each live
//!   session's id, when it signed in and was last used, and its
//!   [`Device`] (user agent, client address, the application's label);
//!   [`Sessions::end`] ends one of the subject's own sessions, its refresh
//!   token, access tokens and open streams (within a second). A subject
//!   has at most [`max_sessions`](SessionsBuilder::max_sessions) (default
//!   32) live sessions: a sign-in past it ends the least recently used
//!   one, so one account cannot fill the store. Each end is an
//!   [`Event::SessionEnded`](crate::events::Event::SessionEnded) with its
//!   reason.
//! - **A 503 changed nothing** (S7). A refresh whose rotation was not
//!   answered (the store's timeout, the list out of sync after it) is
//!   undone, so the token still refreshes; an ambiguous or malformed
//!   refresh cookie is refused without clearing any cookie.
//! - **Stores** (S4). In memory ([`SessionsBuilder::build`]): at most
//!   [`capacity`](SessionsBuilder::capacity) live sessions; when full, a
//!   sign-in first drops ended sessions (at most once a second), then is
//!   refused with [`Full`](SessionErrorKind::Full) — a live session of
//!   another subject is never dropped to make room (a subject at its cap
//!   replaces its own least recently used session instead). In Redis (`SessionsBuilder::redis`,
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
//!   `/auth`), so it travels to them only. The sign-in, refresh and
//!   sign-out helpers refuse cross-site browser requests first (SECURITY.md
//!   C1; a cross-site sign-in is login CSRF, S7).
//! - Privacy: a session keeps its subject, its times, digests of its
//!   tokens, and its [`Device`]: the user agent (256 bytes at most), the
//!   client address (unless [`record_address`](SessionsBuilder::record_address)
//!   is off) and the application's label; nothing else about the device,
//!   and nothing after the session ends.
//! - Unknown, reused and revoked refresh tokens get byte-identical
//!   responses; logs carry the session id (not a secret) and a keyed
//!   fingerprint, never a token.
//! - Sessions in memory end when the process does: every refresh token is
//!   then unknown, and counted as a failed attempt. Share sessions through
//!   Redis when restarts must keep users signed in.

#[cfg(feature = "axum")]
mod axum;
mod cookie;
mod devices;
mod endpoints;
mod error;
mod family;
mod grant;
mod list;
mod secret;
mod sessions;
#[cfg(feature = "redis")]
mod shared;
mod store;
mod token;

pub use error::{SessionError, SessionErrorKind};
pub use grant::{Grant, SignedOut};
pub use list::{Device, SessionInfo, SessionList};
pub use sessions::{SessionStats, Sessions, SessionsBuilder};
pub use token::AccessTokens;
