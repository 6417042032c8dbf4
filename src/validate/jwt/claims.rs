//! The claims of a verified token, and the rules they must satisfy.

use std::{
    fmt,
    ops::Deref,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::Algorithm;
use serde::Deserialize;
use tokio::time::Instant;

use crate::{
    ValidationError,
    revoke::Revocable,
    validate::identity::{ExpiresAt, Scopes, deadline_after},
};

/// The verified claims of a JWT: your claims type `T`, plus the registered
/// claims portcullis needs (`exp`, `sub`, `scope`/`scp`, `jti`, `sid`,
/// `iat`).
///
/// Derefs to `T`. Cheap to clone (`T` is shared). Implements [`Scopes`]
/// (from a space-separated `scope` claim, RFC 8693 §4.2, or a `scp` array
/// or string), [`ExpiresAt`] (from `exp`) and [`Revocable`] (`sub`, `jti`,
/// `sid`, `iat`).
pub struct Claims<T> {
    claims: Arc<T>,
    exp: u64,
    expires_at: Instant,
    sub: Option<Box<str>>,
    scope: Option<Box<str>>,
    scp: Box<[Box<str>]>,
    jti: Option<Box<str>>,
    sid: Option<Box<str>>,
    iat: Option<u64>,
}

impl<T> Claims<T> {
    /// The identity of a token whose signature and registered claims were
    /// checked at `now` (since the epoch); `exp` is what [`Policy::check`]
    /// returned.
    pub(super) fn verified(claims: T, registered: Registered, exp: u64, now: Duration) -> Self {
        Self {
            claims: Arc::new(claims),
            exp,
            expires_at: deadline_after(
                Instant::now(),
                Duration::from_secs(exp).saturating_sub(now),
            ),
            sub: registered.sub,
            scope: registered.scope,
            scp: registered.scp,
            jti: registered.jti,
            sid: registered.sid,
            iat: registered.iat,
        }
    }

    /// Your claims.
    pub fn claims(&self) -> &T {
        &self.claims
    }

    /// Your claims, shared.
    pub fn shared(&self) -> Arc<T> {
        self.claims.clone()
    }

    /// The `exp` claim, in seconds since the Unix epoch.
    pub fn exp(&self) -> u64 {
        self.exp
    }

    /// The `sub` claim: whom the token is about. A numeric `sub` (which
    /// some issuers write, against RFC 7519) is given in decimal.
    ///
    /// The function a [`CachingValidator`](crate::validate::CachingValidator)
    /// reads subjects with: `.subject(Claims::subject)`.
    pub fn subject(&self) -> Option<&str> {
        self.sub.as_deref()
    }

    /// Every scope the token grants (`scope` then `scp`).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or("")
            .split_ascii_whitespace()
            .chain(self.scp.iter().map(|s| &**s))
    }
}

impl<T> Deref for Claims<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.claims
    }
}

impl<T> Clone for Claims<T> {
    fn clone(&self) -> Self {
        Self {
            claims: self.claims.clone(),
            exp: self.exp,
            expires_at: self.expires_at,
            sub: self.sub.clone(),
            scope: self.scope.clone(),
            scp: self.scp.clone(),
            jti: self.jti.clone(),
            sid: self.sid.clone(),
            iat: self.iat,
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Claims<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("claims", &self.claims)
            .field("exp", &self.exp)
            .field("sub", &self.sub)
            .field("scopes", &self.scopes().collect::<Vec<_>>())
            .finish()
    }
}

impl<T> Scopes for Claims<T> {
    fn has_scope(&self, scope: &str) -> bool {
        self.scopes().any(|s| s == scope)
    }
}

impl<T> ExpiresAt for Claims<T> {
    fn expires_at(&self) -> Option<Instant> {
        Some(self.expires_at)
    }
}

impl<T> Revocable for Claims<T> {
    fn subject(&self) -> Option<&str> {
        self.sub.as_deref()
    }

    fn token_id(&self) -> Option<&str> {
        self.jti.as_deref()
    }

