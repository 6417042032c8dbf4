//! An axum API behind `AuthLayer`, with a failed-attempt limiter and an
//! optional rate limiter in front: a public health check, a login form that
//! sets a session cookie, a `/me` route that answers with the caller's
//! subject, an `/admin` route that needs the `admin` scope, sign-out, and
//! two streams that end when their credential is revoked or expires (SSE
//! and a WebSocket).
//!
//! The credential may come from `Authorization: Bearer`, the `session` cookie
//! or the `X-API-Key` header (and, for `/ws`, the subprotocol
//! `bearer.<token>`); two different credentials in one request are refused
//! as ambiguous. Four validators are combined with a `Chain`, behind a cache
//! that checks every answer against the revocation list:
//!
//! - **API keys** (`ApiKeys`): keys starting with `demo_` go to this
//!   validator and no other. It knows one key, for subject `ci-bot` (no
//!   scopes), stored only as its SHA-256 digest.
//! - **Sessions** (`sessions.rs`): tokens starting with `sess_`, issued by
//!   `POST /login`.
//! - **Demo tokens** (never printed or logged):
//!
//!   | token         | subject | scopes  |
//!   |---------------|---------|---------|
//!   | `alice-token` | `alice` | `admin` |
//!   | `bob-token`   | `bob`   | none    |
//!
//! - **JWTs** (feature `jwt`, when `PORTCULLIS_JWT_SECRET` is set): HS256,
//!   `iss` = `portcullis-demo`, `aud` = `portcullis-api`, `exp` required; the
//!   subject is `sub` and the scopes come from the `scope` claim.
//!
//! `POST /login` takes the form fields `username` and `password`:
//! `alice` / `wonderland` gets a fresh random session token in the
//! `session` cookie (`HttpOnly`, `SameSite=Lax`, `Path=/`), which also works
//! as `Authorization: Bearer` and `X-API-Key`, and a signed `device` cookie;
//! anything else gets 401. Both `POST /login` and `POST /logout` refuse
//! cross-site browser posts (403); see `login.rs` for the limits around
//! them: per address, per account for clients without a device cookie, and
//! smart counting (the same wrong password repeated counts once).
//!
//! Signing out means disconnected (`sessions.rs`, `streams.rs`):
//!
//! - `POST /logout` revokes the credential presented, in every carrier,
//!   clears the cookie (`Max-Age=0`) and answers 204; `POST /logout?all=1`
//!   revokes every credential of the subject issued until now, JWTs
//!   included.
//! - `GET /events` is a Server-Sent Events stream (an event every 250 ms)
//!   that ends within a second after its credential is revoked or expires.
//! - `GET /ws` is a WebSocket echo that closes with code 1008 within a
//!   second after its credential is revoked or expires. A browser offers
//!   the subprotocols `chat` and `bearer.<token>`; the server selects `chat`.
//! - With `PORTCULLIS_REDIS_URL` (or `PORTCULLIS_REDIS_CLUSTER`), a
//!   revocation on one instance takes effect on every instance (requests
//!   and open streams) within a second.
//!
//! Requests pass, outermost first, through `RateLimitLayer` (when
//! configured), `LockoutLayer` and `AuthLayer`. Both limiters key on the
//! client's address (the server runs with connect info). The lockout counts
//! rejected credentials and failed logins, not missing credentials; a
//! locked-out client gets 429 with `Retry-After` for every request, even
//! with a valid credential, until the lockout ends (it doubles for repeat
//! offenders, up to a day).
//!
//! Configuration, from the environment:
//!
//! | variable                | meaning |
//! |-------------------------|---------|
//! | `PORTCULLIS_ADDR`       | listen address (default `127.0.0.1:3000`; port 0 picks a free port) |
//! | `PORTCULLIS_API_KEY`    | the API key of `ci-bot`: `demo_` and at least 32 more characters from `A-Z a-z 0-9 - _`. Unset: a key is generated that nobody knows, and only its prefix is printed |
//! | `PORTCULLIS_JWT_SECRET` | HS256 secret (at least 32 bytes) that turns JWT support on; needs `--features jwt` |
//! | `PORTCULLIS_MAX_FAILURES` | failed attempts that lock a client out (default 5) |
//! | `PORTCULLIS_ACCOUNT_MAX_FAILURES` | distinct wrong passwords for one username, from any addresses, that lock it out for clients without its device cookie (default 10) |
//! | `PORTCULLIS_DEVICE_KEY` | key (at least 32 bytes) that signs the `device` cookies; unset, a random one (device cookies then end with the process) |
//! | `PORTCULLIS_LOCKOUT_SECS` | how long a first lockout lasts, in seconds (default 60) |
//! | `PORTCULLIS_CAPACITY`   | clients each limiter remembers at most (default 100000) |
//! | `PORTCULLIS_TRUSTED_PROXIES` | comma-separated CIDRs whose `X-Forwarded-For` / `Forwarded` are believed (default none) |
//! | `PORTCULLIS_RATE_PER_SEC` | requests per second per client; rate limiting is off when unset |
//! | `PORTCULLIS_RATE_BURST` | requests a quiet client may send at once (default: the rate) |
//! | `PORTCULLIS_REDIS_URL`  | Redis server (`redis://host:port`) where both limiters keep their state and revocations are shared with other instances; needs `--features redis`. Unset: each instance counts and revokes on its own |
//! | `PORTCULLIS_REDIS_CLUSTER` | instead of `PORTCULLIS_REDIS_URL`: the comma-separated URLs of Redis Cluster nodes (`redis://10.0.0.1:6379,redis://10.0.0.2:6379`), used the same way |
//! | `PORTCULLIS_SESSION_SECS` | how long a session token from `POST /login` lives (default 3600) |
//! | `PORTCULLIS_METRICS_ADDR` | address of a second listener serving `GET /metrics` in the Prometheus text format (portcullis's `portcullis_*` counters); needs `--features metrics`. Unset: no metrics |
//! | `RUST_LOG`              | log filter (default `info,portcullis=debug`) |
//!
//! A value that cannot be used is reported on stderr (never echoing a
//! secret) and the example exits with code 2.
//!
//! Run it; the bound address is printed as `listening on http://ADDR`,
//! followed by the configuration in effect:
//!
//! ```text
//! cargo run --example axum_api
//!
//! # with a key for ci-bot and JWT support:
//! export PORTCULLIS_API_KEY=demo_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
//! export PORTCULLIS_JWT_SECRET=$(head -c 32 /dev/urandom | base64)
//! cargo run --example axum_api --features jwt
//!
//! # a JWT signed with that secret, e.g. with jwt-cli:
//! JWT=$(jwt encode --secret "$PORTCULLIS_JWT_SECRET" --iss portcullis-demo \
//!       --aud portcullis-api --sub carol --exp=+1h '{"scope":"admin"}')
//! ```
//!
//! Then:
//!
//! ```text
//! curl -i http://127.0.0.1:3000/health                                        # 200
//! curl -i http://127.0.0.1:3000/me                                            # 401, WWW-Authenticate: Bearer realm="portcullis"
//! curl -i -H 'Authorization: Bearer alice-token' http://127.0.0.1:3000/me     # 200 {"subject":"alice"}
//! curl -i --cookie 'session=bob-token' http://127.0.0.1:3000/me               # 200 {"subject":"bob"}
//! curl -i -H 'X-API-Key: alice-token' http://127.0.0.1:3000/me                # 200 {"subject":"alice"}
//! curl -i -H "X-API-Key: $PORTCULLIS_API_KEY" http://127.0.0.1:3000/me        # 200 {"subject":"ci-bot"}
//! curl -i -H 'Authorization: Bearer nope' http://127.0.0.1:3000/me            # 401, error="invalid_token"
//! curl -i -H 'Authorization: Bearer alice-token' --cookie 'session=bob-token' \
//!      http://127.0.0.1:3000/me                                               # 400, error="invalid_request"
//! curl -i -d 'username=alice&password=wonderland' http://127.0.0.1:3000/login # 200, Set-Cookie: session=sess_…; HttpOnly; SameSite=Lax; Path=/
//! curl -i -d 'username=alice&password=guess' http://127.0.0.1:3000/login      # 401 (counts as a failed attempt)
//! curl -i -H 'Authorization: Bearer alice-token' http://127.0.0.1:3000/admin  # 200 {"scope":"admin","subject":"alice"}
//! curl -i -H 'Authorization: Bearer bob-token' http://127.0.0.1:3000/admin    # 403, error="insufficient_scope", scope="admin"
//! curl -i -H "Authorization: Bearer $JWT" http://127.0.0.1:3000/me            # 200 {"subject":"carol"}
//! curl -i -H "Authorization: Bearer $JWT" http://127.0.0.1:3000/admin         # 200 {"scope":"admin","subject":"carol"}
//!
//! # signing out ends the stream (run the first line in another terminal):
//! curl -N -H "Authorization: Bearer $JWT" http://127.0.0.1:3000/events        # event: tick … until the sign-out
//! curl -i -X POST -H "Authorization: Bearer $JWT" http://127.0.0.1:3000/logout # 204; the stream above ends
//! curl -i -H "Authorization: Bearer $JWT" http://127.0.0.1:3000/me            # 401, error="invalid_token"
//! curl -i -X POST -H 'Authorization: Bearer bob-token' 'http://127.0.0.1:3000/logout?all=1' # 204: every credential of bob
//!
//! # five failed attempts (distinct passwords: a repeat counts once), then
//! # even alice's token is refused for a minute:
//! for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{http_code}\n' \
//!     -d "username=alice&password=guess$i" http://127.0.0.1:3000/login; done  # 401 ×5
//! curl -i -H 'Authorization: Bearer alice-token' http://127.0.0.1:3000/me     # 429, Retry-After: 60
//! ```
//!
//! Logs go to stderr; rejected credentials are logged by fingerprint, never
//! by value. Ctrl-C or SIGTERM shuts the server down gracefully.

