//! Where session families live: the [`Store`] trait, the in-memory store
//! and (feature `redis`) the Redis store.
//!
//! [`Sessions`](super::Sessions) makes the tokens, signs the access tokens,
//! revokes and reports; a store only keeps families and answers, in one
//! atomic step per question, what presenting a token does.

use super::family::{Created, Ending, NewFamily, Next, Rotation};
use crate::{gate::BoxFuture, validate::KeyDigest};

pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// The store did not answer (only a shared store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unreachable;

/// One store of session families.
///
/// Every method is one atomic step: two refreshes of one token never both
/// see it current.
pub(crate) trait Store: Send + Sync + 'static {
    /// Records a new family, unless the store is full.
    fn create(&self, family: NewFamily) -> BoxFuture<Result<Created, Unreachable>>;

    /// Presents `token` of family `sid` for a refresh, proposing `next` as
    /// its successor.
    fn rotate(
        &self,
        sid: &str,
        token: KeyDigest,
        next: Next,
    ) -> BoxFuture<Result<Rotation, Unreachable>>;

    /// Presents `token` of family `sid` to sign out: ends the family when
    /// the token is one of its own.
    fn end(&self, sid: &str, token: KeyDigest) -> BoxFuture<Result<Ending, Unreachable>>;

    /// Ends family `sid`, whatever its tokens; whether it was live.
    fn remove(&self, sid: &str) -> BoxFuture<Result<bool, Unreachable>>;

    /// Live families held, when the store can tell cheaply.
    fn families(&self) -> Option<u64>;
}
