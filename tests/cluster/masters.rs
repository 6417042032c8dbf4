//! A master that goes down puts only its own keys on the local fallback,
//! and slots that move keep deciding through Redis (D8, R5).

use ::redis::AsyncCommands;

use super::*;
use crate::support::redis::{Cluster, slot_of, unique_prefix};

/// A limiter key (`{stem}-{n}`) whose slot is on `node`.
async fn key_on(cluster: &Cluster, prefix: &str, stem: &str, node: usize) -> String {
    let mut admin = cluster.admin(0).await;
    for n in 0.. {
        let k = format!("{stem}-{n}");
        if cluster.node_of(slot(&mut admin, prefix, &k).await) == node {
            return k;
        }
    }
    unreachable!()
}

/// Whether a failure of `k` recorded through `a` is seen by `b`: the
/// decision went through Redis.
async fn shared(a: &Tracker<String>, b: &Tracker<String>, k: &str) -> bool {
    fail(a, k, 1).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if locked_out(b, k).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_goes_down_puts_only_its_keys_on_the_local_fallback() {
    // D8, R5
    let Some(mut cluster) = Cluster::start(3).await else {
        return;
    };
    let prefix = unique_prefix();
    let urls = cluster.urls();
    let timeout = Duration::from_millis(200);
    let a = shared_tracker(max(1), store(&urls, &prefix, timeout).await);
    let b = shared_tracker(max(1), store(&urls, &prefix, timeout).await);
    let mut up = Vec::new();
    for (n, stem) in ["up-a", "up-b", "up-c", "up-d"].into_iter().enumerate() {
        up.push(key_on(&cluster, &prefix, stem, n % 2).await);
    }
    let down = [
        key_on(&cluster, &prefix, "down-a", 2).await,
        key_on(&cluster, &prefix, "down-b", 2).await,
    ];
    assert!(shared(&a, &b, &up[0]).await, "through redis before");

    cluster.stop(2);
    // The stopped master's keys: decided locally, by each replica alone.
    let answered = Instant::now();
    fail(&a, &down[0], 1).await;
    assert!(answered.elapsed() < Duration::from_secs(2));
    assert!(a.check(&key(&down[0])).is_err(), "locked out locally on a");
    assert!(!locked_out(&b, &down[0]).await, "b decides alone");
    let fallbacks = (a.stats().fallbacks, b.stats().fallbacks);
    assert!(fallbacks.0 > 0 && fallbacks.1 > 0);

    // The other masters' keys: still through redis, and their decisions
    // fall back nowhere, before and after the cluster marks the master as
    // failed.
    assert!(
        shared(&a, &b, &up[1]).await,
        "through redis while one is down"
    );
    let mut admin = cluster.admin(0).await;
    let started = Instant::now();
    loop {
        let nodes: String = ::redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut admin)
            .await
            .unwrap();
        if nodes.lines().any(|line| line.contains("master,fail ")) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never marked failed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        shared(&a, &b, &up[2]).await,
        "through redis after the failure"
    );
    assert_eq!(
        (a.stats().fallbacks, b.stats().fallbacks),
        fallbacks,
        "a healthy master's key fell back"
    );

    // The master comes back: its keys go through redis again.
    cluster.restart(2).await;
    let mut n = 0;
    let started = Instant::now();
    loop {
        n += 1;
        let k = key_on(&cluster, &prefix, &format!("back-{n}"), 2).await;
        if shared(&a, &b, &k).await {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the master's keys never went back to redis"
        );
    }
    assert!(shared(&a, &b, &up[3]).await);
    let mut con = cluster.admin(2).await;
    let keys: Vec<String> = con.keys(format!("{prefix}*")).await.unwrap();
    assert!(!keys.is_empty(), "state is kept on the master again");
}

