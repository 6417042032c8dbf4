//! Helpers shared by the behaviour tests.

#[cfg(feature = "redis")]
pub(crate) mod redis;
