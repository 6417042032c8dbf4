//! Storing this replica's revocations in Redis, in order, in batches,
//! retrying while Redis does not answer, without keeping anyone waiting on
//! it.

use std::{
    collections::VecDeque,
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
    feed::Feed,
    held::Held,
    member::{BUCKETS, bucket, bucket_keys, encode},
    write::{BATCH, REVOKE, write},
};
use crate::{
    redis::{Connection, keep, millis},
    revoke::{
        RevokeError, RevokeErrorKind, Revoked,
        engine::{Inner, Remote, Revocation},
    },
};

/// Revocations waiting to be stored, at most; past it a revocation is in
/// effect on its replica only (and says so).
const OUTBOX: u64 = 4096;

/// How long to wait before storing revocations again.
const RETRY: Duration = Duration::from_millis(250);

/// Where this replica's revocations go: the outbox of a task that stores
/// them in order, retrying while Redis does not answer.
pub(super) struct RedisRevocations {
    outbox: Option<mpsc::UnboundedSender<Job>>,
    list: Weak<Inner>,
    backlog: Arc<AtomicU64>,
    dropped: AtomicU64,
    held: Arc<Held>,
    origin: Arc<str>,
    /// Keeps the subscription alive as long as the list.
    _feed: Arc<Feed>,
}

/// A revocation to store.
struct Job {
    member: String,
    until: Instant,
    /// Told once the revocation is stored, or as soon as it has to wait for
    /// Redis.
    stored: Option<oneshot::Sender<Result<(), RevokeError>>>,
}

impl Job {
    fn answer(&mut self, result: Result<(), RevokeError>) {
        if let Some(stored) = self.stored.take() {
            let _ = stored.send(result);
        }
    }
}

fn queued() -> RevokeError {
    RevokeError::new(
        RevokeErrorKind::Queued,
        "redis is unreachable; the revocation is stored when it is back",
    )
}

impl RedisRevocations {
    pub(super) fn start(conn: &Connection, list: Weak<Inner>, capacity: u64) -> Self {
        let mut seed = [0u8; 8];
        // Without randomness two replicas could share an origin and skip
        // each other's messages; the time keeps that unlikely.
        let _ = getrandom::fill(&mut seed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let origin: Arc<str> = format!("{:x}", u64::from_le_bytes(seed) ^ u64::from(nanos)).into();
        let keys: Arc<[String]> = bucket_keys(conn.prefix()).into();
        let channel = format!("{}revocations", conn.prefix());
        let backlog = Arc::new(AtomicU64::new(0));
        let held = Arc::new(Held::new(capacity));
        let outbox = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (sender, receiver) = mpsc::unbounded_channel();
            runtime.spawn(store(
                Store {
                    conn: conn.clone(),
                    keys: keys.clone(),
                    channel: channel.clone(),
                    origin: origin.clone(),
                    backlog: backlog.clone(),
                },
                receiver,
            ));
            sender
        });
        let feed = Feed::new(
            list.clone(),
            conn,
            keys,
            channel,
            origin.clone(),
            held.clone(),
        );
        Self {
            outbox,
            list,
            backlog,
            dropped: AtomicU64::new(0),
            held,
            origin,
            _feed: keep(conn.client(), feed, "revocations"),
        }
    }
}

