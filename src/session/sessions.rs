//! [`Sessions`]: sign-in, refresh with rotation and reuse detection,
//! sign-out, over a store of families.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use http::request::Parts;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::{
    AccessTokens, Device, Grant, SessionError, SessionErrorKind, SignedOut,
    cookie::RefreshCookie,
    family::{Created, Ending, Family, NewFamily, Next, Rotation},
    secret::{Presented, RefreshToken, new_session_id},
    store::{Families, Store, Unreachable, memory::MemoryStore},
};
use crate::{
    ClientIp, ConfigError, ValidationErrorKind,
    cross_origin::CrossOriginProtection,
    events::{self, Record, SessionEndReason},
    reject::{DefaultRenderer, Renderer},
    revoke::{Facts, Revocations},
    validate::{KeyDigest, jwt::JwtValidatorBuilder},
};

/// How much longer than an access token's lifetime the revocation of its
/// session is held, besides the list's leeway (the validator's leeway on
/// `exp`, which the list adds to every revocation with a known end).
const REVOCATION_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How long a sign-out waits for its revocation to reach the shared store.
pub(super) const PROPAGATION: Duration = Duration::from_secs(1);

/// Sessions: sign-in issues a short access token and a refresh cookie;
/// each refresh rotates the refresh token; a used refresh token presented
/// again revokes the whole session (RFC 9700 §4.14.2). See the
/// [module docs](super) for an example and the guarantees.
///
/// Cheap to clone: clones share the store.
#[derive(Clone)]
pub struct Sessions {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) store: Box<dyn Store>,
    tokens: AccessTokens,
    pub(super) revocations: Revocations,
    pub(super) absolute: Duration,
    idle: Duration,
    grace: Duration,
    pub(super) cookie: RefreshCookie,
    pub(super) cross_origin: CrossOriginProtection,
    pub(super) renderer: Arc<dyn Renderer>,
    /// Resolves the address a session signed in from; `None` when
    /// addresses are not recorded.
    pub(super) client_ip: Option<ClientIp>,
    counts: Counts,
    families: Families,
}

#[derive(Default)]
struct Counts {
    signed_in: AtomicU64,
    refreshed: AtomicU64,
    reused: AtomicU64,
    full: AtomicU64,
}

