//! JSON Web Tokens (feature `jwt`).
//!
//! [`JwtValidator`] checks a JWT's signature (with [`jsonwebtoken`]'s
//! cryptography) and its registered claims, and yields your typed claims,
//! wrapped in [`Claims`], as the identity. The payload is parsed only after
//! the signature has been verified. Keys come from secrets, PEM, a JWKS
//! document ([`JwtKey`]) or, with feature `jwks`, a JWKS URL (`Jwks`).
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//! use jsonwebtoken::{EncodingKey, Header, encode};
//! use portcullis::{Credential, CredentialSource, Validator, ValidationErrorKind, scope::Scopes};
//! use portcullis::validate::jwt::{Algorithm, JwtKey, JwtValidator};
//! use serde::Deserialize;
//!
//! #[derive(Debug, Clone, Deserialize)]
//! struct MyClaims {
//!     sub: String,
//! }
//!
//! let secret = b"a-secret-of-at-least-thirty-two-bytes!!";
//! let validator = JwtValidator::<MyClaims>::builder()
//!     .algorithm(Algorithm::HS256)
//!     .key(JwtKey::secret(secret))
//!     .issuer("https://auth.example.com")
//!     .audience("api")
//!     .build()?;
//!
//! let exp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
//! let token = encode(
//!     &Header::new(jsonwebtoken::Algorithm::HS256),
//!     &serde_json::json!({
//!         "sub": "alice", "exp": exp, "scope": "read write",
//!         "iss": "https://auth.example.com", "aud": "api",
//!     }),
//!     &EncodingKey::from_secret(secret),
//! ).unwrap();
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let claims = validator.validate(&Credential::new(token, CredentialSource::Bearer)).await.unwrap();
//! assert_eq!(claims.sub, "alice");
//! assert!(claims.has_scope("write"));
//!
//! let forged = validator.validate(&Credential::new("eyJhbGciOiJub25lIn0.e30.", CredentialSource::Bearer)).await;
//! assert_eq!(forged.unwrap_err().kind(), ValidationErrorKind::Invalid);
//! # });
//! # Ok::<(), portcullis::ConfigError>(())
//! ```
//!
//! # Security
//!
//! - The accepted algorithms are configured, never read from the token: a
//!   token whose `alg` is not in the list (including `none`) is invalid.
//!   HMAC and public-key algorithms cannot be mixed in one validator, and a
//!   key is only ever used with an algorithm of its own family, so an
//!   attacker cannot make the validator check an HMAC over a public key
//!   (algorithm confusion).
//! - HMAC secrets must be at least as long as the hash output (RFC 7518
//!   §3.2): 32 bytes for HS256, 48 for HS384, 64 for HS512.
//! - `exp` is required. When an issuer or audience is configured, the claim
//!   is required too. A token with an `aud` claim is refused when no
//!   audience is configured (RFC 7519 §4.1.3). `nbf` is checked when present
//!   (and required with [`require_nbf`](JwtValidatorBuilder::require_nbf)).
//!   `exp` and `nbf` allow a configurable leeway (default 30 seconds) and
//!   are compared with the system clock, as token issuers write them.
//! - A header with `crit` extensions is refused (none are understood).
//! - A token with a `kid` is verified only by the key with that `kid`; a
//!   token without one only when exactly one key fits its algorithm.
//! - Errors: an expired token is [`expired`](ValidationError::expired) (the
//!   client should refresh); anything else is
//!   [`invalid`](ValidationError::invalid) with a fixed reason for logs that
//!   never contains the token or claim values.

