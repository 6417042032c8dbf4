//! One Redis round trip on a single node beside one on a Redis Cluster
//! (feature `redis`): a request through `RateLimitLayer` with its GCRA state
//! in Redis is one script call (`EVALSHA`), never limited, one at a time,
//! over 1024 clients (so over every master of the cluster).
//!
//! `PORTCULLIS_REDIS_URL` names the node and `PORTCULLIS_REDIS_CLUSTER` the
//! cluster's nodes (comma-separated URLs); a store that is not named is
//! skipped.
//!
//! ```text
//! PORTCULLIS_REDIS_URL=redis://127.0.0.1:6390 \
//! PORTCULLIS_REDIS_CLUSTER=redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002 \
//!     cargo bench --bench redis_cluster --features redis -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(missing_docs)]

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::{Duration, Instant, SystemTime},
};

use criterion::{Criterion, Throughput, criterion_group};
use http::{Request, Response, StatusCode};
use portcullis::{PeerAddr, RedisStore, rate_limit::RateLimitLayer};
use tower::{Layer, ServiceExt, service_fn};

const CLIENTS: u32 = 1024;

fn request(n: u64) -> Request<()> {
    let client = u32::try_from(n % u64::from(CLIENTS)).unwrap();
    let mut req = Request::new(());
    req.extensions_mut().insert(PeerAddr(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + client)),
        40_000,
    )));
    req
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let mut stores = Vec::new();
    rt.block_on(async {
        if let Ok(url) = std::env::var("PORTCULLIS_REDIS_URL") {
            let store = RedisStore::connect(&url).await.expect("redis is reachable");
            stores.push(("node", store));
        }
        if let Ok(nodes) = std::env::var("PORTCULLIS_REDIS_CLUSTER") {
            let store = RedisStore::connect_cluster(nodes.split(','))
                .await
                .expect("the cluster is reachable");
            stores.push(("cluster", store));
        }
    });
    if stores.is_empty() {
        eprintln!(
            "redis_cluster: skipped: set PORTCULLIS_REDIS_URL and/or PORTCULLIS_REDIS_CLUSTER"
        );
        return;
    }
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    for (name, store) in stores {
        let layer = RateLimitLayer::builder()
            .rate(u32::MAX, Duration::from_secs(3600))
            .redis(
                store
                    .prefix(format!("portcullis-bench:{nanos}:{name}:"))
                    .timeout(Duration::from_secs(1)),
            )
            .build()
            .unwrap();
        let svc = layer.layer(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(()))
        }));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for n in 0..iters {
                        let res = svc.clone().oneshot(request(n)).await.unwrap();
                        assert_eq!(res.status(), StatusCode::OK);
                    }
                    start.elapsed()
                })
            })
        });
        assert_eq!(
            layer.stats().fallbacks,
            0,
            "a decision was made without redis"
        );
    }
    group.finish();
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
}
