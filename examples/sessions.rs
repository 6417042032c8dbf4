//! A memos-style server: sign in with a password, get a 15-minute access
//! token and a refresh cookie that is rotated at every refresh; a refresh
//! cookie used twice revokes the whole session, its access tokens and its
//! open streams.
//!
//! - `POST /auth/login` (form `username`, `password`; `alice` /
//!   `wonderland`): 200 `{"access_token": …, "token_type": "Bearer",
//!   "expires_in": 900}` and `Set-Cookie: refresh=…; HttpOnly;
//!   SameSite=Strict; Secure; Path=/auth; Max-Age=…`. A wrong password is
//!   401 and a failed attempt.
//! - `POST /auth/refresh` with the cookie: a new access token and a new
//!   refresh cookie. The old cookie presented again after the grace window
//!   is 401, and the session is revoked: its newest refresh cookie and its
//!   access tokens stop working, its streams end. Within the grace window
//!   (racing refreshes of two tabs) it gets the same new cookie.
//! - `POST /auth/logout` with the cookie: 204, the cookie cleared, the
//!   session revoked. `POST /auth/logout?all=1`: every session of the user
//!   ends, for good: their refresh cookies never refresh again.
//! - `GET /auth/sessions` with the access token: 200, the user's live
//!   sessions, most recently used first: `[{"id": …, "created_at": …,
//!   "last_used_at": … (Unix seconds), "current": true (the caller's own),
//!   "user_agent": … or null, "address": …, "label": null}, …]`.
//! - `DELETE /auth/sessions/{id}` with the access token: 204, that session
//!   ends (its refresh cookie, access tokens and streams); an id that is
//!   not one of the user's sessions is 404.
//! - `GET /me` with `Authorization: Bearer <access token>`: `{"subject": …}`.
//! - `GET /events` with the access token: Server-Sent Events, a `tick`
//!   every 250 ms, until the session ends.
//!
//! The `/auth` endpoints that change sessions (sign-in included: login
//! CSRF) refuse cross-site browser requests (403) and, like every route,
//! sit behind a lockout per client address: five failed attempts (wrong
//! passwords, unknown refresh cookies) lock the address out for a minute.
//! A user has at most `PORTCULLIS_MAX_SESSIONS` live sessions: signing in
//! once more ends the least recently used one.
//!
//! Configuration, from the environment:
//!
//! | variable | meaning |
//! |---|---|
//! | `PORTCULLIS_ADDR` | listen address (default `127.0.0.1:3000`; port 0 picks a free port) |
//! | `PORTCULLIS_JWT_SECRET` | HS256 secret of the access tokens, at least 32 bytes, the same on every instance. Unset: a random one (tokens end with the process) |
//! | `PORTCULLIS_REFRESH_GRACE_SECS` | the grace window, in seconds (default 5; 0 revokes on any second use) |
//! | `PORTCULLIS_MAX_SESSIONS` | the most live sessions per user (default 32) |
//! | `PORTCULLIS_REDIS_URL` | Redis (`redis://host:port`) that keeps the sessions, the revocations and the lockout, shared by every instance and kept across restarts; needs `--features redis` |
//! | `PORTCULLIS_REDIS_CLUSTER` | instead of `PORTCULLIS_REDIS_URL`: the comma-separated URLs of Redis Cluster nodes, used the same way |
//!
//! A value that cannot be used is reported on stderr (never echoing a
//! secret) and the example exits with code 2.
//!
//! ```text
//! cargo run --example sessions --features sessions
//!
//! curl -i -c jar -d 'username=alice&password=wonderland' http://localhost:3000/auth/login
//! TOKEN=…   # the access_token of the answer
//! curl -i -H "Authorization: Bearer $TOKEN" http://localhost:3000/me        # 200 {"subject":"alice"}
//! curl -N -H "Authorization: Bearer $TOKEN" http://localhost:3000/events    # event: tick … until the session ends
//! cp jar old
//! curl -i -b jar -c jar -X POST http://localhost:3000/auth/refresh          # 200, a new cookie in jar
//! sleep 6; curl -i -b old -X POST http://localhost:3000/auth/refresh        # 401: the session is revoked
//! curl -i -b jar -X POST http://localhost:3000/auth/refresh                 # 401: its newest cookie too
//!
//! curl -s -c jar -d 'username=alice&password=wonderland' http://localhost:3000/auth/login
//! curl -H "Authorization: Bearer $TOKEN" http://localhost:3000/auth/sessions  # [{"id":"…","current":true,…}]
//! curl -i -X DELETE -H "Authorization: Bearer $TOKEN" http://localhost:3000/auth/sessions/$ID   # 204
//! curl -i -b jar -X POST 'http://localhost:3000/auth/logout?all=1'          # 204: signed out everywhere
//! ```
//!
//! (The refresh cookie is `Secure`: browsers and curl send it to
//! `http://localhost`, not to other plain-HTTP hosts.) Ctrl-C or SIGTERM
//! stops the server.

