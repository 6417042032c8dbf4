//! Configuring a [`Revocations`] list.

use std::{sync::Arc, time::Duration};

use super::{
    Revocations,
    engine::{Inner, Settings, WhenStale, check_leeway},
};
use crate::ConfigError;

/// Configures [`Revocations`].
#[must_use]
#[derive(Debug, Clone)]
pub struct RevocationsBuilder {
    pub(super) capacity: u64,
    max_lifetime: Duration,
    leeway: Duration,
    staleness: Duration,
    when_stale: WhenStale,
    /// The shared store of [`redis`](Self::redis).
    #[cfg(feature = "redis")]
    pub(super) shared: Option<crate::redis::RedisStore>,
}

impl Revocations {
    /// Starts configuring a list.
    pub fn builder() -> RevocationsBuilder {
        RevocationsBuilder::new()
    }
}

impl RevocationsBuilder {
    fn new() -> Self {
        Self {
            capacity: 100_000,
            max_lifetime: Duration::from_secs(24 * 3600),
            leeway: Duration::ZERO,
            staleness: Duration::from_secs(30),
            when_stale: WhenStale::Refuse,
            #[cfg(feature = "redis")]
            shared: None,
        }
    }

    /// The most revocations held at once (default 100,000).
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// The longest a revocation is held (default 24 hours): a revocation
    /// whose credential's expiry is unknown or later, and every cutoff of a
    /// subject, last this long. Set it to at least the lifetime of the
    /// credentials you issue.
    pub fn max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.max_lifetime = max_lifetime;
        self
    }

    /// How long after its expiry a credential may still be accepted by a
    /// validator that honours the list (clock skew tolerated on `exp`;
    /// default zero). A revocation with a known end lasts that much
    /// longer, so that it lasts as long as any validator would accept what
    /// it revokes (SECURITY.md V5).
    ///
    /// Validators that honour the list raise it to their own leeway when
    /// they are built: a `JwtValidator` (feature `jwt`) built with
    /// `revocations(&list)` and a leeway of 30 s makes every revocation
    /// with a known end last at least 30 s past it. Set it here for
    /// validators of your own that accept credentials past their expiry.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// With Redis (feature `redis`): how long the list keeps answering from
    /// its local copy once Redis is unreachable (default 30 s: enough for a
    /// restart or a failover). Revocations made on this replica meanwhile
    /// take effect here at once and reach Redis when it is back; those made
    /// on other replicas reach this one only then. Past the bound the list
    /// does what [`when_stale`](Self::when_stale) says. Zero refuses (or
    /// serves) at once.
    pub fn staleness(mut self, staleness: Duration) -> Self {
        self.staleness = staleness;
        self
    }

    /// With Redis (feature `redis`): what the list answers once Redis has
    /// been unreachable for longer than the [`staleness`](Self::staleness)
    /// bound: [`WhenStale::Refuse`] (the default: 503, never a credential
    /// that may have been revoked elsewhere) or [`WhenStale::Serve`]
    /// (clients keep being served from the local copy).
    pub fn when_stale(mut self, when_stale: WhenStale) -> Self {
        self.when_stale = when_stale;
        self
    }

    /// Builds an in-memory list.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] when the capacity or the maximum
    /// lifetime is zero, when the leeway is longer than the maximum
    /// lifetime, or when both together are longer than ten years (they
    /// are added to the clock).
    pub fn build(self) -> Result<Revocations, ConfigError> {
        #[cfg(feature = "redis")]
        if let Some(store) = self.shared.clone() {
            return self.build_shared(store);
        }
        self.build_in_sync(true)
    }

    pub(crate) fn build_in_sync(self, in_sync: bool) -> Result<Revocations, ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::out_of_range("capacity", "must be at least 1"));
        }
        if self.max_lifetime.is_zero() {
            return Err(ConfigError::out_of_range(
                "max_lifetime",
                "must be longer than zero",
            ));
        }
        check_leeway(self.leeway, self.max_lifetime)?;
        Ok(Revocations {
            inner: Arc::new(Inner::new(Settings {
                capacity: self.capacity,
                max_lifetime: self.max_lifetime,
                leeway: self.leeway,
                staleness: self.staleness,
                when_stale: self.when_stale,
                in_sync,
            })),
        })
    }
}
