//! Unlocks and revocations reach every replica within a second over a
//! cluster (D8, V2), also when a listener's node goes down.

use super::*;
use crate::support::redis::{Cluster, cluster_store, cluster_urls, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlock_over_a_cluster_reaches_the_other_replica_within_a_second() {
    // D8, V2
    let Some(urls) = cluster_urls() else { return };
    let prefix = unique_prefix();
    let a = shared_tracker(max(2), cluster_store(&urls, &prefix).await);
    let b = shared_tracker(max(2), cluster_store(&urls, &prefix).await);
    fail(&a, "mallory", 2).await;
    // B learns the lockout from redis and caches it.
    let mut seen = false;
    let started = Instant::now();
    while !seen {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "b never saw the lockout"
        );
        seen = locked_out(&b, "mallory").await;
    }
    assert!(b.check(&key("mallory")).is_err(), "cached on b");

    assert!(a.unlock(&key("mallory")) || a.check(&key("mallory")).is_ok());
    within("b to lift the lockout", Duration::from_secs(1), || {
        b.check(&key("mallory")).is_ok()
    })
    .await;
    assert!(!locked_out(&b, "mallory").await);
    assert_eq!(a.stats().fallbacks + b.stats().fallbacks, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_over_a_cluster_reaches_the_other_replica_within_a_second() {
    // D8, V2
    let Some(urls) = cluster_urls() else { return };
    let prefix = unique_prefix();
    let a = Revocations::builder()
        .redis(cluster_store(&urls, &prefix).await)
        .build()
        .unwrap();
    let b = Revocations::builder()
        .redis(cluster_store(&urls, &prefix).await)
        .build()
        .unwrap();
    in_sync(&a).await;
    in_sync(&b).await;
    assert!(!refused(&b, "alice-1"));

    a.revoke_secret("alice-1", None)
        .await
        .expect("stored in redis");
    within("b to refuse the secret", Duration::from_secs(1), || {
        refused(&b, "alice-1")
    })
    .await;
    assert!(!refused(&b, "alice-2"));
    a.revoke_subject("alice").await.expect("stored in redis");
    within("b to refuse the subject", Duration::from_secs(1), || {
        refused(&b, "alice-2")
    })
    .await;
    assert!(b.is_in_sync());

    // A replica that starts later reads what is stored.
    let c = Revocations::builder()
        .redis(cluster_store(&urls, &prefix).await)
        .build()
        .unwrap();
    in_sync(&c).await;
    assert!(refused(&c, "alice-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_whose_node_goes_down_moves_to_another_node_and_hears_again() {
    // D8, V2: the feeds do not depend on one node.
    let Some(mut cluster) = Cluster::start(3).await else {
        return;
    };
    let mut admin = cluster.admin(0).await;
    let prefix = unique_prefix();
    // The node to stop serves neither the revocations nor the key.
    let revocations_node = cluster.node_of(
        crate::support::redis::slot_of(&mut admin, &format!("{prefix}{{revocations}}")).await,
    );
    let mut k = 0;
    let (victim, stopped) = loop {
        let victim = format!("mallory-{k}");
        let node = cluster.node_of(slot(&mut admin, &prefix, &victim).await);
        if node != revocations_node {
            break (victim, 3 - node - revocations_node);
        }
        k += 1;
    };
    let urls = cluster.urls();
    // B names the node to stop first, so its listeners start there.
    let mut b_urls = vec![urls[stopped].clone()];
    b_urls.extend((0..3).filter(|&n| n != stopped).map(|n| urls[n].clone()));
    let fast = Duration::from_millis(500);
    let a = Revocations::builder()
        .redis(store(&urls, &prefix, fast).await)
        .build()
        .unwrap();
    let b = Revocations::builder()
        .redis(store(&b_urls, &prefix, fast).await)
        .build()
        .unwrap();
    let a_tracker = shared_tracker(max(1), store(&urls, &prefix, fast).await);
    let b_tracker = shared_tracker(max(1), store(&b_urls, &prefix, fast).await);
    in_sync(&a).await;
    in_sync(&b).await;

    cluster.stop(stopped);
    within(
        "b to notice it lost its node",
        Duration::from_secs(2),
        || !b.is_in_sync(),
    )
    .await;
    // The revocation list cannot catch up whole while a master that holds
    // some of its buckets is down: it serves its local copy for the
    // staleness bound (README, "When Redis fails").
    assert!(!b.is_in_sync());

    // The unlock feed moved: an unlock on A lifts B's cached lockout.
    fail(&a_tracker, &victim, 1).await;
    let started = Instant::now();
    while !locked_out(&b_tracker, &victim).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "b never saw the lockout"
        );
    }
    a_tracker.unlock(&key(&victim));
    within("b to lift the lockout", Duration::from_secs(1), || {
        b_tracker.check(&key(&victim)).is_ok()
    })
    .await;
}
