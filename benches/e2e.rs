//! End to end: real axum servers on loopback, driven by many keep-alive
//! HTTP/1.1 connections that all come from one client address (127.0.0.1),
//! as a NAT, a corporate proxy or a single-page app sending in parallel
//! would.
//!
//! Three servers take turns on the same routes:
//!
//! 1. **bare axum**: the router alone;
//! 2. **portcullis**: `RateLimitLayer` (outermost, 1 000 000/s, burst
//!    1 000 000, so it never refuses) → `LockoutLayer` (`Policy::default()`)
//!    → `AuthLayer` (bearer token), the limiters keyed by `ClientIp`, the
//!    socket peer;
//! 3. **tower_governor + tower-http**: `GovernorLayer` (peer IP, the same
//!    generous quota) → `ValidateRequestHeaderLayer::bearer`.
//!
//! Every request carries the valid bearer token. Two handlers: one answers at
//! once, one after `tokio::time::sleep(20 ms)`. Each connection sends its
//! next request as soon as the previous answer is read; the bench counts the
//! 200s completed in the measured window (after a warm-up) and, separately,
//! every other status and every connection error, which must all be zero.
//!
//! Each server runs in this process on its own multi-thread tokio runtime
//! (fresh for every measurement, so the limiters start empty), the client on
//! another. The configurations are interleaved, in a different order each
//! round, and the median of the rounds is reported, because the machine these
//! numbers come from is shared and noisy. Client and server share the
//! machine's cores: the 20 ms handler is latency-bound (at most
//! `connections / 20 ms` requests per second), so its numbers are fair as
//! they are; the immediate handler is CPU-bound, so compare its ratios, not
//! its absolute numbers, and since the client takes most of the CPU there,
//! read them next to the server threads' CPU time per request (from
//! `/proc/self/task/*/schedstat`, Linux only), which is the server's own cost
//! and moves less with the load of other processes.
//!
//! ```text
//! cargo bench --bench e2e                        # 5 rounds of 1 s warm-up + 3 s, about 2 minutes
//! PORTCULLIS_E2E_QUICK=1 cargo bench --bench e2e # smoke run, a few seconds
//! ```
//!
//! Settings (environment): `PORTCULLIS_E2E_SECS` (measured seconds, default
//! 3), `PORTCULLIS_E2E_WARMUP` (seconds, default 1), `PORTCULLIS_E2E_ROUNDS`
//! (default 5), `PORTCULLIS_E2E_CONNS` (comma-separated connection counts,
//! default `64`, e.g. `32,64`), `PORTCULLIS_E2E_THREADS` (worker threads of
//! the server runtime and of the client runtime, default: the number of
//! cores), `PORTCULLIS_E2E_QUICK=1` (or the argument `--quick`: 0.2 s
//! warm-up, 0.5 s measured, one round). Without `--bench` (as under
//! `cargo test --benches`) the binary does nothing.
#![allow(missing_docs)]

use std::{
    env, fs,
    net::SocketAddr,
    process::ExitCode,
    thread,
    time::{Duration, Instant},
};

use axum::{Router, body::Body, routing::get, serve::ListenerExt};
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use portcullis::{
    AuthLayer, ClientIp, Credential, ValidationError, Validator,
    lockout::{LockoutLayer, Policy},
    rate_limit::RateLimitLayer,
    stack::Stack as Layers,
};
use tokio::{
    net::{TcpListener, TcpStream},
    runtime::Runtime,
    task::JoinSet,
};
use tower_governor::{GovernorLayer, governor::GovernorConfigBuilder};
use tower_http::validate_request::ValidateRequestHeaderLayer;

/// The one valid bearer token.
const TOKEN: &str = "e2e-bench-token";
const AUTHORIZATION: &str = "Bearer e2e-bench-token";
/// How long the slow handler takes.
const HANDLER_DELAY: Duration = Duration::from_millis(20);
/// Thread names, to tell the server's CPU time from the client's in `/proc`.
const SERVER_THREAD: &str = "e2e-server";
const CLIENT_THREAD: &str = "e2e-client";

// ---------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Stack {
    Bare,
    Portcullis,
    Peers,
}

impl Stack {
    const ALL: [Self; 3] = [Self::Bare, Self::Portcullis, Self::Peers];

