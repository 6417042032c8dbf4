//! Static API keys, stored hashed and compared in constant time.

use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::{Arc, RwLock},
};

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::{ConfigError, Credential, ValidationError, Validator, scope::Scopes};

use super::cache::ExpiresAt;

/// Random bytes in a generated key.
const KEY_BYTES: usize = 32;
/// Longest prefix accepted.
const MAX_PREFIX_LEN: usize = 32;

/// A freshly generated API key: the secret (shown to its owner once) and its
/// digest (stored).
///
/// `Debug` prints the digest only.
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
    secret: String,
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
        let mut bytes = [0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| {
            ConfigError::InvalidKey(format!("the random source failed: {e}").into())
        })?;
        let mut secret = String::with_capacity(prefix.len() + 43);
        secret.push_str(prefix);
        URL_SAFE_NO_PAD.encode_string(bytes, &mut secret);
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

fn check_prefix(prefix: &str) -> Result<(), ConfigError> {
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

    fn bucket(&self) -> u64 {
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

/// Who an API key belongs to: an id, its scopes and an optional expiry.
///
/// The identity [`ApiKeys`] inserts into request extensions. It implements
/// [`Scopes`] (for [`RequireScopeLayer`](crate::scope::RequireScopeLayer))
/// and [`ExpiresAt`] (so a [`CachingValidator`](super::CachingValidator)
/// never serves it past its expiry).
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
}

impl ApiKeyIdentity {
    /// An identity with no scopes that never expires.
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        Self {
            id: id.into(),
            scopes: Arc::new([]),
            expires_at: None,
        }
    }

    /// Sets the scopes the key grants.
    #[must_use]
    pub fn with_scopes<S: Into<Box<str>>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Makes the key expire at `deadline` (tokio time): from then on it is
    /// answered as [`expired`](ValidationError::expired).
    #[must_use]
    pub fn with_expiry(mut self, deadline: Instant) -> Self {
        self.expires_at = Some(deadline);
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

/// Called with the identity of every key that was accepted.
type UsedHook = Arc<dyn Fn(&ApiKeyIdentity) + Send + Sync>;

struct Entry {
    digest: KeyDigest,
    identity: ApiKeyIdentity,
}

/// Validates static API keys, stored hashed and compared in constant time.
///
/// portcullis generates the keys ([`GeneratedKey`]): a recognisable prefix
/// you choose (`"acme_live_"`) followed by 32 random bytes in base64url, so a
/// leaked key is easy for secret scanners to find. Only the SHA-256 digest of
/// a key ([`KeyDigest`]) is ever stored: hand the secret to its owner once,
/// keep the digest in your configuration or database, and load
/// `(digest, identity)` pairs into an [`ApiKeys`] validator.
///
/// # Example
///
/// ```
/// use portcullis::{Credential, CredentialSource, Validator, ValidationErrorKind};
/// use portcullis::validate::{ApiKeyIdentity, ApiKeys, GeneratedKey, KeyDigest};
///
/// // Once, when issuing a key: show `key.secret()` to its owner, store the digest.
/// let key = GeneratedKey::new("acme_")?;
/// assert!(key.secret().starts_with("acme_"));
/// let stored = key.digest().to_hex();
///
/// // At start-up: load the stored digests.
/// let keys = ApiKeys::builder("acme_")
///     .key(KeyDigest::parse(&stored)?, ApiKeyIdentity::new("ci-bot").with_scopes(["deploy"]))
///     .build()?;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let found = keys.validate(&Credential::new(key.secret(), CredentialSource::Bearer)).await.unwrap();
/// assert_eq!(found.id(), "ci-bot");
///
/// let unknown = keys.validate(&Credential::new("acme_nope", CredentialSource::Bearer)).await;
/// assert_eq!(unknown.unwrap_err().kind(), ValidationErrorKind::Invalid);
/// # });
/// # Ok::<(), portcullis::ConfigError>(())
/// ```
///
/// # Security
///
/// - The table holds digests only; a dump of it (or of your configuration)
///   does not reveal a usable key. Keys carry 256 bits of randomness, so a
///   plain SHA-256 digest (no salt, no slow hash) is enough.
/// - A presented key is hashed, the first 8 bytes of its digest select the
///   candidates, and the full 32-byte digests are compared in constant time
///   with [`subtle`].
/// - An unknown key and a revoked (removed) key produce the same error, so a
///   client cannot tell them apart.
///
/// Cheap to clone: clones share the table, so keys added or revoked through
/// one clone are seen by all.
///
/// # Errors
///
/// [`validate`](Validator::validate) answers
/// - [`invalid`](ValidationError::invalid) for a key without the configured
///   prefix, an unknown key and a revoked key (all alike);
/// - [`expired`](ValidationError::expired) for a known key past its expiry.
///
/// It never answers `unavailable`: the table is in memory.
#[derive(Clone)]
pub struct ApiKeys {
    inner: Arc<Inner>,
}

struct Inner {
    prefix: Box<str>,
    table: RwLock<HashMap<u64, Vec<Entry>>>,
    on_used: Option<UsedHook>,
}

impl ApiKeys {
    /// Starts building a validator for keys that begin with `prefix`.
    pub fn builder(prefix: impl Into<String>) -> ApiKeysBuilder {
        ApiKeysBuilder {
            prefix: prefix.into(),
            keys: Vec::new(),
            on_used: None,
        }
    }

    /// The prefix every key of this validator starts with, for routing in a
    /// [`Chain`](super::Chain).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Generates a new key with this validator's prefix. It is not added to
    /// the table: call [`insert`](Self::insert) with its digest.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidKey`] when the random source fails.
    pub fn generate(&self) -> Result<GeneratedKey, ConfigError> {
        GeneratedKey::new(&self.inner.prefix)
    }

    /// Adds a key, or replaces the identity of a known one.
    pub fn insert(&self, digest: KeyDigest, identity: ApiKeyIdentity) {
        let mut table = self.write();
        insert_entry(&mut table, digest, identity);
    }

    /// Revokes a key: from now on it is answered exactly like an unknown
    /// key. Returns whether it was known.
    ///
    /// A [`CachingValidator`](super::CachingValidator) in front of this one
    /// must be told too ([`invalidate`](super::CachingValidator::invalidate)).
    pub fn revoke(&self, digest: &KeyDigest) -> bool {
        let mut table = self.write();
        let bucket = digest.bucket();
        let Some(entries) = table.get_mut(&bucket) else {
            return false;
        };
        let before = entries.len();
        entries.retain(|e| e.digest != *digest);
        let removed = entries.len() != before;
        if entries.is_empty() {
            table.remove(&bucket);
        }
        removed
    }

    /// The number of keys in the table.
    pub fn len(&self) -> usize {
        self.read().values().map(Vec::len).sum()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Vec<Entry>>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (each update is one insert/retain), so a poisoned lock is still usable.
        self.inner
            .table
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Vec<Entry>>> {
        self.inner
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check(&self, secret: &str) -> Result<ApiKeyIdentity, ValidationError> {
        if !secret.starts_with(&*self.inner.prefix) {
            return Err(ValidationError::invalid().with_reason("not an api key of this validator"));
        }
        let presented = KeyDigest::of(secret);
        let identity = {
            let table = self.read();
            let mut found = None;
            if let Some(entries) = table.get(&presented.bucket()) {
                for entry in entries {
                    if bool::from(entry.digest.0.ct_eq(&presented.0)) {
                        found = Some(entry.identity.clone());
                    }
                }
            }
            found
        };
        let Some(identity) = identity else {
            return Err(ValidationError::invalid().with_reason("unknown api key"));
        };
        if identity
            .expires_at
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Err(ValidationError::expired().with_reason("api key expired"));
        }
        Ok(identity)
    }
}

fn insert_entry(table: &mut HashMap<u64, Vec<Entry>>, digest: KeyDigest, identity: ApiKeyIdentity) {
    let entries = table.entry(digest.bucket()).or_default();
    match entries.iter_mut().find(|e| e.digest == digest) {
        Some(entry) => entry.identity = identity,
        None => entries.push(Entry { digest, identity }),
    }
}

impl Validator for ApiKeys {
    type Identity = ApiKeyIdentity;

    fn validate(
        &self,
        credential: &Credential,
    ) -> impl Future<Output = Result<ApiKeyIdentity, ValidationError>> + Send {
        let outcome = self.check(credential.secret());
        match &outcome {
            Ok(identity) => {
                tracing::trace!(%credential, id = %identity.id, "api key accepted");
                if let Some(hook) = &self.inner.on_used {
                    hook(identity);
                }
            }
            Err(e) => tracing::debug!(%credential, error = %e, "api key rejected"),
        }
        std::future::ready(outcome)
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("prefix", &self.inner.prefix)
            .field("keys", &self.len())
            .field("on_used", &self.inner.on_used.is_some())
            .finish()
    }
}

/// Builds an [`ApiKeys`] validator.
#[must_use]
pub struct ApiKeysBuilder {
    prefix: String,
    keys: Vec<(KeyDigest, ApiKeyIdentity)>,
    on_used: Option<UsedHook>,
}

impl ApiKeysBuilder {
    /// Adds one key by its digest.
    pub fn key(mut self, digest: KeyDigest, identity: ApiKeyIdentity) -> Self {
        self.keys.push((digest, identity));
        self
    }

    /// Adds many keys by their digests.
    pub fn keys(mut self, keys: impl IntoIterator<Item = (KeyDigest, ApiKeyIdentity)>) -> Self {
        self.keys.extend(keys);
        self
    }

    /// Adds keys whose digests are written as strings (hex or base64, see
    /// [`KeyDigest::parse`]), as they come from configuration.
    ///
    /// # Errors
    ///
    /// The first digest that does not parse, with its position in the list.
    pub fn parse_keys<S: AsRef<str>>(
        mut self,
        keys: impl IntoIterator<Item = (S, ApiKeyIdentity)>,
    ) -> Result<Self, ConfigError> {
        for (i, (digest, identity)) in keys.into_iter().enumerate() {
            let digest = KeyDigest::parse(digest.as_ref()).map_err(|e| match e {
                ConfigError::InvalidKey(reason) => {
                    ConfigError::InvalidKey(format!("entry {i}: {reason}").into())
                }
                other => other,
            })?;
            self.keys.push((digest, identity));
        }
        Ok(self)
    }

    /// Calls `hook` with the identity of every accepted key ("last used"
    /// bookkeeping).
    ///
    /// The hook runs synchronously after the decision, before the request
    /// goes on, so it must not block: record into an atomic or a map, or
    /// `try_send` on a channel that a background task drains into your
    /// database. It is not called for rejected keys.
    pub fn on_used(mut self, hook: impl Fn(&ApiKeyIdentity) + Send + Sync + 'static) -> Self {
        self.on_used = Some(Arc::new(hook));
        self
    }

    /// Builds the validator.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidName`] when the prefix is empty, longer than 32
    /// bytes, or has characters other than ASCII letters, digits, `_`, `-`.
    pub fn build(self) -> Result<ApiKeys, ConfigError> {
        check_prefix(&self.prefix)?;
        let mut table = HashMap::new();
        for (digest, identity) in self.keys {
            insert_entry(&mut table, digest, identity);
        }
        Ok(ApiKeys {
            inner: Arc::new(Inner {
                prefix: self.prefix.into_boxed_str(),
                table: RwLock::new(table),
                on_used: self.on_used,
            }),
        })
    }
}

impl fmt::Debug for ApiKeysBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeysBuilder")
            .field("prefix", &self.prefix)
            .field("keys", &self.keys.len())
            .field("on_used", &self.on_used.is_some())
            .finish()
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

    #[test]
    fn prefix_rules_keep_keys_valid_bearer_tokens() {
        assert!(check_prefix("acme_live-").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a b").is_err());
        assert!(check_prefix("a.b").is_err());
        assert!(check_prefix(&"a".repeat(33)).is_err());
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
