//! Several replicas against a real redis-server (D, R5). `PORTCULLIS_REDIS_URL`
//! names one; without it these tests say they are skipped, except in CI,
//! where that fails. Tests that pause or kill the server start their own.

use ::redis::AsyncCommands;
use portcullis::lockout::RedisStore;

use super::*;

use crate::support::redis::{Server, redis_url, store, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_two_replicas_with_32_concurrent_failures_each_accept_at_most_max_failures() {
    // D1, D2, D3
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let replicas = [
        Tracker::with_redis(Policy::default(), store(&url, &prefix).await),
        Tracker::with_redis(Policy::default(), store(&url, &prefix).await),
    ];
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for tracker in &replicas {
        for _ in 0..32 {
            let (tracker, accepted) = (tracker.clone(), Arc::clone(&accepted));
            tasks.push(tokio::spawn(async move {
                if let Ok(attempt) = tracker.attempt(key("victim")).await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    // The validator rejects the guess.
                    attempt.failed();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    for tracker in &replicas {
        assert_eq!(
            tracker.stats().fallbacks,
            0,
            "a decision was made without redis"
        );
    }
    // Both replicas learn the lockout from redis (D3: its TTL decides).
    for tracker in &replicas {
        let locked = tracker.attempt(key("victim")).await.unwrap_err();
        assert!(locked.retry_after() > Duration::from_secs(29 * 60));
        assert!(tracker.check(&key("victim")).is_err());
    }

    // D1: every key the scripts left behind has a TTL.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = con.keys(format!("{prefix}*")).await.unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        let ttl: i64 = con.pttl(&k).await.unwrap();
        assert!(ttl > 0, "{k} has no TTL ({ttl})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_redis_killed_mid_run_falls_back_to_local_lockouts_and_recovers() {
    // R5
    if redis_url().is_none() {
        return;
    }
    let Some(mut server) = Server::start_free() else {
        return;
    };
    let port = server.port();
    server.ready().await;
    let prefix = unique_prefix();
    let redis = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .prefix(&prefix)
        .timeout(Duration::from_millis(200));
    let tracker = Tracker::with_redis(max(3), redis);
    let (svc, calls) = guarded(LockoutLayer::with_tracker(
        by_client as ByClient,
        tracker.clone(),
    ));
    let send = |client: &str| {
        let svc = svc.clone();
        let req = request(client, "invalid");
        async move {
            tokio::time::timeout(Duration::from_secs(5), svc.oneshot(req))
                .await
                .expect("the layer kept answering")
                .unwrap()
                .status()
        }
    };

    assert_eq!(send("before").await, StatusCode::UNAUTHORIZED);
    assert_eq!(tracker.stats().fallbacks, 0);

    server.kill();
    for _ in 0..3 {
        assert_eq!(send("during").await, StatusCode::UNAUTHORIZED);
    }
    // Locked out locally while redis is away.
    assert_eq!(send("during").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(tracker.stats().fallbacks > 0);

    // Back on the same port: shared state resumes.
    let server = Server::start(port).unwrap();
    server.ready().await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut n = 0;
    let resumed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            n += 1;
            send(&format!("after-{n}")).await;
            let keys: Vec<String> = con.keys(format!("{prefix}*after-*")).await.unwrap();
            if !keys.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(resumed.is_ok(), "the tracker never went back to redis");
}
