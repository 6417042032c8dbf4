//! Per-request cost, distinct-key throughput and memory of portcullis'
//! `RateLimitLayer` against tower_governor's `GovernorLayer`, keyed by the
//! peer IP taken from axum's `ConnectInfo` in both.
//!
//! ```text
//! cargo bench --bench rate_limit -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! After the criterion groups, the memory report runs each limiter in a
//! fresh child process (this binary again), sends 1,000,000 requests from
//! distinct addresses, and prints the table size, the resident-set growth
//! and the elapsed time.

use std::{
    convert::Infallible,
    fmt::Debug,
    future::Future,
    hint::black_box,
    net::{Ipv4Addr, SocketAddr},
    pin::pin,
    process::Command,
    task::{Context, Poll, Waker},
    time::Instant,
};

use axum::{body::Body, extract::ConnectInfo};
use criterion::{BatchSize, Criterion, Throughput};
use http::{Request, Response};
use portcullis::rate_limit::{HeaderFields, RateLimitLayer};
use tower::{Layer, Service, service_fn};
use tower_governor::{GovernorLayer, governor::GovernorConfigBuilder};

const MEMORY_CHILD: &str = "PORTCULLIS_BENCH_MEMORY_CHILD";
const DISTINCT_KEYS: u32 = 1_000_000;

/// A request from `10.x.y.z`, where `key` picks the address.
fn request(key: u32) -> Request<Body> {
    let ip = Ipv4Addr::from(0x0a00_0000 | (key & 0x00ff_ffff));
    let mut req = Request::new(Body::empty());
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
    req
}

fn inner() -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    service_fn(|_req: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) })
}

/// Drives one request through a service whose futures are ready at once.
fn call<S, B>(svc: &mut S, req: Request<Body>) -> Response<B>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: Debug,
{
    let mut cx = Context::from_waker(Waker::noop());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        other => panic!("service not ready: {other:?}"),
    }
    match pin!(svc.call(req)).poll(&mut cx) {
        Poll::Ready(res) => res.unwrap(),
        Poll::Pending => panic!("the benchmarked services never wait"),
    }
}

/// Generous limits, so every request is let through.
fn portcullis_allowing() -> RateLimitLayer {
    RateLimitLayer::builder()
        .per_second(1_000_000)
        .burst(1_000_000_000)
        .build()
        .unwrap()
}

fn governor_allowing() -> GovernorLayer<
    tower_governor::key_extractor::PeerIpKeyExtractor,
    governor::middleware::NoOpMiddleware,
    Body,
> {
    let config = GovernorConfigBuilder::default()
        .per_nanosecond(1_000)
        .burst_size(1_000_000_000)
        .finish()
        .unwrap();
    GovernorLayer::new(config)
}

