//! Session families in Redis (feature `redis`): shared by every replica,
//! kept across restarts of the service, one Lua script per question.
//!
//! A family is one hash, `{prefix}{<tag>}<session id>`, whose TTL ends it
//! when its idle or absolute lifetime ends (whichever is first), on the
//! server's clock. Its fields: `sub`, `created` (Unix ms), `abs` (the
//! absolute end, server ms), `idle` (ms), `cur` (the digest of the current
//! token), `prev`, `prev_at` and `wrap` (the last used token, when, and its
//! successor wrapped under it), `used` (older used tokens and when, newest
//! first), `last` (the sign-in or last refresh, server µs: what the cap
//! ends first, and what the list shows) and `ua`, `ip`, `label` (how it
//! signed in, for the list).
//! Digests and wrapped successors are hex; no token is ever stored.
//!
//! Each subject has an index, the set `{prefix}{<tag>}subject:<SHA-256 of
//! the subject>` of its session ids, written by the sign-in script and
//! expiring when the longest absolute lifetime of its members ends: a
//! family never outlives its absolute lifetime, so the index holds every
//! live family of the subject without a refresh touching it. Ended
//! members are dropped by the scripts that read the index. The `<tag>`
//! (the first four characters of every session id of the subject) puts a
//! subject's families and index in one cluster slot.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ::redis::Script;

use super::{Store, Unreachable};
use crate::{
    credential::KeyDigest,
    future::BoxFuture,
    redis::{Connection, RedisStore, millis},
    session::{
        family::{Created, Ending, Family, Listed, NewFamily, Next, REMEMBERED, Rotation},
        list::Device,
        secret::{TAG_LEN, is_session_id, subject_tag},
    },
};

/// The server's time in ms (and µs, as a string), as every script starts.
macro_rules! now {
    () => {
        "local t = redis.call('TIME')\n\
         local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n\
         local now_us = t[1] .. string.format('%06d', tonumber(t[2]))\n"
    };
}

