//! The standard gRPC health service (`grpc.health.v1.Health`, from
//! tonic-health) behind `AuthLayer`, added with `Server::builder().layer(..)`.
//!
//! Every call needs `authorization: Bearer alice-token` (the demo credential,
//! never printed or logged) or, with the `jwt` feature and
//! `PORTCULLIS_JWT_SECRET` set, an HS256 JWT with `iss` = `portcullis-demo`
//! and `aud` = `portcullis-api` (the same as `axum_api`'s). A missing or
//! wrong credential is answered with `UNAUTHENTICATED` (16) as a
//! trailers-only response, without reaching the service.
//!
//! Leases are on (`AuthLayer::leases`): a `Watch` stream ends with
//! `UNAUTHENTICATED` and `grpc-message: the credential expired` within a
//! second after its JWT expires (or its credential is revoked), so the
//! client signs in again instead of watching forever.
//!
//! In front of `AuthLayer`, a `LockoutLayer` locks out a client after too
//! many rejected credentials (`RESOURCE_EXHAUSTED`, 8, with `retry-after`),
//! and optionally a `RateLimitLayer` limits its calls. Both key on the
//! client's address, which tonic's server records for every request.
//!
//! Configuration, from the environment (unusable values are reported on
//! stderr and the example exits with code 2):
//!
//! | variable                      | meaning |
//! |-------------------------------|---------|
//! | `PORTCULLIS_ADDR`             | listen address (default `127.0.0.1:3000`; port 0 picks a free port) |
//! | `PORTCULLIS_MAX_FAILURES`     | failed attempts that lock a client out (default 5) |
//! | `PORTCULLIS_LOCKOUT_SECS`     | how long a first lockout lasts, in seconds (default 60) |
//! | `PORTCULLIS_CAPACITY`         | clients each limiter remembers at most (default 100000) |
//! | `PORTCULLIS_TRUSTED_PROXIES`  | comma-separated CIDRs whose `X-Forwarded-For` / `Forwarded` are believed (default none) |
//! | `PORTCULLIS_RATE_PER_SEC`     | calls per second per client; rate limiting is off when unset |
//! | `PORTCULLIS_RATE_BURST`       | calls a quiet client may make at once (default: the rate) |
//! | `PORTCULLIS_JWT_SECRET`       | HS256 secret (at least 32 bytes) that turns JWT support on; needs `--features jwt` |
//! | `RUST_LOG`                    | log filter (default `info,portcullis=debug`) |
//!
//! Run it (needs the `tonic` feature; the bound address is printed as
//! `listening on http://ADDR`):
//!
//! ```text
//! cargo run --example tonic_health --features tonic
//! ```
//!
//! Then, with any gRPC client, for example
//! [grpc-health-probe](https://github.com/grpc-ecosystem/grpc-health-probe)
//! (exit code 0 = SERVING):
//!
//! ```text
//! grpc-health-probe -addr 127.0.0.1:3000 -rpc-header 'authorization: Bearer alice-token'  # status: SERVING
//! grpc-health-probe -addr 127.0.0.1:3000 -rpc-header "authorization: Bearer $JWT"        # status: SERVING (feature jwt)
//! grpc-health-probe -addr 127.0.0.1:3000                                                  # Unauthenticated
//! grpc-health-probe -addr 127.0.0.1:3000 -rpc-header 'authorization: Bearer wrong'        # Unauthenticated
//!
//! # after 5 wrong tokens (the default), even the right one is refused for a minute:
//! grpc-health-probe -addr 127.0.0.1:3000 -rpc-header 'authorization: Bearer alice-token'  # ResourceExhausted
//! ```
//!
//! or, without a gRPC client, see the trailers-only rejection with curl:
//!
//! ```text
//! curl -si --http2-prior-knowledge -X POST -H 'content-type: application/grpc' \
//!      http://127.0.0.1:3000/grpc.health.v1.Health/Check   # grpc-status: 16
//! ```
//!
//! Ctrl-C or SIGTERM shuts the server down gracefully.

use std::{
    fmt::Display,
    io::{self, IsTerminal, Write},
    process::ExitCode,
    str::FromStr,
    time::{Duration, SystemTime},
};

