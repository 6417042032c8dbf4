//! A login service behind a load balancer: password sign-in protected per
//! address and per account, sessions with short access tokens and rotated
//! refresh cookies, and client addresses read from the proxy's
//! `X-Forwarded-For`. Everything the first hour with portcullis needs, in
//! one file.
//!
//! - `POST /auth/login` (form `username`, `password`; `alice` /
//!   `wonderland`, `bob` / `builder`): 200 `{"access_token": …,
//!   "token_type": "Bearer", "expires_in": 900}` and a refresh cookie. A
//!   wrong password is 401 and a failed attempt, counted on the client's
//!   address (5 per 15 minutes) and on the account (3, from any address;
//!   cleared by the account's next sign-in). Usernames are keyed trimmed and
//!   lowercased: `Alice` is `alice`. The route also has a rate limit of its
//!   own (10 a minute per address), stricter than the rest (100 a second).
//! - `POST /auth/refresh` with the refresh cookie: a new access token and
//!   a new cookie; an unknown, used or revoked one is 401 ("the refresh
//!   token is invalid") and a failed attempt.
//! - `POST /auth/logout` with the refresh cookie: 204, the session ends.
//! - `GET /me` with `Authorization: Bearer <access token>`:
//!   `{"subject": …}`.
//!
//! Every failed attempt and lockout is logged on stderr under
//! `portcullis::lockout`, with the key that counted it (`key=alice`,
//! `key=203.0.113.7`); `RUST_LOG=info,portcullis=debug` logs each refusal
//! and the key that refused it too.
//!
//! Configuration, from the environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `PORTCULLIS_ADDR` | listen address (default `127.0.0.1:3000`; port 0 picks a free port) |
//! | `PORTCULLIS_TRUSTED_PROXIES` | comma-separated CIDRs of your load balancers, whose `X-Forwarded-For` is believed (default none: the socket peer is the client) |
//! | `PORTCULLIS_JWT_SECRET` | HS256 secret of the access tokens, at least 32 bytes, the same on every instance. Unset: a random one |
//!
//! A value that cannot be used is reported on stderr (never echoing a
//! secret) and the example exits with code 2.
//!
//! ```text
//! PORTCULLIS_TRUSTED_PROXIES=127.0.0.1/32 cargo run --example login_sessions --features sessions
//!
//! curl -i -c jar -d 'username=alice&password=wonderland' http://localhost:3000/auth/login  # 200
//! curl -i -H "Authorization: Bearer $TOKEN" http://localhost:3000/me                      # 200 {"subject":"alice"}
//! for ip in 203.0.113.1 203.0.113.2 203.0.113.3; do                                       # 401 ×3, three addresses
//!   curl -s -o /dev/null -w '%{http_code}\n' -H "X-Forwarded-For: $ip" \
//!     -d "username=bob&password=guess-$ip" http://localhost:3000/auth/login; done
//! curl -i -H 'X-Forwarded-For: 203.0.113.4' -d 'username=bob&password=builder' \
//!   http://localhost:3000/auth/login                                                       # 429: bob's account is locked
//! curl -i -b jar -c jar -X POST http://localhost:3000/auth/refresh                         # 200, a new cookie
//! curl -i -b jar -X POST http://localhost:3000/auth/logout                                 # 204
//! ```
//!
//! (The refresh cookie is `Secure`: curl sends it to `http://localhost`,
//! not to other plain-HTTP hosts.) Ctrl-C or SIGTERM stops the server.

use std::{
    io::{self, IsTerminal, Write},
    net::SocketAddr,
    process::ExitCode,
    time::Duration,
};