/// Counts since the sessions were built (on this replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SessionStats {
    /// Live sessions held, for the in-memory store (`None` with Redis).
    pub families: Option<u64>,
    /// Sessions started.
    pub signed_in: u64,
    /// Refreshes answered with a token (racing refreshes given the same
    /// successor included).
    pub refreshed: u64,
    /// Used refresh tokens presented again: each revoked its session.
    pub reused: u64,
    /// Sign-ins refused because the store was full.
    pub full: u64,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("Sessions")
            .field("tokens", &inner.tokens)
            .field("absolute", &inner.absolute)
            .field("idle", &inner.idle)
            .field("grace", &inner.grace)
            .field("cookie", &inner.cookie)
            .field("families", &inner.families)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Starts configuring sessions whose access tokens `tokens` signs, and
    /// that revoke through `revocations` (give the same list to the
    /// validator: [`validator`](Self::validator) does).
    pub fn builder(tokens: AccessTokens, revocations: &Revocations) -> SessionsBuilder {
        SessionsBuilder {
            tokens,
            revocations: revocations.clone(),
            absolute: Duration::from_secs(30 * 24 * 3600),
            idle: Duration::from_secs(7 * 24 * 3600),
            grace: Duration::from_secs(5),
            capacity: 100_000,
            max_sessions: 32,
            client_ip: ClientIp::new(),
            record_address: true,
            cookie_name: "refresh".to_owned(),
            cookie_path: "/auth".to_owned(),
            secure: true,
            renderer: Arc::new(DefaultRenderer::new()),
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// A validator builder that accepts this service's access tokens and
    /// refuses those of revoked sessions: [`AccessTokens::validator`] with
    /// the revocation list. Put it in an [`AuthLayer`](crate::AuthLayer)
    /// with [leases](crate::AuthLayer::leases) on the same list, and open
    /// streams end with their session.
    ///
    /// The identity it produces is
    /// [`Claims<T>`](crate::validate::Claims): the standard claims (`sub`,
    /// `sid`, `jti`, `exp`…) through its accessors, and `T`, the whole
    /// payload deserialized (`serde_json::Value`, or a struct of the claims
    /// you read).
    /// Handlers extract it as `Identity<Claims<T>>` (feature `axum`); an
    /// extractor of another type finds no identity and answers 500.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::{AuthLayer, revoke::Revocations, session::{AccessTokens, Sessions}, validate::Claims};
    ///
    /// # fn main() -> Result<(), portcullis::ConfigError> {
    /// let revocations = Revocations::new();
    /// let sessions = Sessions::builder(AccessTokens::hs256(&[7; 32])?, &revocations).build()?;
    /// let validator = sessions.validator::<serde_json::Value>().build()?;
    /// let auth = AuthLayer::new(validator).leases(&revocations);
    /// // Handlers take `Identity<Claims<serde_json::Value>>`:
    /// type User = Claims<serde_json::Value>;
    /// # let _: Option<User> = None;
    /// # let _ = auth;
    /// # Ok(())
    /// # }
    /// ```
    pub fn validator<T: DeserializeOwned + Send + Sync + 'static>(&self) -> JwtValidatorBuilder<T> {
        self.inner
            .tokens
            .validator()
            .revocations(&self.inner.revocations)
    }

    /// The signer of the access tokens.
    pub fn access_tokens(&self) -> &AccessTokens {
        &self.inner.tokens
    }

    /// Starts a session for `subject`, whom the caller has just
    /// authenticated (a password, a passkey…): an access token and a
    /// refresh cookie. The session records no device; an endpoint uses
    /// [`sign_in_from`](Self::sign_in_from).
    ///
    /// `subject` is taken as given (the `sub` of the access tokens, the
    /// owner in [`list`](Self::list) and
    /// [`sign_out_everywhere`](Self::sign_out_everywhere)): nothing trims or
    /// lowercases it, unlike the account keys of the lockout
    /// ([`BodyKeyLayer`](crate::body_key::BodyKeyLayer) and
    /// [`DeviceCookies`](crate::lockout::DeviceCookies) trim and lowercase
    /// a typed username). Pass your user's stable id, or the username
    /// normalised the same way every time, so that `Alice` and `alice` are
    /// one subject whose sessions all end together.
    ///
    /// # Errors
    ///
    /// As [`sign_in_with`](Self::sign_in_with).
    pub async fn sign_in(&self, subject: &str) -> Result<Grant, SessionError> {
        self.sign_in_with(subject, Device::new()).await
    }

    /// Signs in `subject` from the sign-in `request`, after the
    /// cross-origin check (login CSRF, SECURITY.md S7): the endpoint
    /// helper. The session records the request's [`device`](Self::device).
    ///
    /// Call [`check_origin`](Self::check_origin) before checking the
    /// password too, so that a cross-site post costs no password hash and
    /// no failed attempt.
    ///
    /// # Errors
    ///
    /// [`CrossOrigin`](SessionErrorKind::CrossOrigin) (403) for a
    /// cross-site browser request: a page of another site must not sign
    /// the victim's browser into the attacker's account. Otherwise as
    /// [`sign_in_with`](Self::sign_in_with).
    pub async fn sign_in_from(
        &self,
        request: &Parts,
        subject: &str,
    ) -> Result<Grant, SessionError> {
        self.check_origin(request)?;
        self.sign_in_with(subject, self.device(request)).await
    }

    /// Starts a session for `subject` that signed in from `device` (shown
    /// in [`list`](Self::list)).
    ///
    /// When `subject` already has [`max_sessions`](SessionsBuilder::max_sessions)
    /// live sessions, its least recently used one ends (its refresh token,
    /// its access tokens and its streams, with an
    /// [`Event::SessionEnded`](crate::events::Event::SessionEnded) whose
    /// reason is `cap`): a sign-in never fails because of the cap.
    ///
    /// # Errors
    ///
    /// [`Full`](SessionErrorKind::Full) when the in-memory store holds as
    /// many live sessions as it may; [`Unavailable`](SessionErrorKind::Unavailable)
    /// when the store did not answer.
    pub async fn sign_in_with(&self, subject: &str, device: Device) -> Result<Grant, SessionError> {
        let inner = &self.inner;
        let Ok((sid, token)) = new_session_id(subject)
            .and_then(|sid| RefreshToken::generate(&sid).map(|token| (sid, token)))
        else {
            return Err(self.refuse(SessionErrorKind::Unavailable, None, None));
        };
        let subject: Arc<str> = subject.into();
        let created = SystemTime::now();
        let family = NewFamily {
            sid: sid.as_str().into(),
            subject: subject.clone(),
            created,
            token: token.digest(),
            absolute: inner.absolute,
            idle: inner.idle,
            device,
        };
        match inner.store.create(family).await {
            Ok(Created::Created { evicted }) => {
                for old in &evicted {
                    tracing::info!(target: "portcullis::session", session = %old, subject = %subject, "the least recently used session ended: the subject signed in past its cap");
                    drop(self.revoke_id(old));
                    events::emit(Record::SessionEnded {
                        subject: &subject,
                        session: old,
                        reason: SessionEndReason::Cap,
                    });
                }
            }
            Ok(Created::Full) => {
                inner.counts.full.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "portcullis::session",
                    "the session store is full: sign-in refused (raise SessionsBuilder::capacity, \
                     or share sessions through redis)"
                );
                return Err(self.refuse(SessionErrorKind::Full, None, None));
            }
            Err(Unreachable) => return Err(self.unreachable(None)),
        }
        inner.counts.signed_in.fetch_add(1, Ordering::Relaxed);
        tracing::info!(target: "portcullis::session", session = %sid, subject = %subject, "session started");
        let family = Family {
            subject,
            created,
            remaining: inner.absolute.min(inner.idle),
        };
        self.grant(token, &sid, &family, None)
    }

    /// Refreshes with the refresh token the request's cookie carries, after
    /// the cross-origin check: the endpoint helper. See
    /// [`refresh_with`](Self::refresh_with) for what happens.
    ///
    /// # Errors
    ///
    /// As [`refresh_with`](Self::refresh_with), and
    /// [`CrossOrigin`](SessionErrorKind::CrossOrigin) for a cross-site
    /// browser request, [`Missing`](SessionErrorKind::Missing) without the
    /// cookie, [`Malformed`](SessionErrorKind::Malformed) for a cookie
    /// that is malformed or present twice.
    pub async fn refresh(&self, request: &Parts) -> Result<Grant, SessionError> {
        let token = self.presented(request)?;
        self.refresh_in(&token, Some(request)).await
    }

    /// Refreshes with `token`: when it is its session's current refresh
    /// token, it is used, and its successor and a new access token are
    /// issued.
    ///
    /// - Presented again within the grace window while its successor is
    ///   still current (a concurrent refresh, a lost answer), it is
    ///   answered with the same successor: a token has exactly one
    ///   successor.
    /// - Presented again later, the whole session is revoked: its refresh
    ///   tokens, its access tokens (by `sid`, through the revocation list),
    ///   and its open streams. An [`Event::SessionReused`](crate::events::Event::SessionReused)
    ///   is emitted.
    ///
    /// # Errors
    ///
    /// [`Unknown`](SessionErrorKind::Unknown), [`Reused`](SessionErrorKind::Reused),
    /// [`Revoked`](SessionErrorKind::Revoked), [`Conflict`](SessionErrorKind::Conflict),
    /// [`Unavailable`](SessionErrorKind::Unavailable).
    pub async fn refresh_with(&self, token: &str) -> Result<Grant, SessionError> {
        self.refresh_in(token, None).await
    }

    async fn refresh_in(
        &self,
        token: &str,
        request: Option<&Parts>,
    ) -> Result<Grant, SessionError> {
        let inner = &self.inner;
        let Some(presented) = Presented::parse(token) else {
            return Err(self.refuse_clearing(
                SessionErrorKind::Unknown,
                request,
                Some(token),
                false,
            ));
        };
        let sid = presented.sid();
        // Before anything changes: a list out of sync must not cost the
        // client its token, and a revoked session rotates no more.
        self.check(&presented, None, request, token).await?;
        let Ok(next) = RefreshToken::generate(sid) else {
            return Err(self.refuse(SessionErrorKind::Unavailable, request, None));
        };
        let successor = next.digest();
        let proposed = Next {
            digest: successor,
            wrapped: presented.wrap(&next),
        };
        let rotation = inner.store.rotate(sid, presented.digest(), proposed).await;
        let mut rotated = false;
        let (token_out, family) = match rotation {
            Ok(Rotation::Rotated(family)) => {
                rotated = true;
                (next, family)
            }
            Ok(Rotation::Again {
                family,
                wrapped,
                current,
            }) => match presented.unwrap(&wrapped, &current) {
                Some(successor) => {
                    tracing::debug!(target: "portcullis::session", session = %sid, "concurrent refresh given the same successor");
                    (successor, family)
                }
                None => {
                    tracing::error!(target: "portcullis::session", session = %sid, "the successor kept for the grace window does not match the current token");
                    return Err(self.refuse(SessionErrorKind::Unavailable, request, None));
                }
            },
            Ok(Rotation::Conflict) => {
                return Err(self.refuse(SessionErrorKind::Conflict, request, None));
            }
            Ok(Rotation::Reused { subject }) => {
                self.reused(sid, &subject);
                return Err(self.refuse(SessionErrorKind::Reused, request, Some(token)));
            }
            Ok(Rotation::Unknown) => {
                return Err(self.refuse(SessionErrorKind::Unknown, request, Some(token)));
            }
            Err(Unreachable) => {
                // The rotation may run after the timeout: the 503 must
                // leave the token usable (S7).
                self.undo(sid, presented.digest(), successor).await;
                return Err(self.unreachable(request));
            }
        };
        let granted = match self.check(&presented, Some(&family), request, token).await {
            Ok(()) => self.grant(token_out, sid, &family, request),
            Err(error) => Err(error),
        };
        match granted {
            Ok(grant) => {
                inner.counts.refreshed.fetch_add(1, Ordering::Relaxed);
                Ok(grant)
            }
            Err(error) => {
                if rotated && error.kind() == SessionErrorKind::Unavailable {
                    self.undo(sid, presented.digest(), successor).await;
                }
                Err(error)
            }
        }
    }

    /// Undoes the rotation of `token` to `successor` whose answer says
    /// nothing changed: sent now, after the rotation (the stores do it, or
    /// send it, when asked).
    async fn undo(&self, sid: &str, token: KeyDigest, successor: KeyDigest) {
        tracing::info!(target: "portcullis::session", session = %sid, "refresh not answered: its rotation is undone");
        if self.inner.store.undo(sid, token, successor).await.is_err() {
            tracing::warn!(target: "portcullis::session", session = %sid, "a rotation could not be undone");
        }
        // Let an undo sent in the background go out before the answer.
        tokio::task::yield_now().await;
    }

    /// Signs out with the refresh token the request's cookie carries, after
    /// the cross-origin check: the endpoint helper. See
    /// [`sign_out_with`](Self::sign_out_with).
    ///
    /// # Errors
    ///
    /// As [`sign_out_with`](Self::sign_out_with), and as
    /// [`refresh`](Self::refresh) for the cookie and the cross-origin check.
    pub async fn sign_out(&self, request: &Parts) -> Result<SignedOut, SessionError> {
        let token = self.presented(request)?;
        self.sign_out_in(&token, Some(request)).await
    }

    /// Ends the session of refresh token `token` (current, or used within
    /// the grace window): its refresh tokens at once, its access tokens
    /// and open streams through the revocation list. Waits up to a second
    /// for the revocation to reach the shared store, if any.
    ///
    /// # Errors
    ///
    /// [`Unknown`](SessionErrorKind::Unknown); [`Reused`](SessionErrorKind::Reused)
    /// for a token used before the grace window (the session is revoked
    /// all the same); [`Unavailable`](SessionErrorKind::Unavailable).
    pub async fn sign_out_with(&self, token: &str) -> Result<SignedOut, SessionError> {
        self.sign_out_in(token, None).await
    }

    async fn sign_out_in(
        &self,
        token: &str,
        request: Option<&Parts>,
    ) -> Result<SignedOut, SessionError> {
        let Some(presented) = Presented::parse(token) else {
            return Err(self.refuse_clearing(
                SessionErrorKind::Unknown,
                request,
                Some(token),
                false,
            ));
        };
        let sid = presented.sid();
        match self.inner.store.end(sid, presented.digest()).await {
            Ok(Ending::Ended { subject }) => {
                tracing::info!(target: "portcullis::session", session = %sid, subject = %subject, "signed out");
                events::emit(Record::SessionEnded {
                    subject: &subject,
                    session: sid,
                    reason: SessionEndReason::SignedOut,
                });
                // S7: the session is gone from the store, but an answer of
                // success would say its access tokens are refused too.
                if !self.revoke_and_wait(sid).await {
                    return Err(self.refuse(SessionErrorKind::Unavailable, request, None));
                }
                Ok(SignedOut::new(self.inner.cookie.clear()))
            }
            Ok(Ending::Reused { subject }) => {
                self.reused(sid, &subject);
                Err(self.refuse(SessionErrorKind::Reused, request, Some(token)))
            }
            Ok(Ending::Unknown) => {
                Err(self.refuse(SessionErrorKind::Unknown, request, Some(token)))
            }
            Err(Unreachable) => Err(self.unreachable(request)),
        }
    }

    /// Counts, and the live sessions of an in-memory store (a walk of the
    /// table).
    pub fn stats(&self) -> SessionStats {
        let counts = &self.inner.counts;
        SessionStats {
            families: self.inner.store.families(),
            signed_in: counts.signed_in.load(Ordering::Relaxed),
            refreshed: counts.refreshed.load(Ordering::Relaxed),
            reused: counts.reused.load(Ordering::Relaxed),
            full: counts.full.load(Ordering::Relaxed),
        }
    }

    /// Refuses a token the revocation list revokes (its session id; with
    /// `family`, its subject's cutoff too), ending its session; answers
    /// unavailable while the list is out of sync.
    async fn check(
        &self,
        presented: &Presented<'_>,
        family: Option<&Family>,
        request: Option<&Parts>,
        token: &str,
    ) -> Result<(), SessionError> {
        let sid = presented.sid();
        let facts = Facts {
            subject: family.map(|f| &*f.subject),
            ids: [None, Some(sid)],
            issued_at: family.map(|f| f.created),
        };
        let Err(error) = self
            .inner
            .revocations
            .check_digest(|| presented.digest(), &facts)
        else {
            return Ok(());
        };
        if error.kind() == ValidationErrorKind::Unavailable {
            return Err(self.refuse(SessionErrorKind::Unavailable, request, None));
        }
        // Revoked elsewhere (an operator, another replica): the family goes.
        let _ = self.inner.store.remove(sid).await;
        tracing::info!(target: "portcullis::session", session = %sid, "refresh of a revoked session refused");
        Err(self.refuse(SessionErrorKind::Revoked, request, Some(token)))
    }

    /// A used token came back: the family is gone from the store; its
    /// access tokens and streams go through the revocation list.
    pub(super) fn reused(&self, sid: &str, subject: &str) {
        self.inner.counts.reused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: "portcullis::session",
            session = %sid,
            subject = %subject,
            "a used refresh token was presented again: the session is revoked"
        );
        events::emit(Record::SessionReused {
            subject,
            session: sid,
        });
        events::emit(Record::SessionEnded {
            subject,
            session: sid,
            reason: SessionEndReason::Reuse,
        });
        // In effect here at once; stored for the other replicas in the
        // background.
        drop(self.revoke_id(sid));
    }

    pub(super) fn revoke_id(&self, sid: &str) -> crate::revoke::Revoked {
        let until = Instant::now() + self.inner.tokens.ttl() + REVOCATION_MARGIN;
        self.inner.revocations.revoke_id(sid, Some(until))
    }

    /// Revokes the access tokens and streams of session `sid`, waiting up
    /// to a second for the shared store. Returns whether the revocation is
    /// in effect here: a list full of live revocations refuses it, and the
    /// access tokens would still be accepted.
    pub(super) async fn revoke_and_wait(&self, sid: &str) -> bool {
        match tokio::time::timeout(PROPAGATION, self.revoke_id(sid)).await {
            Ok(Ok(())) => true,
            Ok(Err(error)) if !error.in_effect_here() => {
                tracing::error!(target: "portcullis::session", session = %sid, %error, "sign-out refused by the revocation list: its access tokens stay valid until they expire");
                false
            }
            Ok(Err(error)) => {
                tracing::warn!(target: "portcullis::session", session = %sid, %error, "sign-out not shared yet");
                true
            }
            Err(_) => {
                tracing::warn!(target: "portcullis::session", session = %sid, "sign-out not shared within a second (retrying)");
                true
            }
        }
    }

    /// The access token and refresh cookie of `family` with `token`.
    fn grant(
        &self,
        token: RefreshToken,
        sid: &str,
        family: &Family,
        request: Option<&Parts>,
    ) -> Result<Grant, SessionError> {
        let inner = &self.inner;
        let access = inner
            .tokens
            .sign(&family.subject, sid, family.remaining)
            .map_err(|reason| {
                tracing::error!(target: "portcullis::session", session = %sid, reason, "no access token issued");
                self.refuse(SessionErrorKind::Unavailable, request, None)
            })?;
        let set_cookie = inner.cookie.set(token.as_str(), family.remaining);
        Ok(Grant::new(
            access,
            token.into_string(),
            sid.into(),
            family.subject.clone(),
            set_cookie,
        ))
    }

    pub(super) fn unreachable(&self, request: Option<&Parts>) -> SessionError {
        tracing::warn!(target: "portcullis::session", "the session store did not answer");
        self.refuse(SessionErrorKind::Unavailable, request, None)
    }
}

