//! Configuration errors, why a credential was not accepted, and the error
//! of a response body.

mod validation;

use std::borrow::Cow;

pub use validation::{ValidationError, ValidationErrorKind};

/// The error of a [`ResponseBody`](crate::ResponseBody): the inner body's,
/// or [`Truncated`](crate::lease::Truncated) when a lease cut a plain body
/// short.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A layer, policy or validator was configured with values that cannot work.
///
/// Returned by the `build()` methods of builders that can be misconfigured, and
/// by constructors that parse user input (header names, CIDR ranges). Request
/// outcomes are never a `ConfigError`: they are an [`AuthRejection`].
///
/// [`AuthRejection`]: crate::AuthRejection
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A header name is not a valid HTTP field name.
    #[error("invalid header name {0:?}")]
    InvalidHeaderName(String),
    /// A name (cookie, query parameter, protocol prefix) is empty or contains
    /// characters that cannot appear where it is used.
    #[error("invalid {what} {name:?}: {reason}")]
    InvalidName {
        /// What the name is for, e.g. `"cookie name"`.
        what: &'static str,
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An address range could not be parsed as CIDR notation (`10.0.0.0/8`).
    #[error("invalid address range {0:?}: expected CIDR notation such as 10.0.0.0/8 or fd00::/8")]
    InvalidCidr(String),
    /// A numeric setting is outside the range that works.
    #[error("invalid {setting}: {reason}")]
    OutOfRange {
        /// The setting, e.g. `"max_failures"`.
        setting: &'static str,
        /// Why the value cannot work.
        reason: Cow<'static, str>,
    },
    /// A key, certificate or other cryptographic input could not be used.
    #[error("invalid key material: {0}")]
    InvalidKey(Cow<'static, str>),
}

impl ConfigError {
    /// Shorthand for [`ConfigError::OutOfRange`].
    pub(crate) fn out_of_range(
        setting: &'static str,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::OutOfRange {
            setting,
            reason: reason.into(),
        }
    }
}