use std::{
    fmt,
    marker::PhantomData,
    ops::Deref,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{
    AlgorithmFamily, DecodingKey,
    errors::ErrorKind,
    jwk::{Jwk, JwkSet, PublicKeyUse},
};
use serde::{Deserialize, de::DeserializeOwned};
use tokio::time::Instant;

use super::cache::ExpiresAt;
#[cfg(feature = "jwks")]
pub use super::jwks::{Jwks, JwksBuilder, JwksError};
use crate::{ConfigError, Credential, ValidationError, Validator, scope::Scopes};

/// A key that verifies JWT signatures, optionally named by a key id (`kid`).
///
/// # Example
///
/// ```
/// use portcullis::validate::jwt::JwtKey;
///
/// let hmac = JwtKey::secret(b"a-secret-of-at-least-thirty-two-bytes!!").with_kid("2024-01");
/// assert_eq!(hmac.kid(), Some("2024-01"));
/// assert!(JwtKey::rsa_pem(b"not a pem").is_err());
/// ```
#[derive(Clone)]
pub struct JwtKey {
    kid: Option<Box<str>>,
    key: DecodingKey,
    family: AlgorithmFamily,
    /// The only algorithm this key may be used with, when the JWK says so.
    alg: Option<Algorithm>,
    /// Length of an HMAC secret, checked against the algorithms at build.
    secret_len: Option<usize>,
}

impl JwtKey {
    /// An HMAC secret (HS256/384/512).
    pub fn secret(secret: impl AsRef<[u8]>) -> Self {
        let secret = secret.as_ref();
        Self {
            kid: None,
            key: DecodingKey::from_secret(secret),
            family: AlgorithmFamily::Hmac,
            alg: None,
            secret_len: Some(secret.len()),
        }
    }

    /// An RSA public key in PEM (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC
    /// KEY`), for RS256/384/512 and PS256/384/512.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the PEM does not hold an RSA key.
    pub fn rsa_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|_| bad_pem("an RSA public key"))?;
        Ok(Self::public(key, AlgorithmFamily::Rsa))
    }

    /// An elliptic-curve public key in PEM (`BEGIN PUBLIC KEY`), for ES256
    /// (P-256) and ES384 (P-384).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the PEM does not hold an EC key.
    pub fn ec_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let key = DecodingKey::from_ec_pem(pem).map_err(|_| bad_pem("an EC public key"))?;
        Ok(Self::public(key, AlgorithmFamily::Ec))
    }

    /// An Ed25519 public key in PEM (`BEGIN PUBLIC KEY`), for EdDSA.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the PEM does not hold an Ed25519 key.
    pub fn ed_pem(pem: &[u8]) -> Result<Self, ConfigError> {
        let key = DecodingKey::from_ed_pem(pem).map_err(|_| bad_pem("an Ed25519 public key"))?;
        Ok(Self::public(key, AlgorithmFamily::Ed))
    }

    /// A key from a JSON Web Key. Its `kid` and `alg`, when present, are
    /// kept: the key then verifies only tokens with that `alg`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the JWK is meant for encryption, has
    /// an `alg` that is not a signature algorithm, or its parameters are not
    /// a usable key.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, ConfigError> {
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            return Err(ConfigError::InvalidKey(
                "the JWK is an encryption key (use=enc)".into(),
            ));
        }
        let alg = match &jwk.common.key_algorithm {
            None => None,
            Some(alg) => Some(alg.to_string().parse::<Algorithm>().map_err(|_| {
                ConfigError::InvalidKey(
                    format!("the JWK's alg {alg:?} is not a signature algorithm").into(),
                )
            })?),
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|_| {
            ConfigError::InvalidKey("the JWK's parameters are not a usable key".into())
        })?;
        let family = key.family();
        if let Some(alg) = alg
            && alg.family() != family
        {
            return Err(ConfigError::InvalidKey(
                format!("the JWK's alg {alg:?} does not fit its key type").into(),
            ));
        }
        let secret_len = match family {
            AlgorithmFamily::Hmac => key.try_get_as_bytes().ok().map(<[u8]>::len),
            _ => None,
        };
        Ok(Self {
            kid: jwk.common.key_id.as_deref().map(Into::into),
            key,
            family,
            alg,
            secret_len,
        })
    }

    /// Every usable signature key of a JWKS document (`{"keys": [...]}`).
    /// Encryption keys and keys of unknown types are skipped.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the document is not a JWKS.
    pub fn from_jwks(json: &str) -> Result<Vec<Self>, ConfigError> {
        let set: JwkSet = serde_json::from_str(json)
            .map_err(|_| ConfigError::InvalidKey("the document is not a JWK set".into()))?;
        Ok(Self::from_jwk_set(&set))
    }

    pub(crate) fn from_jwk_set(set: &JwkSet) -> Vec<Self> {
        set.keys
            .iter()
            .filter_map(|jwk| Self::from_jwk(jwk).ok())
            .collect()
    }

    /// Names the key: it then verifies only tokens whose header has this
    /// `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<Box<str>>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    fn public(key: DecodingKey, family: AlgorithmFamily) -> Self {
        Self {
            kid: None,
            key,
            family,
            alg: None,
            secret_len: None,
        }
    }

    #[cfg(feature = "jwks")]
    pub(crate) fn family(&self) -> AlgorithmFamily {
        self.family
    }

    fn fits(&self, alg: Algorithm) -> bool {
        self.family == alg.family() && self.alg.is_none_or(|a| a == alg)
    }
}

