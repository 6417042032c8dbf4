//! Session families in Redis (feature `redis`): shared by every replica,
//! kept across restarts of the service, one Lua script per question.
//!
//! A family is one hash, `{prefix}{<session id>}`, whose TTL ends it when
//! its idle or absolute lifetime ends (whichever is first), on the
//! server's clock. Its fields: `sub`, `created` (Unix ms), `abs` (the
//! absolute end, server ms), `idle` (ms), `cur` (the digest of the current
//! token), `prev`, `prev_at` and `wrap` (the last used token, when, and its
//! successor wrapped under it) and `used` (older used tokens and when,
//! newest first). Digests and wrapped successors are hex; no token is ever
//! stored.

use std::{
    sync::Arc,
    time::{Duration, UNIX_EPOCH},
};

use ::redis::Script;

use super::{Store, Unreachable};
use crate::{
    ConfigError,
    gate::BoxFuture,
    redis::{Connection, RedisStore, millis},
    session::{
        Sessions, SessionsBuilder,
        family::{Created, Ending, Family, NewFamily, Next, REMEMBERED, Rotation},
    },
    validate::KeyDigest,
};

/// The server's time in ms, as every script starts.
macro_rules! now {
    () => {
        "local t = redis.call('TIME')\n\
         local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    };
}

/// Records a family unless its id is taken (`0`); `1` and the TTL set.
const CREATE: &str = concat!(
    now!(),
    r"
if redis.call('EXISTS', KEYS[1]) == 1 then return {'0'} end
local abs = now + tonumber(ARGV[3])
local ends = math.min(abs, now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'sub', ARGV[1], 'created', ARGV[2], 'abs', abs, 'idle', ARGV[4], 'cur', ARGV[5])
redis.call('PEXPIREAT', KEYS[1], ends)
return {'1'}
"
);

/// Presents `ARGV[1]` for a refresh with `ARGV[2]` (digest) and `ARGV[3]`
/// (wrapped) as its successor; `ARGV[4]` the grace window (ms), `ARGV[5]`
/// how many older used tokens to remember. Answers `{'0'}` unknown,
/// `{'1', sub, created, remaining}` rotated, `{'2', sub, created,
/// remaining, wrap, cur}` again, `{'3'}` conflict, `{'4', sub}` reused (the
/// family is deleted).
const ROTATE: &str = concat!(
    now!(),
    r"
local f = redis.call('HMGET', KEYS[1], 'cur', 'prev', 'prev_at', 'wrap', 'used', 'abs', 'idle', 'sub', 'created')
if not f[1] then return {'0'} end
local grace = tonumber(ARGV[4])
if f[1] == ARGV[1] then
  local used = f[5] or ''
  if f[2] then used = f[2] .. ':' .. f[3] .. ',' .. used end
  local kept, n = {}, 0
  for entry in string.gmatch(used, '[^,]+') do
    n = n + 1
    if n > tonumber(ARGV[5]) then break end
    kept[n] = entry
  end
  local ends = math.min(tonumber(f[6]), now + tonumber(f[7]))
  redis.call('HSET', KEYS[1], 'cur', ARGV[2], 'prev', ARGV[1], 'prev_at', now, 'wrap', ARGV[3], 'used', table.concat(kept, ','))
  redis.call('PEXPIREAT', KEYS[1], ends)
  return {'1', f[8], f[9], tostring(ends - now)}
end
local at = nil
if f[2] == ARGV[1] then
  if now < tonumber(f[3]) + grace then
    return {'2', f[8], f[9], tostring(redis.call('PTTL', KEYS[1])), f[4], f[1]}
  end
  at = tonumber(f[3])
else
  for digest, used in string.gmatch(f[5] or '', '(%x+):(%d+)') do
    if digest == ARGV[1] then at = tonumber(used) break end
  end
end
if not at then return {'0'} end
if now < at + grace then return {'3'} end
redis.call('DEL', KEYS[1])
return {'4', f[8]}
"
);

/// Presents `ARGV[1]` to sign out; `ARGV[2]` the grace window (ms).
/// Answers `{'0'}` unknown, `{'1', sub}` ended, `{'4', sub}` ended by a
/// reuse.
const END: &str = concat!(
    now!(),
    r"
local f = redis.call('HMGET', KEYS[1], 'cur', 'prev', 'prev_at', 'used', 'sub')
if not f[1] then return {'0'} end
local at = nil
if f[1] == ARGV[1] then
  at = now
elseif f[2] == ARGV[1] then
  at = tonumber(f[3])
else
  for digest, used in string.gmatch(f[4] or '', '(%x+):(%d+)') do
    if digest == ARGV[1] then at = tonumber(used) break end
  end
end
if not at then return {'0'} end
redis.call('DEL', KEYS[1])
if f[1] == ARGV[1] or now < at + tonumber(ARGV[2]) then return {'1', f[5]} end
return {'4', f[5]}
"
);

/// Session families in Redis.
pub(crate) struct RedisSessions {
    conn: Connection,
    grace: Duration,
    create: Script,
    rotate: Script,
    end: Script,
    remove: Script,
}

impl RedisSessions {
    pub(crate) fn new(store: RedisStore, grace: Duration) -> Self {
        Self {
            conn: Connection::new(store, "portcullis:session:"),
            grace,
            create: Script::new(CREATE),
            rotate: Script::new(ROTATE),
            end: Script::new(END),
            remove: Script::new("return redis.call('DEL', KEYS[1])"),
        }
    }

    /// The key of family `sid`: the id in a hash tag.
    fn key(&self, sid: &str) -> String {
        format!("{}{{{sid}}}", self.conn.prefix())
    }

    fn grace_ms(&self) -> u64 {
        u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX)
    }
}

