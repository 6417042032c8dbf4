//! The lockout tracker on Redis (feature `redis`) beside the in-memory one,
//! in the same run, against the Redis server named by
//! `PORTCULLIS_REDIS_URL` (without it the bench says it is skipped).
//!
//! 1. `check_and_record`: one admission (`Tracker::attempt`) and one failure
//!    recorded, over 1024 clients, one at a time (latency).
//! 2. `check_and_record_x32`: the same with 32 concurrent tasks on a
//!    two-thread runtime (throughput).
//! 3. `locked_out`: a locked-out key refused, from the tracker's local cache
//!    of lockouts (what `LockoutLayer` does first), from Redis
//!    (`Tracker::attempt` always asks it), and by the in-memory tracker.
//! 4. `rate_limit`: one request through `RateLimitLayer` (never limited),
//!    with its GCRA state in Redis and in memory, one at a time.
//!
//! With Redis, the failure is recorded by a second script in the
//! background (the caller does not wait for it); both scripts run on the
//! server for every operation.
//!
//! ```text
//! redis-server --port 6390 --save '' --appendonly no &
//! PORTCULLIS_REDIS_URL=redis://127.0.0.1:6390 cargo bench --bench lockout_redis --features redis \
//!     -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(missing_docs)]

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    pin::pin,
    task::{Context, Poll, Waker},
    time::{Duration, Instant, SystemTime},
};

use criterion::{Criterion, Throughput, criterion_group};
use http::{Request, Response, StatusCode};
use portcullis::{
    PeerAddr, RedisStore,
    lockout::{LockoutLayer, Policy, Tracker},
};
use tokio::runtime::Runtime;
use tower::{Layer, Service, service_fn};

const CLIENTS: u32 = 1024;
const TASKS: u64 = 32;

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A policy that never locks out during the bench: every failure counts.
fn counting() -> Policy {
    Policy::builder()
        .max_failures(u32::MAX)
        .window(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A prefix of keys no other run uses.
fn prefix(name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("portcullis-bench:{nanos}:{name}:")
}

async fn redis(url: &str, name: &str) -> Tracker<IpAddr> {
    let store = RedisStore::connect(url)
        .await
        .expect("redis is reachable")
        .prefix(prefix(name))
        .timeout(Duration::from_secs(1));
    LockoutLayer::builder(counting())
        .redis(store)
        .build()
        .expect("a valid lockout")
        .tracker()
        .clone()
}

async fn check_and_record_once(tracker: &Tracker<IpAddr>, n: u64) {
    let key = ip(u32::try_from(n % u64::from(CLIENTS)).unwrap());
    let attempt = tracker.attempt(key).await.expect("never locked out");
    black_box(attempt.failed());
}

/// `iters` operations, one at a time.
fn sequential(rt: &Runtime, tracker: &Tracker<IpAddr>, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for n in 0..iters {
            check_and_record_once(tracker, n).await;
        }
        start.elapsed()
    })
}

/// `iters` operations by `TASKS` concurrent tasks.
fn concurrent(rt: &Runtime, tracker: &Tracker<IpAddr>, iters: u64) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let tracker = tracker.clone();
                tokio::spawn(async move {
                    let mut n = task;
                    while n < iters {
                        check_and_record_once(&tracker, n).await;
                        n += TASKS;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        start.elapsed()
    })
}

fn check_and_record(c: &mut Criterion, rt: &Runtime, url: &str) {
    let memory = Tracker::new(counting());
    let redis = rt.block_on(redis(url, "record"));

    let mut group = c.benchmark_group("check_and_record");
    group.throughput(Throughput::Elements(1));
    group.bench_function("in_memory", |b| {
        b.iter_custom(|iters| sequential(rt, &memory, iters))
    });
    group.bench_function("redis", |b| {
        b.iter_custom(|iters| sequential(rt, &redis, iters))
    });
    group.finish();

    let mut group = c.benchmark_group("check_and_record_x32");
    group.throughput(Throughput::Elements(1));
    group.bench_function("in_memory", |b| {
        b.iter_custom(|iters| concurrent(rt, &memory, iters))
    });
    group.bench_function("redis", |b| {
        b.iter_custom(|iters| concurrent(rt, &redis, iters))
    });
    group.finish();
    assert_eq!(
        redis.stats().fallbacks,
        0,
        "a decision was made without redis"
    );
}

