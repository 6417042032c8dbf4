//! Keyed fingerprints of secrets, for logs.

use std::{fmt, sync::OnceLock};

use hmac::{Hmac, Mac};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::{MIN_KEY_BYTES, check_key_len, random_bytes};
use crate::ConfigError;

/// The key every [`Fingerprint::of`] uses: installed once, or chosen at
/// random on first use.
static PROCESS_KEY: OnceLock<FingerprintKey> = OnceLock::new();

/// A short, keyed fingerprint of a secret: the first 32 bits of the
/// HMAC-SHA-256 of its SHA-256 digest under the process's
/// [`FingerprintKey`], printed as 8 hex digits.
///
/// Enough to tell credentials apart in logs, not enough to recover or
/// replay one. One secret has one fingerprint everywhere (SECURITY.md L5):
/// in rejections, lockout events and revocations, which know a secret by
/// its digest only ([`KeyDigest`](crate::validate::KeyDigest)), so an
/// operator can match a revocation with the requests it refuses.
///
/// # Security
///
/// The fingerprint is keyed (SECURITY.md L5): without the key, logs do not
/// let anyone confirm guesses of a weak secret offline, as a plain hash
/// would. The key is random per process unless one is
/// [installed](FingerprintKey::install) at start-up; install the same key on
/// every replica when their logs must agree.
///
/// # Example
///
/// ```
/// use portcullis::Fingerprint;
///
/// let fingerprint = Fingerprint::of(b"alice-token");
/// assert_eq!(fingerprint, Fingerprint::of(b"alice-token"));
/// assert_ne!(fingerprint, Fingerprint::of(b"bob-token"));
/// assert_eq!(fingerprint.to_string().len(), 8);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 4]);

impl Fingerprint {
    /// Fingerprints secret bytes with the process's [`FingerprintKey`]
    /// (a random one, chosen on first use, unless one was installed).
    pub fn of(secret: &[u8]) -> Self {
        FingerprintKey::process().fingerprint(secret)
    }

    /// The fingerprint of the secret whose SHA-256 digest is `digest`: the
    /// same as [`of`](Self::of) the secret.
    pub(crate) fn of_digest(digest: &[u8; 32]) -> Self {
        FingerprintKey::process().fingerprint_digest(digest)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// The HMAC-SHA-256 key [`Fingerprint`]s are computed with.
///
/// By default every process picks a random key the first time it
/// fingerprints a secret, so fingerprints agree within one process only.
/// Replicas whose logs are read together install the same key from their
/// configuration at start-up, before the first request:
///
/// ```no_run
/// use portcullis::FingerprintKey;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // 32 bytes or more, e.g. `head -c 32 /dev/urandom | base64`.
/// let key = std::env::var("PORTCULLIS_FINGERPRINT_KEY")?;
/// FingerprintKey::new(key)?.install()?;
/// # Ok(())
/// # }
/// ```
///
/// The key is kept as the two precomputed HMAC states, so computing a
/// fingerprint hashes the secret once more than a plain SHA-256 would, and
/// never allocates. `Debug` never prints the key.
///
/// # Security
///
/// The key's bytes are not kept: a random key is wiped once its HMAC
/// states are computed. The states themselves (which compute fingerprints
/// as the key would) live in the `hmac` crate's type, which cannot be
/// wiped: they stay in memory until it is reused.
///
/// # Example
///
/// ```
/// use portcullis::FingerprintKey;
///
/// let a = FingerprintKey::new([7u8; 32])?;
/// let b = FingerprintKey::new([8u8; 32])?;
/// assert_eq!(a.fingerprint(b"alice-token"), a.fingerprint(b"alice-token"));
/// assert_ne!(a.fingerprint(b"alice-token"), b.fingerprint(b"alice-token"));
/// assert!(FingerprintKey::new(b"too short").is_err());
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct FingerprintKey {
    mac: Hmac<Sha256>,
}

impl FingerprintKey {
    /// A key from configuration: at least 32 bytes, which should be random
    /// (the bytes of a long random string are fine).
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the key is shorter than 32 bytes.
    pub fn new(key: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let key = key.as_ref();
        check_key_len("a fingerprint key", key)?;
        Ok(Self::from_bytes(key))
    }

    /// A key of 32 random bytes from the operating system.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the random source fails.
    pub fn random() -> Result<Self, ConfigError> {
        Ok(Self::from_bytes(&*random_bytes::<MIN_KEY_BYTES>()?))
    }

    /// Fingerprints `secret` with this key: the HMAC of its SHA-256 digest,
    /// so that what knows a secret by its digest alone (a revocation) gives
    /// it the same fingerprint.
    pub fn fingerprint(&self, secret: &[u8]) -> Fingerprint {
        self.fingerprint_digest(&Sha256::digest(secret).into())
    }

    fn fingerprint_digest(&self, digest: &[u8; 32]) -> Fingerprint {
        // Cloning copies the precomputed inner and outer states: no
        // allocation, and the key itself is not hashed again.
        let mut mac = self.mac.clone();
        mac.update(digest);
        let tag = mac.finalize().into_bytes();
        Fingerprint([tag[0], tag[1], tag[2], tag[3]])
    }

    /// Makes this the key of every [`Fingerprint::of`] in the process. Call
    /// it once at start-up, before anything is logged.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the process key is already set: by
    /// an earlier `install`, or because a fingerprint was already computed
    /// with the random default (fingerprints in one process must agree).
    ///
    /// # Example
    ///
    /// ```standalone_crate
    /// use portcullis::{Fingerprint, FingerprintKey};
    ///
    /// let key = FingerprintKey::new(b"a key shared by every replica, 32+ bytes")?;
    /// key.clone().install()?;
    /// assert_eq!(Fingerprint::of(b"alice-token"), key.fingerprint(b"alice-token"));
    /// assert!(FingerprintKey::random()?.install().is_err());
    /// # Ok::<(), portcullis::ConfigError>(())
    /// ```
    pub fn install(self) -> Result<(), ConfigError> {
        PROCESS_KEY.set(self).map_err(|_| {
            ConfigError::InvalidKey(
                "the fingerprint key is already set: install it once, \
                 before the first credential is logged"
                    .into(),
            )
        })
    }

    /// The process's key, chosen at random on first use unless installed.
    fn process() -> &'static Self {
        PROCESS_KEY.get_or_init(|| {
            Self::random().unwrap_or_else(|error| {
                tracing::warn!(%error, "no random fingerprint key, deriving one from the clock");
                Self::from_bytes(&*fallback_key())
            })
        })
    }

    fn from_bytes(key: &[u8]) -> Self {
        Self {
            // HMAC takes keys of any length: only the length check above
            // can refuse one.
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key)
                .expect("HMAC accepts keys of every length"),
        }
    }
}