impl Store for RedisSessions {
    fn create(&self, family: NewFamily) -> BoxFuture<Result<Created, Unreachable>> {
        let key = self.key(&family.sid);
        let created = family
            .created
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let reply = self
            .conn
            .invoke::<Vec<String>>(&self.create, move |invocation| {
                invocation
                    .key(key)
                    .arg(&*family.subject)
                    .arg(created)
                    .arg(millis(family.absolute))
                    .arg(millis(family.idle))
                    .arg(family.token.to_hex());
            });
        Box::pin(async move {
            match reply
                .await
                .as_deref()
                .and_then(|r| r.first())
                .map(String::as_str)
            {
                // Session ids are 128 random bits: a taken one means a
                // broken random source, and the sign-in is refused.
                Some("1") => Ok(Created::Created),
                Some(_) => {
                    tracing::error!(
                        target: "portcullis::session",
                        "a new session id was taken already: sign-in refused"
                    );
                    Err(Unreachable)
                }
                None => Err(Unreachable),
            }
        })
    }

    fn rotate(
        &self,
        sid: &str,
        token: KeyDigest,
        next: Next,
    ) -> BoxFuture<Result<Rotation, Unreachable>> {
        let key = self.key(sid);
        let grace = self.grace_ms();
        // The wrapped successor is 32 bytes, written like a digest.
        let wrapped = KeyDigest::from_bytes(next.wrapped).to_hex();
        let reply = self
            .conn
            .invoke::<Vec<String>>(&self.rotate, move |invocation| {
                invocation
                    .key(key)
                    .arg(token.to_hex())
                    .arg(next.digest.to_hex())
                    .arg(wrapped)
                    .arg(grace)
                    .arg(REMEMBERED);
            });
        Box::pin(async move { parse_rotation(&reply.await.ok_or(Unreachable)?) })
    }

