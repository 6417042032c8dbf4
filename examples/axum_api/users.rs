//! Who the callers are: the identity type and the validators that
//! recognise API keys, session tokens, demo tokens and JWTs.

use std::{collections::HashMap, time::SystemTime};

use portcullis::{
    Credential, ValidationError, Validator,
    revoke::Revocable,
    scope::Scopes,
    validate::{ApiKeyIdentity, ApiKeys, CachingValidator, Chain, ExpiresAt},
};
#[cfg(feature = "jwt")]
use serde::Deserialize;
use tokio::time::Instant;

use crate::{
    sessions::{SESSION_PREFIX, Sessions},
    settings::Config,
};

/// The prefix of this example's API keys; the `Chain` routes on it.
pub(crate) const API_KEY_PREFIX: &str = "demo_";
/// Characters an API key must have after its prefix (at least 192 bits of
/// base64url).
pub(crate) const API_KEY_MIN_RANDOM: usize = 32;
/// How a user makes a key of their own (never one the server printed).
pub(crate) const API_KEY_HOWTO: &str =
    "PORTCULLIS_API_KEY=demo_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')";

#[cfg(feature = "jwt")]
pub(crate) const JWT_ISSUER: &str = "portcullis-demo";
#[cfg(feature = "jwt")]
pub(crate) const JWT_AUDIENCE: &str = "portcullis-api";

/// The caller, whichever validator recognised it.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) subject: String,
    pub(crate) scopes: Vec<String>,
    /// When the credential expires (a session, a JWT): open streams end
    /// then.
    pub(crate) expires_at: Option<Instant>,
    /// When the credential was issued, compared with a "sign out
    /// everywhere" cutoff.
    pub(crate) issued_at: Option<SystemTime>,
}

impl ExpiresAt for User {
    fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }
}

impl Revocable for User {
    fn subject(&self) -> Option<&str> {
        Some(&self.subject)
    }

    fn issued_at(&self) -> Option<SystemTime> {
        self.issued_at
    }
}

impl Scopes for User {
    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

impl User {
    pub(crate) fn from_api_key(key: ApiKeyIdentity) -> Self {
        Self {
            subject: key.id().to_owned(),
            scopes: key.scopes().map(str::to_owned).collect(),
            expires_at: key.expiry(),
            issued_at: key.issued_at(),
        }
    }
}

/// A fixed table of demo tokens. A real service would ask its database or
/// identity provider here.
pub(crate) struct DemoTokens(HashMap<&'static str, (&'static str, &'static [&'static str])>);

impl DemoTokens {
    pub(crate) fn new() -> Self {
        Self(HashMap::from([
            ("alice-token", ("alice", &["admin"][..])),
            ("bob-token", ("bob", &[][..])),
        ]))
    }
}

impl Validator for DemoTokens {
    type Identity = User;

    async fn validate(&self, credential: &Credential) -> Result<User, ValidationError> {
        match self.0.get(credential.secret()) {
            Some((subject, scopes)) => Ok(User {
                subject: (*subject).to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
                expires_at: None,
                issued_at: None,
            }),
            None => Err(ValidationError::invalid().with_reason("unknown token")),
        }
    }
}

/// The claims this API reads from a JWT (`iss`, `aud`, `exp` and `scope` are
/// checked and read by the validator).
#[cfg(feature = "jwt")]
#[derive(Debug, Deserialize)]
pub(crate) struct TokenClaims {
    pub(crate) sub: String,
}

#[cfg(feature = "jwt")]
impl User {
    pub(crate) fn from_jwt(claims: portcullis::validate::Claims<TokenClaims>) -> Self {
        Self {
            subject: claims.sub.clone(),
            scopes: claims.scopes().map(str::to_owned).collect(),
            expires_at: claims.expires_at(),
            issued_at: Revocable::issued_at(&claims),
        }
    }
}

/// The validators, tried as `Chain` says: `demo_` keys go to the API-key
/// table only, `sess_` tokens to the sessions only; anything else is tried
/// as a demo token, then as a JWT. A cache in front answers repeated
/// credentials and checks every answer against the revocation list.
pub(crate) fn validator(
    config: &Config,
    sessions: &Sessions,
) -> Result<CachingValidator<Chain<User>>, String> {
    let keys = ApiKeys::builder(API_KEY_PREFIX)
        .key(config.api_key, ApiKeyIdentity::new("ci-bot"))
        .revocations(sessions.revocations())
        .build()
        .map_err(|e| format!("cannot build the API-key validator: {e}"))?;
    let chain = Chain::new()
        .prefixed_map(API_KEY_PREFIX, keys, User::from_api_key)
        .prefixed(SESSION_PREFIX, sessions.clone())
        .then(DemoTokens::new());
    #[cfg(feature = "jwt")]
    let chain = match &config.jwt {
        Some(jwt) => chain.then_map(jwt.clone(), User::from_jwt),
        None => chain,
    };
    CachingValidator::builder(chain)
        .revocations(sessions.revocations())
        .build()
        .map_err(|e| format!("cannot build the validation cache: {e}"))
}
