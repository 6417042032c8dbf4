//! Sessions: `POST /login` issues a fresh random session token, `POST
//! /logout` revokes what was presented (or, with `?all=1`, everything of
//! the subject), and the revocation list that every validator and every
//! open stream honours.
//!
//! A session token is `sess_` and 32 random bytes (base64url). It is kept
//! only as its SHA-256 digest, lives `PORTCULLIS_SESSION_SECS` (default
//! 3600), and is validated through the `Chain` like any other credential,
//! so it works as the `session` cookie, as `Authorization: Bearer` and as
//! `X-API-Key`.
//!
//! Signing out revokes: the credential's digest (every carrier) until it
//! would have expired, or the subject with a cutoff. With
//! `PORTCULLIS_REDIS_URL` the revocation reaches every instance within a
//! second, and an instance that lost Redis answers 503 until it has caught
//! up.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, SystemTime},
};

use axum::{
    Extension,
    extract::Query,
    response::{IntoResponse, Response},
};
use http::{StatusCode, header};
use portcullis::{
    Credential, ValidationError, Validator,
    extract::Cookie,
    integration::axum::Identity,
    lease::Lease,
    revoke::{Revocations, RevokeErrorKind},
    validate::{GeneratedKey, KeyDigest},
};
use serde::Deserialize;
use tokio::time::Instant;

use crate::{
    settings::{Limits, number},
    users::User,
};

/// The prefix of session tokens; the `Chain` routes on it.
pub(crate) const SESSION_PREFIX: &str = "sess_";

/// Sessions held at most; past it, sign-ins are refused (503) rather than
/// dropping a live session.
const MAX_SESSIONS: usize = 100_000;

/// How long a sign-out may take to reach the other instances before the
/// client is told to try again.
const PROPAGATION: Duration = Duration::from_secs(1);

/// A signed-in session.
struct Session {
    subject: String,
    scopes: Vec<String>,
    issued_at: SystemTime,
    expires_at: Instant,
}

/// The sessions of this instance, and the revocation list of every
/// credential.
#[derive(Clone)]
pub(crate) struct Sessions {
    inner: Arc<Inner>,
}

struct Inner {
    /// By the digest of the token: the token itself is never kept.
    table: Mutex<HashMap<KeyDigest, Session>>,
    lifetime: Duration,
    revocations: Revocations,
    /// Whether the list is shared through Redis.
    shared: bool,
}

impl Sessions {
    /// The sessions, with a revocation list shared through Redis when the
    /// limiters share it (waiting for it to catch up first).
    pub(crate) async fn start(limits: &Limits) -> Result<Self, String> {
        let lifetime = Duration::from_secs(number("PORTCULLIS_SESSION_SECS", 1, 3600)?);
        let (revocations, shared) = revocations(limits).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                table: Mutex::new(HashMap::new()),
                lifetime,
                revocations,
                shared,
            }),
        })
    }

    /// The list every validator and every open stream honours.
    pub(crate) fn revocations(&self) -> &Revocations {
        &self.inner.revocations
    }

    /// Signs `subject` in: a fresh session token, as the `Set-Cookie` value
    /// of the `session` cookie. `None` when the table is full.
    pub(crate) fn sign_in(&self, subject: &str, scopes: &[&str]) -> Option<String> {
        let token = GeneratedKey::new(SESSION_PREFIX).ok()?;
        let now = Instant::now();
        let mut table = self.table();
        if table.len() >= MAX_SESSIONS {
            table.retain(|_, session| session.expires_at > now);
            if table.len() >= MAX_SESSIONS {
                tracing::warn!("too many sessions: sign-in refused");
                return None;
            }
        }
        table.insert(
            token.digest(),
            Session {
                subject: subject.to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                issued_at: SystemTime::now(),
                expires_at: now + self.inner.lifetime,
            },
        );
        Some(
            Cookie::new("session")
                .set_cookie(token.secret())
                .build()
                .to_string(),
        )
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "sessions: POST /login issues a session token valid for {} s; POST /logout revokes \
             it, ?all=1 everything of the subject; revocations {}",
            self.inner.lifetime.as_secs(),
            if self.inner.shared {
                "reach every instance through redis"
            } else {
                "apply to this instance"
            }
        )
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<KeyDigest, Session>> {
        self.inner
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Validates session tokens. It knows nothing of revocations: the cache in
/// front of the chain checks every answer against the list.
impl Validator for Sessions {
    type Identity = User;

    async fn validate(&self, credential: &Credential) -> Result<User, ValidationError> {
        let table = self.table();
        let Some(session) = table.get(&KeyDigest::of(credential.secret())) else {
            return Err(ValidationError::invalid().with_reason("unknown session"));
        };
        if Instant::now() >= session.expires_at {
            return Err(ValidationError::expired().with_reason("session expired"));
        }
        Ok(User {
            subject: session.subject.clone(),
            scopes: session.scopes.clone(),
            expires_at: Some(session.expires_at),
            issued_at: Some(session.issued_at),
        })
    }
}

/// The revocation list, and whether it is shared through Redis (when the
/// limiters are).
#[cfg(feature = "redis")]
async fn revocations(limits: &Limits) -> Result<(Revocations, bool), String> {
    let Some(store) = &limits.redis else {
        return Ok((Revocations::new(), false));
    };
    let revocations = Revocations::builder()
        .redis(store.clone())
        .build()
        .expect("the default revocation settings are valid");
    tokio::time::timeout(Duration::from_secs(5), revocations.synced())
        .await
        .map_err(|_| "revocations could not catch up with redis".to_owned())?;
    Ok((revocations, true))
}

#[cfg(not(feature = "redis"))]
async fn revocations(_: &Limits) -> Result<(Revocations, bool), String> {
    Ok((Revocations::new(), false))
}

/// `?all=1`: sign out everywhere.
#[derive(Deserialize)]
pub(crate) struct Everywhere {
    #[serde(default)]
    all: Option<String>,
}

/// `POST /logout`: revokes the credential presented, in every carrier
/// (`?all=1`: every credential of the subject issued until now, JWTs
/// included), clears the cookie and answers 204. Open streams of what was
/// revoked end within a second, on every instance.
///
/// While Redis is unreachable the revocation is in effect here at once and
/// queued: it reaches the other instances when Redis is back, and the
/// answer is 204 all the same. 503 when it is not in effect (the revocation
/// table is full) or did not reach Redis within a second though Redis
/// answers: signing out again is harmless.
pub(crate) async fn logout(
    Extension(sessions): Extension<Sessions>,
    Identity(user): Identity<User>,
    lease: Lease,
    Query(everywhere): Query<Everywhere>,
) -> Response {
    let all = matches!(everywhere.all.as_deref(), Some("1" | "true"));
    let revoked = if all {
        sessions.revocations().revoke_subject(&user.subject)
    } else {
        lease.revoke()
    };
    tracing::info!(subject = %user.subject, everywhere = all, "signed out");
    match tokio::time::timeout(PROPAGATION, revoked).await {
        Ok(Ok(())) => signed_out(),
        Ok(Err(queued)) if queued.kind() == RevokeErrorKind::Queued => {
            tracing::warn!(%queued, "signed out here; the other instances learn it when redis is back");
            signed_out()
        }
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "signed out here, but not yet on every instance; sign out again",
        )
            .into_response(),
    }
}

/// 204, and the session cookie cleared.
fn signed_out() -> Response {
    let clear = Cookie::new("session")
        .set_cookie("")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, clear.to_string())],
    )
        .into_response()
}
