//! Rate-limit state shared by several replicas through Redis (feature
//! `redis`).

use std::{fmt, time::Duration};

use redis::Script;

use crate::lockout::{
    RedisStore,
    redis::{BoxFuture, Connection},
};

/// One GCRA decision. `KEYS[1]` holds the theoretical arrival time (TAT) in
/// microseconds of the Redis server's clock; `ARGV[1]` is the interval of
/// one request and `ARGV[2]` the burst. The key lives exactly until its
/// state equals a fresh one, and is never left without a TTL.
const GCRA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if now < allow_at then
  redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((tat - now) / 1000)))
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.max(1, math.ceil((new_tat - now) / 1000)))
return {1, math.floor((now + burst * interval - new_tat) / interval)}
";

/// What Redis decided about one request.
#[derive(Debug)]
pub(crate) enum RemoteDecision {
    /// Allowed, with this many requests left right now.
    Allowed(u32),
    /// Refused; the next request is allowed after this long.
    Refused(Duration),
    /// Redis failed or did not answer in time.
    Unavailable,
}

/// The Redis side of a rate limiter.
pub(crate) struct Remote {
    conn: Connection,
    gcra: Script,
    /// The interval of one request in whole microseconds (at least 1).
    interval_us: u64,
    burst: u32,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("interval_us", &self.interval_us)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl Remote {
    pub(crate) fn new(store: RedisStore, interval: Duration, burst: u32) -> Self {
        let interval_us = u64::try_from(interval.as_nanos().div_ceil(1000))
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            conn: Connection::new(store, "portcullis:rate:"),
            gcra: Script::new(GCRA),
            interval_us,
            burst,
        }
    }

    /// Whether Redis is to be skipped for now, after a failure.
    pub(crate) fn is_down(&self) -> bool {
        self.conn.is_down()
    }

    /// Records that Redis failed; returns whether it was up until now.
    pub(crate) fn mark_down(&self) -> bool {
        self.conn.mark_down()
    }

    /// Counts one request of `key` and decides it.
    pub(crate) fn check(&self, key: &impl fmt::Debug) -> BoxFuture<RemoteDecision> {
        let tat = format!("{}:t", self.conn.key_base(key));
        let (interval, burst) = (self.interval_us, self.burst);
        let call = self
            .conn
            .invoke::<(i64, i64)>(&self.gcra, move |invocation| {
                invocation.key(tat).arg(interval).arg(burst);
            });
        Box::pin(async move {
            match call.await {
                Some((1, remaining)) => {
                    RemoteDecision::Allowed(u32::try_from(remaining.max(0)).unwrap_or(u32::MAX))
                }
                Some((_, wait_us)) => {
                    RemoteDecision::Refused(Duration::from_micros(wait_us.max(1).unsigned_abs()))
                }
                None => RemoteDecision::Unavailable,
            }
        })
    }
}
