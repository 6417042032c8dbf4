//! `AuthLayer` in front of a real tonic server, called by a real tonic client
//! over loopback.
#![cfg(feature = "tonic")]

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use portcullis::{
    AuthLayer, Credential, ValidationError,
    integration::{rejection, tonic::identity},
    lockout::{LockoutLayer, Policy},
    reject::RejectionKind,
};
use tokio::net::TcpListener;
use tonic::{
    Code, Request, Response, Status,
    metadata::MetadataValue,
    service::Routes,
    transport::{Channel, Server, server::TcpIncoming},
};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse,
    health_check_response::ServingStatus as WireStatus,
    health_client::HealthClient,
    health_server::{Health, HealthServer},
};

/// Every token contains this canary, so a leak is easy to spot.
const CANARY: &str = "canary-5e1f";
const OK: &str = "canary-5e1f-ok";
const INVALID: &str = "canary-5e1f-invalid";
const REVOKED: &str = "canary-5e1f-revoked";
const EXPIRED: &str = "canary-5e1f-expired";
const NO_SCOPE: &str = "canary-5e1f-no-scope";
const UNAVAILABLE: &str = "canary-5e1f-unavailable";

#[derive(Clone, Debug, PartialEq)]
struct User(&'static str);

/// A validator that returns the outcome named by the token.
async fn validate(credential: Credential) -> Result<User, ValidationError> {
    match credential.secret() {
        OK => Ok(User("alice")),
        REVOKED => Err(ValidationError::revoked()),
        EXPIRED => Err(ValidationError::expired()),
        NO_SCOPE => Err(ValidationError::insufficient_scope("health:read")),
        UNAVAILABLE => {
            Err(ValidationError::unavailable().with_retry_after(Duration::from_secs(30)))
        }
        _ => Err(ValidationError::invalid()),
    }
}

enum Auth {
    Required,
    Optional,
    Absent,
}

/// Serves `routes` on a free loopback port, behind `AuthLayer` as asked.
async fn serve(routes: Routes, auth: Auth) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = TcpIncoming::from(listener);
    tokio::spawn(async move {
        match auth {
            Auth::Required => {
                Server::builder()
                    .layer(AuthLayer::new(validate))
                    .add_routes(routes)
                    .serve_with_incoming(incoming)
                    .await
            }
            Auth::Optional => {
                Server::builder()
                    .layer(AuthLayer::new(validate).optional())
                    .add_routes(routes)
                    .serve_with_incoming(incoming)
                    .await
            }
            Auth::Absent => {
                Server::builder()
                    .add_routes(routes)
                    .serve_with_incoming(incoming)
                    .await
            }
        }
        .unwrap();
    });
    addr
}

/// The stock tonic-health service, behind `AuthLayer`.
async fn health_server() -> SocketAddr {
    let (_reporter, health) = tonic_health::server::health_reporter();
    serve(Routes::new(health), Auth::Required).await
}

async fn client(addr: SocketAddr) -> HealthClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

/// A `Check` request carrying `authorization`, if given.
fn check_request(authorization: Option<&str>) -> Request<HealthCheckRequest> {
    let mut request = Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(value) = authorization {
        let value = MetadataValue::try_from(value).unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// Calls `Check` and returns the rejection, after making sure it does not
/// carry the credential anywhere a client or a log could see it.
async fn rejected(authorization: Option<&str>) -> Status {
    let addr = health_server().await;
    let status = client(addr)
        .await
        .check(check_request(authorization))
        .await
        .expect_err("the call should be refused");
    assert!(
        !status.message().contains(CANARY),
        "grpc-message leaks the credential: {status:?}"
    );
    for (name, value) in status.metadata().clone().into_headers().iter() {
        assert!(
            !String::from_utf8_lossy(value.as_bytes()).contains(CANARY),
            "the {name} header leaks the credential"
        );
    }
    status
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn a_valid_token_reaches_the_health_service() {
    let addr = health_server().await;
    let response = client(addr)
        .await
        .check(check_request(Some(&bearer(OK))))
        .await
        .unwrap();
    assert_eq!(response.get_ref().status(), WireStatus::Serving);
}

#[tokio::test]
async fn a_missing_credential_is_unauthenticated() {
    // P9
    let status = rejected(None).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "no credential was presented");
}

#[tokio::test]
async fn a_foreign_scheme_is_a_missing_credential() {
    // P6, P9
    let status = rejected(Some("Basic Y2FuYXJ5LTVlMWY6eA==")).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "no credential was presented");
}

#[tokio::test]
async fn a_malformed_credential_is_unauthenticated() {
    // P9
    let status = rejected(Some(&bearer("canary-5e1f,not-a-token"))).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "the credential is malformed");
}

#[tokio::test]
async fn an_oversized_credential_is_unauthenticated() {
    // P9, R1
    let token = format!("{CANARY}{}", "x".repeat(9 * 1024));
    let status = rejected(Some(&bearer(&token))).await;
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "the credential is too large");
}

#[tokio::test]
async fn invalid_revoked_and_expired_tokens_are_unauthenticated() {
    // P9
    for token in [INVALID, REVOKED, EXPIRED] {
        let status = rejected(Some(&bearer(token))).await;
        assert_eq!(status.code(), Code::Unauthenticated, "{token}");
    }
}

