//! The subscription: other replicas' revocations, and catching up after
//! each (re)connection, in pages; a Redis that restarted empty gets back
//! what this replica holds.

use std::{
    sync::{Arc, Mutex, PoisonError, Weak},
    time::Duration,
};

use ::redis::Script;
use tokio::time::Instant;

use super::{
    held::Held,
    member::{BUCKETS, bucket, decode, split3},
    write::{BATCH, REVOKE, write},
};
use crate::{
    events::RevocationOrigin,
    future::BoxFuture,
    redis::{Connection, Handler},
    revoke::engine::{Inner, Revocation},
};

/// The server's run id: a new one means a server that restarted, maybe
/// without the revocations it held.
const RUN_ID: &str = r"
return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
";

/// One page of a bucket (`ARGV`: cursor, count), with the server's time;
/// the first page trims ended revocations first.
const PAGE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] == '0' then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
end
local page = redis.call('ZSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
return {now, page[1], page[2]}
";

/// Revocations asked for per page while catching up.
const PAGE_SIZE: usize = 1000;

/// How long one call may take while catching up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(5);

/// The subscription: applies other replicas' revocations, and catches up
/// after each (re)connection.
pub(super) struct Feed {
    list: Weak<Inner>,
    conn: Connection,
    keys: Arc<[String]>,
    channel: String,
    origin: Arc<str>,
    held: Arc<Held>,
    /// The run id of the server last caught up with.
    run_id: Arc<Mutex<Option<String>>>,
}

impl Feed {
    /// Listens on `channel` for `list`; catches up from the buckets `keys`.
    /// Messages from `origin` (this replica) are skipped.
    pub(super) fn new(
        list: Weak<Inner>,
        conn: &Connection,
        keys: Arc<[String]>,
        channel: String,
        origin: Arc<str>,
        held: Arc<Held>,
    ) -> Self {
        Self {
            list,
            conn: conn.clone().with_timeout(CATCH_UP_TIMEOUT),
            keys,
            channel,
            origin,
            held,
            run_id: Arc::default(),
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
            (Ok(ttl), Some((target, cutoff))) => {
                let until = ends_in(&list, ttl);
                let revocation = Revocation {
                    target,
                    cutoff,
                    until,
                };
                if list.apply(&revocation, RevocationOrigin::Replica) {
                    self.held.record(member, until);
                }
            }
            _ => {
                tracing::warn!(target: "portcullis::revoke", "ignored a malformed revocation message")
            }
        }
    }

    fn subscribed(&self) -> BoxFuture<bool> {
        let catch_up = CatchUp {
            list: self.list.clone(),
            conn: self.conn.clone(),
            keys: self.keys.clone(),
            held: self.held.clone(),
            run_id: self.run_id.clone(),
        };
        Box::pin(catch_up.run())
    }

    fn lost(&self, why: &'static str) {
        if let Some(list) = self.list.upgrade() {
            list.lost(why);
        }
    }
}

/// What catching up needs.
struct CatchUp {
    list: Weak<Inner>,
    conn: Connection,
    keys: Arc<[String]>,
    held: Arc<Held>,
    run_id: Arc<Mutex<Option<String>>>,
}

impl CatchUp {
    async fn run(self) -> bool {
        let Some(run_id) = self
            .conn
            .invoke::<String>(&Script::new(RUN_ID), |_| {})
            .await
        else {
            return false;
        };
        let known = self
            .run_id
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if known.as_ref().is_some_and(|known| *known != run_id) {
            // A new server, which may have lost what the old one held:
            // write back every live revocation held here first.
            let Some(rewritten) = self.rewrite().await else {
                return false;
            };
            tracing::warn!(
                target: "portcullis::revoke",
                rewritten,
                "redis restarted (a new run id): wrote back the revocations this replica holds"
            );
        }
        let Some(applied) = self.read().await else {
            return false;
        };
        *self.run_id.lock().unwrap_or_else(PoisonError::into_inner) = Some(run_id);
        if let Some(list) = self.list.upgrade() {
            list.caught_up(applied);
        }
        true
    }

    /// Stores every live revocation held here, unpublished (every replica
    /// holds them already); how many, or `None` when Redis failed.
    async fn rewrite(&self) -> Option<usize> {
        let script = Script::new(REVOKE);
        let mut by_bucket: Vec<Vec<(String, u64)>> = (0..BUCKETS).map(|_| Vec::new()).collect();
        let live = self.held.live();
        let count = live.len();
        for (member, ttl) in live {
            by_bucket[bucket(&member)].push((member, ttl));
        }
        for (key, mut members) in self.keys.iter().zip(by_bucket) {
            while !members.is_empty() {
                let page: Vec<_> = members.drain(..members.len().min(BATCH)).collect();
                if !write(&self.conn, &script, key, "", "", page).await {
                    return None;
                }
            }
        }
        Some(count)
    }

    /// Reads every bucket, page by page, and applies what is live; how many,
    /// or `None` when Redis failed.
    async fn read(&self) -> Option<usize> {
        let script = Script::new(PAGE);
        let mut applied = 0;
        for key in self.keys.iter() {
            let mut cursor = String::from("0");
            loop {
                let (key, page_cursor) = (key.clone(), cursor.clone());
                let (now, next, entries) = self
                    .conn
                    .invoke::<(i64, String, Vec<String>)>(&script, move |invocation| {
                        invocation.key(key).arg(page_cursor).arg(PAGE_SIZE);
                    })
                    .await?;
                let list = self.list.upgrade()?;
                for pair in entries.chunks_exact(2) {
                    let (Some((target, cutoff)), Ok(ends)) =
                        (decode(&pair[0]), pair[1].parse::<f64>())
                    else {
                        continue;
                    };
                    // Whole milliseconds on the server's clock; the
                    // remainder is what is left of the revocation.
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let ttl = (ends as i64).saturating_sub(now).max(0) as u64;
                    if ttl == 0 {
                        continue;
                    }
                    let until = ends_in(&list, ttl);
                    let revocation = Revocation {
                        target,
                        cutoff,
                        until,
                    };
                    if list.apply(&revocation, RevocationOrigin::CatchUp) {
                        self.held.record(&pair[0], until);
                        applied += 1;
                    }
                }
                if next == "0" {
                    break;
                }
                cursor = next;
            }
        }
        Some(applied)
    }
}

/// Now plus `ttl` milliseconds (the leeway is in it already), at most the
/// list's maximum lifetime.
fn ends_in(list: &Inner, ttl: u64) -> Instant {
    let now = Instant::now();
    let horizon = list.ends(now, None);
    now.checked_add(Duration::from_millis(ttl))
        .map_or(horizon, |ends| ends.min(horizon))
}
