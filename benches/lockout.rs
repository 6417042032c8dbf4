//! The failed-attempt limiter side by side with its peers.
//!
//! 1. `success_path`: per-request cost of `LockoutLayer` over a trivial
//!    auth-like service, next to the bare service and tower_governor's layer;
//!    with one key (the address), and with a second key of its own policy
//!    (B13), both when the second key does not apply to the request (an
//!    API call: no account) and when it does.
//! 2. `record_failures_1m`: recording failures for 1M distinct addresses into
//!    a 100 000-entry `Tracker`, next to a `Mutex<HashMap>` that never forgets
//!    and governor's keyed limiter on its default store.
//!
//! On a shared machine, criterion's runs of one function after another see
//! different loads. So after them the bench also prints the success-path
//! costs measured in interleaved rounds (the three services take turns, the
//! best round of each counts), and the ratio of the added costs.
//!
//! ```text
//! cargo bench --bench lockout -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(missing_docs)]

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    hint::black_box,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    pin::pin,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
    time::{Duration, Instant},
};

use axum::{body::Body, extract::ConnectInfo};
use criterion::{BatchSize, Criterion, Throughput, criterion_group};
use governor::{Quota, RateLimiter};
use http::{Request, Response, StatusCode, header, request::Parts};
use portcullis::{
    AuthRejection, PeerAddr,
    lockout::{LockoutLayer, Policy, Tracker},
};
use tower::{Layer, Service, service_fn};
use tower_governor::{GovernorLayer, governor::GovernorConfigBuilder};

const CLIENTS: u32 = 1024;
const ADDRESSES: u32 = 1_000_000;

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

fn addr(n: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 40_000)
}

fn request(client: u32) -> Request<Body> {
    let peer = addr(client);
    let mut req = Request::builder()
        .uri("/api/items")
        .header(header::AUTHORIZATION, "Bearer good-token")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(PeerAddr(peer));
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

/// A trivial auth-like service: 200 for the right token, 401 otherwise.
fn auth_like() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone
{
    service_fn(|req: Request<Body>| {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == b"Bearer good-token");
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        let mut res = Response::new(Body::empty());
        *res.status_mut() = status;
        std::future::ready(Ok::<_, Infallible>(res))
    })
}

/// A second key that applies to no request (an API call has no account).
fn no_account(_: &Parts) -> Result<Option<String>, AuthRejection> {
    Ok(None)
}

/// A second key that applies to every request, without allocating.
fn every_request(parts: &Parts) -> Result<Option<usize>, AuthRejection> {
    Ok(Some(parts.uri.path().len()))
}

type NoAccount = fn(&Parts) -> Result<Option<String>, AuthRejection>;
type EveryRequest = fn(&Parts) -> Result<Option<usize>, AuthRejection>;

fn two_keys_idle() -> LockoutLayer {
    LockoutLayer::builder(Policy::default())
        .also_key(no_account as NoAccount, Policy::default())
        .build()
        .unwrap()
}

fn two_keys_both() -> LockoutLayer {
    LockoutLayer::builder(Policy::default())
        .also_key(every_request as EveryRequest, Policy::default())
        .build()
        .unwrap()
}

fn success_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("success_path");
    for (name, clients) in [("one_client", 1), ("1024_clients", CLIENTS)] {
        let mut next = 0u32;
        let mut req = move || {
            next = (next + 1) % clients;
            request(next)
        };

        let mut bare = auth_like();
        group.bench_function(format!("bare/{name}"), |b| {
            b.iter_batched(&mut req, |r| call_now(&mut bare, r), BatchSize::SmallInput)
        });

        let mut lockout = LockoutLayer::new(Policy::default()).layer(auth_like());
        group.bench_function(format!("portcullis_lockout/{name}"), |b| {
            b.iter_batched(
                &mut req,
                |r| call_now(&mut lockout, r),
                BatchSize::SmallInput,
            )
        });

        let mut idle = two_keys_idle().layer(auth_like());
        group.bench_function(format!("portcullis_two_keys_one_applies/{name}"), |b| {
            b.iter_batched(&mut req, |r| call_now(&mut idle, r), BatchSize::SmallInput)
        });

        let mut both = two_keys_both().layer(auth_like());
        group.bench_function(format!("portcullis_two_keys_both_apply/{name}"), |b| {
            b.iter_batched(&mut req, |r| call_now(&mut both, r), BatchSize::SmallInput)
        });
        assert_eq!(call_now(&mut idle, req()).status(), StatusCode::OK);
        assert_eq!(call_now(&mut both, req()).status(), StatusCode::OK);

        let config = GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(u32::MAX)
            .finish()
            .unwrap();
        let mut governor = GovernorLayer::new(config).layer(auth_like());
        group.bench_function(format!("tower_governor/{name}"), |b| {
            b.iter_batched(
                &mut req,
                |r| call_now(&mut governor, r),
                BatchSize::SmallInput,
            )
        });
        // Every request went through: nothing was limited or locked out.
        assert_eq!(call_now(&mut lockout, req()).status(), StatusCode::OK);
        assert_eq!(call_now(&mut governor, req()).status(), StatusCode::OK);
    }
    group.finish();
}

