//! An axum API behind `AuthLayer`: a public health check and a `/me` route
//! that answers with the caller's subject.
//!
//! The credential may come from `Authorization: Bearer`, the `session` cookie
//! or the `X-API-Key` header; two different credentials in one request are
//! refused as ambiguous. Demo credentials (never printed or logged):
//!
//! | token         | subject |
//! |---------------|---------|
//! | `alice-token` | `alice` |
//! | `bob-token`   | `bob`   |
//!
//! Run it (`PORTCULLIS_ADDR` defaults to `127.0.0.1:3000`; port 0 picks a free
//! port, and the bound address is printed as `listening on http://ADDR`):
//!
//! ```text
//! cargo run --example axum_api
//! ```
//!
//! Then:
//!
//! ```text
//! curl -i http://127.0.0.1:3000/health                                     # 200
//! curl -i http://127.0.0.1:3000/me                                         # 401, WWW-Authenticate: Bearer realm="portcullis"
//! curl -i -H 'Authorization: Bearer alice-token' http://127.0.0.1:3000/me  # 200 {"subject":"alice"}
//! curl -i --cookie 'session=bob-token' http://127.0.0.1:3000/me            # 200 {"subject":"bob"}
//! curl -i -H 'X-API-Key: alice-token' http://127.0.0.1:3000/me             # 200 {"subject":"alice"}
//! curl -i -H 'Authorization: Bearer nope' http://127.0.0.1:3000/me         # 401, error="invalid_token"
//! curl -i -H 'Authorization: Bearer alice-token' --cookie 'session=bob-token' \
//!      http://127.0.0.1:3000/me                                            # 400, error="invalid_request"
//! ```
//!
//! Logs go to stderr (`RUST_LOG` overrides the default filter); rejected
//! credentials are logged by fingerprint, never by value. Ctrl-C or SIGTERM
//! shuts the server down gracefully.

use std::{
    collections::HashMap,
    io::{self, IsTerminal, Write},
    net::SocketAddr,
};

use axum::{Json, Router, http::HeaderName, routing::get};
use http::Method;
use portcullis::{
    AuthLayer, Credential, ValidationError, Validator,
    extract::{Bearer, Cookie, Extractor, Header},
    integration::axum::Identity,
    reject::DefaultRenderer,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// The caller, as the validator knows it.
#[derive(Clone, Debug)]
struct User {
    subject: String,
}

/// A fixed table of demo tokens. A real service would ask its database or
/// identity provider here.
struct DemoTokens(HashMap<&'static str, &'static str>);

impl DemoTokens {
    fn new() -> Self {
        Self(HashMap::from([
            ("alice-token", "alice"),
            ("bob-token", "bob"),
        ]))
    }
}

impl Validator for DemoTokens {
    type Identity = User;

    async fn validate(&self, credential: &Credential) -> Result<User, ValidationError> {
        match self.0.get(credential.secret()) {
            Some(subject) => Ok(User {
                subject: (*subject).to_owned(),
            }),
            None => Err(ValidationError::invalid().with_reason("unknown token")),
        }
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn me(Identity(user): Identity<User>) -> Json<Value> {
    tracing::info!(subject = %user.subject, "served /me");
    Json(json!({ "subject": user.subject }))
}

fn app() -> Router {
    let auth = AuthLayer::new(DemoTokens::new())
        .extractor(
            Extractor::new(Bearer::new())
                .or(Cookie::new("session"))
                .or(Header::new(HeaderName::from_static("x-api-key"))),
        )
        .public(|parts| parts.method == Method::GET && parts.uri.path() == "/health")
        .renderer(DefaultRenderer::new().realm("portcullis"));

    Router::new()
        .route("/health", get(health))
        .route("/me", get(me))
        .layer(auth)
}

#[tokio::main]
async fn main() -> io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,portcullis=debug")),
        )
        .init();

    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    io::stdout().flush()?;

    axum::serve(
        listener,
        app().into_make_service_with_connect_info::<SocketAddr>(),
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
