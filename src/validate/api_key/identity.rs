//! Who an API key belongs to.

use std::{sync::Arc, time::SystemTime};

use tokio::time::Instant;

use crate::{
    revoke::Revocable,
    validate::identity::{ExpiresAt, Scopes},
};

/// Who an API key belongs to: an id, its scopes and an optional expiry.
///
/// The identity [`ApiKeys`](super::ApiKeys) inserts into request extensions. It implements
/// [`Scopes`] (for [`RequireScopeLayer`](crate::scope::RequireScopeLayer)),
/// [`ExpiresAt`] (so a [`CachingValidator`](crate::validate::CachingValidator)
/// never serves it past its expiry) and [`Revocable`] (its id is the
/// subject; give it an [issue time](Self::with_issued_at) so that keys made
/// after a subject's cutoff are accepted).
///
/// # Example
///
/// ```
/// use portcullis::{scope::Scopes, validate::ApiKeyIdentity};
///
/// let bot = ApiKeyIdentity::new("ci-bot").with_scopes(["deploy", "read"]);
/// assert_eq!(bot.id(), "ci-bot");
/// assert!(bot.has_scope("deploy"));
/// assert!(!bot.has_scope("admin"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyIdentity {
    id: Arc<str>,
    scopes: Arc<[Box<str>]>,
    expires_at: Option<Instant>,
    issued_at: Option<SystemTime>,
}

impl ApiKeyIdentity {
    /// An identity with no scopes that never expires.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self {
            id: id.into(),
            scopes: Arc::new([]),
            expires_at: None,
            issued_at: None,
        }
    }

    /// Sets the scopes the key grants.
    #[must_use]
    pub fn with_scopes<S: Into<Box<str>>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Makes the key expire at `deadline` (tokio time): from then on it is
    /// answered as [`expired`](crate::ValidationError::expired).
    #[must_use]
    pub fn with_expiry(mut self, deadline: Instant) -> Self {
        self.expires_at = Some(deadline);
        self
    }

    /// Records when the key was made, compared with a cutoff of its subject
    /// ([`Revocations::revoke_subject`](crate::revoke::Revocations::revoke_subject)):
    /// without it, every cutoff of the key's id revokes it.
    #[must_use]
    pub fn with_issued_at(mut self, issued_at: SystemTime) -> Self {
        self.issued_at = Some(issued_at);
        self
    }

    /// The id given to [`new`](Self::new).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The scopes the key grants.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(|s| &**s)
    }

    /// When the key expires, if it does.
    pub fn expiry(&self) -> Option<Instant> {
        self.expires_at
    }
}

impl Scopes for ApiKeyIdentity {
    fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| &**s == scope)
    }
}

impl ExpiresAt for ApiKeyIdentity {
    fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }
}

impl Revocable for ApiKeyIdentity {
    fn subject(&self) -> Option<&str> {
        Some(&self.id)
    }

    fn issued_at(&self) -> Option<SystemTime> {
        self.issued_at
    }
}
