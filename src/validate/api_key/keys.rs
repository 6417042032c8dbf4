//! The table of API keys and its validator.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, RwLock},
};

use subtle::ConstantTimeEq;
use tokio::time::Instant;

use super::{
    generated::{GeneratedKey, check_prefix},
    identity::ApiKeyIdentity,
};
use crate::{
    ConfigError, Credential, ValidationError, Validator,
    credential::KeyDigest,
    revoke::{Facts, Revocations},
};

/// Called with the identity of every key that was accepted.
type UsedHook = Arc<dyn Fn(&ApiKeyIdentity) + Send + Sync>;

pub(super) struct Entry {
    pub(super) digest: KeyDigest,
    pub(super) identity: ApiKeyIdentity,
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
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    prefix: Box<str>,
    pub(super) table: RwLock<HashMap<u64, Vec<Entry>>>,
    on_used: Option<UsedHook>,
    /// The revocation list the keys honour, if any.
    pub(super) revocations: Option<Revocations>,
}

impl ApiKeys {
    /// Starts building a validator for keys that begin with `prefix`.
    pub fn builder(prefix: impl Into<String>) -> ApiKeysBuilder {
        ApiKeysBuilder {
            prefix: prefix.into(),
            keys: Vec::new(),
            on_used: None,
            revocations: None,
        }
    }

    /// The prefix every key of this validator starts with, for routing in a
    /// [`Chain`](crate::validate::Chain).
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
    /// With a revocation list ([`ApiKeysBuilder::revocations`]), the key
    /// is revoked there too, until its expiry: caches that honour the list
    /// forget it, open streams authenticated with it end, and (with Redis)
    /// every replica removes it. Without one, a
    /// [`CachingValidator`](crate::validate::CachingValidator) in front of
    /// this one must be told, with the same digest:
    /// [`invalidate_digest`](crate::validate::CachingValidator::invalidate_digest)
    /// (every carrier the key was cached in).
    pub fn revoke(&self, digest: &KeyDigest) -> bool {
        let removed = self.inner.remove_digest(digest);
        if let Some(revocations) = &self.inner.revocations {
            let until = removed.as_ref().and_then(ApiKeyIdentity::expiry);
            // In effect here at once; stored for other replicas in the
            // background.
            drop(revocations.revoke_digest(digest, until));
        }
        removed.is_some()
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
        self.inner.write()
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
                    if bool::from(entry.digest.as_bytes().ct_eq(presented.as_bytes())) {
                        found = Some(entry.identity.clone());
                    }
                }
            }
            found
        };
        let Some(identity) = identity else {
            // A key revoked through the list is gone from the table; the
            // list still says why (for logs: the client sees `invalid` alike).
            let revoked = self.inner.revocations.as_ref().is_some_and(|list| {
                list.is_in_sync() && list.check_digest(|| presented, &Facts::default()).is_err()
            });
            return Err(if revoked {
                ValidationError::revoked().with_reason("revoked api key")
            } else {
                ValidationError::invalid().with_reason("unknown api key")
            });
        };
        if identity
            .expiry()
            .is_some_and(|deadline| Instant::now() >= deadline)
        {
            return Err(ValidationError::expired().with_reason("api key expired"));
        }
        if let Some(revocations) = &self.inner.revocations {
            revocations
                .inner
                .check(|| presented, &Facts::of(&identity))?;
        }
        Ok(identity)
    }
}

impl Inner {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Vec<Entry>>> {
        // A panic while holding the lock cannot leave the map half-updated
        // (each update is one insert/retain), so a poisoned lock is still usable.
        self.table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Removes the key with `digest`; returns its identity.
    pub(super) fn remove_digest(&self, digest: &KeyDigest) -> Option<ApiKeyIdentity> {
        let mut table = self.write();
        let bucket = digest.bucket();
        let entries = table.get_mut(&bucket)?;
        let at = entries.iter().position(|e| e.digest == *digest)?;
        let removed = entries.swap_remove(at).identity;
        if entries.is_empty() {
            table.remove(&bucket);
        }
        Some(removed)
    }

    /// Removes the keys `revoked` selects; returns their identities.
    pub(super) fn remove(&self, revoked: impl Fn(&Entry) -> bool) -> Vec<ApiKeyIdentity> {
        let mut table = self.write();
        let mut removed = Vec::new();
        table.retain(|_, entries| {
            entries.retain(|entry| {
                let revoked = revoked(entry);
                if revoked {
                    removed.push(entry.identity.clone());
                }
                !revoked
            });
            !entries.is_empty()
        });
        removed
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
        std::future::ready(self.answer(credential))
    }

    fn validate_now(
        &self,
        credential: &Credential,
    ) -> Option<Result<ApiKeyIdentity, ValidationError>> {
        Some(self.answer(credential))
    }
}

impl ApiKeys {
    /// Checks a presented key, reports it to the last-used hook, logs.
    fn answer(&self, credential: &Credential) -> Result<ApiKeyIdentity, ValidationError> {
        let outcome = self.check(credential.secret());
        match &outcome {
            Ok(identity) => {
                tracing::trace!(%credential, id = %identity.id(), "api key accepted");
                if let Some(hook) = &self.inner.on_used {
                    hook(identity);
                }
            }
            Err(e) => tracing::debug!(%credential, error = %e, "api key rejected"),
        }
        outcome
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("prefix", &self.inner.prefix)
            .field("keys", &self.len())
            .field("on_used", &self.inner.on_used.is_some())
            .field("revocations", &self.inner.revocations.is_some())
            .finish()
    }
}

/// Builds an [`ApiKeys`] validator.
#[must_use]
pub struct ApiKeysBuilder {
    prefix: String,
    keys: Vec<(KeyDigest, ApiKeyIdentity)>,
    on_used: Option<UsedHook>,
    pub(super) revocations: Option<Revocations>,
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
        let keys = ApiKeys {
            inner: Arc::new(Inner {
                prefix: self.prefix.into_boxed_str(),
                table: RwLock::new(table),
                on_used: self.on_used,
                revocations: self.revocations,
            }),
        };
        Ok(keys.listen())
    }
}

impl fmt::Debug for ApiKeysBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeysBuilder")
            .field("prefix", &self.prefix)
            .field("keys", &self.keys.len())
            .field("on_used", &self.on_used.is_some())
            .field("revocations", &self.revocations.is_some())
            .finish()
    }
}
