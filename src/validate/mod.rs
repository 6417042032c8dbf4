//! Validating credentials: the [`Validator`] trait and its outcomes.
//!
//! A validator turns a [`Credential`] into the caller's identity, or says why
//! it cannot. It is where a database lookup, a hashed API-key table or a JWT
//! check plugs into [`AuthLayer`](crate::AuthLayer).
//!
//! # Example
//!
//! ```
//! use portcullis::{Credential, CredentialSource, ValidationError, Validator};
//!
//! #[derive(Clone, Debug, PartialEq)]
//! struct User(String);
//!
//! struct Tokens;
//!
//! impl Validator for Tokens {
//!     type Identity = User;
//!
//!     async fn validate(&self, credential: &Credential) -> Result<User, ValidationError> {
//!         match credential.secret() {
//!             "alice-token" => Ok(User("alice".into())),
//!             _ => Err(ValidationError::invalid()),
//!         }
//!     }
//! }
//!
//! # tokio_test_block_on(async {
//! let alice = Tokens.validate(&Credential::new("alice-token", CredentialSource::Bearer)).await;
//! assert_eq!(alice.unwrap(), User("alice".into()));
//! # });
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! A closure taking an owned [`Credential`] is a validator too:
//!
//! ```
//! use portcullis::{Credential, ValidationError, Validator};
//!
//! let validator = |credential: Credential| async move {
//!     if credential.secret() == "s3cret" {
//!         Ok("ci-bot")
//!     } else {
//!         Err(ValidationError::invalid())
//!     }
//! };
//! # fn is_validator<V: Validator>(_: &V) {}
//! # is_validator(&validator);
//! ```

use std::{future::Future, sync::Arc};

use crate::Credential;

mod api_key;
mod cache;
mod chain;
mod identity;
#[cfg(feature = "jwt")]
pub mod jwt;

pub use crate::credential::KeyDigest;
pub use crate::error::{ValidationError, ValidationErrorKind};
pub use api_key::{ApiKeyIdentity, ApiKeys, ApiKeysBuilder, GeneratedKey};
pub use cache::{CachingValidator, CachingValidatorBuilder};
pub use chain::{Chain, MapIdentity, ValidatorExt};
pub use identity::{ExpiresAt, Scopes};
#[cfg(feature = "jwt")]
pub use jwt::{Claims, JwtKey, JwtValidator};

/// Checks a [`Credential`] and returns the caller's identity.
///
/// Implement it with a plain `async fn`; closures
/// `Fn(Credential) -> impl Future<Output = Result<I, ValidationError>>`
/// implement it too.
///
/// # Errors
///
/// Return a [`ValidationError`] that says what happened, because the client
/// is answered from it: [`invalid`](ValidationError::invalid) and
/// [`revoked`](ValidationError::revoked) look identical to the client (a
/// 401 `invalid_token`), [`expired`](ValidationError::expired) tells it to
/// refresh, and [`unavailable`](ValidationError::unavailable) (your backend is
/// down) is a 503 that is never counted as a failed attempt.
pub trait Validator: Send + Sync + 'static {
    /// The caller's identity, inserted into request extensions on success.
    type Identity: Clone + Send + Sync + 'static;

    /// Validates one credential.
    fn validate(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<Self::Identity, ValidationError>> + Send;

    /// Answers at once when the validator can do so without waiting (an
    /// in-memory table, a cache hit); `None`, the default, means "ask
    /// [`validate`](Self::validate)".
    ///
    /// [`AuthLayer`](crate::AuthLayer) asks this first: an answer here
    /// spares the request the boxed future that `validate` needs (an
    /// allocation and a poll, about a tenth of the layer's cost; see
    /// BENCHMARKS.md). The answer must be the one `validate` would give;
    /// `None` is always correct. It must not block: it runs on the
    /// request's task, outside [`AuthLayer::timeout`](crate::AuthLayer::timeout),
    /// so anything that waits (a database, a lock held across I/O) belongs
    /// in `validate`. [`ApiKeys`], [`CachingValidator`] (on a
    /// hit), `JwtValidator` (unless a JWKS has no key for the token yet),
    /// [`Chain`] and [`MapIdentity`] (when what they wrap answers at once)
    /// implement it.
    ///
    /// # Example
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use portcullis::{Credential, CredentialSource, ValidationError, Validator};
    ///
    /// /// Tokens held in memory: every answer is immediate.
    /// struct Tokens(HashMap<String, String>);
    ///
    /// impl Tokens {
    ///     fn lookup(&self, credential: &Credential) -> Result<String, ValidationError> {
    ///         self.0.get(credential.secret()).cloned().ok_or_else(ValidationError::invalid)
    ///     }
    /// }
    ///
    /// impl Validator for Tokens {
    ///     type Identity = String;
    ///
    ///     async fn validate(&self, credential: &Credential) -> Result<String, ValidationError> {
    ///         self.lookup(credential)
    ///     }
    ///
    ///     fn validate_now(&self, credential: &Credential) -> Option<Result<String, ValidationError>> {
    ///         Some(self.lookup(credential))
    ///     }
    /// }
    ///
    /// let tokens = Tokens(HashMap::from([("alice-token".into(), "alice".into())]));
    /// let alice = Credential::new("alice-token", CredentialSource::Bearer);
    /// assert_eq!(tokens.validate_now(&alice).unwrap().unwrap(), "alice");
    /// ```
    fn validate_now(
        &self,
        credential: &Credential,
    ) -> Option<Result<Self::Identity, ValidationError>> {
        let _ = credential;
        None
    }
}

impl<F, Fut, I> Validator for F
where
    F: Fn(Credential) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<I, ValidationError>> + Send,
    I: Clone + Send + Sync + 'static,
{
    type Identity = I;

    fn validate(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<I, ValidationError>> + Send {
        self(credential.clone())
    }
}

impl<V: Validator + ?Sized> Validator for Arc<V> {
    type Identity = V::Identity;

    fn validate(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<Self::Identity, ValidationError>> + Send {
        (**self).validate(credential)
    }

    fn validate_now(
        &self,
        credential: &Credential,
    ) -> Option<Result<Self::Identity, ValidationError>> {
        (**self).validate_now(credential)
    }
}
