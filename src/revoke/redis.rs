//! Revocations shared by several replicas through Redis (feature `redis`).
//!
//! Every revocation is stored in one sorted set (member: what it revokes,
//! score: when that would have expired, on the server's clock) and
//! published on a channel, in one script. Every replica subscribes, applies
//! what it hears, and, each time it (re)subscribes, reads the whole set
//! before it answers anything again.

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

use super::{
    NotShared, Revocations, RevocationsBuilder, Revoked,
    list::{Inner, Remote, Revocation, Target},
};
use crate::{
    ConfigError,
    gate::BoxFuture,
    redis::{Connection, Handler, RedisStore, keep, millis},
    validate::KeyDigest,
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

/// Every revocation still in effect, with the server's time.
const SNAPSHOT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return {now, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
";

/// Revocations waiting to be stored, at most; past it a revocation is in
/// effect on its replica only (and says so).
const OUTBOX: usize = 4096;

/// How long to wait before storing a revocation again.
const RETRY: Duration = Duration::from_millis(250);

/// How long reading every revocation may take while catching up.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(5);

impl RevocationsBuilder {
    /// Builds a list shared with other replicas through `store` (feature
    /// `redis`; keys and channel under the prefix `portcullis:revoke:`
    /// unless the store has its own). Call it inside a tokio runtime.
    ///
    /// Revocations are applied here at once, stored in Redis, and published
    /// to every replica, which applies them within a second. Until the list
    /// has read every revocation stored in Redis, and whenever it loses its
    /// subscription (Redis down, a network partition, a ping unanswered for
    /// 500 ms), every check answers unavailable and open streams end; it
    /// logs that, and [`Stats::in_sync`](super::Stats::in_sync) says so. On
    /// reconnecting it reads every revocation again, and the caches that
    /// listen to it forget what they held, before it answers again.
    ///
    /// # Errors
    ///
    /// As [`build`](Self::build).
    pub fn build_with_redis(self, store: RedisStore) -> Result<Revocations, ConfigError> {
        let list = self.build_in_sync(false)?;
        let conn = Connection::new(store, "portcullis:revoke:");
        let remote = RedisRevocations::start(&conn, Arc::downgrade(&list.inner));
        if list.inner.remote.set(Box::new(remote)).is_err() {
            unreachable!("the list was built just now, without a remote");
        }
        Ok(list)
    }
}

impl Revocations {
    /// A list with the default settings, shared with other replicas through
    /// `store`; see [`RevocationsBuilder::build_with_redis`].
    ///
    /// # Example
    ///
    /// ```no_run
    /// use portcullis::{lockout::RedisStore, revoke::Revocations};
    ///
    /// # async fn run() -> redis::RedisResult<()> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let revocations = Revocations::with_redis(store);
    /// revocations.synced().await; // before serving
    /// # Ok(()) }
    /// ```
    pub fn with_redis(store: RedisStore) -> Self {
        Self::builder()
            .build_with_redis(store)
            .expect("the default capacity and lifetime are valid")
    }
}

/// Where this replica's revocations go: the outbox of a task that stores
/// them in order, retrying while Redis does not answer.
struct RedisRevocations {
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
    fn start(conn: &Connection, list: Weak<Inner>) -> Self {
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
        let feed = Feed {
            list,
            conn: conn.clone().with_timeout(SNAPSHOT_TIMEOUT),
            key,
            channel,
            origin: origin.clone(),
        };
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
        match outbox.try_send(job) {
            Ok(()) => {
                self.backlog.fetch_add(1, Ordering::Relaxed);
                Revoked::storing(receiver)
            }
            Err(_) => {
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

/// The subscription: applies other replicas' revocations, and catches up
/// after each (re)connection.
struct Feed {
    list: Weak<Inner>,
    conn: Connection,
    key: String,
    channel: String,
    origin: Arc<str>,
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
            (Ok(ttl), Some((target, cutoff))) => list.apply(&Revocation {
                target,
                cutoff,
                until: ends_in(&list, ttl),
            }),
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
                list.apply(&Revocation {
                    target,
                    cutoff,
                    until: ends_in(&list, ttl),
                });
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

/// `a b rest` → `(a, b, rest)`.
fn split3(s: &str) -> Option<(&str, &str, &str)> {
    let (a, rest) = s.split_once(' ')?;
    let (b, rest) = rest.split_once(' ')?;
    Some((a, b, rest))
}

/// What a revocation reaches, as a member of the set: `s:<digest hex>`,
/// `i:<id>` or `u:<cutoff in Unix ms>:<subject>`.
fn encode(revocation: &Revocation) -> String {
    match &revocation.target {
        Target::Secret(digest) => format!("s:{digest}"),
        Target::Id(id) => format!("i:{id}"),
        Target::Subject(subject) => {
            let cutoff = revocation
                .cutoff
                .and_then(|cutoff| cutoff.duration_since(UNIX_EPOCH).ok())
                .map_or(u128::MAX, |d| d.as_millis());
            format!("u:{cutoff}:{subject}")
        }
    }
}

fn decode(member: &str) -> Option<(Target, Option<SystemTime>)> {
    let (kind, rest) = member.split_once(':')?;
    match kind {
        "s" => Some((Target::Secret(KeyDigest::parse(rest).ok()?), None)),
        "i" => Some((Target::Id(rest.into()), None)),
        "u" => {
            let (cutoff, subject) = rest.split_once(':')?;
            let cutoff: u128 = cutoff.parse().ok()?;
            // A cutoff too far to represent revokes everything issued.
            let cutoff = u64::try_from(cutoff)
                .ok()
                .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
                .unwrap_or(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 1000));
            Some((Target::Subject(subject.into()), Some(cutoff)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip() {
        let until = Instant::now();
        let cutoff = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        for (target, cutoff) in [
            (Target::Secret(KeyDigest::of("s3cret")), None),
            (Target::Id("jti 1:2".into()), None),
            (Target::Subject("alice: the first".into()), Some(cutoff)),
        ] {
            let revocation = Revocation {
                target: target.clone(),
                cutoff,
                until,
            };
            let member = encode(&revocation);
            assert!(!member.contains("s3cret"));
            assert_eq!(decode(&member), Some((target, cutoff)));
        }
        assert_eq!(decode("x:1"), None);
        assert_eq!(decode("s:not-a-digest"), None);
        assert_eq!(split3("a 1 u:2:b c"), Some(("a", "1", "u:2:b c")));
    }
}
