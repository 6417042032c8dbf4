//! Configuring a [`Revocations`] list.

use std::{sync::Arc, time::Duration};

use super::{Revocations, engine::Inner};
use crate::ConfigError;

/// Configures [`Revocations`].
#[must_use]
#[derive(Debug, Clone)]
pub struct RevocationsBuilder {
    capacity: u64,
    max_lifetime: Duration,
}

impl RevocationsBuilder {
    pub(super) fn new() -> Self {
        Self {
            capacity: 100_000,
            max_lifetime: Duration::from_secs(24 * 3600),
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

    /// Builds an in-memory list.
    ///
    /// # Errors
    ///
    /// [`ConfigError::OutOfRange`] when the capacity or the maximum
    /// lifetime is zero.
    pub fn build(self) -> Result<Revocations, ConfigError> {
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
        Ok(Revocations {
            inner: Arc::new(Inner::new(self.capacity, self.max_lifetime, in_sync)),
        })
    }
}