/// The longest lifetime a session may have: a browser keeps a cookie 400
/// days at most (RFC 6265bis).
const MAX_LIFETIME: Duration = Duration::from_secs(400 * 24 * 3600);

/// Configures [`Sessions`].
#[must_use]
pub struct SessionsBuilder {
    tokens: AccessTokens,
    revocations: Revocations,
    absolute: Duration,
    idle: Duration,
    pub(super) grace: Duration,
    capacity: u64,
    pub(super) max_sessions: u32,
    client_ip: ClientIp,
    record_address: bool,
    cookie_name: String,
    cookie_path: String,
    secure: bool,
    renderer: Arc<dyn Renderer>,
    /// The shared store of `redis` (feature `redis`).
    #[cfg(feature = "redis")]
    pub(super) shared: Option<crate::redis::RedisStore>,
}

impl fmt::Debug for SessionsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionsBuilder")
            .field("tokens", &self.tokens)
            .field("absolute", &self.absolute)
            .field("idle", &self.idle)
            .field("grace", &self.grace)
            .field("capacity", &self.capacity)
            .field("max_sessions", &self.max_sessions)
            .field("record_address", &self.record_address)
            .field("cookie_name", &self.cookie_name)
            .field("cookie_path", &self.cookie_path)
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

impl SessionsBuilder {
    /// How long a session lives at most, refreshed or not (default 30
    /// days; at most 400 days, what a browser keeps a cookie).
    pub fn absolute_lifetime(mut self, lifetime: Duration) -> Self {
        self.absolute = lifetime;
        self
    }