use axum::{
    Extension, Form, Json, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use http::{StatusCode, request::Parts};
use portcullis::{
    AuthLayer, ClientIp,
    body_key::BodyField,
    integration::axum::Identity,
    lockout::{Failed, LockoutLayer, Policy, Succeeded},
    rate_limit::RateLimitLayer,
    reject::DefaultRenderer,
    revoke::Revocations,
    session::{AccessTokens, Sessions},
    stack::Stack,
    validate::Claims,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// The identity `Sessions::validator` produces: the access token's claims.
type User = Claims<Value>;

/// The accounts and their passwords. A real service keeps password hashes
/// (argon2, scrypt) and compares them here.
const USERS: [(&str, &str); 2] = [("alice", "wonderland"), ("bob", "builder")];

#[derive(Deserialize)]
struct LoginForm {
    password: String,
}

/// `POST /auth/login`. The account comes from the body key: the `username`
/// field as the lockout keys it (trimmed, lowercased), so the sign-in, the
/// session's subject and the counted guess all name one account.
async fn login(
    State(sessions): State<Sessions>,
    Extension(account): Extension<BodyField>,
    parts: Parts,
    Form(form): Form<LoginForm>,
) -> Response {
    let account = account.value();
    if USERS.contains(&(account, form.password.as_str())) {
        // `Succeeded`: her sign-in, the only answer that clears the
        // account's failures.
        let grant = sessions.sign_in_from(&parts, account).await;
        return (Extension(Succeeded), grant).into_response();
    }
    // Counted on the address and on the account; the same wrong password
    // repeated counts once.
    let failed = Failed::guess(account, &form.password);
    (
        StatusCode::UNAUTHORIZED,
        Extension(failed),
        "wrong username or password",
    )
        .into_response()
}

/// `POST /auth/refresh`: rotate the refresh cookie, or refuse it (and the
/// lockout counts the refusal).
async fn refresh(State(sessions): State<Sessions>, parts: Parts) -> Response {
    sessions.refresh(&parts).await.into_response()
}

/// `POST /auth/logout`: the session ends, its cookie is cleared.
async fn logout(State(sessions): State<Sessions>, parts: Parts) -> Response {
    sessions.sign_out(&parts).await.into_response()
}

async fn me(Identity(user): Identity<User>) -> Json<Value> {
    Json(json!({ "subject": user.subject() }))
}

/// Everything the environment configures.
struct Settings {
    addr: String,
    clients: ClientIp,
    tokens: AccessTokens,
}

fn settings() -> Result<Settings, String> {
    let var = |name: &str| match std::env::var(name) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    };
    let addr = var("PORTCULLIS_ADDR")?.unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let clients = match var("PORTCULLIS_TRUSTED_PROXIES")? {
        None => ClientIp::new(),
        Some(cidrs) => ClientIp::builder()
            .trust_proxies(cidrs.split(',').map(str::trim))
            .build()
            .map_err(|e| format!("PORTCULLIS_TRUSTED_PROXIES: {e}"))?,
    };
    let tokens = match var("PORTCULLIS_JWT_SECRET")? {
        // The error gives the length, never the secret.
        Some(secret) => AccessTokens::hs256(secret.as_bytes())
            .map_err(|e| format!("PORTCULLIS_JWT_SECRET: {e}"))?,
        None => AccessTokens::generate().map_err(|e| format!("cannot make a signing key: {e}"))?,
    };
    Ok(Settings {
        addr,
        clients,
        tokens,
    })
}

/// The routes and the layers around them.
fn app(settings: Settings) -> Result<Router, portcullis::ConfigError> {
    let renderer = DefaultRenderer::new().realm("portcullis");
    let revocations = Revocations::new();
    let sessions = Sessions::builder(settings.tokens, &revocations)
        .renderer(renderer.clone())
        .build()?;

    // Access tokens everywhere, except on the session endpoints, which
    // carry a password or a refresh cookie.
    let auth = AuthLayer::new(sessions.validator::<Value>().build()?)
        .leases(&revocations)
        .renderer(renderer.clone())
        .public(|req| matches!(req.uri.path(), "/auth/refresh" | "/auth/logout"));
    // Per client address (behind the trusted proxies) and per account.
    let per_address = Policy::builder()
        .max_failures(5)
        .window(Duration::from_secs(15 * 60))
        .build()?;
    let per_account = Policy::builder()
        .max_failures(3)
        .reset_on_success(true)
        .lockout(Duration::from_secs(5 * 60))
        .build()?;
    let lockout = LockoutLayer::builder(per_address)
        .key(settings.clients.clone())
        .also_key(BodyField::key, per_account)
        .renderer(renderer.clone())
        .build()?;
    let rate_limit = RateLimitLayer::builder()
        .per_second(100)
        .key(settings.clients.clone())
        .renderer(renderer.clone())
        .build()?;
    let login_rate_limit = RateLimitLayer::builder()
        .per_minute(10)
        .burst(10)
        .key(settings.clients)
        .renderer(renderer)
        .build()?;

    let routes = Router::new()
        .route("/me", get(me))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .with_state(sessions);
    // One call, the layers in the one order that works; `login_route` makes
    // the login form public, keys it by its `username` and refuses
    // cross-site posts to it.
    Ok(routes.layer(
        Stack::new(auth)
            .lockout(lockout)
            .rate_limit(rate_limit)
            .route_rate_limit("/auth/login", login_rate_limit)
            .login_route("/auth/login"),
    ))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let built = settings().and_then(|settings| {
        let addr = settings.addr.clone();
        app(settings)
            .map(|app| (addr, app))
            .map_err(|e| e.to_string())
    });
    let (addr, app) = match built {
        Ok(built) => built,
        Err(message) => {
            eprintln!("login_sessions: {message}");
            return ExitCode::from(2);
        }
    };
    match serve(&addr, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("login_sessions: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(addr: &str, app: Router) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);
    // The socket peer is what `ClientIp` starts from (the proxy, when it
    // is trusted).
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    tracing::info!("shut down");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            // Without Ctrl-C, wait for SIGTERM only: never stop at once.
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
            Err(_) => std::future::pending::<()>().await,
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
