//! End to end with shared state: the full stack (`RateLimitLayer` →
//! `LockoutLayer` → `AuthLayer`, keyed by `ClientIp`) with its limiters in
//! memory and on Redis, in the same run, as real axum servers on loopback
//! driven by keep-alive HTTP/1.1 connections from one client address, every
//! request carrying the valid bearer token, the handler answering at once.
//!
//! For the Redis stack it also counts the commands Redis ran per request
//! (`INFO commandstats`, scripts' inner commands included) in the measured
//! window: the steady state of a returning client (D5).
//!
//! ```text
//! redis-server --port 6390 --save '' --appendonly no &
//! PORTCULLIS_REDIS_URL=redis://127.0.0.1:6390 cargo bench --bench e2e_redis --features redis
//! # with a cluster too (three masters), measured beside the single node:
//! PORTCULLIS_REDIS_URL=… PORTCULLIS_REDIS_CLUSTER=redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002 \
//!     cargo bench --bench e2e_redis --features redis
//! ```
//!
//! Settings (environment): `PORTCULLIS_E2E_SECS` (measured seconds, default
//! 3), `PORTCULLIS_E2E_ROUNDS` (default 3), `PORTCULLIS_E2E_CONNS` (default
//! 32). Without `--bench` (as under `cargo test --benches`) or without
//! `PORTCULLIS_REDIS_URL` the binary says so and does nothing.
#![allow(missing_docs)]

use std::{
    env,
    net::SocketAddr,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, routing::get, serve::ListenerExt};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use portcullis::{
    AuthLayer, ClientIp, Credential, RedisStore, ValidationError, Validator,
    lockout::{LockoutLayer, Policy},
    rate_limit::RateLimitLayer,
    stack::Stack,
};
use tokio::{
    net::{TcpListener, TcpStream},
    runtime::Runtime,
};

const TOKEN: &str = "e2e-bench-token";

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
    Memory,
    Redis,
    Cluster,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Self::Memory => "portcullis, in memory",
            Self::Redis => "portcullis, on Redis",
            Self::Cluster => "portcullis, on a Redis Cluster",
        }
    }
}

/// Where the shared state lives: one node's URL, and a cluster's nodes.
struct Servers {
    node: String,
    cluster: Vec<String>,
}

async fn app(mode: Mode, servers: &Servers, prefix: &str) -> Router {
    let routes = Router::new().route("/now", get(|| async { "ok" }));
    let rate_limit = RateLimitLayer::builder()
        .per_second(1_000_000)
        .burst(1_000_000)
        .key(ClientIp::new());
    let (rate_limit, lockout) = match mode {
        Mode::Memory => (
            rate_limit.build().expect("a valid rate"),
            LockoutLayer::new(Policy::default()),
        ),
        Mode::Redis | Mode::Cluster => {
            // One store for both layers, as the docs advise: a new
            // client's first request then asks Redis once for both.
            let store = if mode == Mode::Cluster {
                RedisStore::connect_cluster(&servers.cluster).await
            } else {
                RedisStore::connect(&servers.node).await
            };
            let store = store.expect("redis-server answers").prefix(prefix);
            let lockout = LockoutLayer::builder(Policy::default())
                .redis(store.clone())
                .build()
                .expect("a valid lockout");
            (
                rate_limit.redis(store).build().expect("a valid rate"),
                lockout,
            )
        }
    };
    // As the README puts them together.
    routes.layer(
        Stack::new(AuthLayer::new(OneToken))
            .lockout(lockout)
            .rate_limit(rate_limit),
    )
}

async fn commands(admin: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(admin)
        .await
        .expect("INFO answers");
    info.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
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
    per_sec: f64,
    commands_per_request: f64,
    failed: u64,
}

/// Commands run so far by every node of `admins`.
async fn all_commands(admins: &mut [redis::aio::MultiplexedConnection]) -> u64 {
    let mut sum = 0;
    for admin in admins {
        sum += commands(admin).await;
    }
    sum
}