impl fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FingerprintKey(..)")
    }
}

/// A key for a process whose random source failed: unpredictable enough to
/// keep fingerprints from being a plain hash, never a panic.
fn fallback_key() -> Zeroizing<[u8; 32]> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let local = 0u8;
    let mut hasher = Sha256::new();
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update((&raw const local as usize).to_le_bytes());
    hasher.update(format!("{:?}", std::thread::current().id()).as_bytes());
    Zeroizing::new(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    // L5: fingerprints depend on the key; one key always gives the same one.
    #[test]
    fn fingerprints_differ_between_keys_and_agree_under_one_key() {
        let a = FingerprintKey::new([1u8; 32]).unwrap();
        let b = FingerprintKey::new([2u8; 32]).unwrap();
        let secrets: [&[u8]; 4] = [b"", b"password", b"alice-token", &[0xff; 8192]];
        for secret in secrets {
            assert_eq!(a.fingerprint(secret), a.clone().fingerprint(secret));
            assert_eq!(
                a.fingerprint(secret),
                FingerprintKey::new([1u8; 32]).unwrap().fingerprint(secret)
            );
            assert_ne!(a.fingerprint(secret), b.fingerprint(secret));
        }
    }

    // L5: a fingerprint is not the start of the secret's plain SHA-256, so
    // logs cannot be matched against hashes of guessed secrets.
    #[test]
    fn a_fingerprint_is_not_a_prefix_of_the_plain_sha256_of_the_secret() {
        let configured = FingerprintKey::new(*b"0123456789abcdef0123456789abcdef").unwrap();
        for secret in [&b"password"[..], b"123456", b"alice-token"] {
            let plain = hex(&Sha256::digest(secret));
            for fingerprint in [Fingerprint::of(secret), configured.fingerprint(secret)] {
                assert_eq!(fingerprint.to_string().len(), 8);
                assert!(
                    !plain.starts_with(&fingerprint.to_string()),
                    "{fingerprint}"
                );
            }
        }
        // The known HMAC-SHA-256 of the SHA-256 of "password" under that key
        // (computed independently), so the construction is the standard one.
        assert_eq!(
            configured.fingerprint(b"password").to_string(),
            HMAC_PASSWORD
        );
    }

    /// `printf password | openssl dgst -sha256 -binary | openssl dgst -sha256
    /// -hmac 0123456789abcdef0123456789abcdef`, first 8 hex digits.
    const HMAC_PASSWORD: &str = "9a9c2709";

    // L5: a secret and its digest have one fingerprint.
    #[test]
    fn a_secret_and_its_digest_have_one_fingerprint() {
        let key = FingerprintKey::new([5u8; 32]).unwrap();
        let digest: [u8; 32] = Sha256::digest(b"alice-token").into();
        assert_eq!(
            key.fingerprint(b"alice-token"),
            key.fingerprint_digest(&digest)
        );
        assert_eq!(
            Fingerprint::of(b"alice-token"),
            Fingerprint::of_digest(&digest)
        );
        assert_ne!(key.fingerprint(&digest), key.fingerprint(b"alice-token"));
    }

    #[test]
    fn a_short_key_is_refused_and_debug_never_prints_the_key() {
        let err = FingerprintKey::new([0u8; 31]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid key material: a fingerprint key needs at least 32 bytes, got 31"
        );
        let key = FingerprintKey::new(b"canary-key-canary-key-canary-key").unwrap();
        assert_eq!(format!("{key:?}"), "FingerprintKey(..)");
    }

    #[test]
    fn a_second_installation_is_refused() {
        // Another test may already have fixed the process key by
        // fingerprinting something: either way, the second call fails.
        let first = FingerprintKey::new([3u8; 32]).unwrap().install();
        assert!(FingerprintKey::new([4u8; 32]).unwrap().install().is_err());
        if first.is_ok() {
            let installed = FingerprintKey::new([3u8; 32]).unwrap();
            assert_eq!(Fingerprint::of(b"x"), installed.fingerprint(b"x"));
        }
    }
}
