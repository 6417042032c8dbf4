//! Why a credential was not accepted.

use std::{borrow::Cow, fmt, sync::Arc, time::Duration};

/// Why a credential was not accepted.
///
/// Build one with the constructors; read it with [`kind`](Self::kind).
///
/// # Example
///
/// ```
/// use std::time::Duration;
/// use portcullis::{ValidationError, ValidationErrorKind};
///
/// let down = ValidationError::unavailable().with_retry_after(Duration::from_secs(5));
/// assert_eq!(down.kind(), ValidationErrorKind::Unavailable);
/// assert_eq!(down.retry_after(), Some(Duration::from_secs(5)));
///
/// let scope = ValidationError::insufficient_scope("admin");
/// assert_eq!(scope.required_scope(), Some("admin"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ValidationError {
    kind: ValidationErrorKind,
    scope: Option<Arc<str>>,
    retry_after: Option<Duration>,
    reason: Option<Cow<'static, str>>,
}

/// The kind of a [`ValidationError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ValidationErrorKind {
    /// Unknown, malformed for this validator, bad signature, wrong audience…
    Invalid,
    /// Was valid, has expired: the client should refresh or sign in again.
    Expired,
    /// Was valid, has been revoked. Answered exactly like [`Invalid`](Self::Invalid).
    Revoked,
    /// Valid, but lacks the scope the request needs.
    InsufficientScope,
    /// The validator could not decide (backend down, timeout).
    Unavailable,
}

impl ValidationError {
    fn new(kind: ValidationErrorKind) -> Self {
        Self {
            kind,
            scope: None,
            retry_after: None,
            reason: None,
        }
    }

    /// The credential is unknown or otherwise invalid.
    pub fn invalid() -> Self {
        Self::new(ValidationErrorKind::Invalid)
    }

    /// The credential was valid but has expired.
    pub fn expired() -> Self {
        Self::new(ValidationErrorKind::Expired)
    }

    /// The credential was valid but has been revoked.
    pub fn revoked() -> Self {
        Self::new(ValidationErrorKind::Revoked)
    }

    /// The credential is valid but lacks `scope`.
    pub fn insufficient_scope(scope: impl Into<Arc<str>>) -> Self {
        Self {
            scope: Some(scope.into()),
            ..Self::new(ValidationErrorKind::InsufficientScope)
        }
    }

    /// The validator could not reach a decision (its backend is down).
    pub fn unavailable() -> Self {
        Self::new(ValidationErrorKind::Unavailable)
    }

    /// Tells the client when to retry (for [`unavailable`](Self::unavailable)).
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Attaches an internal reason for logs (`"signature mismatch"`).
    ///
    /// The reason goes to `tracing` only, never to the client, so unknown and
    /// revoked credentials still look identical from outside. It must not
    /// contain the secret.
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ValidationErrorKind {
        self.kind
    }

    /// The scope that was missing, for [`insufficient_scope`](Self::insufficient_scope).
    pub fn required_scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// When the client may retry, if known.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The internal reason, if one was attached.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    pub(crate) fn scope_arc(&self) -> Option<Arc<str>> {
        self.scope.clone()
    }
}

impl fmt::Debug for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("ValidationError");
        s.field("kind", &self.kind);
        if let Some(scope) = &self.scope {
            s.field("scope", scope);
        }
        if let Some(retry_after) = &self.retry_after {
            s.field("retry_after", retry_after);
        }
        if let Some(reason) = &self.reason {
            s.field("reason", reason);
        }
        s.finish()
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ValidationErrorKind::Invalid => f.write_str("credential is invalid")?,
            ValidationErrorKind::Expired => f.write_str("credential has expired")?,
            ValidationErrorKind::Revoked => f.write_str("credential has been revoked")?,
            ValidationErrorKind::InsufficientScope => write!(
                f,
                "credential lacks scope {:?}",
                self.scope.as_deref().unwrap_or("")
            )?,
            ValidationErrorKind::Unavailable => f.write_str("validator is unavailable")?,
        }
        if let Some(reason) = &self.reason {
            write!(f, ": {reason}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}