fn measure(client: &Runtime, mode: Mode, servers: &Servers, conns: usize, secs: f64) -> Sample {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a server runtime");
    let prefix = format!("e2e:{}:", std::process::id());
    let (listener, app) = server.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        (listener, app(mode, servers, &prefix).await)
    });
    let addr = listener.local_addr().expect("an address");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    server.spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("the server runs");
    });
    let urls = if mode == Mode::Cluster {
        servers.cluster.clone()
    } else {
        vec![servers.node.clone()]
    };
    let sample = client.block_on(async move {
        let mut admins = Vec::new();
        for url in &urls {
            admins.push(
                redis::Client::open(url.as_str())
                    .expect("a redis url")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("redis answers"),
            );
        }
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let counting = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (ok, failed, counting, stop) = (
                Arc::clone(&ok),
                Arc::clone(&failed),
                Arc::clone(&counting),
                Arc::clone(&stop),
            );
            tasks.push(tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                let _ = stream.set_nodelay(true);
                let (mut sender, conn) = http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                while !stop.load(Ordering::Relaxed) {
                    let request = Request::get("/now")
                        .header(header::HOST, addr.to_string())
                        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
                        .body(Empty::<bytes::Bytes>::new())
                        .expect("a request");
                    let good = match sender.send_request(request).await {
                        Ok(res) => {
                            let status = res.status();
                            let _ = res.into_body().collect().await;
                            status == StatusCode::OK
                        }
                        Err(_) => false,
                    };
                    if counting.load(Ordering::Relaxed) {
                        if good { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                    }
                    if !good {
                        break;
                    }
                }
            }));
        }
        // Warm-up: first contacts, batches grown.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = all_commands(&mut admins).await;
        counting.store(true, Ordering::Relaxed);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        counting.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let after = all_commands(&mut admins).await;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            let _ = task.await;
        }
        let requests = ok.load(Ordering::Relaxed);
        Sample {
            per_sec: requests as f64 / elapsed,
            // The two INFO reads are not counted; the other commands are
            // the stack's (plus pub/sub pings of the Redis mode, which are
            // counted against it).
            commands_per_request: (after - before) as f64 / requests.max(1) as f64,
            failed: failed.load(Ordering::Relaxed),
        }
    });
    server.shutdown_timeout(Duration::from_secs(1));
    sample
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> ExitCode {
    if !env::args().any(|a| a == "--bench") {
        return ExitCode::SUCCESS;
    }
    let Ok(node) = env::var("PORTCULLIS_REDIS_URL") else {
        eprintln!("skipped: set PORTCULLIS_REDIS_URL to a redis-server to compare against");
        return ExitCode::SUCCESS;
    };
    let cluster: Vec<String> = env::var("PORTCULLIS_REDIS_CLUSTER")
        .map(|nodes| nodes.split(',').map(|n| n.trim().to_owned()).collect())
        .unwrap_or_default();
    let mut modes = vec![Mode::Memory, Mode::Redis];
    if !cluster.is_empty() {
        modes.push(Mode::Cluster);
    }
    let servers = Servers { node, cluster };
    let setting = |name: &str, default: f64| {
        env::var(name)
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(default)
    };
    let secs = setting("PORTCULLIS_E2E_SECS", 3.0);
    let rounds = setting("PORTCULLIS_E2E_ROUNDS", 3.0) as usize;
    let conns = setting("PORTCULLIS_E2E_CONNS", 32.0) as usize;
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a client runtime");
    let mut rates = vec![Vec::new(); modes.len()];
    let mut commands = vec![Vec::new(); modes.len()];
    let mut failed = 0;
    for round in 0..rounds {
        for i in 0..modes.len() {
            let slot = (round + i) % modes.len();
            let mode = modes[slot];
            let sample = measure(&client, mode, &servers, conns, secs);
            eprintln!(
                "  round {}: {:<32} {:>9.0} req/s, {:.4} redis commands/request",
                round + 1,
                mode.label(),
                sample.per_sec,
                sample.commands_per_request
            );
            failed += sample.failed;
            rates[slot].push(sample.per_sec);
            commands[slot].push(sample.commands_per_request);
        }
    }
    let rates: Vec<f64> = rates.into_iter().map(median).collect();
    let commands: Vec<f64> = commands.into_iter().map(median).collect();
    println!();
    println!("```sh");
    println!(
        "PORTCULLIS_REDIS_URL=… [PORTCULLIS_REDIS_CLUSTER=…] cargo bench --bench e2e_redis --features redis"
    );
    println!("```");
    println!();
    println!(
        "{rounds} round(s) of {secs:.1} s, {conns} keep-alive connections from one address, \
         immediate handler; median."
    );
    println!();
    println!(
        "| full stack | requests/s | vs in memory | vs one node | Redis commands per request |"
    );
    println!("|---|---|---|---|---|");
    for (i, mode) in modes.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.2}× | {} | {:.4} |",
            mode.label(),
            rates[i],
            rates[i] / rates[0],
            if i == 0 {
                "".to_owned()
            } else {
                format!("{:.2}×", rates[i] / rates[1])
            },
            commands[i],
        );
    }
    if failed > 0 {
        println!("!!! {failed} requests failed or were refused");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