mod login;
mod metrics;
mod sessions;
mod settings;
mod streams;
mod users;

use std::{
    io::{self, IsTerminal, Write},
    net::SocketAddr,
    process::ExitCode,
};

use axum::{Extension, Json, Router, http::HeaderName, routing::get};
use http::Method;
use portcullis::{
    AuthLayer,
    extract::{Bearer, Cookie, Extractor, Header, WebSocketProtocol},
    integration::axum::Identity,
    reject::DefaultRenderer,
    scope::RequireScopeLayer,
    stack::Stack,
    validate::{CachingValidator, Chain},
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::{
    login::Login,
    sessions::Sessions,
    settings::{Config, Limits},
    users::{User, validator},
};

async fn health() -> &'static str {
    "ok"
}

async fn me(Identity(user): Identity<User>) -> Json<Value> {
    tracing::info!(subject = %user.subject, "served /me");
    Json(json!({ "subject": user.subject }))
}

async fn admin(Identity(user): Identity<User>) -> Json<Value> {
    tracing::info!(subject = %user.subject, "served /admin");
    Json(json!({ "subject": user.subject, "scope": "admin" }))
}

/// Whether a request needs no credential.
fn is_public(parts: &http::request::Parts) -> bool {
    matches!(
        (&parts.method, parts.uri.path()),
        (&Method::GET, "/health") | (&Method::POST, "/login")
    )
}

