//! JSON Web Tokens (feature `jwt`).
//!
//! [`JwtValidator`] checks a JWT's signature (with [`jsonwebtoken`]'s
//! cryptography) and its registered claims, and yields your typed claims,
//! wrapped in [`Claims`], as the identity. The payload is parsed only after
//! the signature has been verified. Keys come from secrets, PEM, a JWKS
//! document ([`JwtKey`]) or, with feature `jwks`, a JWKS URL (`Jwks`) or an
//! OpenID Connect issuer (`Jwks::discover`).
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
//! # OIDC discovery
//!
//! With feature `jwks`, `Jwks::discover(issuer)` finds the keys of an
//! OpenID Connect issuer through its discovery document
//! ([OpenID Connect Discovery 1.0](https://openid.net/specs/openid-connect-discovery-1_0.html)):
//!
//! - the document is `ISSUER/.well-known/openid-configuration` (a trailing
//!   `/` of the issuer removed first), read when the keys are first needed;
//! - its `issuer` must equal the configured issuer exactly, or discovery
//!   fails (§4.3): anyone else serving that URL cannot vouch for another
//!   issuer;
//! - its `jwks_uri` names the keys, which are then fetched, refreshed in the
//!   background and refetched on an unknown `kid` exactly as for a JWKS
//!   URL; when fetching them fails, the document is read again next time;
//! - the issuer and `jwks_uri` must be `https`; plain `http` only with
//!   `allow_http(true)` and only on a loopback address (tests);
//! - a validator with discovered keys and no [`issuer`](JwtValidatorBuilder::issuer)
//!   of its own requires `iss` to be the discovered issuer.
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
//! - Errors: an expired token is [`expired`](crate::ValidationError::expired) (the
//!   client should refresh); anything else is
//!   [`invalid`](crate::ValidationError::invalid) with a fixed reason for logs that
//!   never contains the token or claim values.

mod builder;
mod claims;
#[cfg(feature = "jwks")]
mod jwks;
mod key;
#[cfg(feature = "jwks")]
mod oidc;
mod validator;

pub use builder::JwtValidatorBuilder;
pub use claims::Claims;
pub use jsonwebtoken::Algorithm;
#[cfg(feature = "jwks")]
pub use jwks::{Jwks, JwksBuilder, JwksError};
pub use key::JwtKey;
pub use validator::JwtValidator;
