//! [`AccessTokens`]: the short-lived JWTs a session hands out.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Serialize, de::DeserializeOwned};
use zeroize::Zeroizing;

use crate::{
    ConfigError,
    credential::{MIN_KEY_BYTES, check_key_len, random_bytes},
    validate::jwt::{JwtKey, JwtValidatorBuilder},
};

/// Signs the access tokens of [`Sessions`](super::Sessions): short-lived
/// JWTs carrying `sub`, `sid` (the session), `jti` (the token), `iat`,
/// `exp`, `iss` and `aud`, signed with HS256, ES256 or EdDSA.
///
/// [`validator`](Self::validator) gives the matching
/// [`JwtValidator`](crate::validate::JwtValidator) builder (algorithm,
/// key, issuer and audience set); [`Sessions::validator`](super::Sessions::validator)
/// adds the revocation list, so that access tokens of a revoked session
/// are refused.
///
/// Defaults: a lifetime of 15 minutes, issuer and audience `portcullis`.
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use portcullis::session::AccessTokens;
///
/// let tokens = AccessTokens::hs256(b"a-secret-of-at-least-thirty-two-bytes!!")?
///     .issuer("https://memos.example")
///     .audience("memos")
///     .lifetime(Duration::from_secs(600));
/// assert_eq!(tokens.ttl(), Duration::from_secs(600));
/// assert!(AccessTokens::hs256(b"too short").is_err());
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct AccessTokens {
    algorithm: Algorithm,
    signing: EncodingKey,
    verifying: JwtKey,
    kid: Option<String>,
    issuer: String,
    audience: String,
    lifetime: Duration,
}

/// The claims of an access token.
#[derive(Serialize)]
struct AccessClaims<'a> {
    sub: &'a str,
    sid: &'a str,
    jti: &'a str,
    iat: u64,
    exp: u64,
    iss: &'a str,
    aud: &'a str,
}

/// An access token just signed.
pub(crate) struct Signed {
    pub(crate) token: Zeroizing<String>,
    /// Seconds until `exp`.
    pub(crate) expires_in: u64,
}

impl AccessTokens {
    /// HS256 with `secret` (at least 32 bytes, the same on every replica
    /// that validates the tokens).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] for a secret shorter than 32 bytes (the
    /// error gives the length, never the secret).
    pub fn hs256(secret: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let secret = secret.as_ref();
        check_key_len("an HS256 secret", secret)?;
        Ok(Self::with_keys(
            Algorithm::HS256,
            EncodingKey::from_secret(secret),
            JwtKey::secret(secret),
        ))
    }

    /// HS256 with a random secret: tokens are valid only in this process,
    /// and only until it exits. For one replica and demos.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the random source fails.
    pub fn generate() -> Result<Self, ConfigError> {
        Self::hs256(random_bytes::<MIN_KEY_BYTES>()?)
    }

    /// ES256 (P-256) with a private key in PEM (PKCS#8, `BEGIN PRIVATE
    /// KEY`) and its public key in PEM (`BEGIN PUBLIC KEY`), which
    /// validators need.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when a PEM does not hold such a key, or
    /// the public key does not verify what the private key signs.
    pub fn es256(private_pem: &[u8], public_pem: &[u8]) -> Result<Self, ConfigError> {
        let signing = EncodingKey::from_ec_pem(private_pem)
            .map_err(|_| bad_pem("a P-256 private key (PKCS#8)"))?;
        let decoding =
            DecodingKey::from_ec_pem(public_pem).map_err(|_| bad_pem("a P-256 public key"))?;
        Self::with_keys(Algorithm::ES256, signing, JwtKey::ec_pem(public_pem)?).checked(&decoding)
    }

    /// EdDSA (Ed25519) with a private key in PEM (PKCS#8, `BEGIN PRIVATE
    /// KEY`) and its public key in PEM (`BEGIN PUBLIC KEY`).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when a PEM does not hold such a key, or
    /// the public key does not verify what the private key signs.
    pub fn eddsa(private_pem: &[u8], public_pem: &[u8]) -> Result<Self, ConfigError> {
        let signing = EncodingKey::from_ed_pem(private_pem)
            .map_err(|_| bad_pem("an Ed25519 private key (PKCS#8)"))?;
        let decoding =
            DecodingKey::from_ed_pem(public_pem).map_err(|_| bad_pem("an Ed25519 public key"))?;
        Self::with_keys(Algorithm::EdDSA, signing, JwtKey::ed_pem(public_pem)?).checked(&decoding)
    }