/// The app: the routes behind `AuthLayer`, with the limiters in front of it
/// (outermost first: `RateLimitLayer`, when configured, `BodyKeyLayer` for
/// the login form, `LockoutLayer`, then `AuthLayer`), composed by `Stack`.
fn app(
    validator: CachingValidator<Chain<User>>,
    limits: &Limits,
    sessions: &Sessions,
) -> Result<(Router, metrics::Gauges), String> {
    let login = Login::from_env()?;
    let renderer = DefaultRenderer::new().realm("portcullis");
    let auth = AuthLayer::new(validator)
        .extractor(
            Extractor::new(Bearer::new())
                .or(Cookie::new("session"))
                .or(Header::new(HeaderName::from_static("x-api-key")))
                .or(WebSocketProtocol::new()),
        )
        .public(is_public)
        .leases(sessions.revocations())
        .renderer(renderer.clone());
    let admin_only = RequireScopeLayer::<User>::new("admin").renderer(renderer.clone());

    let lockout = login.protect(limits.lockout(&renderer)?, limits)?;
    let rate_limit = limits.rate_limit(&renderer)?;
    let gauges = metrics::Gauges {
        lockout: lockout.tracker().clone(),
        rate_limit: rate_limit.clone(),
        revocations: sessions.revocations().clone(),
    };
    let stack = Stack::new(auth)
        .lockout(lockout)
        .body_key(Login::body_key());
    let router = Router::new()
        .route("/health", get(health))
        .route("/me", get(me))
        .route("/admin", get(admin).route_layer(admin_only))
        .route("/events", get(streams::events))
        .route("/ws", get(streams::ws))
        .merge(login.routes())
        .layer(Extension(sessions.clone()));
    // `Stack` puts the layers in the right order, added with one call.
    let router = match rate_limit {
        Some(rate_limit) => router.layer(stack.rate_limit(rate_limit)),
        None => router.layer(stack),
    };
    Ok((router, gauges))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,portcullis=debug")),
        )
        .init();

    let mut config = match Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("axum_api: {message}");
            return ExitCode::from(2);
        }
    };
    if let Err(message) = config.limits.connect_redis().await {
        eprintln!("axum_api: {message}");
        return ExitCode::from(2);
    }
    let sessions = match Sessions::start(&config.limits).await {
        Ok(sessions) => sessions,
        Err(message) => {
            eprintln!("axum_api: {message}");
            return ExitCode::from(2);
        }
    };
    let (app, gauges) = match validator(&config, &sessions)
        .and_then(|validator| app(validator, &config.limits, &sessions))
    {
        Ok(app) => app,
        Err(message) => {
            eprintln!("axum_api: {message}");
            return ExitCode::from(2);
        }
    };
    let metrics = match metrics::start(gauges).await {
        Ok(line) => line,
        Err(message) => {
            eprintln!("axum_api: {message}");
            return ExitCode::from(2);
        }
    };
    match serve(&config, &sessions, app, metrics).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("axum_api: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    config: &Config,
    sessions: &Sessions,
    app: Router,
    metrics: Option<String>,
) -> io::Result<()> {
    let listener = TcpListener::bind(&config.addr).await?;
    let local = listener.local_addr()?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on http://{local}")?;
    for line in config.describe().into_iter().chain(metrics) {
        writeln!(stdout, "{line}")?;
    }
    writeln!(stdout, "{}", sessions.describe())?;
    stdout.flush()?;
    drop(stdout);

    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    tracing::info!("shut down");
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}