    fn session_id(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    fn issued_at(&self) -> Option<SystemTime> {
        UNIX_EPOCH.checked_add(Duration::from_secs(self.iat?))
    }
}

/// The registered claims checked and kept besides `T`.
#[derive(Deserialize)]
pub(super) struct Registered {
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default, deserialize_with = "sub")]
    sub: Option<Box<str>>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    scope: Option<Box<str>>,
    #[serde(default, deserialize_with = "scp")]
    scp: Box<[Box<str>]>,
    #[serde(default, deserialize_with = "sub")]
    jti: Option<Box<str>>,
    #[serde(default, deserialize_with = "sub")]
    sid: Option<Box<str>>,
    #[serde(default, deserialize_with = "numeric_date")]
    iat: Option<u64>,
}

/// `aud` is one string or an array of strings (RFC 7519 §4.1.3).
#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn any(&self, accepted: &[String]) -> bool {
        match self {
            Self::One(aud) => accepted.contains(aud),
            Self::Many(auds) => auds.iter().any(|aud| accepted.contains(aud)),
        }
    }
}

/// `sub` is a string (RFC 7519 §4.1.2); a number is kept in decimal, and
/// anything else is no subject rather than a reason to refuse the token.
fn sub<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<str>>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(sub) => Some(sub.into()),
        serde_json::Value::Number(sub) => Some(sub.to_string().into()),
        _ => None,
    })
}

/// `iat` is a NumericDate (RFC 7519 §2): seconds, possibly with a fraction
/// (dropped). Anything else is no issue time, which a subject's cutoff
/// treats as "issued before".
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                // Saturates at u64::MAX; the fraction is dropped.
                .map(|f| f as u64)
        }),
        _ => None,
    })
}

/// `scp` is an array of strings, or (some issuers) one space-separated string.
fn scp<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Box<[Box<str>]>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scp {
        List(Vec<Box<str>>),
        One(String),
        Null(()),
    }
    Ok(match Scp::deserialize(d)? {
        Scp::List(list) => list.into_boxed_slice(),
        Scp::One(s) => s.split_ascii_whitespace().map(Into::into).collect(),
        Scp::Null(()) => Box::new([]),
    })
}

/// What a token's claims must satisfy.
#[derive(Debug)]
pub(super) struct Policy {
    pub(super) algorithms: Vec<Algorithm>,
    pub(super) issuers: Vec<String>,
    pub(super) audiences: Vec<String>,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    pub(super) leeway: u64,
    pub(super) require_nbf: bool,
}

impl Policy {
    /// Checks the registered claims at `now` (seconds since the epoch), in
    /// the order jsonwebtoken does: presence, `exp`, `nbf`, `iss`, `aud`.
    pub(super) fn check(&self, claims: &Registered, now: u64) -> Result<u64, ValidationError> {
        let missing = || ValidationError::invalid().with_reason("a required claim is missing");
        let exp = claims.exp.ok_or_else(missing)?;
        if (self.require_nbf && claims.nbf.is_none())
            || (!self.issuers.is_empty() && claims.iss.is_none())
            || (!self.audiences.is_empty() && claims.aud.is_none())
        {
            return Err(missing());
        }
        if exp.saturating_add(self.leeway) < now {
            return Err(ValidationError::expired().with_reason("token expired"));
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(self.leeway))
        {
            return Err(ValidationError::invalid().with_reason("token not valid yet (nbf)"));
        }
        if let Some(iss) = &claims.iss
            && !self.issuers.is_empty()
            && !self.issuers.contains(iss)
        {
            return Err(ValidationError::invalid().with_reason("issuer not accepted"));
        }
        // RFC 7519 §4.1.3: a token for an audience we do not identify with
        // is refused, also when no audience is configured.
        if let Some(aud) = &claims.aud
            && !aud.any(&self.audiences)
        {
            return Err(ValidationError::invalid().with_reason("audience not accepted"));
        }
        Ok(exp)
    }
}