#[tokio::test]
async fn invalid_and_revoked_tokens_get_the_same_answer() {
    // L3, P9
    let invalid = rejected(Some(&bearer(INVALID))).await;
    let revoked = rejected(Some(&bearer(REVOKED))).await;
    assert_eq!(invalid.code(), revoked.code());
    assert_eq!(invalid.message(), revoked.message());
}

#[tokio::test]
async fn insufficient_scope_is_permission_denied() {
    // P9
    let status = rejected(Some(&bearer(NO_SCOPE))).await;
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn an_unavailable_validator_is_unavailable_with_retry_after() {
    // P9, B2
    let status = rejected(Some(&bearer(UNAVAILABLE))).await;
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.metadata().get("retry-after").unwrap(), "30");
}

/// A health service that reports the caller's subject in the response
/// metadata, read with `portcullis::integration::tonic::identity`.
#[derive(Clone, Default)]
struct WhoAmI {
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Health for WhoAmI {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let User(subject) = identity::<User, _>(&request)?;
        let mut response = Response::new(HealthCheckResponse {
            status: WireStatus::Serving.into(),
        });
        response
            .metadata_mut()
            .insert("x-subject", MetadataValue::from_static(subject));
        Ok(response)
    }

    type WatchStream = tonic::codegen::BoxStream<HealthCheckResponse>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not used by these tests"))
    }
}

#[tokio::test]
async fn the_identity_reaches_a_tonic_handler() {
    let who = WhoAmI::default();
    let addr = serve(Routes::new(HealthServer::new(who.clone())), Auth::Required).await;
    let response = client(addr)
        .await
        .check(check_request(Some(&bearer(OK))))
        .await
        .unwrap();
    assert_eq!(response.metadata().get("x-subject").unwrap(), "alice");
    assert_eq!(who.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_rejected_call_never_reaches_the_tonic_handler() {
    let who = WhoAmI::default();
    let addr = serve(Routes::new(HealthServer::new(who.clone())), Auth::Required).await;
    let status = client(addr)
        .await
        .check(check_request(Some(&bearer(INVALID))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(who.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_anonymous_call_in_optional_mode_is_unauthenticated_by_the_handler() {
    let who = WhoAmI::default();
    let addr = serve(Routes::new(HealthServer::new(who.clone())), Auth::Optional).await;
    let status = client(addr)
        .await
        .check(check_request(None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    // The layer let it through; the handler's `identity` refused it.
    assert_eq!(who.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_wrong_credential_in_optional_mode_is_still_refused() {
    let who = WhoAmI::default();
    let addr = serve(Routes::new(HealthServer::new(who.clone())), Auth::Optional).await;
    let status = client(addr)
        .await
        .check(check_request(Some(&bearer(INVALID))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(who.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_handler_without_an_auth_layer_gets_internal_from_identity() {
    let who = WhoAmI::default();
    let addr = serve(Routes::new(HealthServer::new(who.clone())), Auth::Absent).await;
    let status = client(addr)
        .await
        .check(check_request(Some(&bearer(OK))))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(
        status.message().contains("AuthLayer"),
        "{}",
        status.message()
    );
    assert_eq!(who.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_anonymous_call_refused_by_identity_carries_a_missing_rejection() {
    // B1: what a layer in front of the tonic server sees of the handler's
    // answer: the `Missing` rejection, found by `integration::rejection`.
    let seen: Arc<Mutex<Vec<Option<RejectionKind>>>> = Arc::default();
    let record = Arc::clone(&seen);
    let observe = tower::util::MapResponseLayer::new(move |res: http::Response<_>| {
        let kind = rejection(res.extensions()).map(|r| r.kind());
        record.lock().unwrap().push(kind);
        res
    });
    let who = WhoAmI::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Routes::new(HealthServer::new(who.clone()));
    tokio::spawn(
        Server::builder()
            .layer(observe)
            .layer(AuthLayer::new(validate).optional())
            .add_routes(routes)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let mut client = client(addr).await;

    let status = client.check(check_request(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "no credential was presented");
    assert_eq!(who.calls.load(Ordering::SeqCst), 1);
    client
        .check(check_request(Some(&bearer(OK))))
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [Some(RejectionKind::Missing), None]);
}

#[tokio::test]
async fn anonymous_calls_refused_by_identity_never_count_as_failures() {
    // B1: `identity` answers an anonymous call UNAUTHENTICATED; the lockout
    // in front must not count it, or clients that never sent a credential
    // (and everyone behind their address) would be locked out.
    let policy = Policy::builder().max_failures(3).build().unwrap();
    // Keyed by `ClientIp`, which reads tonic's connect info (feature `tonic`).
    let lockout = LockoutLayer::new(policy);
    let tracker = lockout.tracker().clone();
    let who = WhoAmI::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = Routes::new(HealthServer::new(who.clone()));
    tokio::spawn(
        Server::builder()
            .layer(lockout)
            .layer(AuthLayer::new(validate).optional())
            .add_routes(routes)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let mut client = client(addr).await;
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();

    for _ in 0..10 {
        let status = client.check(check_request(None)).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    assert_eq!(who.calls.load(Ordering::SeqCst), 10);
    assert_eq!(tracker.failures(&loopback), 0);

    // Wrong tokens from the same client do count: the lockout is watching
    // (distinct ones: a repeated wrong token counts once, B14).
    for n in 0..3 {
        let status = client
            .check(check_request(Some(&bearer(&format!("{INVALID}-{n}")))))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let status = client.check(check_request(None)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
}
