//! gRPC-Web clients get gRPC-Web trailers: a trailers-only head and the
//! same trailers as a frame in the body, base64 for `-text`
//! (<https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md>).
//! Checked byte for byte, through the lockout, and with the real connect-es
//! client.

mod support;

use std::{convert::Infallible, time::Duration};

use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use portcullis::{
    AuthRejection, PeerAddr,
    lockout::{LockoutLayer, Policy},
    reject::{DefaultRenderer, Protocol, RejectionKind, Renderer, is_grpc},
};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn request(content_type: &str) -> http::request::Parts {
    Request::post("/grpc.health.v1.Health/Check")
        .header(header::CONTENT_TYPE, content_type)
        .header("x-grpc-web", "1")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// The body trailers frame for `status` and `message`.
fn frame(status: &str, message: &str) -> Vec<u8> {
    let block = format!("grpc-status:{status}\r\ngrpc-message:{message}\r\n");
    let mut frame = vec![0x80];
    frame.extend_from_slice(&(block.len() as u32).to_be_bytes());
    frame.extend_from_slice(block.as_bytes());
    frame
}

/// (kind, grpc-status, percent-encoded grpc-message, Retry-After)
const TABLE: &[(RejectionKind, &str, &str, Option<&str>)] = &[
    (
        RejectionKind::Missing,
        "16",
        "no credential was presented",
        None,
    ),
    (
        RejectionKind::Malformed,
        "16",
        "the credential is malformed",
        None,
    ),
    (
        RejectionKind::TooLarge,
        "16",
        "the credential is too large",
        None,
    ),
    (
        RejectionKind::Invalid,
        "16",
        "the access token is invalid",
        None,
    ),
    (
        RejectionKind::Revoked,
        "16",
        "the access token is invalid",
        None,
    ),
    (
        RejectionKind::Expired,
        "16",
        "the access token expired",
        None,
    ),
    (
        RejectionKind::InsufficientScope,
        "7",
        "the access token lacks the required scope",
        None,
    ),
    (
        RejectionKind::LockedOut,
        "8",
        "too many failed attempts, try again later",
        Some("90"),
    ),
    (
        RejectionKind::RateLimited,
        "8",
        "too many requests, slow down",
        Some("90"),
    ),
    (
        RejectionKind::Unavailable,
        "14",
        "authentication is temporarily unavailable",
        Some("7"),
    ),
    (
        RejectionKind::NoClientAddress,
        "13",
        "the server cannot identify the client",
        None,
    ),
];

fn rejection(kind: RejectionKind) -> AuthRejection {
    match kind {
        RejectionKind::InsufficientScope => AuthRejection::new(kind).with_scope("admin"),
        RejectionKind::Unavailable => {
            AuthRejection::new(kind).with_retry_after(Duration::from_millis(6500))
        }
        RejectionKind::LockedOut | RejectionKind::RateLimited => {
            AuthRejection::new(kind).with_retry_after(Duration::from_secs(90))
        }
        _ => AuthRejection::new(kind),
    }
}

#[test]
fn binary_grpc_web_gets_trailers_in_the_head_and_a_trailers_frame_byte_for_byte() {
    let renderer = DefaultRenderer::new();
    for content_type in [
        "application/grpc-web",
        "application/grpc-web+proto",
        "application/grpc-web+json",
    ] {
        for &(kind, status, message, retry_after) in TABLE {
            let res = renderer.render(&rejection(kind), &request(content_type));
            assert_eq!(res.status(), StatusCode::OK, "{kind:?}");
            assert_eq!(res.headers()[header::CONTENT_TYPE], content_type);
            assert_eq!(res.headers()["grpc-status"], status, "{kind:?}");
            assert_eq!(res.headers()["grpc-message"], message, "{kind:?}");
            assert_eq!(&res.body()[..], &frame(status, message)[..], "{kind:?}");
            assert_eq!(
                res.headers()
                    .get(header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap()),
                retry_after,
                "{kind:?}"
            );
            assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
        }
    }
}

#[test]
fn text_grpc_web_gets_the_trailers_frame_in_base64() {
    let renderer = DefaultRenderer::new();
    for content_type in [
        "application/grpc-web-text",
        "application/grpc-web-text+proto",
    ] {
        for &(kind, status, message, _) in TABLE {
            let res = renderer.render(&rejection(kind), &request(content_type));
            assert_eq!(res.headers()[header::CONTENT_TYPE], content_type);
            assert_eq!(res.headers()["grpc-status"], status);
            assert_eq!(
                res.body(),
                STANDARD.encode(frame(status, message)).as_bytes()
            );
        }
    }
}

#[test]
fn one_grpc_web_rejection_is_exactly_these_bytes() {
    let res = DefaultRenderer::new().render(
        &AuthRejection::new(RejectionKind::Invalid),
        &request("application/grpc-web+proto"),
    );
    assert_eq!(
        &res.body()[..],
        b"\x80\x00\x00\x00\x3agrpc-status:16\r\ngrpc-message:the access token is invalid\r\n"
    );
    let text = DefaultRenderer::new().render(
        &AuthRejection::new(RejectionKind::Invalid),
        &request("application/grpc-web-text"),
    );
    assert_eq!(
        text.body(),
        "gAAAADpncnBjLXN0YXR1czoxNg0KZ3JwYy1tZXNzYWdlOnRoZSBhY2Nlc3MgdG9rZW4gaXMgaW52YWxpZA0K"
    );
}

// P9: native gRPC keeps its empty trailers-only body; gRPC-Web is not gRPC.
#[test]
fn native_grpc_is_not_answered_with_grpc_web_frames() {
    let res = DefaultRenderer::new().render(
        &AuthRejection::new(RejectionKind::Invalid),
        &request("application/grpc+proto"),
    );
    assert!(res.body().is_empty());
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/grpc");
    let web = request("application/grpc-web+proto");
    assert!(!is_grpc(&web.headers));
    assert_eq!(Protocol::of(&web), Protocol::GrpcWeb);
}

// B1: an inner gRPC-Web service's own UNAUTHENTICATED counts, like gRPC's.
#[tokio::test(start_paused = true)]
async fn an_inner_grpc_web_unauthenticated_status_counts_as_a_failure() {
    let policy = Policy::builder().max_failures(2).build().unwrap();
    let lockout = LockoutLayer::new(policy);
    let tracker = lockout.tracker().clone();
    let mut svc =
        ServiceBuilder::new()
            .layer(lockout)
            .service(service_fn(|_: Request<String>| async {
                Ok::<_, Infallible>(
                    Response::builder()
                        .header(header::CONTENT_TYPE, "application/grpc-web+proto")
                        .header("grpc-status", "16")
                        .body(String::new())
                        .unwrap(),
                )
            }));
    for _ in 0..2 {
        let req = Request::post("/acme.v1.Login/Check")
            .header(header::CONTENT_TYPE, "application/grpc-web+proto")
            .extension(PeerAddr("192.0.2.9:5000".parse().unwrap()))
            .body(String::new())
            .unwrap();
        svc.ready().await.unwrap().call(req).await.unwrap();
    }
    let key = "192.0.2.9".parse().unwrap();
    assert!(tracker.check(&key).is_err());
    // The lockout's refusal is gRPC-Web too.
    let req = Request::post("/acme.v1.Login/Check")
        .header(header::CONTENT_TYPE, "application/grpc-web+proto")
        .extension(PeerAddr("192.0.2.9:5000".parse().unwrap()))
        .body(String::new())
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.headers()["grpc-status"], "8");
    let body: Bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body[0], 0x80);
}

