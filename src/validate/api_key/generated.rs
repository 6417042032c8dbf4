//! Generating API keys: a prefix and 32 random bytes.

use std::fmt;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

use crate::ConfigError;
use crate::credential::KeyDigest;

/// Random bytes in a generated key.
const KEY_BYTES: usize = 32;
/// Longest prefix accepted.
const MAX_PREFIX_LEN: usize = 32;

/// A freshly generated API key: the secret (shown to its owner once) and its
/// digest (stored).
///
/// `Debug` prints the digest only. The key is wiped when the
/// `GeneratedKey` is dropped.
///
/// # Example
///
/// ```
/// use portcullis::validate::{GeneratedKey, KeyDigest};
///
/// let key = GeneratedKey::new("acme_")?;
/// assert_eq!(key.secret().len(), "acme_".len() + 43); // 32 bytes, base64url
/// assert_eq!(KeyDigest::of(key.secret()), key.digest());
/// assert!(!format!("{key:?}").contains(key.secret()));
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct GeneratedKey {
    secret: Zeroizing<String>,
    digest: KeyDigest,
}

impl GeneratedKey {
    /// Generates a key: `prefix` followed by 32 random bytes in unpadded
    /// base64url, read from the operating system's random source.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidName`] when the prefix is empty, longer than 32
    /// bytes, or has characters other than ASCII letters, digits, `_` and
    /// `-` (the key must stay a valid bearer token and greppable);
    /// [`ConfigError::InvalidKey`] when the random source fails.
    pub fn new(prefix: &str) -> Result<Self, ConfigError> {
        check_prefix(prefix)?;
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        getrandom::fill(&mut *bytes).map_err(|e| {
            ConfigError::InvalidKey(format!("the random source failed: {e}").into())
        })?;
        // Sized once: a reallocation would leave a copy behind.
        let mut secret = Zeroizing::new(String::with_capacity(prefix.len() + 43));
        secret.push_str(prefix);
        URL_SAFE_NO_PAD.encode_string(bytes.as_slice(), &mut secret);
        let digest = KeyDigest::of(&secret);
        Ok(Self { secret, digest })
    }

    /// The key itself, to hand to its owner. Do not store it.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The digest to store.
    pub fn digest(&self) -> KeyDigest {
        self.digest
    }
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

pub(super) fn check_prefix(prefix: &str) -> Result<(), ConfigError> {
    let reason = if prefix.is_empty() {
        Some("must not be empty")
    } else if prefix.len() > MAX_PREFIX_LEN {
        Some("must be at most 32 bytes")
    } else if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        Some("may contain only ASCII letters, digits, '_' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ConfigError::InvalidName {
            what: "api key prefix",
            name: prefix.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_rules_keep_keys_valid_bearer_tokens() {
        assert!(check_prefix("acme_live-").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a b").is_err());
        assert!(check_prefix("a.b").is_err());
        assert!(check_prefix(&"a".repeat(33)).is_err());
    }
}
