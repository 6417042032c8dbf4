//! Configuring a [`CachingValidator`].

use std::{fmt, time::Duration};

use tokio::time::Instant;

use super::{
    honour::Honour,
    validator::{CachingValidator, Shared, SubjectOf},
};
use crate::{ConfigError, Validator, validate::ExpiresAt};

/// The longest time moka keeps an entry before reclaiming its memory: it
/// refuses a time to live over 1,000 years, and capacity bounds memory
/// anyway.
const RECLAIM_LIMIT: Duration = Duration::from_secs(365 * 86_400);

impl<V> CachingValidator<V>
where
    V: Validator,
    V::Identity: ExpiresAt,
{
    /// Starts building a cache in front of `inner`, whose identities know
    /// their own expiry.
    pub fn builder(inner: V) -> CachingValidatorBuilder<V> {
        Self::builder_with_expiry(inner, |identity| identity.expires_at())
    }
}

impl<V: Validator> CachingValidator<V> {
    /// Starts building a cache in front of `inner`, reading each identity's
    /// expiry with `expiry` (return `None` for identities that do not expire
    /// on their own).
    pub fn builder_with_expiry(
        inner: V,
        expiry: fn(&V::Identity) -> Option<Instant>,
    ) -> CachingValidatorBuilder<V> {
        CachingValidatorBuilder {
            inner,
            expiry,
            subject: None,
            revocations: None,
            max_capacity: 10_000,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(2),
        }
    }
}

/// Builds a [`CachingValidator`].
#[must_use]
pub struct CachingValidatorBuilder<V: Validator> {
    inner: V,
    expiry: fn(&V::Identity) -> Option<Instant>,
    subject: Option<SubjectOf<V::Identity>>,
    pub(super) revocations: Option<Honour<V::Identity>>,
    max_capacity: u64,
    ttl: Duration,
    negative_ttl: Duration,
}

impl<V: Validator> fmt::Debug for CachingValidatorBuilder<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingValidatorBuilder")
            .field("max_capacity", &self.max_capacity)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("subjects", &self.subject.is_some())
            .field("revocations", &self.revocations.is_some())
            .finish_non_exhaustive()
    }
}

impl<V: Validator> CachingValidatorBuilder<V> {
    /// The most secrets whose outcomes are kept (default 10,000). A secret
    /// presented in several carriers (a cookie and a header) is one entry.
    pub fn max_capacity(mut self, max_capacity: u64) -> Self {
        self.max_capacity = max_capacity;
        self
    }

    /// How long an accepted credential is served from the cache (default 60
    /// seconds), capped by the identity's own expiry. This is also how long
    /// a revoked credential stays accepted if you do not
    /// [`invalidate`](CachingValidator::invalidate) it.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a rejected credential is answered from the cache (default 2
    /// seconds; `Duration::ZERO` turns negative caching off). Keep it short:
    /// a key created just after being tried stays rejected this long.
    pub fn negative_ttl(mut self, negative_ttl: Duration) -> Self {
        self.negative_ttl = negative_ttl;
        self
    }

    /// Reads the subject (the user, the service account) of each accepted
    /// identity with `subject`, so that
    /// [`invalidate_subject`](CachingValidator::invalidate_subject) reaches
    /// every cached credential of one subject ("sign out everywhere").
    /// Return `None` for identities without one.
    ///
    /// Without it, the cache cannot tell whose outcomes are whose, and
    /// `invalidate_subject` forgets every outcome instead.
    ///
    /// # Example
    ///
    /// ```
    /// use portcullis::validate::{ApiKeys, CachingValidator};
    ///
    /// let keys = ApiKeys::builder("acme_").build()?;
    /// let cached = CachingValidator::builder(keys)
    ///     .subject(|key| Some(key.id()))
    ///     .build()?;
    /// # let _ = cached;
    /// # Ok::<(), portcullis::ConfigError>(())
    /// ```
    ///
    /// With JWTs the subject is the `sub` claim:
    /// `.subject(Claims::subject)` (feature `jwt`).
    pub fn subject(mut self, subject: fn(&V::Identity) -> Option<&str>) -> Self {
        self.subject = Some(subject);
        self
    }

    /// Builds the cache.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] when `max_capacity` or `ttl` is zero.
    pub fn build(self) -> Result<CachingValidator<V>, ConfigError> {
        if self.max_capacity == 0 {
            return Err(ConfigError::out_of_range(
                "max_capacity",
                "must be at least 1",
            ));
        }
        if self.ttl.is_zero() {
            return Err(ConfigError::out_of_range("ttl", "must be longer than zero"));
        }
        // moka's timer runs on real time and only reclaims memory; the
        // outcome deadlines are checked on tokio time.
        let reclaim_after = self.ttl.max(self.negative_ttl).min(RECLAIM_LIMIT);
        let cache = moka::sync::Cache::builder()
            .max_capacity(self.max_capacity)
            .time_to_live(reclaim_after)
            .build();
        Ok(CachingValidator::from_shared(Shared {
            inner: self.inner,
            cache,
            generation: Default::default(),
            cleared: Default::default(),
            state: Default::default(),
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
            expiry: self.expiry,
            subject: self.subject,
            revocations: self.revocations,
        })
        .listen())
    }
}
