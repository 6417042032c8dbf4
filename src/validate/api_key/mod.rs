//! Static API keys, stored hashed and compared in constant time.
//!
//! [`ApiKeys`] is the validator, [`GeneratedKey`] makes new keys,
//! [`KeyDigest`] is what is stored instead of a key, and
//! [`ApiKeyIdentity`] is who a key belongs to.

mod generated;
mod identity;
mod keys;
mod revoke;

pub use generated::GeneratedKey;
pub use identity::ApiKeyIdentity;
pub use keys::{ApiKeys, ApiKeysBuilder};