fn per_request(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/one_client");
    group.throughput(Throughput::Elements(1));

    let mut bare = inner();
    group.bench_function("bare service", |b| {
        b.iter_batched(
            || request(1),
            |req| black_box(call(&mut bare, req)),
            BatchSize::SmallInput,
        )
    });

    let mut ours = portcullis_allowing().layer(inner());
    group.bench_function("portcullis allowed", |b| {
        b.iter_batched(
            || request(1),
            |req| black_box(call(&mut ours, req)),
            BatchSize::SmallInput,
        )
    });

    let mut theirs = governor_allowing().layer(inner());
    group.bench_function("tower_governor allowed", |b| {
        b.iter_batched(
            || request(1),
            |req| black_box(call(&mut theirs, req)),
            BatchSize::SmallInput,
        )
    });

    // A client hammering its limit: what each refusal costs the server.
    let mut ours = RateLimitLayer::builder()
        .per_minute(1)
        .build()
        .unwrap()
        .layer(inner());
    call(&mut ours, request(1));
    group.bench_function("portcullis refused", |b| {
        b.iter_batched(
            || request(1),
            |req| black_box(call(&mut ours, req)),
            BatchSize::SmallInput,
        )
    });

    let config = GovernorConfigBuilder::default()
        .per_second(60)
        .burst_size(1)
        .finish()
        .unwrap();
    let mut theirs = GovernorLayer::<_, _, Body>::new(config).layer(inner());
    call(&mut theirs, request(1));
    group.bench_function("tower_governor refused", |b| {
        b.iter_batched(
            || request(1),
            |req| black_box(call(&mut theirs, req)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Requests cycling through 1M client addresses: tower_governor's map holds
/// all of them, ours holds 100,000 and evicts on (nearly) every request.
/// The cost of the `RateLimit` fields on an allowed request, side by side
/// with none.
fn header_fields(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/header_fields");
    group.throughput(Throughput::Elements(1));
    for (name, fields) in [
        ("none", None),
        ("separate", Some(HeaderFields::Separate)),
        ("structured", Some(HeaderFields::Structured)),
        ("both", Some(HeaderFields::Both)),
    ] {
        let mut builder = RateLimitLayer::builder()
            .per_second(1_000_000)
            .burst(1_000_000_000);
        if let Some(fields) = fields {
            builder = builder.header_fields(fields);
        }
        let mut svc = builder.build().unwrap().layer(inner());
        group.bench_function(name, |b| {
            b.iter_batched(
                || request(1),
                |req| black_box(call(&mut svc, req)),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn distinct_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit/1M_clients_round_robin");
    group.throughput(Throughput::Elements(1));

    let mut ours = portcullis_allowing().layer(inner());
    let mut next = 0u32;
    group.bench_function("portcullis", |b| {
        b.iter_batched(
            || {
                next = (next + 1) % DISTINCT_KEYS;
                request(next)
            },
            |req| black_box(call(&mut ours, req)),
            BatchSize::SmallInput,
        )
    });

    let mut theirs = governor_allowing().layer(inner());
    let mut next = 0u32;
    group.bench_function("tower_governor", |b| {
        b.iter_batched(
            || {
                next = (next + 1) % DISTINCT_KEYS;
                request(next)
            },
            |req| black_box(call(&mut theirs, req)),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Resident set size and its high-water mark, in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs in a child process: 1M requests from distinct addresses, then the
/// table size and memory while the limiter is still alive.
fn memory_child(which: &str) {
    let requests = (0..DISTINCT_KEYS).map(request);
    let (before, _) = rss_kib();
    let start = Instant::now();
    let (entries, elapsed, (after, peak)) = match which {
        "portcullis" => {
            let layer = portcullis_allowing();
            let mut svc = layer.layer(inner());
            for req in requests {
                black_box(call(&mut svc, req));
            }
            let elapsed = start.elapsed();

            (layer.stats().entries, elapsed, rss_kib())
        }
        "tower_governor" => {
            let config = GovernorConfigBuilder::default()
                .per_nanosecond(1_000)
                .burst_size(1_000_000_000)
                .finish()
                .unwrap();
            let limiter = config.limiter().clone();
            let mut svc = GovernorLayer::<_, _, Body>::new(config).layer(inner());
            for req in requests {
                black_box(call(&mut svc, req));
            }
            let elapsed = start.elapsed();
            (limiter.len() as u64, elapsed, rss_kib())
        }
        _ => {
            let mut svc = inner();
            for req in requests {
                black_box(call(&mut svc, req));
            }
            (0, start.elapsed(), rss_kib())
        }
    };
    println!(
        "{which}\t{entries}\t{}\t{peak}\t{:.0}",
        after.saturating_sub(before),
        f64::from(DISTINCT_KEYS) / elapsed.as_secs_f64()
    );
}

fn memory_report() {
    let exe = std::env::current_exe().expect("the bench binary knows its own path");
    println!("\n1M requests from distinct client addresses (fresh process each):");
    println!("limiter\tentries\tRSS growth KiB\tpeak RSS KiB\trequests/s");
    for which in ["bare", "portcullis", "tower_governor"] {
        let out = Command::new(&exe)
            .env(MEMORY_CHILD, which)
            .output()
            .expect("the bench binary can run itself");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
}

fn main() {
    if let Ok(which) = std::env::var(MEMORY_CHILD) {
        memory_child(&which);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    per_request(&mut c);
    header_fields(&mut c);
    distinct_keys(&mut c);
    c.final_summary();
    memory_report();
}
