//! Secret keys given in configuration (the fingerprint key, device-cookie
//! keys, HS256 secrets): one length floor for all of them, and one way to
//! draw one at random.

use zeroize::Zeroizing;

use crate::ConfigError;

/// The fewest bytes a secret key may have: 256 bits, so that what it signs
/// or hides cannot be attacked by guessing the key (RFC 7518 §3.2 asks as
/// much of an HS256 secret).
pub(crate) const MIN_KEY_BYTES: usize = 32;

/// Refuses a key shorter than [`MIN_KEY_BYTES`]; `what` names the key in
/// the error (`"a fingerprint key"`).
///
/// # Errors
///
/// [`ConfigError::InvalidKey`] for a key that is too short.
pub(crate) fn check_key_len(what: &str, key: &[u8]) -> Result<(), ConfigError> {
    if key.len() < MIN_KEY_BYTES {
        return Err(ConfigError::InvalidKey(
            format!(
                "{what} needs at least {MIN_KEY_BYTES} bytes, got {}",
                key.len()
            )
            .into(),
        ));
    }
    Ok(())
}

/// `N` random bytes from the operating system, wiped when dropped: a fresh
/// key (`N` at least [`MIN_KEY_BYTES`]) or nonce.
///
/// # Errors
///
/// [`ConfigError::InvalidKey`] when the random source fails.
pub(crate) fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, ConfigError> {
    let mut bytes = Zeroizing::new([0; N]);
    getrandom::fill(&mut *bytes)
        .map_err(|e| ConfigError::InvalidKey(format!("the random source failed: {e}").into()))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_needs_thirty_two_bytes() {
        assert!(check_key_len("a key", &[7; MIN_KEY_BYTES]).is_ok());
        let error = check_key_len("a key", &[7; MIN_KEY_BYTES - 1]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid key material: a key needs at least 32 bytes, got 31"
        );
    }
}
