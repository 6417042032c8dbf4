//! What leases cost a request that does not stream (V4):
//!
//! 1. An `AuthLayer` round trip (call, then the response body read to its
//!    end) without leases, with leases and nothing revoked, and with leases
//!    and 10,000 revocations of other credentials, side by side in one run
//!    (criterion); then the same three interleaved (they take turns, 400
//!    rounds of 512 requests, median), the steadier comparison on a shared
//!    machine.
//! 2. Real axum servers on loopback, without and with leases, driven by 16
//!    keep-alive HTTP/1.1 connections; the two take turns (9 rounds of 1 s
//!    unless `PORTCULLIS_LEASES_ROUNDS` says otherwise, median requests per
//!    second).
//!
//! ```text
//! cargo bench --bench leases -- --warm-up-time 1 --measurement-time 4
//! PORTCULLIS_LEASES_QUICK=1 cargo bench --bench leases   # the interleaved comparisons only
//! PORTCULLIS_LEASES_ROUNDS_DETAIL=1 …                      # every loopback round, not only the medians
//! ```
#![allow(missing_docs)]

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::{Pin, pin},
    task::{Context, Poll, Waker},
    time::{Duration, Instant, SystemTime},
};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header::AUTHORIZATION};
use http_body::Body;
use portcullis::{
    AuthLayer, Credential, ValidationError, Validator,
    revoke::{Revocable, Revocations},
    validate::ExpiresAt,
};
use tower::{Layer, Service, service_fn};

const TOKEN: &str = "Bearer mF_9.B5f-4.1JqM-alice-token";

/// An identity like a real one: a subject, an expiry, an issue time.
#[derive(Clone)]
struct User {
    subject: &'static str,
    until: tokio::time::Instant,
    issued: SystemTime,
}

impl ExpiresAt for User {
    fn expires_at(&self) -> Option<tokio::time::Instant> {
        Some(self.until)
    }
}

impl Revocable for User {
    fn subject(&self) -> Option<&str> {
        Some(self.subject)
    }

    fn issued_at(&self) -> Option<SystemTime> {
        Some(self.issued)
    }
}

/// An in-memory validator: one comparison, answered without waiting.
struct InMemory(User);

impl Validator for InMemory {
    type Identity = User;

    async fn validate(&self, credential: &Credential) -> Result<User, ValidationError> {
        if credential.secret() == &TOKEN[7..] {
            Ok(self.0.clone())
        } else {
            Err(ValidationError::invalid())
        }
    }
}

/// Polls a future that completes without waiting (every service here does).
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("benchmarked services never wait"),
    }
}

fn request() -> Request<String> {
    let mut req = Request::new(String::new());
    req.headers_mut()
        .insert(AUTHORIZATION, HeaderValue::from_static(TOKEN));
    req
}

/// One request: the call, then the body read to its end, as a server does.
fn round_trip<S, B>(svc: &mut S)
where
    S: Service<Request<String>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body + Unpin,
    B::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    let mut body = now(svc.call(request())).unwrap().into_body();
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Ready(Some(frame)) => {
                black_box(frame.unwrap());
            }
            Poll::Ready(None) => break,
            Poll::Pending => unreachable!("the body is complete"),
        }
        if body.is_end_stream() {
            break;
        }
    }
}

async fn handler(_: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::from("{\"ok\":true}")))
}

fn user() -> User {
    User {
        subject: "alice",
        until: tokio::time::Instant::now() + Duration::from_secs(3600),
        issued: SystemTime::now(),
    }
}

/// A list holding 10,000 revocations of other credentials and subjects.
fn busy_list() -> Revocations {
    let revocations = Revocations::new();
    for i in 0..5_000 {
        drop(revocations.revoke_secret(&format!("other-token-{i}"), None));
        drop(revocations.revoke_subject(&format!("other-user-{i}")));
    }
    revocations
}

fn bench(c: &mut Criterion) {
    // Tokio's clock (leases use it) needs a runtime.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let (empty, busy) = (Revocations::new(), busy_list());
    let mut without = AuthLayer::new(InMemory(user())).layer(service_fn(handler));
    let mut with = AuthLayer::new(InMemory(user()))
        .leases(&empty)
        .layer(service_fn(handler));
    let mut with_busy = AuthLayer::new(InMemory(user()))
        .leases(&busy)
        .layer(service_fn(handler));

    // `PORTCULLIS_LEASES_QUICK=1`: the interleaved comparisons only.
    if std::env::var_os("PORTCULLIS_LEASES_QUICK").is_some() {
        interleaved(&mut without, &mut with, &mut with_busy);
        drop(_guard);
        return loopback();
    }
    let mut group = c.benchmark_group("leases");
    group.bench_function("without", |b| b.iter(|| round_trip(&mut without)));
    group.bench_function("with", |b| b.iter(|| round_trip(&mut with)));
    group.bench_function("with_10k_revoked", |b| {
        b.iter(|| round_trip(&mut with_busy))
    });
    group.finish();

    interleaved(&mut without, &mut with, &mut with_busy);
    drop(_guard);
    loopback();
}

