//! Redis outages and Redis state (D6, D7, V1, V2), against redis-servers of
//! the tests' own: stopped (paused) for 5 s, restarted empty, and holding
//! 100,000 revocations. Real servers run on real time: the tests wait for
//! real conditions with bounded loops, and pace their own traffic.

use std::time::Duration;

use ::redis::AsyncCommands as _;
use portcullis::{
    ValidationErrorKind,
    revoke::{Revocations, RevokeErrorKind, SyncState, WhenStale},
};
use tokio::time::{Instant, timeout};

use super::{Sessions, User, bearer, cached, kind};
use crate::support::{
    logs::capture,
    redis::{Server, command_calls, redis_url, store, unique_prefix, until},
};

/// A server of the test's own, ready; `None` when the Redis tests skip.
async fn own_server() -> Option<Server> {
    redis_url()?;
    let server = Server::start_free()?;
    server.ready().await;
    Some(server)
}

async fn in_sync(revocations: &Revocations) {
    timeout(Duration::from_secs(10), revocations.synced())
        .await
        .expect("the list catches up with redis");
}

fn anyone() -> User {
    User {
        name: "nobody".into(),
        issued: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_for_five_seconds_takes_nothing_down_and_a_sign_out_meanwhile_reaches_every_replica()
 {
    // D6, V2: good requests are served from the local copy; a sign-out
    // takes effect at once where it is made, answers at once, and reaches
    // the other replica when Redis is back.
    let Some(server) = own_server().await else {
        return;
    };
    let logs = capture();
    let prefix = unique_prefix();
    let a = Revocations::builder()
        .redis(store(&server.url(), &prefix).await)
        .build()
        .unwrap();
    let b = Revocations::builder()
        .redis(store(&server.url(), &prefix).await)
        .build()
        .unwrap();
    in_sync(&a).await;
    in_sync(&b).await;
    let (on_a, on_b) = (cached(&Sessions::new(), &a), cached(&Sessions::new(), &b));
    for secret in ["alice-1", "alice-2", "bob-1"] {
        assert_eq!(kind(&on_a, &bearer(secret)).await, None);
        assert_eq!(kind(&on_b, &bearer(secret)).await, None);
    }

    server.pause();
    let stopped = Instant::now();
    // Sign-outs before the replicas notice: they wait one store timeout
    // (1 s here) at most, the second never behind the first.
    let (first, second) = tokio::join!(a.revoke_id("early-1", None), a.revoke_id("early-2", None));
    for early in [first, second] {
        assert_eq!(early.unwrap_err().kind(), RevokeErrorKind::Queued);
    }
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );
    until("both replicas to notice", || {
        a.state() == SyncState::Stale && b.state() == SyncState::Stale
    })
    .await;
    assert!(stopped.elapsed() < Duration::from_secs(3));
    assert!(logs.text().contains("serving the local copy"));
    assert!(!b.stats().in_sync);

    // A sign-out during the outage: in effect here at once, answered at
    // once, queued.
    let signing_out = Instant::now();
    let signed_out = a.revoke_secret("alice-1", None).await.unwrap_err();
    assert!(
        signing_out.elapsed() < Duration::from_millis(200),
        "{:?}",
        signing_out.elapsed()
    );
    assert_eq!(signed_out.kind(), RevokeErrorKind::Queued);
    assert!(signed_out.in_effect_here());
    assert_eq!(
        kind(&on_a, &bearer("alice-1")).await,
        Some(ValidationErrorKind::Revoked)
    );
    assert_eq!(a.stats().backlog, 3);

    // Five seconds of traffic (paced, not waited for): every good request
    // is served on both replicas, cached or not.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut served = 0;
    while stopped.elapsed() < Duration::from_secs(5) {
        pace.tick().await;
        for (validator, list) in [(&on_a, &a), (&on_b, &b)] {
            assert_eq!(kind(validator, &bearer("alice-2")).await, None);
            assert_eq!(
                kind(validator, &bearer(&format!("bob-{served}"))).await,
                None
            );
            assert_eq!(list.state(), SyncState::Stale);
        }
        served += 1;
    }
    assert!(served >= 20, "{served}");
    // b has not heard of the sign-out yet: it serves what it holds.
    assert_eq!(kind(&on_b, &bearer("alice-1")).await, None);

    server.resume();
    in_sync(&a).await;
    in_sync(&b).await;
    until("the queued sign-outs to reach redis", || {
        a.stats().backlog == 0
    })
    .await;
    until("the sign-out to reach b", || {
        b.check(&bearer("alice-1"), &anyone()).is_err()
    })
    .await;
    assert_eq!(
        kind(&on_b, &bearer("alice-1")).await,
        Some(ValidationErrorKind::Revoked)
    );
    assert_eq!(kind(&on_b, &bearer("alice-2")).await, None);
    let stats = b.stats();
    assert_eq!(stats.state, SyncState::InSync);
    assert_eq!(stats.catch_ups, 2);
    assert_eq!(a.stats().dropped, 0);
    // A replica that starts now reads all three from Redis.
    let c = Revocations::builder()
        .redis(store(&server.url(), &prefix).await)
        .build()
        .unwrap();
    in_sync(&c).await;
    assert_eq!(c.stats().entries, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_staleness_bound_a_list_refuses_or_keeps_serving_as_configured() {
    // D6, V1: the operator's choice, stated in stats and logs.
    let Some(server) = own_server().await else {
        return;
    };
    let logs = capture();
    let prefix = unique_prefix();
    let refusing = Revocations::builder()
        .staleness(Duration::from_millis(500))
        .redis(store(&server.url(), &prefix).await)
        .build()
        .unwrap();
    let serving = Revocations::builder()
        .staleness(Duration::from_millis(500))
        .when_stale(WhenStale::Serve)
        .redis(store(&server.url(), &prefix).await)
        .build()
        .unwrap();
    in_sync(&refusing).await;
    in_sync(&serving).await;
    server.pause();
    until("the bound to pass", || {
        refusing.state() == SyncState::Refusing && serving.state() == SyncState::Serving
    })
    .await;
    let refused = refusing.check(&bearer("alice-1"), &anyone()).unwrap_err();
    assert_eq!(refused.kind(), ValidationErrorKind::Unavailable);
    assert!(serving.check(&bearer("alice-1"), &anyone()).is_ok());
    until("the logs to say so", || {
        let text = logs.text();
        text.contains("every credential is answered unavailable until they have caught up")
            && text.contains("still serving the local copy")
    })
    .await;
    server.resume();
    in_sync(&refusing).await;
    assert!(refusing.check(&bearer("alice-1"), &anyone()).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_restarted_empty_loses_no_live_revocation_a_replica_holds() {
    // D6, V2: replicas see a new run id and write back what they hold.
    let Some(mut server) = own_server().await else {
        return;
    };
    let logs = capture();
    let port = server.port();
    let prefix = unique_prefix();
    let a = Revocations::builder()
        .redis(store(&server.url(), &prefix).await)
        .build()
        .unwrap();
    let b = Revocations::builder()
        .redis(store(&server.url(), &prefix).await)
        .build()
        .unwrap();
    in_sync(&a).await;
    in_sync(&b).await;
    a.revoke_secret("alice-1", None).await.unwrap();
    b.revoke_id("session-9", None).await.unwrap();
    a.revoke_subject("bob").await.unwrap();
    until("b to hear a's revocations", || b.stats().entries == 3).await;

    server.kill();
    let server = Server::start(port).expect("redis-server starts again");
    server.ready().await;
    until("both to catch up with the new server", || {
        a.stats().catch_ups == 2 && b.stats().catch_ups == 2
    })
    .await;
    assert!(logs.text().contains("redis restarted (a new run id)"));
    // A replica that starts now knows nothing but what Redis holds.
    let c = Revocations::builder()
        .redis(store(&server.url(), &prefix).await)
        .build()
        .unwrap();
    in_sync(&c).await;
    let on_c = cached(&Sessions::new(), &c);
    for secret in ["alice-1", "bob-1"] {
        assert_eq!(
            kind(&on_c, &bearer(secret)).await,
            Some(ValidationErrorKind::Revoked)
        );
    }
    assert_eq!(kind(&on_c, &bearer("alice-2")).await, None);
    assert_eq!(c.stats().entries, 3);
}

/// `INFO <section>` field `name`, as a number.
async fn info(con: &mut ::redis::aio::MultiplexedConnection, section: &str, name: &str) -> u64 {
    let text: String = ::redis::cmd("INFO")
        .arg(section)
        .query_async(con)
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .map_or(0, |value| {
            value
                .split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
                .unwrap_or("0")
                .parse()
                .unwrap()
        })
}

/// Script calls the server has run (`EVALSHA`, and `EVAL` for a script it
/// did not know yet).
async fn script_calls(con: &mut ::redis::aio::MultiplexedConnection) -> u64 {
    command_calls(con, |name| name == "evalsha" || name == "eval").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_revocations_stay_bounded_in_redis_and_are_read_in_pages() {
    // D7, V1: spread over several keys (no single key or slot), every key
    // with a TTL, memory bounded, a catch-up read in pages; revocations
    // leave Redis when they end.
    let Some(server) = own_server().await else {
        return;
    };
    const N: u64 = 100_000;
    let prefix = unique_prefix();
    let client = ::redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let before = info(&mut con, "memory", "used_memory").await;
    let a = Revocations::builder()
        .capacity(2 * N)
        .redis(store(&server.url(), &prefix).await)
        .build()
        .unwrap();
    in_sync(&a).await;
    let writing = Instant::now();
    let until_ = Instant::now() + Duration::from_secs(3600);
    for chunk in 0..N / 2_000 {
        for i in chunk * 2_000..(chunk + 1) * 2_000 {
            drop(a.revoke_id(&format!("session-{i:06}"), Some(until_)));
        }
        until("the outbox to drain", || a.stats().backlog == 0).await;
    }
    let wrote = writing.elapsed();
    assert_eq!(a.stats().entries, N);
    assert_eq!(a.stats().dropped, 0);

    let keys: Vec<String> = con.keys(format!("{prefix}*")).await.unwrap();
    assert!(keys.len() >= 8, "spread over several keys: {keys:?}");
    let mut total = 0;
    for key in &keys {
        let size: u64 = con.zcard(key).await.unwrap();
        let ttl: i64 = con.pttl(key).await.unwrap();
        assert!(ttl > 0, "{key} has a TTL");
        assert!(size <= N / 8, "{key} holds {size}");
        total += size;
    }
    assert_eq!(total, N);
    let used = info(&mut con, "memory", "used_memory")
        .await
        .saturating_sub(before);
    assert!(used < 40 << 20, "{used} bytes for {N} revocations");

    // A replica that starts now reads them all, in pages.
    let calls = script_calls(&mut con).await;
    let reading = Instant::now();
    let c = Revocations::builder()
        .capacity(2 * N)
        .redis(store(&server.url(), &prefix).await)
        .build()
        .unwrap();
    in_sync(&c).await;
    let read = reading.elapsed();
    assert_eq!(c.stats().entries, N);
    let pages = script_calls(&mut con).await - calls;
    // Each bucket in several pages of about 1,000 (16 buckets of about
    // 6,250), not one read of everything.
    assert!(pages >= N / 2_000, "{pages} calls");
    eprintln!(
        "{N} revocations: written in {wrote:?}, {used} bytes in redis over {} keys, read by a new \
         replica in {read:?} over {pages} script calls",
        keys.len()
    );

    // Revocations that end leave Redis.
    let prefix = unique_prefix();
    let short = Revocations::builder()
        .redis(store(&server.url(), &prefix).await)
        .build()
        .unwrap();
    in_sync(&short).await;
    for i in 0..1_000 {
        drop(short.revoke_id(
            &format!("short-{i}"),
            Some(Instant::now() + Duration::from_secs(1)),
        ));
    }
    until("the outbox to drain", || short.stats().backlog == 0).await;
    let stored: Vec<String> = con.keys(format!("{prefix}*")).await.unwrap();
    assert!(!stored.is_empty());
    // Polled like `until` does, for a real server's expiry.
    timeout(Duration::from_secs(10), async {
        while !con
            .keys::<_, Vec<String>>(format!("{prefix}*"))
            .await
            .unwrap()
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("ended revocations leave redis");
}
