//! AuthLayer behaviour: rejections, modes, stripping, logging and timeouts.

mod support;

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use portcullis::{
    AuthLayer, AuthRejection, Credential, ValidationError,
    extract::{Bearer, Extractor, Query, WebSocketProtocol},
    reject::{DefaultRenderer, RejectionKind},
};
use proptest::prelude::*;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

#[derive(Clone, Debug, PartialEq)]
struct User(String);

/// Tokens: `alice-token` → alice; `revoked-*` → revoked; `expired` → expired;
/// `reader` → insufficient scope `admin`; `down` → unavailable (retry 7 s);
/// `slow` → never answers; anything else → invalid.
#[derive(Clone, Default)]
struct Tokens {
    calls: Arc<AtomicUsize>,
}

impl portcullis::Validator for Tokens {
    type Identity = User;

    async fn validate(&self, credential: &Credential) -> Result<User, ValidationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match credential.secret() {
            "alice-token" => Ok(User("alice".into())),
            s if s.starts_with("revoked") => {
                Err(ValidationError::revoked().with_reason("revoked by operator"))
            }
            "expired" => Err(ValidationError::expired()),
            "reader" => Err(ValidationError::insufficient_scope("admin")),
            "down" => {
                Err(ValidationError::unavailable().with_retry_after(Duration::from_millis(6500)))
            }
            "slow" => std::future::pending().await,
            _ => Err(ValidationError::invalid().with_reason("unknown token")),
        }
    }
}

/// Echoes the identity, the URI and the websocket protocols it received.
async fn echo(req: Request<String>) -> Result<Response<String>, Infallible> {
    let who = req
        .extensions()
        .get::<User>()
        .map_or("anonymous".to_owned(), |u| u.0.clone());
    let ws = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("|");
    Ok(Response::new(format!("{who} {} [{ws}]", req.uri())))
}

type Svc = tower::util::BoxCloneService<
    Request<String>,
    Response<portcullis::ResponseBody<String>>,
    Infallible,
>;

fn service(layer: AuthLayer<Tokens>) -> Svc {
    tower::util::BoxCloneService::new(ServiceBuilder::new().layer(layer).service_fn(echo))
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    rejection: Option<AuthRejection>,
}

async fn send(svc: &mut Svc, req: Request<String>) -> Answer {
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    let rejection = res.extensions().get::<AuthRejection>().cloned();
    let (parts, body) = res.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
        rejection,
    }
}