/// The three services take turns; the median of each, in ns per request.
fn interleaved<A, B, C, BA, BB, BC>(without: &mut A, with: &mut B, with_busy: &mut C)
where
    A: Service<Request<String>, Response = Response<BA>>,
    B: Service<Request<String>, Response = Response<BB>>,
    C: Service<Request<String>, Response = Response<BC>>,
    A::Error: std::fmt::Debug,
    B::Error: std::fmt::Debug,
    C::Error: std::fmt::Debug,
    BA: Body + Unpin,
    BB: Body + Unpin,
    BC: Body + Unpin,
    BA::Error: std::fmt::Debug,
    BB::Error: std::fmt::Debug,
    BC::Error: std::fmt::Debug,
{
    const ROUNDS: usize = 400;
    const PER_ROUND: u32 = 512;
    let round = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..PER_ROUND {
            f();
        }
        started.elapsed().as_nanos() as f64 / f64::from(PER_ROUND)
    };
    let mut times: [Vec<f64>; 3] = Default::default();
    for _ in 0..ROUNDS {
        times[0].push(round(&mut || round_trip(without)));
        times[1].push(round(&mut || round_trip(with)));
        times[2].push(round(&mut || round_trip(with_busy)));
    }
    let [without, with, busy] = times.map(|mut t| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    });
    println!(
        "\ninterleaved, {ROUNDS} rounds of {PER_ROUND} requests, median ns per request: \
         without leases {without:.0}, with leases {with:.0} (+{:.0}, {:.3}x), \
         with leases and 10k revocations {busy:.0} (+{:.0}, {:.3}x)",
        with - without,
        with / without,
        busy - without,
        busy / without,
    );
}

// ---------------------------------------------------------------------------
// Loopback: real servers, real connections
// ---------------------------------------------------------------------------

/// Connections the client keeps open.
const CONNECTIONS: usize = 16;
/// How long each configuration is measured per round.
const MEASURED: Duration = Duration::from_secs(1);
/// Rounds of the loopback comparison (`PORTCULLIS_LEASES_ROUNDS`).
fn rounds() -> usize {
    std::env::var("PORTCULLIS_LEASES_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(9)
}

/// An axum server on `127.0.0.1:0` in its own runtime, with or without
/// leases.
fn server(leases: bool) -> (tokio::runtime::Runtime, std::net::SocketAddr) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let (listener, app) = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let auth = AuthLayer::new(InMemory(user()));
        let auth = if leases {
            auth.leases(&Revocations::new())
        } else {
            auth
        };
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "{\"ok\":true}" }))
            .layer(auth);
        (listener, app)
    });
    let addr = listener.local_addr().unwrap();
    runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (runtime, addr)
}

/// The name of the server threads, to tell their CPU time from the client's.
const SERVER_THREAD: &str = "leases-server";

/// CPU time of this process's threads named `name`, in nanoseconds, from
/// `/proc/self/task/*/schedstat` (Linux); `None` without it.
fn thread_cpu_ns(name: &str) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(schedstat) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// Requests answered 200 over `MEASURED`.
fn drive(client: &tokio::runtime::Runtime, addr: std::net::SocketAddr) -> u64 {
    use http_body_util::{BodyExt, Empty};
    use hyper::client::conn::http1;
    use hyper_util::rt::TokioIo;

    client.block_on(async move {
        let end = Instant::now() + MEASURED;
        let mut connections = tokio::task::JoinSet::new();
        for _ in 0..CONNECTIONS {
            connections.spawn(async move {
                let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut sender, connection) =
                    http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(stream))
                        .await
                        .unwrap();
                tokio::spawn(connection);
                let mut ok = 0u64;
                while Instant::now() < end {
                    let req = Request::get("/")
                        .header(http::header::HOST, "bench")
                        .header(AUTHORIZATION, TOKEN)
                        .body(Empty::new())
                        .unwrap();
                    sender.ready().await.unwrap();
                    let res = sender.send_request(req).await.unwrap();
                    assert_eq!(res.status(), http::StatusCode::OK);
                    res.into_body().collect().await.unwrap();
                    ok += 1;
                }
                ok
            });
        }
        let mut ok = 0;
        while let Some(done) = connections.join_next().await {
            ok += done.unwrap();
        }
        ok
    })
}

fn loopback() {
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rounds = rounds();
    // Requests per second, and server CPU ns per request, per configuration.
    let mut rates: [Vec<f64>; 2] = Default::default();
    let mut cpu: [Vec<f64>; 2] = Default::default();
    for round in 0..rounds {
        // A different order each round.
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for leases in order {
            let (runtime, addr) = server(leases);
            let before = thread_cpu_ns(SERVER_THREAD);
            let ok = drive(&client, addr);
            let after = thread_cpu_ns(SERVER_THREAD);
            rates[usize::from(leases)].push(ok as f64 / MEASURED.as_secs_f64());
            if let (Some(before), Some(after)) = (before, after) {
                cpu[usize::from(leases)].push((after - before) as f64 / ok as f64);
            }
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
    let median = |values: &[f64]| {
        let mut values = values.to_vec();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (without, with) = (median(&rates[0]), median(&rates[1]));
    println!(
        "\nloopback, {CONNECTIONS} keep-alive connections, {rounds} rounds of {MEASURED:?}, median: \
         without leases {without:.0} req/s, with leases {with:.0} req/s ({:.3}x)",
        with / without,
    );
    if std::env::var_os("PORTCULLIS_LEASES_ROUNDS_DETAIL").is_some() {
        println!(
            "rounds (req/s, cpu ns): without {:?}",
            rates[0]
                .iter()
                .zip(&cpu[0])
                .map(|(r, c)| (*r as u64, *c as u64))
                .collect::<Vec<_>>()
        );
        println!(
            "rounds (req/s, cpu ns): with    {:?}",
            rates[1]
                .iter()
                .zip(&cpu[1])
                .map(|(r, c)| (*r as u64, *c as u64))
                .collect::<Vec<_>>()
        );
    }
    let (without, with) = (median(&cpu[0]), median(&cpu[1]));
    println!(
        "server threads' CPU per request, median: without leases {without:.0} ns, \
         with leases {with:.0} ns (+{:.0}, {:.3}x)",
        with - without,
        with / without,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