fn bad_pem(what: &str) -> ConfigError {
    ConfigError::InvalidKey(format!("the PEM does not hold {what}").into())
}

impl fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKey")
            .field("kid", &self.kid)
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Keys to choose from by a token's `kid` and `alg`.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeySet {
    keys: Vec<JwtKey>,
}

pub(crate) enum Selected<'a> {
    Key(&'a JwtKey),
    /// The token names a `kid` no key has.
    UnknownKid,
    /// No key fits the token (no `kid`, and none or several keys fit).
    NoKey,
}

impl KeySet {
    pub(crate) fn new(keys: Vec<JwtKey>) -> Self {
        Self { keys }
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selected<'_> {
        match kid {
            Some(kid) => {
                let mut named = self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid));
                match named.find(|k| k.fits(alg)) {
                    Some(key) => Selected::Key(key),
                    None => Selected::UnknownKid,
                }
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => Selected::Key(key),
                    _ => Selected::NoKey,
                }
            }
        }
    }
}

/// The verified claims of a JWT: your claims type `T`, plus the registered
/// claims portcullis needs (`exp`, `scope`/`scp`).
///
/// Derefs to `T`. Cheap to clone (`T` is shared). Implements [`Scopes`]
/// (from a space-separated `scope` claim, RFC 8693 §4.2, or a `scp` array
/// or string) and [`ExpiresAt`] (from `exp`).
pub struct Claims<T> {
    claims: Arc<T>,
    exp: u64,
    expires_at: Instant,
    scope: Option<Box<str>>,
    scp: Box<[Box<str>]>,
}

