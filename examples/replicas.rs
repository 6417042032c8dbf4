//! Two replicas of one service sharing lockout state through Redis: starts
//! instances A and B of an axum app on two free local ports, each with its
//! own connection to one Redis server, sends requests with a real HTTP
//! client, prints what came back, and checks every answer.
//!
//! ```text
//! redis-server --port 6390 --save '' --appendonly no &
//! PORTCULLIS_REDIS_URL=redis://127.0.0.1:6390 cargo run --example replicas --features redis
//! ```
//!
//! With a Redis Cluster, name its nodes in `PORTCULLIS_REDIS_CLUSTER`
//! instead (`redis://127.0.0.1:7000,redis://127.0.0.1:7001,…`).
//!
//! A client fails `max_failures` (3) times through instance A; instance B,
//! which never saw those failures, then refuses it with
//! `429 Too Many Requests` and `Retry-After`, even with a valid token, which
//! never reaches B's validator. The lockout is a key with a TTL in Redis,
//! so both replicas end it at the same moment whatever their clocks say.
//!
//! Without either variable the example says how to start a Redis
//! server and exits with code 2. It exits non-zero, naming the request, if
//! any answer is not the expected one, so running it is a test.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    ops::RangeInclusive,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use axum::{Json, Router, routing::get};
use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use portcullis::{
    AuthLayer, Credential, RedisConnectError, RedisStore, ValidationError,
    integration::axum::Identity,
    lockout::{LockoutLayer, Policy},
    reject::DefaultRenderer,
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

const ALICE: &str = "alice-token";

/// Failed attempts that lock a client out.
const MAX_FAILURES: u32 = 3;
/// How long the first lockout lasts.
const LOCKOUT: Duration = Duration::from_secs(30);

async fn me(Identity(subject): Identity<String>) -> Json<Value> {
    Json(json!({ "subject": subject }))
}

/// One replica: its own tracker on its own Redis connection, the same
/// policy and key prefix as the other replicas. `validations` counts the
/// credentials its validator saw.
fn app(store: RedisStore, validations: Arc<AtomicUsize>) -> Router {
    let auth = AuthLayer::new(move |credential: Credential| {
        validations.fetch_add(1, Ordering::SeqCst);
        async move {
            if credential.secret() == ALICE {
                Ok("alice".to_owned())
            } else {
                Err(ValidationError::invalid())
            }
        }
    })
    .renderer(DefaultRenderer::new().realm("replicas"));
    let policy = Policy::builder()
        .max_failures(MAX_FAILURES)
        .lockout(LOCKOUT)
        .build()
        .expect("the example policy is valid: 3 failures, a 30 s lockout");
    let lockout = LockoutLayer::builder(policy)
        .redis(store)
        .renderer(DefaultRenderer::new().realm("replicas"))
        .build()
        .expect("the example lockout is valid");
    Router::new()
        .route("/me", get(me))
        .layer(auth)
        .layer(lockout)
}

/// A running replica.
struct Instance {
    name: &'static str,
    base: String,
    validations: Arc<AtomicUsize>,
    stop: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
}

async fn start(name: &'static str, store: RedisStore) -> Result<Instance, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot bind 127.0.0.1:0: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("no local address: {e}"))?;
    let (stop, stopped) = oneshot::channel::<()>();
    let validations = Arc::new(AtomicUsize::new(0));
    let router = app(store, Arc::clone(&validations));
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .await
    });
    Ok(Instance {
        name,
        base: format!("http://{addr}"),
        validations,
        stop,
        server,
    })
}

/// One request and the answer it must get.
struct Step {
    /// 0 for instance A, 1 for instance B.
    instance: usize,
    what: &'static str,
    token: &'static str,
    status: StatusCode,
    subject: Option<&'static str>,
    retry_after: Option<RangeInclusive<u64>>,
}

fn step(instance: usize, what: &'static str, token: &'static str, status: StatusCode) -> Step {
    Step {
        instance,
        what,
        token,
        status,
        subject: None,
        retry_after: None,
    }
}

impl Step {
    fn subject(mut self, subject: &'static str) -> Self {
        self.subject = Some(subject);
        self
    }

    fn locked(mut self) -> Self {
        self.retry_after = Some(1..=LOCKOUT.as_secs());
        self
    }
}

/// What came back.
struct Seen {
    status: StatusCode,
    subject: Option<String>,
    retry_after: Option<String>,
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn send(client: &HttpClient, base: &str, token: &str) -> Result<Seen, String> {
    let request = Request::get(format!("{base}/me"))
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Empty::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("cannot read the body: {e}"))?
        .to_bytes();
    let subject = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|json| json.get("subject")?.as_str().map(str::to_owned));
    Ok(Seen {
        status,
        subject,
        retry_after,
    })
}

/// Compares an answer with the expectation; `Err` says what differs.
fn check(step: &Step, seen: &Seen) -> Result<(), String> {
    let mut problems = Vec::new();
    if seen.status != step.status {
        problems.push(format!("status {} (expected {})", seen.status, step.status));
    }
    if seen.subject.as_deref() != step.subject {
        problems.push(format!(
            "subject {:?} (expected {:?})",
            seen.subject, step.subject
        ));
    }
    let retry_after = seen.retry_after.as_deref().map(|v| v.parse::<u64>().ok());
    let ok = match (&step.retry_after, retry_after) {
        (None, None) => true,
        (Some(range), Some(Some(secs))) => range.contains(&secs),
        _ => false,
    };
    if !ok {
        problems.push(format!("Retry-After {:?}", seen.retry_after));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join(", "))
    }
}