fn ip(n: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
}

/// Times `fill` on a fresh table per iteration, excluding setup and drop;
/// `report` runs once per process.
fn timed<T>(
    iters: u64,
    reported: &AtomicBool,
    make: impl Fn() -> T,
    fill: impl Fn(&T),
    report: impl Fn(&T),
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let table = make();
        let start = Instant::now();
        fill(&table);
        total += start.elapsed();
        if !reported.swap(true, Ordering::Relaxed) {
            report(&table);
        }
        drop(table);
    }
    total
}

static REPORTED: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];

fn record_failures(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_failures_1m");
    group.throughput(Throughput::Elements(u64::from(ADDRESSES)));
    group.sample_size(10);

    group.bench_function("portcullis_tracker", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                &REPORTED[0],
                || Tracker::new(Policy::builder().capacity(100_000).build().unwrap()),
                |tracker| {
                    for n in 0..ADDRESSES {
                        black_box(tracker.record_failure(&ip(n)));
                    }
                },
                |tracker| {
                    let stats = tracker.stats();
                    assert!(stats.tracked <= 100_000);
                    eprintln!(
                        "  portcullis_tracker: {} entries after 1M addresses",
                        stats.tracked
                    );
                },
            )
        })
    });

    group.bench_function("mutex_hashmap", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                &REPORTED[1],
                || Mutex::new(HashMap::<IpAddr, u32>::new()),
                |map| {
                    for n in 0..ADDRESSES {
                        *map.lock().unwrap().entry(ip(n)).or_default() += 1;
                    }
                },
                |map| {
                    eprintln!(
                        "  mutex_hashmap: {} entries after 1M addresses",
                        map.lock().unwrap().len()
                    )
                },
            )
        })
    });

    group.bench_function("governor_keyed", |b| {
        b.iter_custom(|iters| {
            timed(
                iters,
                &REPORTED[2],
                || RateLimiter::keyed(Quota::per_hour(NonZeroU32::new(5).unwrap())),
                |limiter| {
                    for n in 0..ADDRESSES {
                        let _ = black_box(limiter.check_key(&ip(n)));
                    }
                },
                |limiter| {
                    eprintln!(
                        "  governor_keyed: {} entries after 1M addresses",
                        limiter.len()
                    )
                },
            )
        })
    });
    group.finish();
}

/// Mean time per request of `svc` over `n` requests from `clients` clients.
fn round<S>(svc: &mut S, clients: u32, n: u32) -> Duration
where
    S: Service<Request<Body>>,
    S::Error: std::fmt::Debug,
{
    let requests: Vec<_> = (0..n).map(|i| request(i % clients)).collect();
    let start = Instant::now();
    for req in requests {
        black_box(call_now(svc, req));
    }
    start.elapsed() / n
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e9
}

fn interleaved_summary() {
    const ROUNDS: usize = 400;
    const PER_ROUND: u32 = 512;
    println!(
        "\nsuccess path, interleaved: {ROUNDS} rounds of {PER_ROUND} requests per service, \
         the services taking turns; median ns per request"
    );
    for clients in [1, CLIENTS] {
        let mut bare = auth_like();
        let mut lockout = LockoutLayer::new(Policy::default()).layer(auth_like());
        let config = GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(u32::MAX)
            .finish()
            .unwrap();
        let mut governor = GovernorLayer::new(config).layer(auth_like());
        let mut idle = two_keys_idle().layer(auth_like());
        let mut both = two_keys_both().layer(auth_like());
        let mut times: [Vec<Duration>; 5] = Default::default();
        for _ in 0..ROUNDS {
            times[0].push(round(&mut bare, clients, PER_ROUND));
            times[1].push(round(&mut lockout, clients, PER_ROUND));
            times[2].push(round(&mut governor, clients, PER_ROUND));
            times[3].push(round(&mut idle, clients, PER_ROUND));
            times[4].push(round(&mut both, clients, PER_ROUND));
        }
        let [bare, lockout, governor, idle, both] = times.map(median);
        println!(
            "  {clients:>4} client(s): bare {bare:.0}, portcullis_lockout {lockout:.0} (+{:.0}), \
             tower_governor {governor:.0} (+{:.0}), added-cost ratio {:.2}; \
             two keys, one applies {idle:.0} (+{:.0}), both apply {both:.0} (+{:.0})",
            lockout - bare,
            governor - bare,
            (lockout - bare) / (governor - bare),
            idle - bare,
            both - bare,
        );
    }
}

criterion_group!(benches, success_path, record_failures);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    if std::env::args().any(|a| a == "--bench") {
        interleaved_summary();
    }
}
