//! The standard gRPC health service (`grpc.health.v1.Health`, from
//! tonic-health) behind `AuthLayer`, added with `Server::builder().layer(..)`.
//!
//! Every call needs `authorization: Bearer alice-token` (the demo credential,
//! never printed or logged). A missing or wrong credential is answered with
//! `UNAUTHENTICATED` (16) as a trailers-only response, without reaching the
//! service.
//!
//! Run it (needs the `tonic` feature; `PORTCULLIS_ADDR` defaults to
//! `127.0.0.1:3000`, port 0 picks a free port, and the bound address is
//! printed as `listening on http://ADDR`):
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
//! grpc-health-probe -addr 127.0.0.1:3000                                                  # Unauthenticated
//! grpc-health-probe -addr 127.0.0.1:3000 -rpc-header 'authorization: Bearer wrong'        # Unauthenticated
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

use std::io::{self, IsTerminal, Write};

use portcullis::{AuthLayer, Credential, ValidationError};
use tokio::net::TcpListener;
use tonic::transport::{Server, server::TcpIncoming};
use tonic_health::ServingStatus;
use tracing_subscriber::EnvFilter;

/// The caller, as the validator knows it.
#[derive(Clone, Debug)]
struct User {
    #[allow(dead_code)] // the health service does not read it; your services would
    subject: &'static str,
}

/// The demo token. A real service would ask its identity provider here.
async fn validate(credential: Credential) -> Result<User, ValidationError> {
    match credential.secret() {
        "alice-token" => Ok(User { subject: "alice" }),
        _ => Err(ValidationError::invalid()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,portcullis=debug")),
        )
        .init();

    let (reporter, health) = tonic_health::server::health_reporter();
    // The empty name (the whole server) is SERVING already; name the service too.
    reporter
        .set_service_status("grpc.health.v1.Health", ServingStatus::Serving)
        .await;

    let addr = std::env::var("PORTCULLIS_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    println!("listening on http://{local}");
    io::stdout().flush()?;

    Server::builder()
        .layer(AuthLayer::new(validate))
        .add_service(health)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown_signal())
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