/// Moves `slot` from node `from` to node `to` the way `redis-cli
/// --cluster reshard` does, up to the last step: both nodes mark the slot
/// as moving and every key of it is migrated, so `from` answers `ASK`.
async fn start_moving(cluster: &Cluster, slot: u16, from: usize, to: usize) -> String {
    let (mut source, mut target) = (cluster.admin(from).await, cluster.admin(to).await);
    let id = |mut con: ::redis::aio::MultiplexedConnection| async move {
        ::redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async::<String>(&mut con)
            .await
            .unwrap()
    };
    let (source_id, target_id) = (id(source.clone()).await, id(target.clone()).await);
    ::redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("IMPORTING")
        .arg(&source_id)
        .exec_async(&mut target)
        .await
        .unwrap();
    ::redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(slot)
        .arg("MIGRATING")
        .arg(&target_id)
        .exec_async(&mut source)
        .await
        .unwrap();
    let keys: Vec<String> = ::redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(slot)
        .arg(1000)
        .query_async(&mut source)
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the slot holds the limiter's state");
    let port: u16 = cluster.url(to).rsplit(':').next().unwrap().parse().unwrap();
    ::redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(port)
        .arg("")
        .arg(0)
        .arg(5000)
        .arg("KEYS")
        .arg(&keys)
        .exec_async(&mut source)
        .await
        .unwrap();
    target_id
}

/// The last step of a move: every node learns that `slot` is on the node
/// `target_id`, so the old one answers `MOVED`.
async fn finish_moving(cluster: &Cluster, slot: u16, target_id: &str) {
    for node in 0..3 {
        ::redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("NODE")
            .arg(target_id)
            .exec_async(&mut cluster.admin(node).await)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lockout_count_survives_its_slot_moving_to_another_master() {
    // D8, D2: MOVED is followed; nothing falls back or is lost.
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let prefix = unique_prefix();
    let urls = cluster.urls();
    let timeout = Duration::from_secs(1);
    let a = shared_tracker(max(4), store(&urls, &prefix, timeout).await);
    let b = shared_tracker(max(4), store(&urls, &prefix, timeout).await);
    let victim = key_on(&cluster, &prefix, "victim", 0).await;
    let slot = slot(&mut cluster.admin(0).await, &prefix, &victim).await;
    let failures = format!("{prefix}{{{victim:?}}}:f");
    let mut source = cluster.admin(0).await;
    fail(&a, &victim, 2).await;
    let started = Instant::now();
    while source.get::<_, Option<u32>>(&failures).await.unwrap() != Some(2) {
        assert!(started.elapsed() < Duration::from_secs(5), "never counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let target_id = start_moving(&cluster, slot, 0, 1).await;
    finish_moving(&cluster, slot, &target_id).await;
    // Both replicas still think the slot is on the first master: its MOVED
    // sends them to the second, where the count went on.
    fail(&b, &victim, 1).await;
    fail(&a, &victim, 1).await;
    let started = Instant::now();
    for tracker in [&a, &b] {
        while !locked_out(tracker, &victim).await {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "never locked out"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!((a.stats().fallbacks, b.stats().fallbacks), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_keeps_its_quota_while_its_slot_moves_through_ask_and_moved() {
    // D8, D2 (rate-limit analogue): ASK mid-move, MOVED after.
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let prefix = unique_prefix();
    let urls = cluster.urls();
    let layer = portcullis::rate_limit::RateLimitLayer::builder()
        .per_hour(5)
        .redis(store(&urls, &prefix, Duration::from_secs(1)).await)
        .build()
        .unwrap();
    let svc = tower::Layer::layer(
        &layer,
        tower::service_fn(|_: http::Request<String>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
        }),
    );
    let hit = || {
        let mut req = http::Request::new(String::new());
        req.extensions_mut()
            .insert(portcullis::PeerAddr("192.0.2.7:1".parse().unwrap()));
        let svc = svc.clone();
        async move { tower::ServiceExt::oneshot(svc, req).await.unwrap().status() }
    };
    assert_eq!(hit().await, http::StatusCode::OK);
    assert_eq!(hit().await, http::StatusCode::OK);
    // Where the client's state is.
    let mut from = None;
    for node in 0..3 {
        let keys: Vec<String> = cluster
            .admin(node)
            .await
            .keys(format!("{prefix}*"))
            .await
            .unwrap();
        if let Some(k) = keys.first() {
            let slot = slot_of(&mut cluster.admin(node).await, k).await;
            from = Some((node, slot));
        }
    }
    let (from, slot) = from.expect("the state is in redis");
    let to = (from + 1) % 3;

    let target_id = start_moving(&cluster, slot, from, to).await;
    // Mid-move: the old master answers ASK, the new one has the state.
    assert_eq!(hit().await, http::StatusCode::OK);
    finish_moving(&cluster, slot, &target_id).await;
    // After: MOVED.
    assert_eq!(hit().await, http::StatusCode::OK);
    assert_eq!(hit().await, http::StatusCode::OK);
    assert_eq!(hit().await, http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(layer.stats().fallbacks, 0);
}