    fn with_keys(algorithm: Algorithm, signing: EncodingKey, verifying: JwtKey) -> Self {
        Self {
            algorithm,
            signing,
            verifying,
            kid: None,
            issuer: "portcullis".to_owned(),
            audience: "portcullis".to_owned(),
            lifetime: Duration::from_secs(15 * 60),
        }
    }

    /// Refuses a key pair whose public half does not verify the private
    /// half's signature.
    fn checked(self, decoding: &DecodingKey) -> Result<Self, ConfigError> {
        let probe = b"portcullis key pair check";
        let signature = jsonwebtoken::crypto::sign(probe, &self.signing, self.algorithm)
            .map_err(|_| ConfigError::InvalidKey("the private key cannot sign".into()))?;
        match jsonwebtoken::crypto::verify(&signature, probe, decoding, self.algorithm) {
            Ok(true) => Ok(self),
            _ => Err(ConfigError::InvalidKey(
                "the public key does not belong to the private key".into(),
            )),
        }
    }

    /// The `iss` claim (default `portcullis`).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// The `aud` claim (default `portcullis`).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = audience.into();
        self
    }

    /// How long an access token lives (default 15 minutes; whole seconds,
    /// at least one). A token never outlives its session.
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.max(Duration::from_secs(1));
        self
    }

    /// Names the key (`kid` in the header, and on the validator's key), for
    /// rotating keys.
    pub fn kid(mut self, kid: impl Into<String>) -> Self {
        let kid = kid.into();
        self.verifying = self.verifying.with_kid(kid.clone());
        self.kid = Some(kid);
        self
    }

    /// How long an access token lives.
    pub fn ttl(&self) -> Duration {
        self.lifetime
    }

    /// A [`JwtValidator`](crate::validate::JwtValidator) builder that
    /// accepts these tokens: the algorithm, the verifying key, the issuer
    /// and the audience. Add the revocation list (or use
    /// [`Sessions::validator`](super::Sessions::validator), which does).
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::session::AccessTokens;
    /// use portcullis::validate::JwtValidator;
    ///
    /// let tokens = AccessTokens::generate()?;
    /// let validator: JwtValidator<serde_json::Value> = tokens.validator().build()?;
    /// # let _ = validator;
    /// # Ok::<(), portcullis::ConfigError>(())
    /// ```
    pub fn validator<T: DeserializeOwned + Send + Sync + 'static>(&self) -> JwtValidatorBuilder<T> {
        crate::validate::JwtValidator::<T>::builder()
            .algorithm(self.algorithm)
            .key(self.verifying.clone())
            .issuer(self.issuer.clone())
            .audience(self.audience.clone())
    }

    /// Signs an access token of `subject` in session `sid`, living at most
    /// `at_most`.
    pub(crate) fn sign(
        &self,
        subject: &str,
        sid: &str,
        at_most: Duration,
    ) -> Result<Signed, &'static str> {
        let jti = super::secret::new_id().map_err(|_| "the random source failed")?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let expires_in = self.lifetime.min(at_most).as_secs().max(1);
        let claims = AccessClaims {
            sub: subject,
            sid,
            jti: &jti,
            iat: now,
            exp: now.saturating_add(expires_in),
            iss: &self.issuer,
            aud: &self.audience,
        };
        let mut header = Header::new(self.algorithm);
        header.kid.clone_from(&self.kid);
        let token = jsonwebtoken::encode(&header, &claims, &self.signing)
            .map_err(|_| "the access token could not be signed")?;
        Ok(Signed {
            token: Zeroizing::new(token),
            expires_in,
        })
    }
}

impl fmt::Debug for AccessTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessTokens")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn bad_pem(what: &str) -> ConfigError {
    ConfigError::InvalidKey(format!("the PEM does not hold {what}").into())
}
