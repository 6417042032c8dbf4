//! `AuthLayer` in front of a plain hyper 1 server, without any framework:
//! a tower stack adapted to hyper with `hyper_util::service::TowerToHyperService`
//! and a hand-written accept loop.
//!
//! Demo credentials (never printed or logged): `Authorization: Bearer
//! alice-token` is `alice`, `Bearer bob-token` is `bob`.
//!
//! Run it (`PORTCULLIS_ADDR` defaults to `127.0.0.1:3000`; port 0 picks a free
//! port, and the bound address is printed as `listening on http://ADDR`):
//!
//! ```text
//! cargo run --example hyper_plain
//! ```
//!
//! Then:
//!
//! ```text
//! curl -i http://127.0.0.1:3000/health                                     # 200
//! curl -i http://127.0.0.1:3000/me                                         # 401, WWW-Authenticate: Bearer realm="api"
//! curl -i -H 'Authorization: Bearer alice-token' http://127.0.0.1:3000/me  # 200 {"subject":"alice"}
//! curl -i -H 'Authorization: Bearer nope' http://127.0.0.1:3000/me         # 401, error="invalid_token"
//! ```
//!
//! Ctrl-C or SIGTERM stops accepting and lets open connections finish.

use std::{
    convert::Infallible,
    io::{self, Write},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::{conn::auto, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use portcullis::{AuthLayer, Credential, ValidationError};
use tokio::net::TcpListener;
use tower::ServiceBuilder;

/// The caller, as the validator knows it.
#[derive(Clone, Debug)]
struct User {
    subject: &'static str,
}

/// The demo tokens. A real service would ask its database or identity
/// provider here.
async fn validate(credential: Credential) -> Result<User, ValidationError> {
    match credential.secret() {
        "alice-token" => Ok(User { subject: "alice" }),
        "bob-token" => Ok(User { subject: "bob" }),
        _ => Err(ValidationError::invalid()),
    }
}

/// The application: plain `http` types, no framework.
async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/me") => match req.extensions().get::<User>() {
            Some(user) => Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::from(format!(r#"{{"subject":"{}"}}"#, user.subject)))
                .expect("static status and header are valid"),
            // Only reachable if the layer were optional or the route public.
            None => text(StatusCode::UNAUTHORIZED, "no identity"),
        },
        _ => text(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::from(body))
        .expect("static status and header are valid")
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    io::stdout().flush()?;

    // One stack for every connection; clones share the validator.
    let service = ServiceBuilder::new()
        .layer(
            AuthLayer::new(validate)
                .public(|parts| parts.method == Method::GET && parts.uri.path() == "/health"),
        )
        .service_fn(handle);

    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: back off instead of spinning.
                    eprintln!("accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(service.clone());
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                eprintln!("connection error: {error}");
            }
        });
    }

    // Stop accepting, then give open connections a bounded time to finish.
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!("connections still open after 10 s; closing them");
    }
    Ok(())
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
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
}