    fn end(&self, sid: &str, token: KeyDigest) -> BoxFuture<Result<Ending, Unreachable>> {
        let key = self.key(sid);
        let grace = self.grace_ms();
        let reply = self
            .conn
            .invoke::<Vec<String>>(&self.end, move |invocation| {
                invocation.key(key).arg(token.to_hex()).arg(grace);
            });
        Box::pin(async move {
            let reply = reply.await.ok_or(Unreachable)?;
            match reply.as_slice() {
                [kind, subject] if kind == "1" => Ok(Ending::Ended {
                    subject: subject.as_str().into(),
                }),
                [kind, subject] if kind == "4" => Ok(Ending::Reused {
                    subject: subject.as_str().into(),
                }),
                [kind] if kind == "0" => Ok(Ending::Unknown),
                _ => Err(malformed()),
            }
        })
    }

    fn remove(&self, sid: &str) -> BoxFuture<Result<bool, Unreachable>> {
        let key = self.key(sid);
        let deleted = self.conn.invoke::<i64>(&self.remove, move |invocation| {
            invocation.key(key);
        });
        Box::pin(async move {
            let deleted = deleted.await.ok_or(Unreachable)?;
            Ok(deleted > 0)
        })
    }

    fn families(&self) -> Option<u64> {
        None
    }
}

fn parse_rotation(reply: &[String]) -> Result<Rotation, Unreachable> {
    let family = |subject: &str, created: &str, remaining: &str| -> Option<Family> {
        let created = UNIX_EPOCH.checked_add(Duration::from_millis(created.parse().ok()?))?;
        let remaining =
            Duration::from_millis(remaining.parse::<i64>().ok()?.max(0).cast_unsigned());
        Some(Family {
            subject: Arc::from(subject),
            created,
            remaining,
        })
    };
    let rotation = match reply {
        [kind] if kind == "0" => Some(Rotation::Unknown),
        [kind] if kind == "3" => Some(Rotation::Conflict),
        [kind, subject] if kind == "4" => Some(Rotation::Reused {
            subject: subject.as_str().into(),
        }),
        [kind, subject, created, remaining] if kind == "1" => {
            family(subject, created, remaining).map(Rotation::Rotated)
        }
        [kind, subject, created, remaining, wrapped, current] if kind == "2" => {
            match (
                family(subject, created, remaining),
                KeyDigest::parse(wrapped),
                KeyDigest::parse(current),
            ) {
                (Some(family), Ok(wrapped), Ok(current)) => Some(Rotation::Again {
                    family,
                    wrapped: *wrapped.as_bytes(),
                    current,
                }),
                _ => None,
            }
        }
        _ => None,
    };
    rotation.ok_or_else(malformed)
}

/// A reply no script of this version gives: counted as no answer.
fn malformed() -> Unreachable {
    tracing::error!(target: "portcullis::session", "redis answered a session script unexpectedly");
    Unreachable
}

impl SessionsBuilder {
    /// Builds sessions kept in Redis through `store` (feature `redis`; keys
    /// under the prefix `portcullis:session:` unless the store has its
    /// own): every replica refreshes and detects reuse of the same
    /// sessions, and sessions survive restarts of the service.
    ///
    /// Each sign-in, refresh and sign-out is one Lua script; a family's
    /// key expires when its idle or absolute lifetime ends, on the
    /// server's clock. When Redis does not answer within the store's
    /// timeout, the request is answered
    /// [`Unavailable`](crate::session::SessionErrorKind::Unavailable)
    /// (503): there is no local fallback, which would let a stolen token
    /// be refreshed beside its owner's. A refresh whose answer was lost is
    /// answered with the same successor when tried again within the grace
    /// window.
    ///
    /// Use a revocation list shared through the same Redis
    /// (`Revocations::with_redis`), so that a reuse detected on one
    /// replica ends the session's access tokens and streams on all.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_with_redis(self, store: RedisStore) -> Result<Sessions, ConfigError> {
        let grace = self.grace;
        self.build_on(Box::new(RedisSessions::new(store, grace)), true)
    }
}