/// Polls a service that is always ready and a future that completes at once.
fn call_now<S, R>(svc: &mut S, req: R) -> S::Response
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(ready) = svc.poll_ready(&mut cx) else {
        panic!("the service is always ready");
    };
    ready.unwrap();
    let future = pin!(svc.call(req));
    let Poll::Ready(res) = future.poll(&mut cx) else {
        panic!("the future completes at once");
    };
    res.unwrap()
}

fn locked_request() -> Request<()> {
    let mut req = Request::new(());
    req.extensions_mut()
        .insert(PeerAddr(SocketAddr::new(ip(7), 40_000)));
    req
}

fn locked_out(c: &mut Criterion, rt: &Runtime, url: &str) {
    let policy = || Policy::builder().max_failures(1).build().unwrap();
    let memory_layer = LockoutLayer::new(policy());
    let memory = memory_layer.tracker().clone();
    let redis_layer = rt.block_on(async {
        let store = RedisStore::connect(url)
            .await
            .expect("redis is reachable")
            .prefix(prefix("locked"))
            .timeout(Duration::from_secs(1));
        let layer = LockoutLayer::builder(policy())
            .redis(store)
            .build()
            .expect("a valid lockout");
        let tracker = layer.tracker();
        tracker.attempt(ip(7)).await.unwrap().failed();
        // The failure is recorded in the background: wait for the lockout.
        while tracker.attempt(ip(7)).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        layer
    });
    rt.block_on(async { memory.attempt(ip(7)).await.unwrap().failed() });
    let inner = || service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let _guard = rt.enter();
    let redis = redis_layer.tracker().clone();
    let mut cached = redis_layer.layer(inner());
    let mut in_memory = memory_layer.layer(inner());

    let mut group = c.benchmark_group("locked_out");
    group.throughput(Throughput::Elements(1));
    group.bench_function("in_memory_layer", |b| {
        b.iter(|| call_now(&mut in_memory, locked_request()))
    });
    group.bench_function("redis_layer_cached", |b| {
        b.iter(|| call_now(&mut cached, locked_request()))
    });
    group.bench_function("redis_attempt_uncached", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(redis.attempt(ip(7)).await.unwrap_err());
                }
                start.elapsed()
            })
        })
    });
    group.finish();
    assert_eq!(
        call_now(&mut cached, locked_request()).status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        call_now(&mut in_memory, locked_request()).status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

fn rate_limit(c: &mut Criterion, rt: &Runtime, url: &str) {
    use portcullis::rate_limit::RateLimitLayer;
    use tower::ServiceExt;

    let inner = || service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(())) });
    let (memory, redis, redis_layer) = rt.block_on(async {
        // Never limited: a burst of u32::MAX.
        let builder = || RateLimitLayer::builder().rate(u32::MAX, Duration::from_secs(3600));
        let store = RedisStore::connect(url)
            .await
            .expect("redis is reachable")
            .prefix(prefix("rate"))
            .timeout(Duration::from_secs(1));
        let redis_layer = builder().redis(store).build().unwrap();
        (
            builder().build().unwrap().layer(inner()),
            redis_layer.layer(inner()),
            redis_layer,
        )
    });
    let request = |n: u64| {
        let mut req = Request::new(());
        let client = u32::try_from(n % u64::from(CLIENTS)).unwrap();
        req.extensions_mut()
            .insert(PeerAddr(SocketAddr::new(ip(client), 40_000)));
        req
    };
    let mut group = c.benchmark_group("rate_limit");
    group.throughput(Throughput::Elements(1));
    for (name, svc) in [("in_memory", &memory), ("redis", &redis)] {
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
    }
    group.finish();
    assert_eq!(
        redis_layer.stats().fallbacks,
        0,
        "a decision was made without redis"
    );
}

fn benches(c: &mut Criterion) {
    let Ok(url) = std::env::var("PORTCULLIS_REDIS_URL") else {
        eprintln!(
            "lockout_redis: skipped: set PORTCULLIS_REDIS_URL to a redis-server to run this bench"
        );
        return;
    };
    let rt = runtime();
    check_and_record(c, &rt, &url);
    locked_out(c, &rt, &url);
    rate_limit(c, &rt, &url);
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
}