    fn label(self) -> &'static str {
        match self {
            Self::Bare => "(a) bare axum",
            Self::Portcullis => "(b) portcullis",
            Self::Peers => "(c) tower_governor + tower-http",
        }
    }

    /// The router with this stack's layers. `Router::layer` wraps what is
    /// there already: the last layer added sees a request first.
    fn app(self) -> Router {
        match self {
            Self::Bare => routes(),
            Self::Portcullis => {
                let rate_limit = RateLimitLayer::builder()
                    .per_second(1_000_000)
                    .burst(1_000_000)
                    .key(ClientIp::new())
                    .build()
                    .expect("a valid rate");
                // As the README puts them together: one `Stack`, whose
                // lockout hands its reservation to the auth layer directly.
                routes().layer(
                    Layers::new(AuthLayer::new(OneToken))
                        .lockout(LockoutLayer::new(Policy::default()))
                        .rate_limit(rate_limit),
                )
            }
            Self::Peers => {
                // One token per microsecond, a burst of a million: the same
                // quota as portcullis's rate limit above.
                let config = GovernorConfigBuilder::default()
                    .per_nanosecond(1_000)
                    .burst_size(1_000_000)
                    .finish()
                    .expect("a valid quota");
                #[allow(deprecated)] // the peer being compared against
                let bearer = ValidateRequestHeaderLayer::bearer(TOKEN);
                routes()
                    .layer(bearer)
                    .layer(GovernorLayer::<_, _, Body>::new(config))
            }
        }
    }
}

/// The validator: one known token, compared in memory like tower-http does,
/// and so answered at once (`validate_now`).
struct OneToken;

impl OneToken {
    fn compare(credential: &Credential) -> Result<(), ValidationError> {
        if credential.secret() == TOKEN {
            Ok(())
        } else {
            Err(ValidationError::invalid())
        }
    }
}

impl Validator for OneToken {
    type Identity = ();

    async fn validate(&self, credential: &Credential) -> Result<(), ValidationError> {
        Self::compare(credential)
    }