use portcullis::{
    AuthLayer, ClientIp, Credential, ValidationError,
    lockout::{LockoutLayer, Policy},
    rate_limit::RateLimitLayer,
    revoke::{Revocable, Revocations},
    validate::{Chain, ExpiresAt},
};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::ServingStatus;
use tracing_subscriber::EnvFilter;

/// The caller, as the validator knows it.
#[derive(Clone, Debug)]
struct User {
    #[allow(dead_code)] // the health service does not read it; your services would
    subject: String,
    /// When the credential expires (a JWT's `exp`): open streams end then.
    expires_at: Option<Instant>,
    issued_at: Option<SystemTime>,
}

impl ExpiresAt for User {
    fn expires_at(&self) -> Option<Instant> {
        self.expires_at
    }
}

impl Revocable for User {
    fn subject(&self) -> Option<&str> {
        Some(&self.subject)
    }

    fn issued_at(&self) -> Option<SystemTime> {
        self.issued_at
    }
}

/// The demo token. A real service would ask its identity provider here.
async fn demo_token(credential: Credential) -> Result<User, ValidationError> {
    match credential.secret() {
        "alice-token" => Ok(User {
            subject: "alice".to_owned(),
            expires_at: None,
            issued_at: None,
        }),
        _ => Err(ValidationError::invalid()),
    }
}

/// The demo token, then (feature `jwt`, with `PORTCULLIS_JWT_SECRET`) JWTs.
fn validator() -> Result<Chain<User>, String> {
    let chain = Chain::new().then(demo_token);
    #[cfg(feature = "jwt")]
    if let Some(secret) = env("PORTCULLIS_JWT_SECRET")? {
        use portcullis::validate::jwt::{Algorithm, Claims, JwtKey, JwtValidator};

        let jwt = JwtValidator::<serde_json::Value>::builder()
            .algorithm(Algorithm::HS256)
            .key(JwtKey::secret(secret.as_bytes()))
            .issuer("portcullis-demo")
            .audience("portcullis-api")
            .build()
            // The error names lengths and algorithms, never the secret.
            .map_err(|e| format!("PORTCULLIS_JWT_SECRET: {e}"))?;
        return Ok(
            chain.then_map(jwt, |claims: Claims<serde_json::Value>| User {
                subject: claims.subject().unwrap_or_default().to_owned(),
                expires_at: claims.expires_at(),
                issued_at: Revocable::issued_at(&claims),
            }),
        );
    }
    #[cfg(not(feature = "jwt"))]
    if env("PORTCULLIS_JWT_SECRET")?.is_some() {
        tracing::warn!(
            "PORTCULLIS_JWT_SECRET is set, but this build has no JWT support (--features jwt)"
        );
    }
    Ok(chain)
}

/// The limiters' settings, read from the environment.
struct Limits {
    max_failures: u32,
    lockout: Duration,
    capacity: u64,
    client_ip: ClientIp,
    /// Calls per second and burst; `None` turns rate limiting off.
    rate: Option<(u32, u32)>,
}

impl Limits {
    fn from_env() -> Result<Self, String> {
        let trusted_proxies: Vec<String> = env("PORTCULLIS_TRUSTED_PROXIES")?
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|cidr| !cidr.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let rate = match (
            number::<u32>("PORTCULLIS_RATE_PER_SEC", 1)?,
            number::<u32>("PORTCULLIS_RATE_BURST", 1)?,
        ) {
            (None, None) => None,
            (Some(per_sec), burst) => Some((per_sec, burst.unwrap_or(per_sec))),
            (None, Some(_)) => {
                return Err(
                    "PORTCULLIS_RATE_BURST is set without PORTCULLIS_RATE_PER_SEC; \
                            set both to turn rate limiting on"
                        .to_owned(),
                );
            }
        };
        Ok(Self {
            max_failures: number("PORTCULLIS_MAX_FAILURES", 1)?.unwrap_or(5),
            lockout: Duration::from_secs(number("PORTCULLIS_LOCKOUT_SECS", 1)?.unwrap_or(60)),
            capacity: number("PORTCULLIS_CAPACITY", 1)?.unwrap_or(100_000),
            client_ip: ClientIp::builder()
                .trust_proxies(&trusted_proxies)
                .build()
                .map_err(|e| format!("PORTCULLIS_TRUSTED_PROXIES: {e}"))?,
            rate,
        })
    }

