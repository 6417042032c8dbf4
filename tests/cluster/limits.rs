//! The limiters' bounds hold over a cluster of several masters (D8 with D2).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use http::{Request, Response, StatusCode};
use portcullis::{PeerAddr, rate_limit::RateLimitLayer};
use tower::{Layer, ServiceExt, service_fn};

use super::*;
use crate::support::redis::{cluster_store, cluster_urls, unique_prefix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_trackers_over_a_cluster_with_32_concurrent_failures_each_accept_at_most_max_failures()
{
    // D8, D2: for keys spread over the cluster's masters.
    let Some(urls) = cluster_urls() else { return };
    let prefix = unique_prefix();
    let replicas = [
        shared_tracker(Policy::default(), cluster_store(&urls, &prefix).await),
        shared_tracker(Policy::default(), cluster_store(&urls, &prefix).await),
    ];
    let victims = ["victim-a", "victim-b", "victim-c", "victim-d"];
    let accepted: Arc<[AtomicUsize; 4]> = Arc::default();
    let mut tasks = Vec::new();
    for tracker in &replicas {
        for _ in 0..32 {
            for (n, &victim) in victims.iter().enumerate() {
                let (tracker, accepted) = (tracker.clone(), Arc::clone(&accepted));
                tasks.push(tokio::spawn(async move {
                    if let Ok(attempt) = tracker.attempt(key(victim)).await {
                        accepted[n].fetch_add(1, Ordering::SeqCst);
                        attempt.failed();
                    }
                }));
            }
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    for (n, victim) in victims.iter().enumerate() {
        assert_eq!(accepted[n].load(Ordering::SeqCst), 5, "{victim}");
    }
    for tracker in &replicas {
        assert_eq!(tracker.stats().fallbacks, 0, "decided without redis");
    }
    // The victims' slots are on more than one master.
    let mut masters = std::collections::HashSet::new();
    let mut con = ::redis::Client::open(urls[0].as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let nodes: String = ::redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut con)
        .await
        .unwrap();
    for victim in victims {
        let slot = slot(&mut con, &prefix, victim).await;
        let owner = nodes.lines().find(|line| {
            line.split(' ').skip(8).any(|range| {
                let (first, last) = range.split_once('-').unwrap_or((range, range));
                match (first.parse::<u16>(), last.parse::<u16>()) {
                    (Ok(first), Ok(last)) => (first..=last).contains(&slot),
                    _ => false,
                }
            })
        });
        masters.insert(owner.expect("a master serves the slot").to_owned());
    }
    assert!(masters.len() > 1, "the victims share one master");
    // Both replicas learn every lockout from redis.
    for tracker in &replicas {
        for victim in victims {
            assert!(locked_out(tracker, victim).await, "{victim}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rate_limiters_over_a_cluster_never_allow_more_than_the_quota() {
    // D8, D2 (rate-limit analogue), for clients spread over the masters.
    let Some(urls) = cluster_urls() else { return };
    let prefix = unique_prefix();
    const BURST: u32 = 5;
    let layers = [
        RateLimitLayer::builder()
            .per_hour(BURST)
            .redis(cluster_store(&urls, &prefix).await)
            .build()
            .unwrap(),
        RateLimitLayer::builder()
            .per_hour(BURST)
            .redis(cluster_store(&urls, &prefix).await)
            .build()
            .unwrap(),
    ];
    let clients = ["192.0.2.1:1", "192.0.2.2:1", "192.0.2.3:1", "192.0.2.4:1"];
    let calls: Arc<[AtomicUsize; 4]> = Arc::default();
    let mut tasks = Vec::new();
    for layer in &layers {
        for _ in 0..32 {
            for (n, client) in clients.iter().enumerate() {
                let calls = Arc::clone(&calls);
                let svc = layer.layer(service_fn(move |_: Request<String>| {
                    calls[n].fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) }
                }));
                let mut req = Request::new(String::new());
                req.extensions_mut()
                    .insert(PeerAddr(client.parse().unwrap()));
                tasks.push(tokio::spawn(async move {
                    (n, svc.oneshot(req).await.unwrap().status())
                }));
            }
        }
    }
    let mut allowed = [0; 4];
    for task in tasks {
        let (n, status) = task.await.unwrap();
        match status {
            StatusCode::OK => allowed[n] += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    for n in 0..clients.len() {
        assert_eq!(allowed[n], BURST, "{}", clients[n]);
        assert_eq!(calls[n].load(Ordering::SeqCst), BURST as usize);
    }
    for layer in &layers {
        assert_eq!(layer.stats().fallbacks, 0, "decided without redis");
    }
}
