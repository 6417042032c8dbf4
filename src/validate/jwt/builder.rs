//! Configuring a [`JwtValidator`].

use std::{fmt, marker::PhantomData, sync::Arc, time::Duration};

use jsonwebtoken::{Algorithm, AlgorithmFamily};
use serde::de::DeserializeOwned;

#[cfg(feature = "jwks")]
use super::jwks::Jwks;
use super::{
    claims::Policy,
    key::{JwtKey, KeySet},
    validator::{Inner, JwtValidator, Keys},
};
use crate::{ConfigError, revoke::Revocations};

impl<T: DeserializeOwned + Send + Sync + 'static> JwtValidator<T> {
    /// Starts building a validator.
    pub fn builder() -> JwtValidatorBuilder<T> {
        JwtValidatorBuilder {
            algorithms: Vec::new(),
            keys: Vec::new(),
            #[cfg(feature = "jwks")]
            jwks: None,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: Duration::from_secs(30),
            require_nbf: false,
            revocations: None,
            _claims: PhantomData,
        }
    }
}

/// Builds a [`JwtValidator`].
#[must_use]
pub struct JwtValidatorBuilder<T> {
    algorithms: Vec<Algorithm>,
    keys: Vec<JwtKey>,
    #[cfg(feature = "jwks")]
    jwks: Option<Jwks>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    require_nbf: bool,
    revocations: Option<Revocations>,
    _claims: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for JwtValidatorBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidatorBuilder")
            .field("algorithms", &self.algorithms)
            .field("keys", &self.keys)
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .field("require_nbf", &self.require_nbf)
            .field("revocations", &self.revocations.is_some())
            .finish_non_exhaustive()
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> JwtValidatorBuilder<T> {
    /// Accepts tokens signed with `alg`. Call once per algorithm; at least
    /// one is required.
    pub fn algorithm(mut self, alg: Algorithm) -> Self {
        if !self.algorithms.contains(&alg) {
            self.algorithms.push(alg);
        }
        self
    }

    /// Accepts tokens signed with any of `algs`.
    pub fn algorithms(self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        algs.into_iter().fold(self, Self::algorithm)
    }

    /// Adds a verification key.
    pub fn key(mut self, key: JwtKey) -> Self {
        self.keys.push(key);
        self
    }

    /// Adds verification keys (e.g. from [`JwtKey::from_jwks`]).
    pub fn keys(mut self, keys: impl IntoIterator<Item = JwtKey>) -> Self {
        self.keys.extend(keys);
        self
    }

    /// Takes the keys from a JWKS endpoint, fetched and refreshed in the
    /// background (feature `jwks`), instead of static keys.
    #[cfg(feature = "jwks")]
    pub fn jwks(mut self, jwks: Jwks) -> Self {
        self.jwks = Some(jwks);
        self
    }

    /// Requires `iss` to be `issuer` (call again to accept several).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Requires `aud` to contain `audience` (call again to accept several).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Clock skew tolerated on `exp` and `nbf` (default 30 seconds, rounded
    /// up to whole seconds).
    ///
    /// With [`revocations`](Self::revocations), the list holds every
    /// revocation with a known end this much longer (it raises its
    /// [leeway](crate::revoke::RevocationsBuilder::leeway) when the
    /// validator is built), so a revoked token is refused for as long as
    /// this validator would accept it; the leeway must be at most the
    /// list's [`max_lifetime`](crate::revoke::RevocationsBuilder::max_lifetime).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Requires an `nbf` claim (it is checked whenever present).
    pub fn require_nbf(mut self, require: bool) -> Self {
        self.require_nbf = require;
        self
    }

    /// Honours `revocations`: a verified token is refused when the list
    /// revokes the token itself (by its digest, whatever carrier it came
    /// in), its `jti` or `sid`, or its `sub` with an `iat` at or before the
    /// subject's cutoff (a token without `iat` counts as issued before).
    /// While the list does not answer (not caught up with its shared store
    /// yet, or stale past its bound and refusing: see
    /// [`SyncState`](crate::revoke::SyncState)), verified tokens are
    /// answered [`unavailable`](crate::ValidationError::unavailable).
    ///
    /// # Security
    ///
    /// A revocation is held at most the list's
    /// [`max_lifetime`](crate::revoke::RevocationsBuilder::max_lifetime), so
    /// a token whose `exp` plus the leeway is further away than that is
    /// refused ([`invalid`](crate::ValidationError::invalid)): it could
    /// outlive its revocation. A revocation with a known end lasts the
    /// leeway past it (SECURITY.md V5).
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::revoke::Revocations;
    /// use portcullis::validate::jwt::{Algorithm, JwtKey, JwtValidator};
    ///
    /// let revocations = Revocations::new();
    /// let validator = JwtValidator::<serde_json::Value>::builder()
    ///     .algorithm(Algorithm::HS256)
    ///     .key(JwtKey::secret(b"a-secret-of-at-least-thirty-two-bytes!!"))
    ///     .revocations(&revocations)
    ///     .build()?;
    /// # let _ = validator;
    /// # Ok::<(), portcullis::ConfigError>(())
    /// ```
    pub fn revocations(mut self, revocations: &Revocations) -> Self {
        self.revocations = Some(revocations.clone());
        self
    }

    /// Builds the validator.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::OutOfRange`] (`algorithms`) when no algorithm is
    ///   configured, or HMAC and public-key algorithms are mixed;
    /// - [`ConfigError::OutOfRange`] (`keys`) when there is no key, or a key
    ///   fits none of the algorithms;
    /// - [`ConfigError::InvalidKey`] when an HMAC secret is shorter than the
    ///   hash output of an HMAC algorithm it would verify;
    /// - [`ConfigError::OutOfRange`] (`leeway`) when the leeway is longer
    ///   than the [`revocations`](Self::revocations) list's `max_lifetime`.
    pub fn build(self) -> Result<JwtValidator<T>, ConfigError> {
        if self.algorithms.is_empty() {
            return Err(ConfigError::out_of_range(
                "algorithms",
                "configure at least one accepted algorithm",
            ));
        }
        let hmac = self
            .algorithms
            .iter()
            .filter(|a| a.family() == AlgorithmFamily::Hmac)
            .count();
        if hmac != 0 && hmac != self.algorithms.len() {
            return Err(ConfigError::out_of_range(
                "algorithms",
                "HMAC and public-key algorithms cannot be accepted by one validator",
            ));
        }
        for key in &self.keys {
            if !self.algorithms.iter().any(|&alg| key.fits(alg)) {
                return Err(ConfigError::out_of_range(
                    "keys",
                    format!(
                        "a {:?} key fits none of the accepted algorithms",
                        key.family()
                    ),
                ));
            }
            if let Some(len) = key.secret_len {
                for &alg in &self.algorithms {
                    let min = match alg {
                        Algorithm::HS256 => 32,
                        Algorithm::HS384 => 48,
                        Algorithm::HS512 => 64,
                        _ => continue,
                    };
                    if len < min {
                        return Err(ConfigError::InvalidKey(
                            format!("{alg:?} needs a secret of at least {min} bytes, got {len}")
                                .into(),
                        ));
                    }
                }
            }
        }
        let leeway = self
            .leeway
            .as_secs()
            .saturating_add(u64::from(self.leeway.subsec_nanos() > 0));
        let policy = Policy {
            algorithms: self.algorithms,
            issuers: self.issuers,
            audiences: self.audiences,
            leeway,
            require_nbf: self.require_nbf,
        };
        #[cfg(feature = "jwks")]
        if let Some(jwks) = self.jwks {
            let mut policy = policy;
            if let (true, Some(issuer)) = (policy.issuers.is_empty(), jwks.issuer()) {
                // Keys discovered from an issuer verify only its tokens.
                policy.issuers.push(issuer.to_owned());
            }
            if !self.keys.is_empty() {
                return Err(ConfigError::out_of_range(
                    "keys",
                    "configure static keys or a JWKS URL, not both",
                ));
            }
            if hmac != 0 {
                return Err(ConfigError::out_of_range(
                    "algorithms",
                    "keys from a JWKS URL are public keys: HMAC algorithms cannot be used",
                ));
            }
            return finish(policy, Keys::Remote(jwks), self.revocations);
        }
        if self.keys.is_empty() {
            return Err(ConfigError::out_of_range(
                "keys",
                "configure at least one key",
            ));
        }
        finish(
            policy,
            Keys::Static(KeySet::new(self.keys)),
            self.revocations,
        )
    }
}

/// The validator, once everything else checked out: the revocation list it
/// honours holds revocations its leeway longer (V5).
fn finish<T>(
    policy: Policy,
    keys: Keys,
    revocations: Option<Revocations>,
) -> Result<JwtValidator<T>, ConfigError> {
    if let Some(revocations) = &revocations {
        revocations
            .inner
            .accept_leeway(Duration::from_secs(policy.leeway))?;
    }
    Ok(JwtValidator {
        inner: Arc::new(Inner {
            policy,
            keys,
            revocations,
        }),
        _claims: PhantomData,
    })
}