    fn lockout(&self) -> Result<LockoutLayer, String> {
        let policy = Policy::builder()
            .max_failures(self.max_failures)
            .lockout(self.lockout)
            .max_lockout(self.lockout.max(Policy::default().max_lockout()))
            .capacity(self.capacity)
            .build()
            .map_err(|e| format!("PORTCULLIS_LOCKOUT_SECS / PORTCULLIS_CAPACITY: {e}"))?;
        LockoutLayer::builder(policy)
            .key(self.client_ip.clone())
            .build()
            .map_err(|e| format!("the lockout: {e}"))
    }

    fn rate_limit(&self) -> Result<Option<RateLimitLayer>, String> {
        let Some((per_sec, burst)) = self.rate else {
            return Ok(None);
        };
        RateLimitLayer::builder()
            .per_second(per_sec)
            .burst(burst)
            .max_capacity(self.capacity)
            .key(self.client_ip.clone())
            .build()
            .map(Some)
            .map_err(|e| format!("PORTCULLIS_RATE_PER_SEC / PORTCULLIS_RATE_BURST: {e}"))
    }
}

/// Reads variable `name`; unset and empty are both `None`.
fn env(name: &str) -> Result<Option<String>, String> {
    match std::env::var(name) {
        Ok(value) if value.is_empty() => Ok(None),
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!("{name} is not valid UTF-8")),
    }
}

/// Reads a whole number of at least `min` from variable `name`.
fn number<T>(name: &str, min: T) -> Result<Option<T>, String>
where
    T: FromStr + PartialOrd + Display,
{
    let Some(value) = env(name)? else {
        return Ok(None);
    };
    match value.trim().parse::<T>() {
        Ok(n) if n >= min => Ok(Some(n)),
        _ => Err(format!(
            "{name} must be a whole number, at least {min}; got {value:?}"
        )),
    }
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

    // The limiters run on tokio time: build them inside the runtime.
    let layers = Limits::from_env().and_then(|limits| {
        Ok((
            env("PORTCULLIS_ADDR")?.unwrap_or_else(|| "127.0.0.1:3000".to_owned()),
            limits.lockout()?,
            limits.rate_limit()?,
            validator()?,
        ))
    });
    let (addr, lockout, rate_limit, validator) = match layers {
        Ok(layers) => layers,
        Err(message) => {
            eprintln!("tonic_health: {message}");
            return ExitCode::from(2);
        }
    };
    match serve(&addr, lockout, rate_limit, validator).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tonic_health: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    addr: &str,
    lockout: LockoutLayer,
    rate_limit: Option<RateLimitLayer>,
    validator: Chain<User>,
) -> Result<(), Box<dyn std::error::Error>> {
    let (reporter, health) = tonic_health::server::health_reporter();
    // The empty name (the whole server) is SERVING already; name the service too.
    reporter
        .set_service_status("grpc.health.v1.Health", ServingStatus::Serving)
        .await;

    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    io::stdout().flush()?;
    let incoming = TcpIncoming::from(listener);

    // `Server::layer` stacks like `ServiceBuilder`: the first layer added
    // sees a request first. The two arms differ only in the rate limiter
    // (the server's type depends on its layers).
    // Leases: streams (`Watch`) end when their credential expires or is
    // revoked in this list.
    let revocations = Revocations::new();
    let auth = AuthLayer::new(validator).leases(&revocations);
    match rate_limit {
        Some(rate_limit) => {
            Server::builder()
                .layer(rate_limit)
                .layer(lockout)
                .layer(auth)
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, shutdown_signal())
                .await?
        }
        None => {
            Server::builder()
                .layer(lockout)
                .layer(auth)
                .add_service(health)
                .serve_with_incoming_shutdown(incoming, shutdown_signal())
                .await?
        }
    }
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