    fn validate_now(&self, credential: &Credential) -> Option<Result<(), ValidationError>> {
        Some(Self::compare(credential))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Handler {
    Immediate,
    Sleep,
}

impl Handler {
    const ALL: [Self; 2] = [Self::Immediate, Self::Sleep];

    fn path(self) -> &'static str {
        match self {
            Self::Immediate => "/now",
            Self::Sleep => "/sleep",
        }
    }

    fn label(self) -> String {
        match self {
            Self::Immediate => "immediate".to_owned(),
            Self::Sleep => format!("{} ms sleep", HANDLER_DELAY.as_millis()),
        }
    }
}

fn routes() -> Router {
    Router::new().route("/now", get(|| async { "ok" })).route(
        "/sleep",
        get(|| async {
            tokio::time::sleep(HANDLER_DELAY).await;
            "ok"
        }),
    )
}

/// A server on `127.0.0.1:0` in its own runtime; dropping it stops it.
struct Server {
    runtime: Runtime,
    addr: SocketAddr,
}

impl Server {
    fn start(stack: Stack, threads: usize) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(SERVER_THREAD)
            .enable_all()
            .build()
            .expect("a server runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a local address");
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = stack.app();
        runtime.spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("the server runs");
        });
        Self { runtime, addr }
    }

    fn stop(self) {
        self.runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

// ---------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------

type Sender = http1::SendRequest<Empty<Bytes>>;
type Error = Box<dyn std::error::Error + Send + Sync>;

async fn connect(addr: SocketAddr) -> Result<Sender, Error> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

fn host(addr: SocketAddr) -> HeaderValue {
    HeaderValue::try_from(addr.to_string()).expect("an address is a valid header value")
}

/// Sends one request and reads the whole answer; its status.
async fn exchange(
    sender: &mut Sender,
    host: &HeaderValue,
    path: &str,
    credential: bool,
) -> hyper::Result<StatusCode> {
    let mut req = Request::get(path).header(header::HOST, host);
    if credential {
        req = req.header(
            header::AUTHORIZATION,
            HeaderValue::from_static(AUTHORIZATION),
        );
    }
    let req = req.body(Empty::new()).expect("a valid request");
    sender.ready().await?;
    let res = sender.send_request(req).await?;
    let status = res.status();
    res.into_body().collect().await?;
    Ok(status)
}

#[derive(Clone, Copy, Default, Debug)]
struct Counts {
    ok: u64,
    other_status: u64,
    errors: u64,
}

impl Counts {
    fn add(&mut self, other: Self) {
        self.ok += other.ok;
        self.other_status += other.other_status;
        self.errors += other.errors;
    }
}

/// One connection sending requests back to back until `end`, counting the
/// answers that arrive from `from` on.
async fn drive(addr: SocketAddr, path: &'static str, from: Instant, end: Instant) -> Counts {
    let mut counts = Counts::default();
    let mut sender = match connect(addr).await {
        Ok(sender) => sender,
        Err(error) => {
            eprintln!("  connection failed: {error}");
            counts.errors += 1;
            return counts;
        }
    };
    let host = host(addr);
    while Instant::now() < end {
        let result = exchange(&mut sender, &host, path, true).await;
        let now = Instant::now();
        let counted = now >= from && now < end;
        match result {
            Ok(StatusCode::OK) => counts.ok += u64::from(counted),
            Ok(status) => {
                if counts.other_status == 0 {
                    eprintln!("  unexpected status {status}");
                }
                counts.other_status += 1;
            }
            Err(error) => {
                eprintln!("  request failed: {error}");
                counts.errors += 1;
                return counts;
            }
        }
    }
    counts
}

/// What one measurement gives.
#[derive(Clone, Copy, Debug)]
struct Sample {
    requests_per_sec: f64,
    /// Server threads' CPU time per answered request, when `/proc` tells.
    server_cpu_us: Option<f64>,
    counts: Counts,
    load: Option<f64>,
}

#[derive(Clone, Copy, Debug)]
struct Settings {
    warmup: Duration,
    measured: Duration,
    rounds: usize,
    threads: usize,
}

fn measure(
    client: &Runtime,
    settings: &Settings,
    stack: Stack,
    handler: Handler,
    connections: usize,
) -> Sample {
    let server = Server::start(stack, settings.threads);
    let addr = server.addr;
    let path = handler.path();
    let (counts, cpu) = client.block_on(async move {
        let start = Instant::now();
        let from = start + settings.warmup;
        let end = from + settings.measured;
        let mut tasks = JoinSet::new();
        for _ in 0..connections {
            tasks.spawn(drive(addr, path, from, end));
        }
        tokio::time::sleep_until(from.into()).await;
        let cpu_from = thread_cpu_ns(SERVER_THREAD);
        tokio::time::sleep_until(end.into()).await;
        let cpu_end = thread_cpu_ns(SERVER_THREAD);
        let mut counts = Counts::default();
        while let Some(done) = tasks.join_next().await {
            counts.add(done.expect("a client task"));
        }
        (counts, cpu_from.zip(cpu_end).map(|(a, b)| b - a))
    });
    let load = load_average();
    server.stop();
    let secs = settings.measured.as_secs_f64();
    Sample {
        requests_per_sec: counts.ok as f64 / secs,
        server_cpu_us: cpu
            .filter(|_| counts.ok > 0)
            .map(|ns| ns as f64 / 1e3 / counts.ok as f64),
        counts,
        load,
    }
}

/// Checks that each stack does what the comparison assumes: 200 with the
/// token, 401 without (except the bare router, which answers 200).
fn sanity_check(client: &Runtime, threads: usize) -> Result<(), String> {
    for stack in Stack::ALL {
        for handler in Handler::ALL {
            let server = Server::start(stack, threads);
            let addr = server.addr;
            let statuses = client.block_on(async move {
                let host = host(addr);
                let mut sender = connect(addr).await?;
                let with = exchange(&mut sender, &host, handler.path(), true).await?;
                let without = exchange(&mut sender, &host, handler.path(), false).await?;
                Ok::<_, Error>((with, without))
            });
            server.stop();
            let expected_without = match stack {
                Stack::Bare => StatusCode::OK,
                Stack::Portcullis | Stack::Peers => StatusCode::UNAUTHORIZED,
            };
            match statuses {
                Ok((StatusCode::OK, without)) if without == expected_without => {}
                other => {
                    return Err(format!(
                        "{} on {}: expected 200 with the token and {expected_without} \
                         without, got {other:?}",
                        stack.label(),
                        handler.path()
                    ));
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// /proc
// ---------------------------------------------------------------------------

/// CPU time of this process's threads named `name` (their `comm`), in
/// nanoseconds, from `/proc/self/task/*/schedstat`; `None` without it.
fn thread_cpu_ns(name: &str) -> Option<u64> {
    let mut total = 0;
    for task in fs::read_dir("/proc/self/task").ok()? {
        let dir = task.ok()?.path();
        // A thread that exited in between has no files any more.
        let Ok(comm) = fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(schedstat) = fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        // Time on the CPU (ns), time waiting for it (ns), time slices.
        total += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The one-minute load average, from `/proc/loadavg`.
fn load_average() -> Option<f64> {
    fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

// ---------------------------------------------------------------------------
// Settings, rounds and the report
// ---------------------------------------------------------------------------

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = env::var(name).ok()?;
    match value.trim().parse() {
        Ok(parsed) => Some(parsed),
        Err(_) => panic!("{name}={value:?} is not a valid value"),
    }
}

fn settings(quick: bool) -> Settings {
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let (warmup, measured, rounds) = if quick { (0.2, 0.5, 1) } else { (1.0, 3.0, 5) };
    Settings {
        warmup: Duration::from_secs_f64(env_parse("PORTCULLIS_E2E_WARMUP").unwrap_or(warmup)),
        measured: Duration::from_secs_f64(env_parse("PORTCULLIS_E2E_SECS").unwrap_or(measured)),
        rounds: env_parse("PORTCULLIS_E2E_ROUNDS").unwrap_or(rounds).max(1),
        threads: env_parse("PORTCULLIS_E2E_THREADS").unwrap_or(cores).max(1),
    }
}

fn connection_counts() -> Vec<usize> {
    match env::var("PORTCULLIS_E2E_CONNS") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("PORTCULLIS_E2E_CONNS={list:?}: not a number list"))
            })
            .filter(|&n| n > 0)
            .collect(),
        Err(_) => vec![64],
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// The medians of one (handler, connections) row.
struct Row {
    handler: Handler,
    connections: usize,
    requests_per_sec: [f64; 3],
    /// The lowest and highest of the rounds, per stack.
    spread: [(f64, f64); 3],
    server_cpu_us: Option<[f64; 3]>,
}

fn format_rate(value: f64) -> String {
    let rounded = value.round() as u64;
    let digits = rounded.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(digit);
    }
    out
}

/// The command that reproduces this run, with the settings it was given.
fn command() -> String {
    let mut vars: Vec<String> = env::vars()
        .filter(|(name, _)| name.starts_with("PORTCULLIS_E2E_"))
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    vars.sort();
    let quick_arg = env::args().any(|a| a == "--quick");
    let mut command = vars.join(" ");
    if !command.is_empty() {
        command.push(' ');
    }
    command.push_str("cargo bench --bench e2e");
    if quick_arg {
        command.push_str(" -- --quick");
    }
    command
}

fn report(settings: &Settings, rows: &[Row], loads: &[f64], before: Option<f64>) {
    let [bare, ours, peers] = Stack::ALL.map(Stack::label);
    println!();
    println!("```sh");
    println!("{}", command());
    println!("```");
    println!();
    println!(
        "{} round(s) of {:.1} s warm-up + {:.1} s measured per configuration, interleaved; \
         median of the rounds. Server runtime and client runtime {} worker thread(s) each, \
         sharing {} core(s).",
        settings.rounds,
        settings.warmup.as_secs_f64(),
        settings.measured.as_secs_f64(),
        settings.threads,
        thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "Client and server share those cores: the {} handler is latency-bound, its numbers \
         stand as they are; the immediate handler is CPU-bound, compare its ratios, not its \
         absolute numbers, next to the server's CPU time per request below (the client takes \
         most of the CPU).",
        Handler::Sleep.label(),
    );
    println!();
    if settings.rounds > 1 {
        println!("Requests per second, median (lowest–highest round):");
    } else {
        println!("Requests per second:");
    }
    println!();
    println!(
        "| handler | connections | {bare} | {ours} | {peers} | (b) / (a) | (b) / (c) | (c) / (a) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let cell = |median: f64, (low, high): (f64, f64)| {
        if settings.rounds > 1 {
            format!(
                "{} ({}–{})",
                format_rate(median),
                format_rate(low),
                format_rate(high)
            )
        } else {
            format_rate(median)
        }
    };
    for row in rows {
        let [a, b, c] = row.requests_per_sec;
        let [a_cell, b_cell, c_cell] =
            [0, 1, 2].map(|i| cell(row.requests_per_sec[i], row.spread[i]));
        let ceiling = match row.handler {
            Handler::Immediate => String::new(),
            Handler::Sleep => format!(
                " (ceiling {})",
                format_rate(row.connections as f64 / HANDLER_DELAY.as_secs_f64())
            ),
        };
        println!(
            "| {} | {}{ceiling} | {a_cell} | {b_cell} | {c_cell} | **{:.2}×** | **{:.2}×** | {:.2}× |",
            row.handler.label(),
            row.connections,
            b / a,
            b / c,
            c / a,
        );
    }
    if rows.iter().any(|row| row.server_cpu_us.is_some()) {
        println!();
        println!(
            "Server threads' CPU time per request (µs, median; at very different request \
             rates these are not comparable, since a mostly idle server's wake-ups are shared \
             by fewer requests):"
        );
        println!();
        println!("| handler | connections | {bare} | {ours} | {peers} | (b) / (a) | (b) / (c) |");
        println!("|---|---|---|---|---|---|---|");
        for row in rows {
            if let Some([a, b, c]) = row.server_cpu_us {
                println!(
                    "| {} | {} | {a:.1} | {b:.1} | {c:.1} | {:.2}× | {:.2}× |",
                    row.handler.label(),
                    row.connections,
                    b / a,
                    b / c,
                );
            }
        }
    }
    println!();
    if let (Some(before), false) = (before, loads.is_empty()) {
        let low = loads.iter().copied().fold(f64::INFINITY, f64::min);
        let high = loads.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "Load average (1 min, /proc/loadavg): {before:.2} before the run, {low:.2}–{high:.2} \
             during it (the bench itself included)."
        );
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().collect();
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // starting servers for minutes is no test.
    if !args.iter().any(|a| a == "--bench") {
        println!("e2e: run with `cargo bench --bench e2e`; nothing to do under `cargo test`");
        return ExitCode::SUCCESS;
    }
    let quick = args.iter().any(|a| a == "--quick")
        || env::var("PORTCULLIS_E2E_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let settings = settings(quick);
    let connections = connection_counts();
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .thread_name(CLIENT_THREAD)
        .enable_all()
        .build()
        .expect("a client runtime");

    if let Err(problem) = sanity_check(&client, settings.threads) {
        eprintln!("e2e: {problem}");
        return ExitCode::FAILURE;
    }

    let before = load_average();
    let mut loads = Vec::new();
    let mut rows = Vec::new();
    let mut failures = Counts::default();
    eprintln!(
        "e2e: {} round(s), {:.1} s + {:.1} s per configuration, connections {connections:?}",
        settings.rounds,
        settings.warmup.as_secs_f64(),
        settings.measured.as_secs_f64(),
    );
    for handler in Handler::ALL {
        for &conns in &connections {
            let mut samples: [Vec<Sample>; 3] = Default::default();
            for round in 0..settings.rounds {
                // A different stack goes first in each round.
                for i in 0..Stack::ALL.len() {
                    let index = (round + i) % Stack::ALL.len();
                    let stack = Stack::ALL[index];
                    let sample = measure(&client, &settings, stack, handler, conns);
                    eprintln!(
                        "  {:<11} {conns:>3} conns, round {}: {:<32} {:>9.0} req/s{}{}",
                        handler.label(),
                        round + 1,
                        stack.label(),
                        sample.requests_per_sec,
                        sample
                            .server_cpu_us
                            .map(|us| format!(", server {us:.1} µs CPU/req"))
                            .unwrap_or_default(),
                        if sample.counts.other_status + sample.counts.errors > 0 {
                            format!(
                                "  !!! {} non-200, {} errors",
                                sample.counts.other_status, sample.counts.errors
                            )
                        } else {
                            String::new()
                        },
                    );
                    failures.other_status += sample.counts.other_status;
                    failures.errors += sample.counts.errors;
                    loads.extend(sample.load);
                    samples[index].push(sample);
                }
            }
            let requests_per_sec = samples
                .each_ref()
                .map(|s| median(s.iter().map(|s| s.requests_per_sec).collect()));
            let spread = samples.each_ref().map(|s| {
                s.iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), s| {
                        (low.min(s.requests_per_sec), high.max(s.requests_per_sec))
                    })
            });
            let cpu = samples.each_ref().map(|s| {
                s.iter()
                    .map(|s| s.server_cpu_us)
                    .collect::<Option<Vec<_>>>()
                    .map(median)
            });
            let server_cpu_us = match cpu {
                [Some(a), Some(b), Some(c)] => Some([a, b, c]),
                _ => None,
            };
            rows.push(Row {
                handler,
                connections: conns,
                requests_per_sec,
                spread,
                server_cpu_us,
            });
        }
    }

    report(&settings, &rows, &loads, before);
    if failures.other_status + failures.errors > 0 {
        println!();
        println!(
            "!!! {} answers other than 200 and {} failed requests: the numbers above do not \
             compare like with like",
            failures.other_status, failures.errors
        );
        return ExitCode::FAILURE;
    }
    println!("Every answer was a 200; no request failed.");
    ExitCode::SUCCESS
}