/// Records family `KEYS[1]` of subject `ARGV[1]` unless its id is taken
/// (`{'0'}`), and adds its id `ARGV[7]` to the subject's index `KEYS[2]`
/// (members are keys `ARGV[8] .. id`), first ending the subject's least
/// recently used families so that it holds at most `ARGV[6]`. Answers
/// `{'1', ended ids…}`.
const CREATE: &str = concat!(
    now!(),
    r"
if redis.call('EXISTS', KEYS[1]) == 1 then return {'0'} end
local live = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local f = redis.call('HMGET', ARGV[8] .. sid, 'sub', 'last')
  if f[1] == ARGV[1] then
    live[#live + 1] = {sid, tonumber(f[2]) or 0}
  else
    redis.call('SREM', KEYS[2], sid)
  end
end
table.sort(live, function(a, b) return a[2] < b[2] end)
local reply = {'1'}
local excess = #live - tonumber(ARGV[6]) + 1
for i = 1, excess do
  redis.call('DEL', ARGV[8] .. live[i][1])
  redis.call('SREM', KEYS[2], live[i][1])
  reply[#reply + 1] = live[i][1]
end
local abs = now + tonumber(ARGV[3])
local ends = math.min(abs, now + tonumber(ARGV[4]))
redis.call('HSET', KEYS[1], 'sub', ARGV[1], 'created', ARGV[2], 'abs', abs, 'idle', ARGV[4], 'cur', ARGV[5], 'last', now_us,
  'ua', ARGV[9], 'ip', ARGV[10], 'label', ARGV[11])
redis.call('PEXPIREAT', KEYS[1], ends)
redis.call('SADD', KEYS[2], ARGV[7])
if redis.call('PTTL', KEYS[2]) < abs - now then redis.call('PEXPIREAT', KEYS[2], abs) end
return reply
"
);

/// Makes `ARGV[1]` current again in family `KEYS[1]` when its rotation to
/// `ARGV[2]` is the last one (its answer was lost).
const UNDO: &str = r"
local f = redis.call('HMGET', KEYS[1], 'cur', 'prev')
if f[1] ~= ARGV[2] or f[2] ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'cur', ARGV[1])
redis.call('HDEL', KEYS[1], 'prev', 'prev_at', 'wrap')
return 1
";

/// The live families of subject `ARGV[2]` in index `KEYS[1]` (members are
/// keys `ARGV[1] .. id`): six strings each, id, created (Unix ms), last
/// used (Unix µs), user agent, address, label.
const LIST: &str = r"
local reply = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', ARGV[1] .. sid, 'sub', 'created', 'last', 'ua', 'ip', 'label')
  if f[1] == ARGV[2] then
    for _, v in ipairs({sid, f[2] or '0', f[3] or '0', f[4] or '', f[5] or '', f[6] or ''}) do
      reply[#reply + 1] = v
    end
  else
    redis.call('SREM', KEYS[1], sid)
  end
end
return reply
";

/// Ends family `KEYS[1]` (id `ARGV[2]`, in index `KEYS[2]`) if it is
/// subject `ARGV[1]`'s: `1`, else `0`.
const END_OF: &str = r"
if redis.call('HGET', KEYS[1], 'sub') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[2])
return 1
";

/// Ends every family of subject `ARGV[2]` in index `KEYS[1]` (members are
/// keys `ARGV[1] .. id`) created at or before `ARGV[3]` (Unix ms): their
/// ids.
const END_ALL: &str = r"
local ended = {}
for _, sid in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', ARGV[1] .. sid, 'sub', 'created')
  if f[1] ~= ARGV[2] then
    redis.call('SREM', KEYS[1], sid)
  elseif (tonumber(f[2]) or 0) <= tonumber(ARGV[3]) then
    redis.call('DEL', ARGV[1] .. sid)
    redis.call('SREM', KEYS[1], sid)
    ended[#ended + 1] = sid
  end
end
return ended
";

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
  redis.call('HSET', KEYS[1], 'cur', ARGV[2], 'prev', ARGV[1], 'prev_at', now, 'wrap', ARGV[3], 'used', table.concat(kept, ','), 'last', now_us)
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
    cap: u32,
    create: Script,
    rotate: Script,
    end: Script,
    remove: Script,
    list: Script,
    end_of: Script,
    end_all: Script,
}

impl RedisSessions {
    /// How long a script may take before the request is answered 503.
    pub(crate) fn timeout(&self) -> Duration {
        self.conn.timeout()
    }

    pub(crate) fn new(store: RedisStore, grace: Duration, cap: u32) -> Self {
        let conn = Connection::new(store, "portcullis:session:");
        Self {
            conn,
            grace,
            cap,
            create: Script::new(CREATE),
            rotate: Script::new(ROTATE),
            end: Script::new(END),
            remove: Script::new("return redis.call('DEL', KEYS[1])"),
            list: Script::new(LIST),
            end_of: Script::new(END_OF),
            end_all: Script::new(END_ALL),
        }
    }

    /// The key of family `sid` (a well-formed session id): its subject's
    /// tag in a hash tag, then the id.
    fn key(&self, sid: &str) -> Option<String> {
        let tag = sid.get(..TAG_LEN)?;
        Some(format!("{}{{{tag}}}{sid}", self.conn.prefix()))
    }

    /// What the keys of `subject`'s families start with.
    fn members(&self, subject: &str) -> String {
        format!("{}{{{}}}", self.conn.prefix(), subject_tag(subject))
    }

    /// The index of `subject`'s families.
    fn index(&self, subject: &str) -> String {
        format!(
            "{}subject:{}",
            self.members(subject),
            KeyDigest::of(subject).to_hex()
        )
    }

    fn grace_ms(&self) -> u64 {
        u64::try_from(self.grace.as_millis()).unwrap_or(u64::MAX)
    }
}

impl Store for RedisSessions {
    fn create(&self, family: NewFamily) -> BoxFuture<Result<Created, Unreachable>> {
        let Some(key) = self.key(&family.sid) else {
            return Box::pin(std::future::ready(Err(Unreachable)));
        };
        let (index, members) = (self.index(&family.subject), self.members(&family.subject));
        let cap = self.cap;
        let created = family
            .created
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let reply = self
            .conn
            .invoke::<Vec<String>>(&self.create, move |invocation| {
                let device = &family.device;
                invocation
                    .key(key)
                    .key(index)
                    .arg(&*family.subject)
                    .arg(created)
                    .arg(millis(family.absolute))
                    .arg(millis(family.idle))
                    .arg(family.token.to_hex())
                    .arg(cap)
                    .arg(&*family.sid)
                    .arg(members)
                    .arg(device.user_agent().unwrap_or(""))
                    .arg(device.address_text())
                    .arg(device.label().unwrap_or(""));
            });
        Box::pin(async move {
            let reply = reply.await;
            match reply.as_deref() {
                Some([first, evicted @ ..]) if first == "1" => Ok(Created::Created {
                    evicted: evicted.iter().map(|sid| sid.as_str().into()).collect(),
                }),
                // Session ids are 104 random bits per subject: a taken one
                // means a broken random source, and the sign-in is refused.
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

    fn undo(
        &self,
        sid: &str,
        token: KeyDigest,
        successor: KeyDigest,
    ) -> BoxFuture<Result<(), Unreachable>> {
        if let Some(key) = self.key(sid) {
            // On the rotation's connection, after it, as one command (the
            // whole script, never a second round trip for an unknown
            // one): it runs after the rotation however late that runs, and
            // before a retry sent after the answer.
            let mut command = ::redis::cmd("EVAL");
            command
                .arg(UNDO)
                .arg(1)
                .arg(key)
                .arg(token.to_hex())
                .arg(successor.to_hex());
            self.conn.send(command);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn rotate(
        &self,
        sid: &str,
        token: KeyDigest,
        next: Next,
    ) -> BoxFuture<Result<Rotation, Unreachable>> {
        let Some(key) = self.key(sid) else {
            return Box::pin(std::future::ready(Ok(Rotation::Unknown)));
        };
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
        let Some(key) = self.key(sid) else {
            return Box::pin(std::future::ready(Ok(Ending::Unknown)));
        };
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
        let Some(key) = self.key(sid).filter(|_| is_session_id(sid)) else {
            return Box::pin(std::future::ready(Ok(false)));
        };
        let deleted = self.conn.invoke::<i64>(&self.remove, move |invocation| {
            invocation.key(key);
        });
        Box::pin(async move {
            let deleted = deleted.await.ok_or(Unreachable)?;
            Ok(deleted > 0)
        })
    }

    fn list(&self, subject: &str) -> BoxFuture<Result<Vec<Listed>, Unreachable>> {
        let (index, members, subject) = (
            self.index(subject),
            self.members(subject),
            subject.to_owned(),
        );
        let reply = self
            .conn
            .invoke::<Vec<String>>(&self.list, move |invocation| {
                invocation.key(index).arg(members).arg(subject);
            });
        Box::pin(async move {
            let reply = reply.await.ok_or(Unreachable)?;
            let at = |time: &str, per_sec: u64| {
                let n: u64 = time.parse().unwrap_or(0);
                let since = Duration::from_secs(n / per_sec)
                    + Duration::from_nanos((n % per_sec) * (1_000_000_000 / per_sec));
                UNIX_EPOCH.checked_add(since).unwrap_or(UNIX_EPOCH)
            };
            let mut listed = Vec::with_capacity(reply.len() / 6);
            for chunk in reply.chunks(6) {
                let [sid, created, last_used, user_agent, address, label] = chunk else {
                    return Err(malformed());
                };
                listed.push(Listed {
                    sid: sid.as_str().into(),
                    created: at(created, 1_000),
                    last_used: at(last_used, 1_000_000),
                    device: Device::from_stored(user_agent, address, label),
                });
            }
            Ok(listed)
        })
    }

    fn end_of(&self, subject: &str, sid: &str) -> BoxFuture<Result<bool, Unreachable>> {
        // An id that is not a session id, or not of this subject's tag, is
        // none of its sessions.
        let key = self
            .key(sid)
            .filter(|_| is_session_id(sid) && sid.starts_with(&subject_tag(subject)));
        let Some(key) = key else {
            return Box::pin(std::future::ready(Ok(false)));
        };
        let index = self.index(subject);
        let (subject, sid) = (subject.to_owned(), sid.to_owned());
        let ended = self.conn.invoke::<i64>(&self.end_of, move |invocation| {
            invocation.key(key).key(index).arg(subject).arg(sid);
        });
        Box::pin(async move { Ok(ended.await.ok_or(Unreachable)? > 0) })
    }

    fn end_all(
        &self,
        subject: &str,
        cutoff: SystemTime,
    ) -> BoxFuture<Result<Vec<Box<str>>, Unreachable>> {
        let (index, members, subject) = (
            self.index(subject),
            self.members(subject),
            subject.to_owned(),
        );
        let cutoff = cutoff
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let ended = self
            .conn
            .invoke::<Vec<String>>(&self.end_all, move |invocation| {
                invocation.key(index).arg(members).arg(subject).arg(cutoff);
            });
        Box::pin(async move {
            let ended = ended.await.ok_or(Unreachable)?;
            Ok(ended.into_iter().map(String::into_boxed_str).collect())
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
