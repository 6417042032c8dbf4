//! Helpers for testing services that use portcullis (feature `test-util`).
//!
//! # Example
//!
//! ```
//! use portcullis::{Credential, CredentialSource, ValidationError, ValidationErrorKind, Validator};
//! use portcullis::test_util::StaticValidator;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let validator = StaticValidator::new()
//!     .token("alice-token", "alice")
//!     .failure("old-token", ValidationError::expired());
//!
//! let bearer = |s: &str| Credential::new(s, CredentialSource::Bearer);
//! assert_eq!(validator.validate(&bearer("alice-token")).await, Ok("alice"));
//! assert_eq!(validator.validate(&bearer("old-token")).await.unwrap_err().kind(), ValidationErrorKind::Expired);
//! assert_eq!(validator.validate(&bearer("other")).await.unwrap_err().kind(), ValidationErrorKind::Invalid);
//! assert_eq!(validator.calls(), 3);
//! # }
//! ```

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use crate::{Credential, ValidationError, Validator};

/// A validator with a fixed table of tokens and scripted failures, which
/// counts its calls.
///
/// Unknown tokens are [invalid](ValidationError::invalid). Clones share the
/// call counter.
///
/// # Security
///
/// For tests only: it keeps secrets in memory as they are and compares them
/// in variable time. Production API keys belong in a validator that stores
/// digests and compares in constant time.
pub struct StaticValidator<I> {
    outcomes: Arc<HashMap<String, Result<I, ValidationError>>>,
    calls: Arc<AtomicUsize>,
}

impl<I> StaticValidator<I> {
    /// A validator that knows no token.
    pub fn new() -> Self {
        Self {
            outcomes: Arc::new(HashMap::new()),
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Accepts `secret` as `identity`.
    #[must_use]
    pub fn token(self, secret: impl Into<String>, identity: I) -> Self
    where
        I: Clone,
    {
        self.with(secret.into(), Ok(identity))
    }

    /// Answers `secret` with `error`.
    #[must_use]
    pub fn failure(self, secret: impl Into<String>, error: ValidationError) -> Self
    where
        I: Clone,
    {
        self.with(secret.into(), Err(error))
    }

    fn with(mut self, secret: String, outcome: Result<I, ValidationError>) -> Self
    where
        I: Clone,
    {
        Arc::make_mut(&mut self.outcomes).insert(secret, outcome);
        self
    }

    /// How many credentials this validator (and its clones) has been asked about.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl<I> Default for StaticValidator<I> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I> Clone for StaticValidator<I> {
    fn clone(&self) -> Self {
        Self {
            outcomes: self.outcomes.clone(),
            calls: self.calls.clone(),
        }
    }
}

impl<I> fmt::Debug for StaticValidator<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticValidator")
            .field("tokens", &self.outcomes.len())
            .field("calls", &self.calls())
            .finish()
    }
}

impl<I> Validator for StaticValidator<I>
where
    I: Clone + Send + Sync + 'static,
{
    type Identity = I;

    async fn validate(&self, credential: &Credential) -> Result<I, ValidationError> {
        self.answer(credential)
    }

    fn validate_now(&self, credential: &Credential) -> Option<Result<I, ValidationError>> {
        Some(self.answer(credential))
    }
}

impl<I: Clone> StaticValidator<I> {
    /// Counts the call and answers from the table.
    fn answer(&self, credential: &Credential) -> Result<I, ValidationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.outcomes
            .get(credential.secret())
            .cloned()
            .unwrap_or_else(|| Err(ValidationError::invalid()))
    }
}
