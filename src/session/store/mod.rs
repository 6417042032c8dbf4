//! Where session families live: the [`Store`] trait, the in-memory store
//! and (feature `redis`) the Redis store.
//!
//! [`Sessions`](super::Sessions) makes the tokens, signs the access tokens,
//! revokes and reports; a store only keeps families and answers, in one
//! atomic step per question, what presenting a token does.

use std::time::SystemTime;

use super::family::{Created, Ending, Listed, NewFamily, Next, Rotation};
use crate::{credential::KeyDigest, future::BoxFuture};

pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// The store did not answer (only a shared store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unreachable;

/// Where the session families live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Families {
    /// In this process ([`SessionsBuilder::build`](crate::session::SessionsBuilder::build) without a shared store).
    InMemory,
    /// In Redis, shared by every replica.
    #[cfg(feature = "redis")]
    InRedis,
}

/// One store of session families.
///
/// Every method is one atomic step: two refreshes of one token never both
/// see it current.
pub(crate) trait Store: Send + Sync + 'static {
    /// Records a new family and adds it to its subject's index, ending the
    /// subject's least recently used families past its cap; refused when
    /// the store is full (memory only).
    fn create(&self, family: NewFamily) -> BoxFuture<Result<Created, Unreachable>>;

    /// Presents `token` of family `sid` for a refresh, proposing `next` as
    /// its successor.
    fn rotate(
        &self,
        sid: &str,
        token: KeyDigest,
        next: Next,
    ) -> BoxFuture<Result<Rotation, Unreachable>>;

    /// Undoes a rotation of `token` of family `sid` to `successor` whose
    /// answer never reached the client: `token` is current again, unless
    /// the rotation did not happen or the successor was used since. Done
    /// (in memory) or sent (in Redis, after the rotation on the same
    /// connection) when called, so that it comes before any retry.
    fn undo(
        &self,
        sid: &str,
        token: KeyDigest,
        successor: KeyDigest,
    ) -> BoxFuture<Result<(), Unreachable>>;

    /// Presents `token` of family `sid` to sign out: ends the family when
    /// the token is one of its own.
    fn end(&self, sid: &str, token: KeyDigest) -> BoxFuture<Result<Ending, Unreachable>>;

    /// Ends family `sid`, whatever its tokens; whether it was live.
    fn remove(&self, sid: &str) -> BoxFuture<Result<bool, Unreachable>>;

    /// The live families of `subject`.
    fn list(&self, subject: &str) -> BoxFuture<Result<Vec<Listed>, Unreachable>>;

    /// Ends family `sid` if it is `subject`'s; whether it was.
    fn end_of(&self, subject: &str, sid: &str) -> BoxFuture<Result<bool, Unreachable>>;

    /// Ends every family of `subject` created at or before `cutoff`; the
    /// ids of those that were live.
    fn end_all(
        &self,
        subject: &str,
        cutoff: SystemTime,
    ) -> BoxFuture<Result<Vec<Box<str>>, Unreachable>>;

    /// Live families held, when the store can tell cheaply.
    fn families(&self) -> Option<u64>;
}
