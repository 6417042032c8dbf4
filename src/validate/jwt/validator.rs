//! The JWT validator: signature first, then the claims.

use std::{
    fmt,
    marker::PhantomData,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, errors::ErrorKind};
use serde::{Deserialize, de::DeserializeOwned};

#[cfg(feature = "jwks")]
use super::jwks::Jwks;
use super::{
    claims::{Claims, Policy, Registered},
    key::{JwtKey, KeySet, Selected},
};
use crate::{
    Credential, ValidationError, Validator,
    credential::KeyDigest,
    revoke::{Facts, Revocations},
};

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

/// Validates JWTs; the identity is the token's [`Claims<T>`](Claims).
///
/// Cheap to clone. See the [module docs](crate::validate::jwt) for an example and the
/// security rules.
///
/// # Errors
///
/// [`validate`](Validator::validate) answers
/// [`expired`](ValidationError::expired) for a token past `exp` (plus
/// leeway), [`unavailable`](ValidationError::unavailable) when its keys come
/// from a JWKS URL that could not be fetched and no key fits the token (or
/// the revocation list it honours is out of sync),
/// [`revoked`](ValidationError::revoked) for a token the list revokes, and
/// [`invalid`](ValidationError::invalid) for everything else.
pub struct JwtValidator<T> {
    pub(super) inner: Arc<Inner>,
    pub(super) _claims: PhantomData<fn() -> T>,
}

pub(super) struct Inner {
    pub(super) policy: Policy,
    pub(super) keys: Keys,
    /// The revocation list the validator honours, if any.
    pub(super) revocations: Option<Revocations>,
}

pub(super) enum Keys {
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
        s.field("revocations", &self.inner.revocations.is_some());
        match &self.inner.keys {
            Keys::Static(keys) => s.field("keys", &keys.len()),
            #[cfg(feature = "jwks")]
            Keys::Remote(jwks) => s.field("jwks", jwks),
        };
        s.finish()
    }
}

impl<T: DeserializeOwned + Send + Sync + 'static> JwtValidator<T> {
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
            .unwrap_or_default();
        let exp = self.inner.policy.check(&registered, now.as_secs())?;
        if let Some(revocations) = &self.inner.revocations
            && Duration::from_secs(exp.saturating_add(self.inner.policy.leeway)).saturating_sub(now)
                > revocations.max_lifetime()
        {
            return Err(ValidationError::invalid()
                .with_reason("token outlives what the revocation list remembers (max_lifetime)"));
        }
        let claims: T = serde_json::from_slice(&json).map_err(|_| {
            ValidationError::invalid().with_reason("claims do not match the expected type")
        })?;
        Ok(Claims::verified(claims, registered, exp, now))
    }

    /// Splits `token` and reads its header: what choosing a key needs.
    fn split<'a>(&self, token: &'a str) -> Result<Split<'a>, ValidationError> {
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
        if !self.inner.policy.algorithms.contains(&header.alg) {
            return Err(ValidationError::invalid().with_reason("algorithm not accepted"));
        }
        Ok(Split {
            token,
            message,
            payload,
            signature,
            alg: header.alg,
            kid: header.kid,
        })
    }

    /// Verifies a split token with `keys`, then asks the revocation list.
    fn check_with(&self, split: &Split<'_>, keys: &KeySet) -> Result<Claims<T>, ValidationError> {
        let claims = match keys.select(split.kid.as_deref(), split.alg) {
            Selected::Key(key) => self.verify(
                split.message,
                split.payload,
                split.signature,
                key,
                split.alg,
            ),
            Selected::UnknownKid => Err(ValidationError::invalid().with_reason("unknown kid")),
            Selected::NoKey => Err(ValidationError::invalid().with_reason("no key fits the token")),
        }?;
        if let Some(revocations) = &self.inner.revocations {
            revocations
                .inner
                .check(|| KeyDigest::of(split.token), &Facts::of(&claims))?;
        }
        Ok(claims)
    }

    async fn check(&self, token: &str) -> Result<Claims<T>, ValidationError> {
        let split = self.split(token)?;
        match &self.inner.keys {
            Keys::Static(keys) => self.check_with(&split, keys),
            #[cfg(feature = "jwks")]
            Keys::Remote(jwks) => {
                let keys = jwks.keys_for(split.kid.as_deref(), split.alg).await?;
                self.check_with(&split, &keys)
            }
        }
    }

    /// [`check`](Self::check) when no key has to be fetched.
    fn check_now(&self, token: &str) -> Option<Result<Claims<T>, ValidationError>> {
        let split = match self.split(token) {
            Ok(split) => split,
            Err(error) => return Some(Err(error)),
        };
        match &self.inner.keys {
            Keys::Static(keys) => Some(self.check_with(&split, keys)),
            #[cfg(feature = "jwks")]
            Keys::Remote(jwks) => {
                let keys = jwks.keys_now(split.kid.as_deref(), split.alg)?;
                Some(self.check_with(&split, &keys))
            }
        }
    }
}

/// A token split into its parts, with what its header says.
struct Split<'a> {
    token: &'a str,
    /// `header.payload`, what the signature signs.
    message: &'a str,
    payload: &'a str,
    signature: &'a str,
    alg: Algorithm,
    kid: Option<String>,
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

    /// Answers at once unless the keys come from a JWKS URL that has no key
    /// for the token yet (a refetch is then up to `validate`).
    fn validate_now(&self, credential: &Credential) -> Option<Result<Claims<T>, ValidationError>> {
        self.check_now(credential.secret())
    }
}
