//! Verification keys and choosing one for a token.

use std::fmt;

use jsonwebtoken::{
    Algorithm, AlgorithmFamily, DecodingKey,
    jwk::{Jwk, JwkSet, PublicKeyUse},
};

use crate::ConfigError;

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
    pub(super) key: DecodingKey,
    family: AlgorithmFamily,
    /// The only algorithm this key may be used with, when the JWK says so.
    alg: Option<Algorithm>,
    /// Length of an HMAC secret, checked against the algorithms at build.
    pub(super) secret_len: Option<usize>,
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

    pub(super) fn from_jwk_set(set: &JwkSet) -> Vec<Self> {
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

    pub(super) fn family(&self) -> AlgorithmFamily {
        self.family
    }

    pub(super) fn fits(&self, alg: Algorithm) -> bool {
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
pub(super) struct KeySet {
    keys: Vec<JwtKey>,
}

pub(super) enum Selected<'a> {
    Key(&'a JwtKey),
    /// The token names a `kid` no key has.
    UnknownKid,
    /// No key fits the token (no `kid`, and none or several keys fit).
    NoKey,
}

impl KeySet {
    pub(super) fn new(keys: Vec<JwtKey>) -> Self {
        Self { keys }
    }

    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selected<'_> {
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