use std::{
    convert::Infallible,
    io::{self, IsTerminal, Write},
    net::SocketAddr,
    process::ExitCode,
    time::Duration,
};

use axum::{
    Form, Json, Router,
    extract::{Path, Query, State},
    response::{
        IntoResponse, Response,
        sse::{Event, Sse},
    },
    routing::{delete, get, post},
};
use http::{StatusCode, request::Parts};
use portcullis::{
    AuthLayer,
    integration::axum::Identity,
    lockout::{Failed, LockoutBuilder, LockoutLayer, Policy},
    reject::DefaultRenderer,
    revoke::{Revocable, Revocations},
    session::{AccessTokens, Sessions},
    validate::Claims,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_stream::{Stream, StreamExt, wrappers::IntervalStream};
use tracing_subscriber::EnvFilter;

/// The identity of an access token.
type User = Claims<Value>;

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

/// `POST /auth/login`: alice's password starts a session; anything else is
/// a failed attempt (a repeated wrong password counts once). A real service
/// checks a password hash (argon2, scrypt) here. Cross-site posts are
/// refused first (login CSRF).
async fn login(
    State(sessions): State<Sessions>,
    parts: Parts,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Err(refused) = sessions.check_origin(&parts) {
        return refused.into_response();
    }
    if form.username == "alice" && form.password == "wonderland" {
        return sessions
            .sign_in_from(&parts, &form.username)
            .await
            .into_response();
    }
    let failed = Failed::guess(&form.username, &form.password);
    (
        StatusCode::UNAUTHORIZED,
        axum::Extension(failed),
        "wrong username or password",
    )
        .into_response()
}

/// `POST /auth/refresh`: the endpoint helper does it all.
async fn refresh(State(sessions): State<Sessions>, parts: Parts) -> Response {
    sessions.refresh(&parts).await.into_response()
}

#[derive(Deserialize)]
struct LogoutQuery {
    all: Option<String>,
}

/// `POST /auth/logout`, and `?all=1` to sign out everywhere.
async fn logout(
    State(sessions): State<Sessions>,
    Query(query): Query<LogoutQuery>,
    parts: Parts,
) -> Response {
    if query.all.as_deref() == Some("1") {
        return sessions
            .sign_out_everywhere_from(&parts)
            .await
            .into_response();
    }
    sessions.sign_out(&parts).await.into_response()
}

/// `GET /auth/sessions`: the caller's live sessions, theirs marked current.
async fn list_sessions(
    State(sessions): State<Sessions>,
    Identity(user): Identity<User>,
) -> Response {
    let subject = user.subject().unwrap_or_default();
    sessions
        .list(subject, user.session_id())
        .await
        .into_response()
}

/// `DELETE /auth/sessions/{id}`: ends one of the caller's sessions; any
/// other id is 404.
async fn end_session(
    State(sessions): State<Sessions>,
    Identity(user): Identity<User>,
    parts: Parts,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = sessions.check_origin(&parts) {
        return refused.into_response();
    }
    match sessions.end(user.subject().unwrap_or_default(), &id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => error.into_response(),
    }
}

async fn me(Identity(user): Identity<User>) -> Json<Value> {
    Json(json!({ "subject": user.subject() }))
}

/// `GET /events`: a tick every 250 ms; the lease ends the body when the
/// session is revoked or the access token expires.
async fn events(
    Identity(user): Identity<User>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let subject = user.subject().unwrap_or_default().to_owned();
    let mut n = 0u64;
    let ticks =
        IntervalStream::new(tokio::time::interval(Duration::from_millis(250))).map(move |_| {
            n += 1;
            let data = json!({ "subject": subject, "n": n });
            Ok(Event::default().event("tick").data(data.to_string()))
        });
    Sse::new(ticks)
}

/// Everything the environment configures.
struct Settings {
    addr: String,
    tokens: AccessTokens,
    generated_key: bool,
    grace: Duration,
    max_sessions: u32,
    /// `PORTCULLIS_REDIS_URL` or `PORTCULLIS_REDIS_CLUSTER`, and its value.
    redis: Option<(&'static str, String)>,
}

fn settings() -> Result<Settings, String> {
    let var = |name: &str| match std::env::var(name) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    };
    let addr = var("PORTCULLIS_ADDR")?.unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let (tokens, generated_key) = match var("PORTCULLIS_JWT_SECRET")? {
        // The error gives the length, never the secret.
        Some(secret) => (
            AccessTokens::hs256(secret.as_bytes())
                .map_err(|e| format!("PORTCULLIS_JWT_SECRET: {e}"))?,
            false,
        ),
        None => (
            AccessTokens::generate().map_err(|e| format!("cannot make a signing key: {e}"))?,
            true,
        ),
    };
    let grace = match var("PORTCULLIS_REFRESH_GRACE_SECS")? {
        None => 5,
        Some(secs) => secs.trim().parse::<u64>().map_err(|_| {
            format!("PORTCULLIS_REFRESH_GRACE_SECS must be a whole number of seconds; got {secs:?}")
        })?,
    };
    let max_sessions = match var("PORTCULLIS_MAX_SESSIONS")? {
        None => 32,
        Some(max) => max
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|max| *max > 0)
            .ok_or_else(|| {
                format!("PORTCULLIS_MAX_SESSIONS must be a whole number above 0; got {max:?}")
            })?,
    };
    let redis = match (
        var("PORTCULLIS_REDIS_URL")?,
        var("PORTCULLIS_REDIS_CLUSTER")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(
                "set PORTCULLIS_REDIS_URL or PORTCULLIS_REDIS_CLUSTER, not both".to_owned(),
            );
        }
        (Some(url), None) => Some(("PORTCULLIS_REDIS_URL", url)),
        (None, nodes) => nodes.map(|nodes| ("PORTCULLIS_REDIS_CLUSTER", nodes)),
    };
    if let (Some((name, _)), false) = (&redis, cfg!(feature = "redis")) {
        return Err(format!(
            "{name} needs the example built with --features redis"
        ));
    }
    Ok(Settings {
        addr,
        tokens: tokens.issuer("portcullis-sessions").audience("memos"),
        generated_key,
        grace: Duration::from_secs(grace),
        max_sessions,
        redis,
    })
}