impl Remote for RedisRevocations {
    fn publish(&self, revocation: &Revocation) -> Revoked {
        let Some(outbox) = &self.outbox else {
            return Revoked::failed(RevokeError::new(
                RevokeErrorKind::Overflow,
                "no tokio runtime to store it with",
            ));
        };
        // Counted before it is queued: the task may store it and count it
        // off before `send` returns.
        if self.backlog.fetch_add(1, Ordering::SeqCst) >= OUTBOX {
            self.backlog.fetch_sub(1, Ordering::SeqCst);
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::warn!(
                target: "portcullis::revoke",
                origin = %self.origin,
                dropped,
                "too many revocations are waiting for redis: this one is in effect on this \
                 replica only"
            );
            return Revoked::failed(RevokeError::new(
                RevokeErrorKind::Overflow,
                "too many revocations are waiting for redis",
            ));
        }
        let member = encode(revocation);
        self.held.record(&member, revocation.until);
        // While the list knows Redis is away, nobody waits for it.
        let reachable = self.list.upgrade().is_some_and(|list| list.is_in_sync());
        let (stored, receiver) = oneshot::channel();
        let job = Job {
            member,
            until: revocation.until,
            stored: reachable.then_some(stored),
        };
        if outbox.send(job).is_err() {
            self.backlog.fetch_sub(1, Ordering::SeqCst);
            return Revoked::failed(RevokeError::new(
                RevokeErrorKind::Overflow,
                "the task that stores revocations has ended",
            ));
        }
        if reachable {
            Revoked::storing(receiver)
        } else {
            Revoked::failed(queued())
        }
    }

    fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::SeqCst)
    }

    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// What the storing task needs.
struct Store {
    conn: Connection,
    keys: Arc<[String]>,
    channel: String,
    origin: Arc<str>,
    backlog: Arc<AtomicU64>,
}

/// Stores revocations in order, in batches; those Redis does not take are
/// retried until taken or ended, and whoever waits for them is told at
/// once that they are queued. Ends with the list.
async fn store(store: Store, mut outbox: mpsc::UnboundedReceiver<Job>) {
    let script = Script::new(REVOKE);
    let mut pending: VecDeque<Job> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match outbox.recv().await {
                Some(job) => pending.push_back(job),
                None => return,
            }
        }
        while let Ok(job) = outbox.try_recv() {
            pending.push_back(job);
        }
        let now = Instant::now();
        pending.retain_mut(|job| {
            if job.until > now {
                return true;
            }
            // What it revokes has expired: nothing left to share.
            job.answer(Ok(()));
            store.backlog.fetch_sub(1, Ordering::SeqCst);
            false
        });
        let batch: Vec<Job> = pending.drain(..pending.len().min(BATCH)).collect();
        let mut by_bucket: Vec<Vec<Job>> = (0..BUCKETS).map(|_| Vec::new()).collect();
        for job in batch {
            by_bucket[bucket(&job.member)].push(job);
        }
        let mut failed = Vec::new();
        for (i, mut jobs) in by_bucket.into_iter().enumerate() {
            if jobs.is_empty() {
                continue;
            }
            let members: Vec<(String, u64)> = jobs
                .iter()
                .map(|job| {
                    (
                        job.member.clone(),
                        millis(job.until.saturating_duration_since(now)),
                    )
                })
                .collect();
            if write(
                &store.conn,
                &script,
                &store.keys[i],
                &store.channel,
                &store.origin,
                members,
            )
            .await
            {
                for job in &mut jobs {
                    job.answer(Ok(()));
                }
                store.backlog.fetch_sub(jobs.len() as u64, Ordering::SeqCst);
            } else {
                failed.extend(jobs);
            }
        }
        if failed.is_empty() {
            continue;
        }
        tracing::warn!(
            target: "portcullis::revoke",
            waiting = store.backlog.load(Ordering::SeqCst),
            "redis did not store revocations: they are in effect on this replica, queued until \
             redis takes them (retrying)"
        );
        for job in failed.iter_mut().chain(pending.iter_mut()) {
            job.answer(Err(queued()));
        }
        for job in failed.into_iter().rev() {
            pending.push_front(job);
        }
        // Wait before retrying, telling newcomers at once that they wait.
        let retry = tokio::time::sleep(RETRY);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                job = outbox.recv() => match job {
                    Some(mut job) => {
                        job.answer(Err(queued()));
                        pending.push_back(job);
                    }
                    None => return,
                },
            }
        }
    }
}
