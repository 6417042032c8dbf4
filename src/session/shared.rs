//! Sessions shared through Redis (feature `redis`):
//! [`SessionsBuilder::redis`].

use super::{
    Sessions, SessionsBuilder,
    store::{Families, redis::RedisSessions},
};
use crate::{ConfigError, redis::RedisStore};

impl SessionsBuilder {
    /// Keeps the sessions in Redis through `store` (feature `redis`; keys
    /// under the prefix `portcullis:session:` unless the store has its
    /// own), the same store handle the lockout, the rate limiter and the
    /// revocations take: every replica refreshes and detects reuse of the
    /// same sessions, and sessions survive restarts of the service.
    ///
    /// Each sign-in, refresh and sign-out is one Lua script; a family's
    /// key expires when its idle or absolute lifetime ends, on the
    /// server's clock, and each subject's index of families (for
    /// [`Sessions::list`], [`Sessions::sign_out_everywhere`] and the
    /// [cap](Self::max_sessions)) is written by the sign-in script. When
    /// Redis does not answer within the store's timeout, the request is
    /// answered [`Unavailable`](crate::session::SessionErrorKind::Unavailable)
    /// (503): there is no local fallback, which would let a stolen token
    /// be refreshed beside its owner's.
    ///
    /// A refresh answered 503 leaves its token usable (SECURITY.md S7): a
    /// rotation whose answer did not arrive in time is undone by a script
    /// sent after it on the same connection, so it is undone however late
    /// Redis runs it, unless its successor was used meanwhile. A retry is
    /// then an ordinary refresh.
    ///
    /// Use a revocation list shared through the same Redis
    /// (`RevocationsBuilder::redis`), so that a reuse detected on one
    /// replica ends the session's access tokens and streams on all.
    ///
    /// [`build`](Self::build) then also refuses
    /// ([`ConfigError::OutOfRange`]) a grace window that is not zero and
    /// not longer than the store's timeout: a racing refresh that waited
    /// for Redis would otherwise read as a reuse.
    pub fn redis(mut self, store: RedisStore) -> Self {
        self.shared = Some(store);
        self
    }

    /// Builds the sessions over `store`; see [`redis`](Self::redis).
    pub(crate) fn build_shared(self, store: RedisStore) -> Result<Sessions, ConfigError> {
        let (grace, cap) = (self.grace, self.max_sessions);
        let sessions = RedisSessions::new(store, grace, cap);
        if !grace.is_zero() && grace <= sessions.timeout() {
            return Err(ConfigError::out_of_range(
                "grace",
                "with redis, the grace window must be zero or longer than the store's timeout",
            ));
        }
        self.build_on(Box::new(sessions), Families::InRedis)
    }
}