impl<T> Claims<T> {
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
            scope: self.scope.clone(),
            scp: self.scp.clone(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Claims<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("claims", &self.claims)
            .field("exp", &self.exp)
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

/// The JOSE header fields portcullis reads.
#[derive(Deserialize)]
struct JoseHeader {
    alg: Algorithm,
    #[serde(default)]
    kid: Option<String>,
    /// Extensions the verifier must understand (RFC 7515 §4.1.11): we
    /// understand none, so a token that has any is refused.
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// The registered claims checked and kept besides `T`.
#[derive(Deserialize)]
struct Registered {
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    scope: Option<Box<str>>,
    #[serde(default, deserialize_with = "scp")]
    scp: Box<[Box<str>]>,
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
struct Policy {
    algorithms: Vec<Algorithm>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    /// Seconds of clock skew tolerated on `exp` and `nbf`.
    leeway: u64,
    require_nbf: bool,
}

impl Policy {
    /// Checks the registered claims at `now` (seconds since the epoch), in
    /// the order jsonwebtoken does: presence, `exp`, `nbf`, `iss`, `aud`.
    fn check(&self, claims: &Registered, now: u64) -> Result<u64, ValidationError> {
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

/// Validates JWTs; the identity is the token's [`Claims<T>`](Claims).
///
/// Cheap to clone. See the [module docs](self) for an example and the
/// security rules.
///
/// # Errors
///
/// [`validate`](Validator::validate) answers
/// [`expired`](ValidationError::expired) for a token past `exp` (plus
/// leeway), [`unavailable`](ValidationError::unavailable) when its keys come
/// from a JWKS URL that could not be fetched and no key fits the token, and
/// [`invalid`](ValidationError::invalid) for everything else.
pub struct JwtValidator<T> {
    inner: Arc<Inner>,
    _claims: PhantomData<fn() -> T>,
}

struct Inner {
    policy: Policy,
    keys: Keys,
}

enum Keys {
    Static(KeySet),
    #[cfg(feature = "jwks")]
    Remote(Jwks),
}

impl<T> Clone for JwtValidator<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _claims: PhantomData,
        }
    }
}

impl<T> fmt::Debug for JwtValidator<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("JwtValidator");
        s.field("policy", &self.inner.policy);
        match &self.inner.keys {
            Keys::Static(keys) => s.field("keys", &keys.len()),
            #[cfg(feature = "jwks")]
            Keys::Remote(jwks) => s.field("jwks", jwks),
        };
        s.finish()
    }
}

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
            _claims: PhantomData,
        }
    }

    /// Verifies the signature of `message` (`header.payload`) with `key`,
    /// then checks and reads the claims.
    fn verify(
        &self,
        message: &str,
        payload: &str,
        signature: &str,
        key: &JwtKey,
        alg: Algorithm,
    ) -> Result<Claims<T>, ValidationError> {
        match jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key.key, alg) {
            Ok(true) => {}
            Ok(false) => return Err(ValidationError::invalid().with_reason("signature mismatch")),
            Err(e) => return Err(map_error(e.kind())),
        }
        // Only now, with the signature verified, is the payload parsed.
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| ValidationError::invalid().with_reason("malformed JWT"))?;
        let registered: Registered = serde_json::from_slice(&json).map_err(|_| {
            ValidationError::invalid().with_reason("a registered claim has the wrong type")
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let exp = self.inner.policy.check(&registered, now)?;
        let claims: T = serde_json::from_slice(&json).map_err(|_| {
            ValidationError::invalid().with_reason("claims do not match the expected type")
        })?;
        Ok(Claims {
            claims: Arc::new(claims),
            exp,
            expires_at: Instant::now() + Duration::from_secs(exp.saturating_sub(now)),
            scope: registered.scope,
            scp: registered.scp,
        })
    }

    async fn check(&self, token: &str) -> Result<Claims<T>, ValidationError> {
        let malformed = || ValidationError::invalid().with_reason("malformed JWT");
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let message = &token[..header.len() + 1 + payload.len()];
        let header: JoseHeader = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| ValidationError::invalid().with_reason("malformed JWT header"))?;
        if header.crit.is_some() {
            return Err(ValidationError::invalid().with_reason("unsupported critical header"));
        }
        let alg = header.alg;
        if !self.inner.policy.algorithms.contains(&alg) {
            return Err(ValidationError::invalid().with_reason("algorithm not accepted"));
        }
        let kid = header.kid.as_deref();
        let select = |keys: &KeySet| match keys.select(kid, alg) {
            Selected::Key(key) => self.verify(message, payload, signature, key, alg),
            Selected::UnknownKid => Err(ValidationError::invalid().with_reason("unknown kid")),
            Selected::NoKey => Err(ValidationError::invalid().with_reason("no key fits the token")),
        };
        match &self.inner.keys {
            Keys::Static(keys) => select(keys),
            #[cfg(feature = "jwks")]
            Keys::Remote(jwks) => select(&*jwks.keys_for(kid, alg).await?),
        }
    }
}

fn map_error(kind: &ErrorKind) -> ValidationError {
    let reason = match kind {
        ErrorKind::InvalidSignature => "signature mismatch",
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidKeyFormat
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => "algorithm does not fit the key",
        ErrorKind::Base64(_) | ErrorKind::Utf8(_) | ErrorKind::InvalidToken => "malformed JWT",
        _ => "token rejected",
    };
    ValidationError::invalid().with_reason(reason)
}

impl<T: DeserializeOwned + Send + Sync + 'static> Validator for JwtValidator<T> {
    type Identity = Claims<T>;

    fn validate(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<Claims<T>, ValidationError>> + Send {
        self.check(credential.secret())
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
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Requires an `nbf` claim (it is checked whenever present).
    pub fn require_nbf(mut self, require: bool) -> Self {
        self.require_nbf = require;
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
    ///   hash output of an HMAC algorithm it would verify.
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
                        key.family
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
        let policy = Policy {
            algorithms: self.algorithms,
            issuers: self.issuers,
            audiences: self.audiences,
            leeway: self.leeway.as_secs() + u64::from(self.leeway.subsec_nanos() > 0),
            require_nbf: self.require_nbf,
        };
        #[cfg(feature = "jwks")]
        if let Some(jwks) = self.jwks {
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
            return Ok(JwtValidator {
                inner: Arc::new(Inner {
                    policy,
                    keys: Keys::Remote(jwks),
                }),
                _claims: PhantomData,
            });
        }
        if self.keys.is_empty() {
            return Err(ConfigError::out_of_range(
                "keys",
                "configure at least one key",
            ));
        }
        Ok(JwtValidator {
            inner: Arc::new(Inner {
                policy,
                keys: Keys::Static(KeySet::new(self.keys)),
            }),
            _claims: PhantomData,
        })
    }
}