fn with_bearer(token: &str) -> Request<String> {
    Request::builder()
        .uri("/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap()
}

fn www_authenticate(answer: &Answer) -> &str {
    answer.headers[header::WWW_AUTHENTICATE].to_str().unwrap()
}

#[tokio::test]
async fn a_valid_credential_reaches_the_service_with_its_identity() {
    let mut svc = service(AuthLayer::new(Tokens::default()));
    let answer = send(&mut svc, with_bearer("alice-token")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "alice /me []");
    assert!(answer.rejection.is_none());
}

// P6
#[tokio::test]
async fn a_missing_credential_is_a_401_challenge_without_an_error_code() {
    let mut svc = service(AuthLayer::new(Tokens::default()));
    let answer = send(&mut svc, Request::new(String::new())).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(www_authenticate(&answer), r#"Bearer realm="api""#);
    assert_eq!(answer.rejection.unwrap().kind(), RejectionKind::Missing);

    // A foreign scheme is no credential at all.
    let req = Request::builder()
        .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
        .body(String::new())
        .unwrap();
    let basic = send(&mut svc, req).await;
    assert_eq!(basic.status, StatusCode::UNAUTHORIZED);
    assert_eq!(www_authenticate(&basic), r#"Bearer realm="api""#);
}

// P7
#[tokio::test]
async fn each_failure_has_its_status_and_error_code() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = service(AuthLayer::new(Tokens {
        calls: calls.clone(),
    }));

    let malformed = send(&mut svc, with_bearer("a,b")).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(www_authenticate(&malformed).contains(r#"error="invalid_request""#));

    let invalid = send(&mut svc, with_bearer("nope")).await;
    assert_eq!(invalid.status, StatusCode::UNAUTHORIZED);
    assert!(www_authenticate(&invalid).starts_with(r#"Bearer realm="api", error="invalid_token""#));

    let expired = send(&mut svc, with_bearer("expired")).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert!(www_authenticate(&expired).contains(r#"error="invalid_token""#));
    assert!(
        www_authenticate(&expired).contains("expired"),
        "clients refresh on this"
    );

    let scope = send(&mut svc, with_bearer("reader")).await;
    assert_eq!(scope.status, StatusCode::FORBIDDEN);
    assert!(www_authenticate(&scope).contains(r#"error="insufficient_scope""#));
    assert!(www_authenticate(&scope).contains(r#"scope="admin""#));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "malformed never reaches the validator"
    );
}

// B2
#[tokio::test]
async fn an_unavailable_validator_is_a_503_with_retry_after_never_invalid_token() {
    let mut svc = service(AuthLayer::new(Tokens::default()));
    let answer = send(&mut svc, with_bearer("down")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.headers[header::RETRY_AFTER], "7");
    assert!(!answer.headers.contains_key(header::WWW_AUTHENTICATE));
    let rejection = answer.rejection.unwrap();
    assert_eq!(rejection.kind(), RejectionKind::Unavailable);
    assert!(!rejection.counts_as_failure());
}

// P4
#[tokio::test]
async fn two_credentials_are_a_400_invalid_request() {
    let mut svc = service(AuthLayer::new(Tokens::default()).extractor(
        Extractor::new(Bearer::new()).or(portcullis::extract::Header::new(
            "x-api-key".parse().unwrap(),
        )),
    ));
    let mut req = with_bearer("alice-token");
    req.headers_mut()
        .insert("x-api-key", "other".parse().unwrap());
    let answer = send(&mut svc, req).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(www_authenticate(&answer).contains(r#"error="invalid_request""#));
    assert_eq!(answer.rejection.unwrap().kind(), RejectionKind::Ambiguous);
}

// L3
#[tokio::test]
async fn unknown_and_revoked_credentials_get_byte_identical_responses() {
    let mut svc = service(AuthLayer::new(Tokens::default()));
    let unknown = send(&mut svc, with_bearer("never-issued")).await;
    let revoked = send(&mut svc, with_bearer("revoked-yesterday")).await;
    assert_eq!(unknown.status, revoked.status);
    assert_eq!(unknown.headers, revoked.headers);
    assert_eq!(unknown.body, revoked.body);
}

// R1
#[tokio::test]
async fn an_oversized_credential_is_refused_before_the_validator_runs() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut svc = service(AuthLayer::new(Tokens {
        calls: calls.clone(),
    }));
    let answer = send(&mut svc, with_bearer(&"x".repeat(9000))).await;
    assert_eq!(answer.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(answer.rejection.unwrap().kind(), RejectionKind::TooLarge);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// R4
#[tokio::test(start_paused = true)]
async fn a_slow_validator_times_out_as_unavailable_while_others_are_answered() {
    let mut svc = service(AuthLayer::new(Tokens::default()).timeout(Duration::from_secs(2)));
    let mut slow_svc = svc.clone();
    let slow = tokio::spawn(async move { send(&mut slow_svc, with_bearer("slow")).await });
    tokio::task::yield_now().await;

    let other = send(&mut svc, with_bearer("alice-token")).await;
    assert_eq!(
        other.status,
        StatusCode::OK,
        "another client is not held up"
    );
    assert!(!slow.is_finished());

    tokio::time::advance(Duration::from_secs(2)).await;
    let slow = slow.await.unwrap();
    assert_eq!(slow.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(slow.rejection.unwrap().kind(), RejectionKind::Unavailable);
}

#[tokio::test]
async fn optional_mode_lets_anonymous_requests_through_but_not_bad_credentials() {
    let mut svc = service(AuthLayer::new(Tokens::default()).optional());
    let anonymous = send(
        &mut svc,
        Request::builder().uri("/me").body(String::new()).unwrap(),
    )
    .await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert_eq!(anonymous.body, "anonymous /me []");
    let bad = send(&mut svc, with_bearer("wrong")).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    let malformed = send(&mut svc, with_bearer("a b")).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn public_requests_pass_untouched() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = AuthLayer::new(Tokens {
        calls: calls.clone(),
    })
    .public(|parts| parts.uri.path() == "/health");
    let mut svc = service(layer);
    let health = Request::builder()
        .uri("/health")
        .body(String::new())
        .unwrap();
    let answer = send(&mut svc, health).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "anonymous /health []");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

fn preflight() -> Request<String> {
    Request::builder()
        .method("OPTIONS")
        .uri("/admin")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "DELETE")
        .body(String::new())
        .unwrap()
}

#[tokio::test]
async fn a_preflight_lookalike_never_reaches_the_handler_without_a_credential() {
    // An axum `any()` route or a proxying fallback would run for anyone who
    // sends OPTIONS with `Access-Control-Request-Method`.
    let mut svc = service(AuthLayer::new(Tokens::default()));
    let answer = send(&mut svc, preflight()).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(www_authenticate(&answer), r#"Bearer realm="api""#);
    assert_eq!(answer.rejection.unwrap().kind(), RejectionKind::Missing);
    assert!(
        !String::from_utf8_lossy(&answer.body).contains("/admin"),
        "the handler ran: {:?}",
        answer.body
    );
}

#[tokio::test]
async fn a_preflight_responder_answers_preflights_without_the_handler_and_uncounted() {
    let layer = AuthLayer::new(Tokens::default()).preflight(|_: &http::request::Parts| {
        Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::ACCESS_CONTROL_ALLOW_METHODS, "GET")
            .body(Bytes::new())
            .unwrap()
    });
    let mut svc = service(layer);
    let answer = send(&mut svc, preflight()).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_eq!(answer.headers[header::ACCESS_CONTROL_ALLOW_METHODS], "GET");
    assert!(answer.body.is_empty());
    // B1: a lockout layer outside counts it neither as a failure nor as a
    // success.
    let rejection = answer.rejection.expect("the preflight carries a rejection");
    assert_eq!(rejection.kind(), RejectionKind::Missing);
    assert!(!rejection.counts_as_failure());
    // A plain OPTIONS without the preflight header is not a preflight.
    let options = Request::builder()
        .method("OPTIONS")
        .uri("/me")
        .body(String::new())
        .unwrap();
    assert_eq!(
        send(&mut svc, options).await.status,
        StatusCode::UNAUTHORIZED
    );
}

// P5
#[tokio::test]
async fn a_query_token_is_removed_before_the_service_sees_the_uri() {
    let layer = AuthLayer::new(Tokens::default())
        .extractor(Extractor::new(Bearer::new()).or(Query::new("access_token")));
    let mut svc = service(layer);
    let req = Request::builder()
        .uri("/me?page=2&access_token=alice-token&x")
        .body(String::new())
        .unwrap();
    let answer = send(&mut svc, req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "alice /me?page=2&x []");
}

// P5
#[tokio::test]
async fn query_tokens_are_ignored_unless_enabled() {
    let mut svc = service(AuthLayer::new(Tokens::default()));
    let req = Request::builder()
        .uri("/me?access_token=alice-token")
        .body(String::new())
        .unwrap();
    assert_eq!(send(&mut svc, req).await.status, StatusCode::UNAUTHORIZED);
}

// P10
#[tokio::test]
async fn the_websocket_token_entry_is_removed_so_only_a_plain_protocol_is_echoed() {
    let layer =
        AuthLayer::new(Tokens::default()).extractor(Extractor::new(WebSocketProtocol::new()));
    let mut svc = service(layer);
    let req = Request::builder()
        .uri("/ws")
        .header(
            header::SEC_WEBSOCKET_PROTOCOL,
            "chat.v1, bearer.alice-token",
        )
        .body(String::new())
        .unwrap();
    let answer = send(&mut svc, req).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "alice /ws [chat.v1]");

    let only_token = Request::builder()
        .uri("/ws")
        .header(header::SEC_WEBSOCKET_PROTOCOL, "bearer.alice-token")
        .body(String::new())
        .unwrap();
    assert_eq!(send(&mut svc, only_token).await.body, "alice /ws []");
}

#[tokio::test]
async fn a_replacement_renderer_answers_and_the_rejection_is_still_attached() {
    let layer = AuthLayer::new(Tokens::default()).renderer(
        |rejection: &AuthRejection, _: &http::request::Parts| {
            Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header(header::CONTENT_TYPE, "application/problem+json")
                .body(Bytes::from(format!(r#"{{"title":"{rejection}"}}"#)))
                .unwrap()
        },
    );
    let mut svc =
        tower::util::BoxCloneService::new(ServiceBuilder::new().layer(layer).service_fn(echo));
    let answer = send(&mut svc, with_bearer("nope")).await;
    assert_eq!(
        answer.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(answer.body, r#"{"title":"the access token is invalid"}"#);
    assert!(answer.rejection.unwrap().counts_as_failure());
}

// P9
#[tokio::test]
async fn grpc_requests_get_trailers_only_statuses() {
    let mut svc = service(AuthLayer::new(Tokens::default()));
    for (token, code) in [
        (None, "16"),
        (Some("nope"), "16"),
        (Some("a b"), "16"),
        (Some("reader"), "7"),
        (Some("down"), "14"),
    ] {
        let mut req = Request::builder()
            .uri("/grpc.health.v1.Health/Check")
            .header(header::CONTENT_TYPE, "application/grpc+proto");
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let answer = send(&mut svc, req.body(String::new()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::OK, "{token:?}");
        assert_eq!(answer.headers["grpc-status"], code, "{token:?}");
        assert!(answer.body.is_empty());
        let message = answer.headers["grpc-message"].to_str().unwrap();
        assert!(!message.is_empty() && !message.contains("nope") && !message.contains("reader"));
    }
}

// L1
#[test]
fn secrets_never_reach_logs_or_responses_only_fingerprints_do() {
    let captured = support::logs::capture();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let canary = "revoked-CANARY-7f3a9c";
    let mut bodies = Vec::new();
    runtime.block_on(async {
        let mut svc = service(AuthLayer::new(Tokens::default()).optional());
        for token in [canary, "CANARY-unknown-7f3a9c", "down-CANARY"] {
            let answer = send(&mut svc, with_bearer(token)).await;
            bodies.push(format!("{:?} {:?}", answer.headers, answer.body));
        }
        let mut malformed = with_bearer("x");
        malformed.headers_mut().insert(
            header::AUTHORIZATION,
            "Bearer CANARY,7f3a9c".parse().unwrap(),
        );
        let answer = send(&mut svc, malformed).await;
        bodies.push(format!("{:?} {:?}", answer.headers, answer.body));
    });

    let logs = captured.text();
    assert!(
        logs.contains("credential rejected"),
        "rejections are logged: {logs}"
    );
    let fingerprint = Credential::new(canary, portcullis::CredentialSource::Bearer)
        .fingerprint()
        .to_string();
    assert!(
        logs.contains(&fingerprint),
        "the fingerprint identifies the credential"
    );
    assert!(
        logs.contains("revoked by operator"),
        "the precise reason is logged"
    );
    assert!(
        !logs.contains("CANARY"),
        "a secret leaked into the logs: {logs}"
    );
    for body in bodies {
        assert!(
            !body.contains("CANARY"),
            "a secret leaked into a response: {body}"
        );
    }
}

/// Checks an RFC 9110 challenge: `Bearer` then comma-separated
/// `name=quoted-string` auth-params, each name at most once.
fn parse_challenge(value: &str) -> Result<Vec<(String, String)>, String> {
    let rest = value.strip_prefix("Bearer ").ok_or("no Bearer scheme")?;
    let bytes = rest.as_bytes();
    let mut params = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let name_end = rest[i..].find('=').ok_or("param without =")? + i;
        let name = &rest[i..name_end];
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("bad name {name:?}"));
        }
        i = name_end + 1;
        if bytes.get(i) != Some(&b'"') {
            return Err("value is not quoted".into());
        }
        i += 1;
        let mut value = String::new();
        loop {
            match bytes.get(i) {
                None => return Err("unterminated quoted-string".into()),
                Some(b'"') => break,
                Some(b'\\') => {
                    let escaped = *bytes.get(i + 1).ok_or("dangling backslash")?;
                    value.push(char::from(escaped));
                    i += 2;
                }
                Some(&b) if b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) => {
                    value.push(char::from(b));
                    i += 1;
                }
                Some(b) => return Err(format!("byte {b:#x} in quoted-string")),
            }
        }
        i += 1;
        if params.iter().any(|(n, _)| n == name) {
            return Err(format!("{name} twice"));
        }
        params.push((name.to_owned(), value));
        if i < bytes.len() {
            if !rest[i..].starts_with(", ") {
                return Err("params not separated by a comma".into());
            }
            i += 2;
        }
    }
    Ok(params)
}

proptest! {
    // P7
    #[test]
    fn the_challenge_always_parses_whatever_the_realm_and_scope(realm in any::<String>(), scope in any::<String>()) {
        let renderer = DefaultRenderer::new().realm(&realm);
        let (parts, ()) = Request::new(()).into_parts();
        for rejection in [
            AuthRejection::new(RejectionKind::Missing),
            AuthRejection::new(RejectionKind::Malformed),
            AuthRejection::new(RejectionKind::Invalid),
            AuthRejection::new(RejectionKind::Expired),
            AuthRejection::new(RejectionKind::InsufficientScope).with_scope(scope.clone()),
        ] {
            let res = portcullis::reject::Renderer::render(&renderer, &rejection, &parts);
            let value = res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
            let params = parse_challenge(value).map_err(|e| TestCaseError::fail(format!("{e}: {value}")))?;
            prop_assert_eq!(&params[0].0, "realm");
            let kept: String = realm.chars().filter(|c| matches!(c, ' ' | '\t' | '!'..='~')).collect();
            prop_assert_eq!(&params[0].1, &kept);
            let has_error = params.iter().any(|(n, _)| n == "error");
            prop_assert_eq!(has_error, rejection.kind() != RejectionKind::Missing);
        }
    }
}

#[tokio::test]
async fn works_as_a_boxed_tower_service_with_errors_passed_through() {
    let failing =
        service_fn(|_: Request<String>| async { Err::<Response<String>, BoxError>("boom".into()) });
    let mut svc = ServiceBuilder::new()
        .layer(AuthLayer::new(Tokens::default()))
        .service(failing);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(with_bearer("alice-token"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "boom");
}

/// Answers only at once: its future must never be polled.
struct OnlyNow;

impl portcullis::Validator for OnlyNow {
    type Identity = User;

    async fn validate(&self, _: &Credential) -> Result<User, ValidationError> {
        panic!("AuthLayer asks validate_now first")
    }

    fn validate_now(&self, credential: &Credential) -> Option<Result<User, ValidationError>> {
        Some(match credential.secret() {
            "alice-token" => Ok(User("alice".into())),
            _ => Err(ValidationError::invalid()),
        })
    }
}

#[tokio::test]
async fn an_immediate_answer_is_used_without_a_future() {
    let svc = ServiceBuilder::new()
        .layer(AuthLayer::new(OnlyNow))
        .service(service_fn(|req: Request<String>| async move {
            let user = req.extensions().get::<User>().cloned();
            Ok::<_, Infallible>(Response::new(format!("{user:?}")))
        }));
    let request = |token: &str| {
        Request::get("/")
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(String::new())
            .unwrap()
    };
    let ok = svc.clone().oneshot(request("alice-token")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    let body = ok.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, r#"Some(User("alice"))"#);
    let refused = svc.clone().oneshot(request("wrong")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(refused.extensions().get::<AuthRejection>().is_some());
}
