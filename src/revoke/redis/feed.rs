//! The subscription: other replicas' revocations, and catching up after
//! each (re)connection.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use ::redis::Script;
use tokio::time::Instant;

use super::member::{decode, split3};
use crate::{
    events::RevocationOrigin,
    gate::BoxFuture,
    redis::{Connection, Handler},
    revoke::engine::{Inner, Revocation},
};

/// Every revocation still in effect, with the server's time.
const SNAPSHOT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return {now, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
";

/// How long reading every revocation may take while catching up.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

/// The subscription: applies other replicas' revocations, and catches up
/// after each (re)connection.
pub(super) struct Feed {
    list: Weak<Inner>,
    conn: Connection,
    key: String,
    channel: String,
    origin: Arc<str>,
}

impl Feed {
    /// Listens on `channel` for `list`; catches up from the set `key`.
    /// Messages from `origin` (this replica) are skipped.
    pub(super) fn new(
        list: Weak<Inner>,
        conn: &Connection,
        key: String,
        channel: String,
        origin: Arc<str>,
    ) -> Self {
        Self {
            list,
            conn: conn.clone().with_timeout(SNAPSHOT_TIMEOUT),
            key,
            channel,
            origin,
        }
    }
}

impl Handler for Feed {
    fn channel(&self) -> &str {
        &self.channel
    }

    fn message(&self, payload: &[u8]) {
        let Some(list) = self.list.upgrade() else {
            return;
        };
        let Some((origin, ttl, member)) = std::str::from_utf8(payload)
            .ok()
            .and_then(|payload| split3(payload))
        else {
            tracing::warn!(target: "portcullis::revoke", "ignored a malformed revocation message");
            return;
        };
        if origin == &*self.origin {
            // Made here: applied already.
            return;
        }
        match (ttl.parse::<u64>(), decode(member)) {
            (Ok(ttl), Some((target, cutoff))) => list.apply(
                &Revocation {
                    target,
                    cutoff,
                    until: ends_in(&list, ttl),
                },
                RevocationOrigin::Replica,
            ),
            _ => {
                tracing::warn!(target: "portcullis::revoke", "ignored a malformed revocation message")
            }
        }
    }

    fn subscribed(&self) -> BoxFuture<bool> {
        let list = self.list.clone();
        let conn = self.conn.clone();
        let key = self.key.clone();
        Box::pin(async move {
            let script = Script::new(SNAPSHOT);
            let Some((now, entries)) = conn
                .invoke::<(i64, Vec<String>)>(&script, move |invocation| {
                    invocation.key(key);
                })
                .await
            else {
                return false;
            };
            let Some(list) = list.upgrade() else {
                return true;
            };
            let mut applied = 0;
            for pair in entries.chunks_exact(2) {
                let (Some((target, cutoff)), Ok(ends)) = (decode(&pair[0]), pair[1].parse::<f64>())
                else {
                    continue;
                };
                // Whole milliseconds on the server's clock; the remainder
                // is what is left of the revocation.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let ttl = (ends as i64).saturating_sub(now).max(0) as u64;
                if ttl == 0 {
                    continue;
                }
                list.apply(
                    &Revocation {
                        target,
                        cutoff,
                        until: ends_in(&list, ttl),
                    },
                    RevocationOrigin::CatchUp,
                );
                applied += 1;
            }
            list.caught_up(applied);
            true
        })
    }

    fn lost(&self, why: &'static str) {
        if let Some(list) = self.list.upgrade() {
            list.lost(why);
        }
    }
}

/// Now plus `ttl` milliseconds, at most the list's maximum lifetime.
fn ends_in(list: &Inner, ttl: u64) -> Instant {
    let now = Instant::now();
    let ttl = Duration::from_millis(ttl).min(list.max_lifetime());
    now.checked_add(ttl).unwrap_or(now)
}
