//! The SHA-256 digest that stands for a secret wherever it is stored.

use std::{fmt, str::FromStr};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};
use sha2::{Digest as _, Sha256};

use crate::ConfigError;

/// The SHA-256 digest of an API key: what is stored instead of the key.
///
/// Written as 64 hex digits ([`to_hex`](Self::to_hex), `Display`) or
/// base64 ([`to_base64`](Self::to_base64)); [`parse`](Self::parse) reads
/// either.
///
/// # Example
///
/// ```
/// use portcullis::validate::KeyDigest;
///
/// let digest = KeyDigest::of("acme_example");
/// assert_eq!(KeyDigest::parse(&digest.to_hex())?, digest);
/// assert_eq!(KeyDigest::parse(&digest.to_base64())?, digest);
/// assert!(KeyDigest::parse("not a digest").is_err());
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Hashes a key.
    pub fn of(key: &str) -> Self {
        Self(Sha256::digest(key.as_bytes()).into())
    }

    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses a digest written as 64 hex digits (either case) or as base64
    /// (standard or URL-safe alphabet, padded or not). Surrounding
    /// whitespace is ignored.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] saying what was expected and what was
    /// found (its length and, for hex, the offending position — never the
    /// input itself, in case a key was pasted by mistake).
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let s = s.trim();
        let err = |reason: String| ConfigError::InvalidKey(reason.into());
        match s.len() {
            64 => {
                let mut out = [0u8; 32];
                let bytes = s.as_bytes();
                for (i, byte) in out.iter_mut().enumerate() {
                    let hi = hex_value(bytes[2 * i]);
                    let lo = hex_value(bytes[2 * i + 1]);
                    match (hi, lo) {
                        (Some(hi), Some(lo)) => *byte = hi << 4 | lo,
                        (None, _) => {
                            return Err(err(format!(
                                "api key digest: expected a hex digit at position {}",
                                2 * i
                            )));
                        }
                        (_, None) => {
                            return Err(err(format!(
                                "api key digest: expected a hex digit at position {}",
                                2 * i + 1
                            )));
                        }
                    }
                }
                Ok(Self(out))
            }
            43 | 44 => {
                for engine in [&URL_SAFE_NO_PAD, &URL_SAFE, &STANDARD_NO_PAD, &STANDARD] {
                    let mut out = [0u8; 32];
                    if let Ok(32) = engine.decode_slice(s, &mut out) {
                        return Ok(Self(out));
                    }
                }
                Err(err(format!(
                    "api key digest: {} characters but not valid base64 of 32 bytes",
                    s.len()
                )))
            }
            n => Err(err(format!(
                "api key digest: expected 64 hex digits or 43/44 base64 characters \
                 (a SHA-256 digest), found {n} characters"
            ))),
        }
    }

    /// The digest as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// The digest as padded standard base64 (44 characters).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub(crate) fn bucket(&self) -> u64 {
        let mut head = [0u8; 8];
        head.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(head)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl FromStr for KeyDigest {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Self::parse(s)
    }
}

impl fmt::Display for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digest_parses_hex_in_either_case_and_base64_in_every_alphabet() {
        let d = KeyDigest::of("acme_x");
        assert_eq!(KeyDigest::parse(&d.to_hex()).unwrap(), d);
        assert_eq!(KeyDigest::parse(&d.to_hex().to_uppercase()).unwrap(), d);
        assert_eq!(KeyDigest::parse(&STANDARD.encode(d.0)).unwrap(), d);
        assert_eq!(KeyDigest::parse(&STANDARD_NO_PAD.encode(d.0)).unwrap(), d);
        assert_eq!(KeyDigest::parse(&URL_SAFE.encode(d.0)).unwrap(), d);
        assert_eq!(KeyDigest::parse(&URL_SAFE_NO_PAD.encode(d.0)).unwrap(), d);
        assert_eq!(KeyDigest::parse(&format!("  {}\n", d.to_hex())).unwrap(), d);
    }

    #[test]
    fn digest_parse_errors_say_what_was_expected_without_echoing_input() {
        let e = KeyDigest::parse("acme_secretsecret")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 64 hex digits"), "{e}");
        assert!(e.contains("17 characters"), "{e}");
        assert!(!e.contains("secret"), "{e}");
        let bad_hex = format!("{}zz", "0".repeat(62));
        let e = KeyDigest::parse(&bad_hex).unwrap_err().to_string();
        assert!(e.contains("position 62"), "{e}");
        let e = KeyDigest::parse(&"!".repeat(43)).unwrap_err().to_string();
        assert!(e.contains("not valid base64"), "{e}");
    }

    proptest! {
        #[test]
        fn digest_parse_never_panics(s in "\\PC{0,80}") {
            let _ = KeyDigest::parse(&s);
        }

        #[test]
        fn digest_round_trips(bytes in any::<[u8; 32]>()) {
            let d = KeyDigest::from_bytes(bytes);
            prop_assert_eq!(KeyDigest::parse(&d.to_hex()).unwrap(), d);
            prop_assert_eq!(KeyDigest::parse(&d.to_base64()).unwrap(), d);
        }

        #[test]
        fn digest_parse_of_64_arbitrary_bytes_never_panics(s in "[\\x00-\\x7f]{64}") {
            let _ = KeyDigest::parse(&s);
        }
    }
}