/// Codes as connect-es numbers them (the gRPC codes).
const UNAUTHENTICATED: u32 = 16;
const PERMISSION_DENIED: u32 = 7;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNAVAILABLE: u32 = 14;

// P9, B3, L3
#[tokio::test]
async fn the_connect_es_grpc_web_client_reads_every_outcome() {
    let addr = support::rpc::serve().await;
    let calls = [
        "unary:-",
        "unary:a b",
        "unary:reader",
        "unary:down",
        "unary:alice-token",
        "stream:-",
        "stream:alice-token",
        "unary:nope-1",
        "stream:revoked-1",
        "unary:nope-2",
        "unary:alice-token",
        "stream:alice-token",
    ];
    let Some(outcomes) = support::rpc::run_client(addr, "grpc-web", &calls).await else {
        return;
    };
    let codes: Vec<u32> = outcomes.iter().map(|o| o.code).collect();
    assert_eq!(
        codes,
        [
            UNAUTHENTICATED,
            UNAUTHENTICATED,
            PERMISSION_DENIED,
            UNAVAILABLE,
            0,
            UNAUTHENTICATED,
            0,
            UNAUTHENTICATED,
            UNAUTHENTICATED,
            UNAUTHENTICATED,
            RESOURCE_EXHAUSTED,
            RESOURCE_EXHAUSTED,
        ],
        "{outcomes:#?}"
    );
    assert_eq!(
        outcomes[2].message.as_deref(),
        Some("the access token lacks the required scope")
    );
    assert_eq!(outcomes[4].reply.as_deref(), Some("hi"));
    assert_eq!(outcomes[7].message, outcomes[8].message);
}
