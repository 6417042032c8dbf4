//! Storing this replica's revocations in Redis, in order, retrying while
//! Redis does not answer.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use ::redis::Script;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

use super::{feed::Feed, member::encode};
use crate::{
    redis::{Connection, keep, millis},
    revoke::{
        NotShared, Revoked,
        engine::{Inner, Remote, Revocation},
    },
};

/// Stores a revocation (keeping the later end of two for one target),
/// trims ended ones, keeps the set's own TTL at its last end, and publishes
/// `origin ttl member`.
const REVOKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local ends = now + tonumber(ARGV[2])
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not old) or tonumber(old) < ends then
  redis.call('ZADD', KEYS[1], ends, ARGV[1])
end
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(last[2])))
redis.call('PUBLISH', ARGV[3], ARGV[4] .. ' ' .. ARGV[2] .. ' ' .. ARGV[1])
return 1
";

/// Revocations waiting to be stored, at most; past it a revocation is in
/// effect on its replica only (and says so).
const OUTBOX: usize = 4096;

/// How long to wait before storing a revocation again.
const RETRY: Duration = Duration::from_millis(250);

/// Where this replica's revocations go: the outbox of a task that stores
/// them in order, retrying while Redis does not answer.
pub(super) struct RedisRevocations {
    outbox: Option<mpsc::Sender<Job>>,
    backlog: Arc<AtomicU64>,
    origin: Arc<str>,
    /// Keeps the subscription alive as long as the list.
    _feed: Arc<Feed>,
}

/// A revocation to store.
struct Job {
    member: String,
    until: Instant,
    stored: Option<oneshot::Sender<Result<(), NotShared>>>,
}

impl RedisRevocations {
    pub(super) fn start(conn: &Connection, list: Weak<Inner>) -> Self {
        let mut seed = [0u8; 8];
        // Without randomness two replicas could share an origin and skip
        // each other's messages; the time keeps that unlikely.
        let _ = getrandom::fill(&mut seed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let origin: Arc<str> = format!("{:x}", u64::from_le_bytes(seed) ^ u64::from(nanos)).into();
        let key = format!("{}{{revocations}}", conn.prefix());
        let channel = format!("{}revocations", conn.prefix());
        let backlog = Arc::new(AtomicU64::new(0));
        let outbox = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (sender, receiver) = mpsc::channel(OUTBOX);
            runtime.spawn(store(
                conn.clone(),
                key.clone(),
                channel.clone(),
                origin.clone(),
                receiver,
                backlog.clone(),
            ));
            sender
        });
        let feed = Feed::new(list, conn, key, channel, origin.clone());
        Self {
            outbox,
            backlog,
            origin,
            _feed: keep(conn.client(), feed, "revocations"),
        }
    }
}

impl Remote for RedisRevocations {
    fn publish(&self, revocation: &Revocation) -> Revoked {
        let Some(outbox) = &self.outbox else {
            return Revoked::failed("no tokio runtime to store it with");
        };
        let (stored, receiver) = oneshot::channel();
        let job = Job {
            member: encode(revocation),
            until: revocation.until,
            stored: Some(stored),
        };
        // Counted before it is queued: the task may store it and count it
        // off before `try_send` returns.
        self.backlog.fetch_add(1, Ordering::Relaxed);
        match outbox.try_send(job) {
            Ok(()) => Revoked::storing(receiver),
            Err(_) => {
                self.backlog.fetch_sub(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "portcullis::revoke",
                    origin = %self.origin,
                    "too many revocations are waiting for redis: this one is in effect on this \
                     replica only"
                );
                Revoked::failed("too many revocations are waiting for redis")
            }
        }
    }

    fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }
}

/// Stores revocations in order; one that Redis does not take is retried
/// until it is taken or would have ended. Ends with the list.
async fn store(
    conn: Connection,
    key: String,
    channel: String,
    origin: Arc<str>,
    mut outbox: mpsc::Receiver<Job>,
    backlog: Arc<AtomicU64>,
) {
    let script = Script::new(REVOKE);
    while let Some(mut job) = outbox.recv().await {
        loop {
            let now = Instant::now();
            if job.until <= now {
                // What it revokes has expired: nothing left to share.
                if let Some(stored) = job.stored.take() {
                    let _ = stored.send(Ok(()));
                }
                break;
            }
            let ttl = millis(job.until - now);
            let (key, member, channel, origin) = (
                key.clone(),
                job.member.clone(),
                channel.clone(),
                origin.clone(),
            );
            let reply = conn
                .invoke::<i64>(&script, move |invocation| {
                    invocation
                        .key(key)
                        .arg(member)
                        .arg(ttl)
                        .arg(channel)
                        .arg(&*origin);
                })
                .await;
            if reply.is_some() {
                if let Some(stored) = job.stored.take() {
                    let _ = stored.send(Ok(()));
                }
                break;
            }
            if let Some(stored) = job.stored.take() {
                tracing::warn!(
                    target: "portcullis::revoke",
                    "redis did not store a revocation: it is in effect on this replica only \
                     until redis takes it (retrying)"
                );
                let _ = stored.send(Err(NotShared::new("redis did not answer")));
            }
            tokio::time::sleep(RETRY).await;
        }
        backlog.fetch_sub(1, Ordering::Relaxed);
    }
}
