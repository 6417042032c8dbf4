//! Writing revocations into their bucket: the script that stores and
//! publishes them, and one batch's call.

use ::redis::Script;

use crate::redis::Connection;

/// Stores revocations in one bucket (`ARGV`: channel, origin, then member
/// and milliseconds left, for each), keeping the later end of two for one
/// member; trims ended ones, keeps the set's own TTL at its last end, and
/// publishes `origin ttl member` for each (unless the channel is empty: a
/// rewrite after Redis lost its data, which every replica holds already).
pub(super) const REVOKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local channel, origin = ARGV[1], ARGV[2]
for i = 3, #ARGV, 2 do
  local member, ttl = ARGV[i], ARGV[i + 1]
  redis.call('ZADD', KEYS[1], 'GT', now + tonumber(ttl), member)
  if channel ~= '' then
    redis.call('PUBLISH', channel, origin .. ' ' .. ttl .. ' ' .. member)
  end
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then
  redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(last[2])))
end
return 1
";

/// The most revocations stored by one script call.
pub(super) const BATCH: usize = 256;

/// Stores `members` (with the milliseconds each has left) in the bucket
/// `key`, publishing them on `channel` (none if empty); whether Redis took
/// them.
pub(super) async fn write(
    conn: &Connection,
    script: &Script,
    key: &str,
    channel: &str,
    origin: &str,
    members: Vec<(String, u64)>,
) -> bool {
    let (key, channel, origin) = (key.to_owned(), channel.to_owned(), origin.to_owned());
    conn.invoke::<i64>(script, move |invocation| {
        invocation.key(key).arg(channel).arg(origin);
        for (member, ttl) in members {
            invocation.arg(member).arg(ttl);
        }
    })
    .await
    .is_some()
}
