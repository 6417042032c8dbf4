//! The first request of a new client through the full stack
//! (`RateLimitLayer` → `LockoutLayer` → `AuthLayer`, keyed by `ClientIp`)
//! with its limiters on Redis: how long it waits, and how many scripts it
//! costs (D5: a new client ≤ 1 round trip).
//!
//! Measured in the same run, interleaved:
//!
//! - **both on Redis, same keys**: both layers keyed by `ClientIp::new()`;
//!   the rate limiter starts the lockout's grant beside its own batch;
//! - **both on Redis, keyed apart**: the lockout keyed by a `ClientIp`
//!   that groups IPv6 by /56 — the same keys for these IPv4 clients, but
//!   not provably so, so each layer asks on its own, one after the other
//!   (what every stack did before);
//! - **lockout alone on Redis**: the rate limiter in memory, for one
//!   round trip;
//! - **in memory**: no round trip.
//!
//! Each new client sends one request (valid bearer token, immediate
//! handler) through the tower stack, one client at a time. Redis is
//! reached directly, and through a proxy on loopback that delays every
//! chunk by `PORTCULLIS_FIRST_CONTACT_DELAY_MS` (default 1) each way, the
//! round trip of a network between the replica and Redis.
//!
//! ```text
//! redis-server --port 6390 --save '' --appendonly no &
//! PORTCULLIS_REDIS_URL=redis://127.0.0.1:6390 cargo bench --bench first_contact --features redis
//! ```
//!
//! Settings (environment): `PORTCULLIS_FIRST_CONTACT_CLIENTS` (new clients
//! per sample, default 500), `PORTCULLIS_FIRST_CONTACT_ROUNDS` (default 3),
//! `PORTCULLIS_FIRST_CONTACT_DELAY_MS` (default 1). Without `--bench` (as
//! under `cargo test --benches`) or without `PORTCULLIS_REDIS_URL` the
//! binary says so and does nothing.
#![allow(missing_docs)]