/// The sessions, the revocation list and the lockout: in memory, or shared
/// through Redis.
async fn state(settings: &Settings) -> Result<(Sessions, Revocations, LockoutBuilder), String> {
    let policy = Policy::builder()
        .max_failures(5)
        .build()
        .map_err(|e| e.to_string())?;
    let builder = |revocations: &Revocations| {
        Sessions::builder(settings.tokens.clone(), revocations)
            .grace(settings.grace)
            .max_sessions(settings.max_sessions)
            .renderer(DefaultRenderer::new().realm("memos"))
    };
    // One store, a single server or a Redis Cluster, for the sessions, the
    // revocations and the lockout.
    #[cfg(feature = "redis")]
    if let Some((name, value)) = &settings.redis {
        use portcullis::RedisStore;
        let store = if *name == "PORTCULLIS_REDIS_CLUSTER" {
            RedisStore::connect_cluster(value.split(',').map(str::trim)).await
        } else {
            RedisStore::connect(value).await
        };
        let store = store.map_err(|e| format!("{name}: {e}"))?;
        let revocations = Revocations::builder()
            .redis(store.clone())
            .build()
            .expect("the default revocation settings are valid");
        tokio::time::timeout(Duration::from_secs(5), revocations.synced())
            .await
            .map_err(|_| format!("{name}: revocations could not catch up with redis"))?;
        let sessions = builder(&revocations)
            .redis(store.clone())
            .build()
            .map_err(|e| e.to_string())?;
        return Ok((
            sessions,
            revocations,
            LockoutLayer::builder(policy).redis(store),
        ));
    }
    let revocations = Revocations::new();
    let sessions = builder(&revocations).build().map_err(|e| e.to_string())?;
    Ok((sessions, revocations, LockoutLayer::builder(policy)))
}

fn app(
    sessions: Sessions,
    revocations: &Revocations,
    lockout: LockoutBuilder,
) -> Result<Router, String> {
    let renderer = DefaultRenderer::new().realm("memos");
    let validator = sessions
        .validator::<Value>()
        .build()
        .map_err(|e| e.to_string())?;
    let auth = AuthLayer::new(validator)
        .leases(revocations)
        .renderer(renderer.clone());
    let api = Router::new()
        .route("/me", get(me))
        .route("/events", get(events))
        .route("/auth/sessions", get(list_sessions))
        .route("/auth/sessions/{id}", delete(end_session))
        .route_layer(auth)
        .with_state(sessions.clone());
    let endpoints = Router::new()
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .with_state(sessions);
    Ok(api.merge(endpoints).layer(
        lockout
            .renderer(renderer)
            .build()
            .map_err(|e| e.to_string())?,
    ))
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
    let settings = match settings() {
        Ok(settings) => settings,
        Err(message) => {
            eprintln!("sessions: {message}");
            return ExitCode::from(2);
        }
    };
    let app = match state(&settings)
        .await
        .and_then(|(sessions, revocations, lockout)| app(sessions, &revocations, lockout))
    {
        Ok(app) => app,
        Err(message) => {
            eprintln!("sessions: {message}");
            return ExitCode::from(2);
        }
    };
    match serve(&settings, app).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sessions: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(settings: &Settings, app: Router) -> io::Result<()> {
    let listener = TcpListener::bind(&settings.addr).await?;
    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on http://{}", listener.local_addr()?)?;
    writeln!(
        stdout,
        "access tokens: {}; refresh grace window: {} s; sessions {}",
        if settings.generated_key {
            "signed with a random key (not shown); set PORTCULLIS_JWT_SECRET to share them between instances"
        } else {
            "signed with PORTCULLIS_JWT_SECRET"
        },
        settings.grace.as_secs(),
        if settings.redis.is_some() {
            "shared through redis"
        } else {
            "in memory"
        },
    )?;
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