    /// How long a session lives without a refresh (default 7 days); each
    /// refresh starts it again, up to the absolute lifetime.
    pub fn idle_lifetime(mut self, lifetime: Duration) -> Self {
        self.idle = lifetime;
        self
    }

    /// How long after its use a refresh token presented again gets the
    /// same successor instead of revoking its session (default 5 s): for
    /// concurrent refreshes (two tabs) and answers lost on the way. Zero
    /// revokes on any second use.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The most live sessions the in-memory store holds (default 100,000);
    /// past it sign-ins are refused. Not used with Redis.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// The most live sessions one subject may have (default 32, at least
    /// 1): a sign-in past it ends the subject's least recently used
    /// session. In memory and in Redis alike, one account can never hold
    /// more, so it cannot fill the store.
    pub fn max_sessions(mut self, max: u32) -> Self {
        self.max_sessions = max;
        self
    }

    /// How [`Sessions::device`] resolves the address a session signed in
    /// from (default [`ClientIp::new`]: the socket peer; configure the
    /// same trusted proxies as your lockout).
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.client_ip = client_ip;
        self
    }

    /// Whether sessions record the address they signed in from (default
    /// true), for their owner's list. Turn it off when you must not keep
    /// addresses: the list then shows the user agent and label only.
    pub fn record_address(mut self, record: bool) -> Self {
        self.record_address = record;
        self
    }

    /// The refresh cookie's name (default `refresh`).
    pub fn cookie_name(mut self, name: impl Into<String>) -> Self {
        self.cookie_name = name.into();
        self
    }

    /// The refresh cookie's `Path` (default `/auth`): the prefix of the
    /// refresh and sign-out endpoints, so the browser sends the cookie
    /// there and nowhere else.
    pub fn cookie_path(mut self, path: impl Into<String>) -> Self {
        self.cookie_path = path.into();
        self
    }

    /// Whether the refresh cookie is `Secure` (default true). Browsers
    /// accept `Secure` cookies from `http://localhost`; turn it off only
    /// for plain-HTTP development on another host.
    pub fn secure_cookie(mut self, secure: bool) -> Self {
        self.secure = secure;
        self
    }

    /// Renders refusals with `renderer` (default [`DefaultRenderer`]).
    pub fn renderer(mut self, renderer: impl Renderer) -> Self {
        self.renderer = Arc::new(renderer);
        self
    }

    /// Builds sessions kept in memory: one process; they end when it exits.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] for a zero lifetime, capacity or
    /// [`max_sessions`](Self::max_sessions), a grace
    /// window not shorter than the idle lifetime, or access tokens that
    /// live longer than the revocation list remembers
    /// ([`max_lifetime`](crate::revoke::RevocationsBuilder::max_lifetime));
    /// [`ConfigError::InvalidName`] for a cookie name or path that cannot
    /// be used.
    pub fn build(self) -> Result<Sessions, ConfigError> {
        #[cfg(feature = "redis")]
        if let Some(store) = self.shared.clone() {
            return self.build_shared(store);
        }
        if self.capacity == 0 {
            return Err(ConfigError::out_of_range("capacity", "must be at least 1"));
        }
        let capacity = usize::try_from(self.capacity).unwrap_or(usize::MAX);
        let cap = usize::try_from(self.max_sessions).unwrap_or(usize::MAX);
        let store = MemoryStore::new(capacity, cap, self.grace);
        self.build_on(Box::new(store), Families::InMemory)
    }

    pub(crate) fn build_on(
        self,
        store: Box<dyn Store>,
        families: Families,
    ) -> Result<Sessions, ConfigError> {
        if self.max_sessions == 0 {
            return Err(ConfigError::out_of_range(
                "max_sessions",
                "must be at least 1",
            ));
        }
        if self.absolute.is_zero() || self.idle.is_zero() {
            return Err(ConfigError::out_of_range(
                "lifetime",
                "the absolute and idle lifetimes must be longer than zero",
            ));
        }
        // Browsers keep a cookie 400 days at most (RFC 6265bis), and the
        // deadlines must fit the clocks they are added to.
        if self.absolute > MAX_LIFETIME || self.idle > MAX_LIFETIME {
            return Err(ConfigError::out_of_range(
                "lifetime",
                "the absolute and idle lifetimes must be at most 400 days",
            ));
        }
        if self.grace >= self.idle {
            return Err(ConfigError::out_of_range(
                "grace",
                "the grace window must be shorter than the idle lifetime",
            ));
        }
        if self.tokens.ttl() > self.revocations.max_lifetime() {
            return Err(ConfigError::out_of_range(
                "lifetime",
                "access tokens must not outlive what the revocation list remembers \
                 (RevocationsBuilder::max_lifetime)",
            ));
        }
        let cookie = RefreshCookie::new(&self.cookie_name, &self.cookie_path, self.secure)?;
        Ok(Sessions {
            inner: Arc::new(Inner {
                store,
                tokens: self.tokens,
                revocations: self.revocations,
                absolute: self.absolute,
                idle: self.idle,
                grace: self.grace,
                cookie,
                cross_origin: CrossOriginProtection::new(),
                renderer: self.renderer,
                client_ip: self.record_address.then_some(self.client_ip),
                counts: Counts::default(),
                families,
            }),
        })
    }
}