use std::{
    convert::Infallible,
    env,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::ExitCode,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use http::{Request, Response, StatusCode, header};
use portcullis::{
    AuthLayer, ClientIp, Credential, PeerAddr, RedisStore, ValidationError, Validator,
    lockout::{LockoutLayer, Policy},
    rate_limit::RateLimitLayer,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};
use tower::{ServiceBuilder, ServiceExt, util::BoxCloneService};

const TOKEN: &str = "first-contact-bench-token";

struct OneToken;

impl Validator for OneToken {
    type Identity = ();

    async fn validate(&self, credential: &Credential) -> Result<(), ValidationError> {
        self.validate_now(credential)
            .expect("always answers at once")
    }

    fn validate_now(&self, credential: &Credential) -> Option<Result<(), ValidationError>> {
        Some(if credential.secret() == TOKEN {
            Ok(())
        } else {
            Err(ValidationError::invalid())
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    SameKeys,
    KeyedApart,
    LockoutOnly,
    Memory,
}

impl Mode {
    const ALL: [Self; 4] = [
        Self::SameKeys,
        Self::KeyedApart,
        Self::LockoutOnly,
        Self::Memory,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::SameKeys => "both on Redis, same keys (grant started ahead)",
            Self::KeyedApart => "both on Redis, keyed apart (one after the other)",
            Self::LockoutOnly => "lockout alone on Redis",
            Self::Memory => "in memory",
        }
    }
}

type Stack = BoxCloneService<Request<String>, StatusCode, Infallible>;

async fn handler(_: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

fn status<B>(res: Response<B>) -> StatusCode {
    res.status()
}

async fn stack(mode: Mode, url: &str, prefix: &str) -> Stack {
    // One store, handed to both layers (clones share its connection).
    let store = RedisStore::connect(url)
        .await
        .expect("redis-server answers")
        .prefix(prefix);
    let rate = RateLimitLayer::builder()
        .per_second(1_000_000)
        .burst(1_000_000)
        .key(ClientIp::new());
    let rate = match mode {
        Mode::SameKeys | Mode::KeyedApart => rate.redis(store.clone()),
        Mode::LockoutOnly | Mode::Memory => rate,
    }
    .build()
    .expect("a valid rate");
    let lockout = LockoutLayer::builder(Policy::default());
    let lockout = match mode {
        Mode::SameKeys | Mode::LockoutOnly => lockout.redis(store.clone()).build(),
        Mode::KeyedApart => lockout
            .key(
                ClientIp::builder()
                    .ipv6_prefix(56)
                    .build()
                    .expect("a valid prefix"),
            )
            .redis(store.clone())
            .build(),
        Mode::Memory => lockout.build(),
    }
    .expect("a valid lockout");
    BoxCloneService::new(
        ServiceBuilder::new()
            .map_response(status)
            .layer(rate)
            .layer(lockout)
            .layer(AuthLayer::new(OneToken))
            .service_fn(handler),
    )
}

/// A new client address on every call.
fn new_client() -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0x0a00_0001);
    let ip = Ipv4Addr::from(NEXT.fetch_add(1, Ordering::Relaxed));
    SocketAddr::new(IpAddr::V4(ip), 40_000)
}

fn first_request() -> Request<String> {
    Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .extension(PeerAddr(new_client()))
        .body(String::new())
        .expect("a request")
}

/// Listens on loopback and forwards to `upstream`, each chunk `delay`
/// after it was read, in order; returns the proxy's URL.
async fn delaying_proxy(upstream: SocketAddr, delay: Duration) -> String {
    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        delay: Duration,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
        tokio::spawn(async move {
            while let Some((due, bytes)) = rx.recv().await {
                tokio::time::sleep_until(due).await;
                if to.write_all(&bytes).await.is_err() {
                    return;
                }
            }
        });
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due = tokio::time::Instant::now() + delay;
            if tx.send((due, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(upstream).await else {
                continue;
            };
            let _ = (client.set_nodelay(true), server.set_nodelay(true));
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::spawn(pump(client_read, server_write, delay));
            tokio::spawn(pump(server_read, client_write, delay));
        }
    });
    format!("redis://{addr}")
}

async fn scripts_run(admin: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .expect("INFO answers");
    info.lines()
        .filter(|l| l.starts_with("cmdstat_evalsha:") || l.starts_with("cmdstat_eval:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

struct Sample {
    /// Each first request's time, sorted.
    latencies: Vec<Duration>,
    scripts_per_client: f64,
    failed: usize,
}

async fn measure(
    mode: Mode,
    url: &str,
    admin: &mut redis::aio::MultiplexedConnection,
    clients: usize,
    run: usize,
) -> Sample {
    let prefix = format!("first-contact:{}:{run}:", std::process::id());
    let svc = stack(mode, url, &prefix).await;
    // The scripts loaded and the connections warm.
    for _ in 0..20 {
        let _ = svc.clone().oneshot(first_request()).await;
    }
    let before = scripts_run(admin).await;
    let mut latencies = Vec::with_capacity(clients);
    let mut failed = 0;
    for _ in 0..clients {
        let request = first_request();
        let started = Instant::now();
        let status = svc.clone().oneshot(request).await.expect("infallible");
        latencies.push(started.elapsed());
        if status != StatusCode::OK {
            failed += 1;
        }
    }
    let scripts = scripts_run(admin).await - before;
    latencies.sort();
    Sample {
        latencies,
        // Background work of the earlier clients (renewals, refills) is
        // counted against these; none is due within a few seconds.
        scripts_per_client: scripts as f64 / clients as f64,
        failed,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn median_of(values: &[Duration]) -> Duration {
    let mut values = values.to_vec();
    values.sort();
    values[values.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> ExitCode {
    if !env::args().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    let Ok(url) = env::var("PORTCULLIS_REDIS_URL") else {
        eprintln!("skipped: set PORTCULLIS_REDIS_URL to a redis-server to measure against");
        return ExitCode::SUCCESS;
    };
    let setting = |name: &str, default: f64| {
        env::var(name)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(default)
    };
    let clients = setting("PORTCULLIS_FIRST_CONTACT_CLIENTS", 500.0) as usize;
    let rounds = setting("PORTCULLIS_FIRST_CONTACT_ROUNDS", 3.0) as usize;
    let delay = Duration::from_secs_f64(setting("PORTCULLIS_FIRST_CONTACT_DELAY_MS", 1.0) / 1000.0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut failed = 0;
    let mut tables = Vec::new();
    runtime.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("a redis url");
        let upstream = client.get_connection_info().addr().to_string();
        let mut admin = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis answers");
        let upstream: SocketAddr = tokio::net::lookup_host(upstream)
            .await
            .expect("the redis address resolves")
            .next()
            .expect("an address");
        let delayed = delaying_proxy(upstream, delay).await;
        let mut run = 0;
        for (network, url) in [("loopback", url.clone()), ("delayed", delayed)] {
            let mut medians = vec![Vec::new(); Mode::ALL.len()];
            let mut p99s = vec![Vec::new(); Mode::ALL.len()];
            let mut scripts = vec![0.0; Mode::ALL.len()];
            for round in 0..rounds {
                for i in 0..Mode::ALL.len() {
                    let slot = (round + i) % Mode::ALL.len();
                    let mode = Mode::ALL[slot];
                    run += 1;
                    let sample = measure(mode, &url, &mut admin, clients, run).await;
                    let median = percentile(&sample.latencies, 0.5);
                    let p99 = percentile(&sample.latencies, 0.99);
                    eprintln!(
                        "  {network}, round {}: {:<50} median {}, p99 {}, {:.2} scripts/client",
                        round + 1,
                        mode.label(),
                        ms(median),
                        ms(p99),
                        sample.scripts_per_client,
                    );
                    failed += sample.failed;
                    medians[slot].push(median);
                    p99s[slot].push(p99);
                    scripts[slot] = sample.scripts_per_client;
                }
            }
            tables.push((network, medians, p99s, scripts));
        }
    });
    println!();
    println!("```sh");
    println!("PORTCULLIS_REDIS_URL=… cargo bench --bench first_contact --features redis");
    println!("```");
    println!();
    println!(
        "{clients} new clients per sample, one at a time, {rounds} round(s); the median of the \
         rounds' medians and p99s; delayed = {} ms added each way by a proxy.",
        delay.as_secs_f64() * 1000.0
    );
    for (network, medians, p99s, scripts) in tables {
        println!();
        println!(
            "| {network}: first request of a new client | median | p99 | scripts per client |"
        );
        println!("|---|---|---|---|");
        for (i, mode) in Mode::ALL.iter().enumerate() {
            println!(
                "| {} | {} | {} | {:.2} |",
                mode.label(),
                ms(median_of(&medians[i])),
                ms(median_of(&p99s[i])),
                scripts[i],
            );
        }
    }
    if failed > 0 {
        println!("!!! {failed} requests failed or were refused");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
