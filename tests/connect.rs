//! Connect-protocol clients get Connect errors: unary calls a JSON error
//! with the matching HTTP status, streaming calls an end-of-stream message
//! (<https://connectrpc.com/docs/protocol/>). Checked byte for byte, through
//! the lockout, and with the real connect-es client.

mod support;

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use portcullis::{
    AuthLayer, AuthRejection, PeerAddr,
    lockout::{LockoutLayer, Policy},
    reject::{DefaultRenderer, RejectionKind, Renderer},
};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

fn unary(method: Method, uri: &str) -> http::request::Parts {
    let mut req = Request::builder().method(method).uri(uri);
    if !uri.contains("connect=v1") {
        req = req
            .header("connect-protocol-version", "1")
            .header(header::CONTENT_TYPE, "application/json");
    }
    req.body(()).unwrap().into_parts().0
}

fn streaming(content_type: &str) -> http::request::Parts {
    Request::post("/test.v1.Echo/Listen")
        .header(header::CONTENT_TYPE, content_type)
        .header("connect-protocol-version", "1")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn scoped(kind: RejectionKind) -> AuthRejection {
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

/// Every kind: (kind, HTTP status, Connect code, message, Retry-After).
const TABLE: &[(RejectionKind, u16, &str, &str, Option<&str>)] = &[
    (
        RejectionKind::Missing,
        401,
        "unauthenticated",
        "no credential was presented",
        None,
    ),
    (
        RejectionKind::Malformed,
        400,
        "invalid_argument",
        "the credential is malformed",
        None,
    ),
    (
        RejectionKind::Ambiguous,
        400,
        "invalid_argument",
        "the request carries more than one credential",
        None,
    ),
    (
        RejectionKind::TooLarge,
        400,
        "invalid_argument",
        "the credential is too large",
        None,
    ),
    (
        RejectionKind::Invalid,
        401,
        "unauthenticated",
        "the access token is invalid",
        None,
    ),
    (
        RejectionKind::Revoked,
        401,
        "unauthenticated",
        "the access token is invalid",
        None,
    ),
    (
        RejectionKind::Expired,
        401,
        "unauthenticated",
        "the access token expired",
        None,
    ),
    (
        RejectionKind::InsufficientScope,
        403,
        "permission_denied",
        "the access token lacks the required scope",
        None,
    ),
    (
        RejectionKind::LockedOut,
        429,
        "resource_exhausted",
        "too many failed attempts, try again later",
        Some("90"),
    ),
    (
        RejectionKind::RateLimited,
        429,
        "resource_exhausted",
        "too many requests, slow down",
        Some("90"),
    ),
    (
        RejectionKind::Unavailable,
        503,
        "unavailable",
        "authentication is temporarily unavailable",
        Some("7"),
    ),
    (
        RejectionKind::NoClientAddress,
        500,
        "internal",
        "the server cannot identify the client",
        None,
    ),
];

#[test]
fn unary_calls_get_the_json_error_and_the_matching_status_byte_for_byte() {
    let renderer = DefaultRenderer::new().realm("api");
    for &(kind, status, code, message, retry_after) in TABLE {
        for parts in [
            unary(Method::POST, "/test.v1.Echo/Say"),
            unary(
                Method::GET,
                "/test.v1.Echo/Say?message=%22hi%22&encoding=json&connect=v1",
            ),
        ] {
            let res = renderer.render(&scoped(kind), &parts);
            assert_eq!(res.status().as_u16(), status, "{kind:?}");
            assert_eq!(res.headers()[header::CONTENT_TYPE], "application/json");
            let expected = format!(r#"{{"code":"{code}","message":"{message}"}}"#);
            assert_eq!(res.body(), expected.as_bytes(), "{kind:?}");
            assert_eq!(
                res.headers()
                    .get(header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap()),
                retry_after,
                "{kind:?}"
            );
        }
    }
}

#[test]
fn unary_calls_keep_the_bearer_challenge_of_their_http_status() {
    // P6, P7: a Connect 401 is still an HTTP 401.
    let renderer = DefaultRenderer::new().realm("api");
    let parts = unary(Method::POST, "/test.v1.Echo/Say");
    let challenge = |kind| {
        renderer
            .render(&scoped(kind), &parts)
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert_eq!(
        challenge(RejectionKind::Missing).unwrap(),
        r#"Bearer realm="api""#
    );
    assert!(
        challenge(RejectionKind::Invalid)
            .unwrap()
            .contains(r#"error="invalid_token""#)
    );
    assert!(
        challenge(RejectionKind::Malformed)
            .unwrap()
            .contains(r#"error="invalid_request""#)
    );
    assert!(
        challenge(RejectionKind::InsufficientScope)
            .unwrap()
            .contains(r#"scope="admin""#)
    );
    assert_eq!(challenge(RejectionKind::LockedOut), None);
}

#[test]
fn streaming_calls_get_http_200_and_one_end_of_stream_message_byte_for_byte() {
    let renderer = DefaultRenderer::new();
    for content_type in ["application/connect+proto", "application/connect+json"] {
        for &(kind, _, code, message, retry_after) in TABLE {
            let res = renderer.render(&scoped(kind), &streaming(content_type));
            assert_eq!(res.status(), StatusCode::OK, "{kind:?}");
            assert_eq!(res.headers()[header::CONTENT_TYPE], content_type);
            let json = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
            let mut expected = vec![0x02];
            expected.extend_from_slice(&(json.len() as u32).to_be_bytes());
            expected.extend_from_slice(json.as_bytes());
            assert_eq!(&res.body()[..], &expected[..], "{kind:?}");
            assert!(res.headers().get(header::WWW_AUTHENTICATE).is_none());
            assert_eq!(
                res.headers()
                    .get(header::RETRY_AFTER)
                    .map(|v| v.to_str().unwrap()),
                retry_after,
                "{kind:?}"
            );
        }
    }
}

#[test]
fn one_streaming_error_is_exactly_these_bytes() {
    let res = DefaultRenderer::new().render(
        &AuthRejection::new(RejectionKind::Invalid),
        &streaming("application/connect+proto"),
    );
    let mut expected = b"\x02\x00\x00\x00\x4c".to_vec();
    expected.extend_from_slice(
        br#"{"error":{"code":"unauthenticated","message":"the access token is invalid"}}"#,
    );
    assert_eq!(&res.body()[..], &expected[..]);
}

#[test]
fn a_plain_json_request_without_the_connect_header_is_answered_as_http() {
    let (parts, ()) = Request::post("/api/items")
        .header(header::CONTENT_TYPE, "application/json")
        .body(())
        .unwrap()
        .into_parts();
    let res = DefaultRenderer::new().render(&AuthRejection::new(RejectionKind::Missing), &parts);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "text/plain; charset=utf-8"
    );
}

/// A stack (lockout of 2 failures over auth) answering Connect unary calls
/// from one peer.
async fn connect_call<S, B>(svc: &mut S, token: &str) -> (StatusCode, HeaderMap, Bytes)
where
    S: Service<Request<String>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let req = Request::post("/test.v1.Echo/Say")
        .header("connect-protocol-version", "1")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .extension(PeerAddr("192.0.2.7:5000".parse().unwrap()))
        .body(r#""hi""#.to_owned())
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

// B1, B3
#[tokio::test(start_paused = true)]
async fn rejected_connect_calls_count_and_a_locked_out_client_gets_resource_exhausted() {
    let policy = Policy::builder()
        .max_failures(2)
        .lockout(Duration::from_secs(60))
        .build()
        .unwrap();
    let lockout = LockoutLayer::new(policy);
    let tracker = lockout.tracker().clone();
    let mut svc = ServiceBuilder::new()
        .layer(lockout)
        .layer(AuthLayer::new(support::rpc::validate))
        .service(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(r#""hi""#.to_owned()))
        }));
    // Two different wrong tokens: a repeated one counts once (B14).
    for token in ["nope-1", "nope-2"] {
        let (status, _, body) = connect_call(&mut svc, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            body,
            r#"{"code":"unauthenticated","message":"the access token is invalid"}"#
        );
    }
    assert!(tracker.check(&"192.0.2.7".parse().unwrap()).is_err());
    // B3: even the right token is refused, in Connect's encoding.
    let (status, headers, body) = connect_call(&mut svc, "alice-token").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers[header::RETRY_AFTER], "60");
    assert_eq!(
        body,
        r#"{"code":"resource_exhausted","message":"too many failed attempts, try again later"}"#
    );
}

// B1: a Connect handler's own `unauthenticated` is a 401, which counts.
#[tokio::test(start_paused = true)]
async fn an_inner_connect_unauthenticated_error_counts_as_a_failure() {
    let policy = Policy::builder().max_failures(1).build().unwrap();
    let lockout = LockoutLayer::new(policy);
    let tracker = lockout.tracker().clone();
    let mut svc =
        ServiceBuilder::new()
            .layer(lockout)
            .service(service_fn(|_: Request<String>| async {
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(401)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(r#"{"code":"unauthenticated","message":"wrong password"}"#.to_owned())
                        .unwrap(),
                )
            }));
    let (status, _, _) = connect_call(&mut svc, "whatever").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(tracker.check(&"192.0.2.7".parse().unwrap()).is_err());
}

/// Connect codes as connect-es numbers them.
const UNAUTHENTICATED: u32 = 16;
const PERMISSION_DENIED: u32 = 7;
const RESOURCE_EXHAUSTED: u32 = 8;
const UNAVAILABLE: u32 = 14;
const INVALID_ARGUMENT: u32 = 3;

async fn real_client_sees(protocol: &str) {
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
    let Some(outcomes) = support::rpc::run_client(addr, protocol, &calls).await else {
        return;
    };
    let codes: Vec<u32> = outcomes.iter().map(|o| o.code).collect();
    assert_eq!(
        codes,
        [
            UNAUTHENTICATED,
            INVALID_ARGUMENT,
            PERMISSION_DENIED,
            UNAVAILABLE,
            0,
            UNAUTHENTICATED,
            0,
            UNAUTHENTICATED,
            UNAUTHENTICATED,
            UNAUTHENTICATED,
            // B3: three failures lock the client out, in every encoding.
            RESOURCE_EXHAUSTED,
            RESOURCE_EXHAUSTED,
        ],
        "{outcomes:#?}"
    );
    assert_eq!(
        outcomes[1].message.as_deref(),
        Some("the credential is malformed")
    );
    assert_eq!(outcomes[4].reply.as_deref(), Some("hi"));
    assert_eq!(outcomes[6].reply.as_deref(), Some("hi"));
    // L3: unknown and revoked tokens read alike.
    assert_eq!(outcomes[7].message, outcomes[8].message);
    assert_eq!(
        outcomes[7].message.as_deref(),
        Some("the access token is invalid")
    );
}

#[tokio::test]
async fn the_connect_es_client_reads_every_outcome_over_json() {
    real_client_sees("connect").await;
}

#[tokio::test]
async fn the_connect_es_client_reads_every_outcome_over_protobuf() {
    real_client_sees("connect-proto").await;
}
