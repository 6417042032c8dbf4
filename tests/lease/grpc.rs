//! A real tonic client on a `Watch` stream through `AuthLayer` with leases,
//! over loopback.

use std::time::Duration;

use portcullis::{AuthLayer, Credential, ValidationError, revoke::Revocations};
use tokio::{net::TcpListener, time::Instant};
use tonic::{
    Code, Request,
    metadata::MetadataValue,
    transport::{Channel, Server, server::TcpIncoming},
};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::User;

/// Serves tonic-health behind `AuthLayer` with leases; `alice-*` tokens
/// live `lifetime` (real time).
async fn serve(revocations: &Revocations, lifetime: Duration) -> HealthClient<Channel> {
    let validate = move |credential: Credential| async move {
        if credential.secret().starts_with("alice-") {
            Ok(User {
                name: "alice",
                until: Some(Instant::now() + lifetime),
                issued: None,
            })
        } else {
            Err(ValidationError::invalid())
        }
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let auth = AuthLayer::new(validate).leases(revocations);
    tokio::spawn(async move {
        // Keeps the reporter (and so the Watch streams) alive.
        let _reporter = _reporter;
        Server::builder()
            .layer(auth)
            .add_service(health)
            .serve_with_incoming(TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

fn watch(token: &str) -> Request<HealthCheckRequest> {
    let mut request = Request::new(HealthCheckRequest::default());
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    request
}

#[tokio::test]
async fn a_watch_stream_ends_with_unauthenticated_within_a_second_of_revocation() {
    // V3, P9
    let revocations = Revocations::new();
    let mut client = serve(&revocations, Duration::from_secs(3600)).await;
    let mut stream = client.watch(watch("alice-1")).await.unwrap().into_inner();
    assert!(
        stream.message().await.unwrap().is_some(),
        "the current status"
    );

    let revoked = Instant::now();
    revocations.revoke_secret("alice-1", None).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(1), stream.message())
        .await
        .expect("the stream ends within a second")
        .expect_err("with a status");
    assert!(revoked.elapsed() < Duration::from_secs(1));
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "the credential was revoked");

    // A new call with the revoked token is not refused by the layer
    // (this validator does not honour the list), yet its stream ends
    // at once, before any message.
    let mut again = client.watch(watch("alice-1")).await.unwrap().into_inner();
    let ended = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            match again.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("ended within a second");
    assert_eq!(ended.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_watch_stream_ends_with_unauthenticated_within_a_second_of_expiry() {
    // V3
    let revocations = Revocations::new();
    let lifetime = Duration::from_millis(600);
    let mut client = serve(&revocations, lifetime).await;
    let started = Instant::now();
    let mut stream = client.watch(watch("alice-1")).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some());
    let status = tokio::time::timeout(Duration::from_secs(3), stream.message())
        .await
        .expect("the stream ends")
        .expect_err("with a status");
    let after = started.elapsed();
    assert!(
        after >= lifetime && after < lifetime + Duration::from_secs(1),
        "{after:?}"
    );
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "the credential expired");
}