/// Formats rows as left-aligned columns separated by two spaces.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0; N];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::from("  ");
        for (cell, width) in row.iter().zip(widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(redis) = redis_from_env() else {
        eprintln!(
            "replicas needs a Redis server: start one and name it in PORTCULLIS_REDIS_URL, e.g.\n\
             \n  redis-server --port 6390 --save '' --appendonly no &\n  \
             PORTCULLIS_REDIS_URL=redis://127.0.0.1:6390 cargo run --example replicas --features redis"
        );
        return ExitCode::from(2);
    };
    match run(&redis).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("replicas failed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Where the shared state lives: `PORTCULLIS_REDIS_CLUSTER` (the
/// comma-separated URLs of a Redis Cluster's nodes), else
/// `PORTCULLIS_REDIS_URL` (one server).
enum Redis {
    Node(String),
    Cluster(Vec<String>),
}

fn redis_from_env() -> Option<Redis> {
    if let Ok(nodes) = std::env::var("PORTCULLIS_REDIS_CLUSTER") {
        let nodes = nodes.split(',').map(|n| n.trim().to_owned()).collect();
        return Some(Redis::Cluster(nodes));
    }
    std::env::var("PORTCULLIS_REDIS_URL").ok().map(Redis::Node)
}

impl Redis {
    /// A connection of its own, as a separate process would have.
    async fn connect(&self) -> Result<RedisStore, RedisConnectError> {
        match self {
            Self::Node(url) => RedisStore::connect(url).await,
            Self::Cluster(nodes) => RedisStore::connect_cluster(nodes).await,
        }
    }
}

async fn run(redis: &Redis) -> Result<(), String> {
    // A prefix of this run's own, so that an earlier run's lockout does not
    // change the answers.
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = format!("portcullis-example:{}:{nanos}:", std::process::id());
    let mut instances = Vec::new();
    for name in ["A", "B"] {
        // Each replica has its own connection, as separate processes would.
        let store = redis
            .connect()
            .await
            .map_err(|e| e.to_string())?
            .prefix(prefix.clone());
        instances.push(start(name, store).await?);
    }
    println!(
        "portcullis replicas: instance A on {}, instance B on {}, sharing lockouts through redis",
        instances[0].base, instances[1].base
    );

    const A: usize = 0;
    const B: usize = 1;
    let steps = [
        step(B, "good token (alice)", ALICE, StatusCode::OK).subject("alice"),
        step(
            A,
            "unknown token (failure 1 of 3)",
            "guess-1",
            StatusCode::UNAUTHORIZED,
        ),
        step(
            A,
            "unknown token (failure 2 of 3)",
            "guess-2",
            StatusCode::UNAUTHORIZED,
        ),
        step(
            A,
            "unknown token (failure 3 of 3)",
            "guess-3",
            StatusCode::UNAUTHORIZED,
        ),
        step(
            B,
            "unknown token, locked out",
            "guess-4",
            StatusCode::TOO_MANY_REQUESTS,
        )
        .locked(),
        step(
            B,
            "good token (alice), locked out",
            ALICE,
            StatusCode::TOO_MANY_REQUESTS,
        )
        .locked(),
        step(
            A,
            "good token (alice), locked out",
            ALICE,
            StatusCode::TOO_MANY_REQUESTS,
        )
        .locked(),
    ];

    let client: HttpClient = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut rows = vec![[
        "instance".to_owned(),
        "request".to_owned(),
        "status".to_owned(),
        "subject".to_owned(),
        "Retry-After".to_owned(),
    ]];
    let mut failures = Vec::new();
    for step in &steps {
        let instance = &instances[step.instance];
        let seen = send(&client, &instance.base, step.token).await?;
        if let Err(problem) = check(step, &seen) {
            failures.push(format!(
                "GET /me on {} ({}): {problem}",
                instance.name, step.what
            ));
        }
        let dash = || "-".to_owned();
        rows.push([
            instance.name.to_owned(),
            format!("GET /me  {}", step.what),
            format!(
                "{} {}",
                seen.status.as_u16(),
                seen.status.canonical_reason().unwrap_or("")
            ),
            seen.subject.unwrap_or_else(dash),
            seen.retry_after.unwrap_or_else(dash),
        ]);
    }
    println!();
    println!("3 failed attempts through A lock the client out of A and B for 30 s");
    println!();
    print!("{}", table(&rows));
    println!();

    // The locked-out requests never reached a validator: B saw only the
    // first request, A only the three failures.
    let seen: Vec<usize> = instances
        .iter()
        .map(|instance| instance.validations.load(Ordering::SeqCst))
        .collect();
    println!("credentials validated: {} by A, {} by B", seen[0], seen[1]);
    if seen != [3, 1] {
        failures.push(format!(
            "the validators saw {seen:?} credentials (expected [3, 1]): a locked-out request got through"
        ));
    }

    // Idle pooled connections would keep the graceful shutdown waiting.
    drop(client);
    for instance in instances {
        let _ = instance.stop.send(());
        instance
            .server
            .await
            .map_err(|e| format!("server task failed: {e}"))?
            .map_err(|e| format!("server failed: {e}"))?;
    }

    if failures.is_empty() {
        println!("all {} answers were as expected", steps.len());
        Ok(())
    } else {
        Err(format!(
            "{} unexpected answer(s):\n  {}",
            failures.len(),
            failures.join("\n  ")
        ))
    }
}
