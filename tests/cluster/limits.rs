//! The limiters' bounds hold over a cluster of several masters (D8 with D2).

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use http::{Request, Response, StatusCode};
use portcullis::{
    AuthLayer, PeerAddr, ValidationError, lockout::LockoutLayer, rate_limit::RateLimitLayer,
};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_contacts_through_both_limiters_on_one_cluster_store_keep_the_bound() {
    // D8, D5, B6: a rate limiter and a lockout on one cluster store, keyed
    // by the same `ClientIp`, ask Redis together on a client's first
    // contact (both keys in the client's slot, so no CROSSSLOT and no
    // fallback); 32 parallel wrong guesses per client on each of two
    // replicas still reach the validator `max_failures` times.
    let Some(urls) = cluster_urls() else { return };
    let prefix = unique_prefix();
    let clients = [
        "192.0.2.11:1",
        "192.0.2.12:1",
        "192.0.2.13:1",
        "192.0.2.14:1",
    ];
    let guesses: Arc<[AtomicUsize; 4]> = Arc::default();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let store = cluster_store(&urls, &prefix).await;
        let rate = RateLimitLayer::builder()
            .per_second(1_000_000)
            .burst(1_000_000)
            .redis(store.clone())
            .build()
            .unwrap();
        let lockout = LockoutLayer::builder(Policy::default())
            .redis(store)
            .build()
            .unwrap();
        let counted = Arc::clone(&guesses);
        // Every token is a wrong guess of its own (no repeat to count once,
        // B14), named after its client.
        let validate = move |credential: Credential| {
            let client: usize = credential.secret()[1..2].parse().unwrap();
            counted[client].fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(ValidationError::invalid()) }
        };
        let svc = ServiceBuilder::new()
            .layer(rate.clone())
            .layer(lockout.clone())
            .layer(AuthLayer::new(validate))
            .service(service_fn(|_: Request<String>| async {
                Ok::<_, std::convert::Infallible>(Response::new(String::new()))
            }));
        replicas.push((svc, rate, lockout));
    }
    let mut tasks = Vec::new();
    for (replica, (svc, _, _)) in replicas.iter().enumerate() {
        for guess in 0..32 {
            for (n, client) in clients.iter().enumerate() {
                let mut req = Request::new(String::new());
                req.headers_mut().insert(
                    http::header::AUTHORIZATION,
                    format!("Bearer c{n}-r{replica}-g{guess}").parse().unwrap(),
                );
                req.extensions_mut()
                    .insert(PeerAddr(client.parse().unwrap()));
                let svc = svc.clone();
                tasks.push(tokio::spawn(async move {
                    svc.oneshot(req).await.unwrap().status()
                }));
            }
        }
    }
    for task in tasks {
        let status = task.await.unwrap();
        assert!(
            matches!(
                status,
                StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
            ),
            "{status}"
        );
    }
    for (n, client) in clients.iter().enumerate() {
        assert_eq!(guesses[n].load(Ordering::SeqCst), 5, "{client}");
    }
    for (_, rate, lockout) in &replicas {
        assert_eq!(rate.stats().fallbacks, 0, "the rate limiter fell back");
        assert_eq!(
            lockout.tracker().stats().fallbacks,
            0,
            "the lockout fell back"
        );
    }
}
