//! Behaviour of the scope-requiring layer.

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use portcullis::{
    reject::{AuthRejection, RejectionKind},
    scope::RequireScopeLayer,
    validate::ApiKeyIdentity,
};
use tower::{Layer, Service, ServiceExt, service_fn};

type Body = http_body_util::Full<Bytes>;

/// The inner service: counts calls and answers 200 "ok".
fn inner(
    calls: Arc<AtomicUsize>,
) -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> + Clone {
    service_fn(move |_req: Request<()>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Body::from("ok"))) }
    })
}

fn request_with(identity: Option<ApiKeyIdentity>) -> Request<()> {
    let mut req = Request::new(());
    if let Some(identity) = identity {
        req.extensions_mut().insert(identity);
    }
    req
}

#[tokio::test]
async fn an_identity_with_the_scope_reaches_the_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequireScopeLayer::<ApiKeyIdentity>::new("admin").layer(inner(calls.clone()));
    let id = ApiKeyIdentity::new("root").with_scopes(["read", "admin"]);
    let res = svc.oneshot(request_with(Some(id))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.extensions().get::<AuthRejection>().is_none());
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// P7: insufficient_scope → 403 with scope="…", and the rejection is attached.
#[tokio::test]
async fn a_missing_scope_is_a_403_naming_the_scope() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequireScopeLayer::<ApiKeyIdentity>::new("admin").layer(inner(calls.clone()));
    let id = ApiKeyIdentity::new("bot").with_scopes(["read"]);
    let res = svc.oneshot(request_with(Some(id))).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="api", error="insufficient_scope", error_description="the access token lacks the required scope", scope="admin""#
    );
    let rejection = res.extensions().get::<AuthRejection>().unwrap();
    assert_eq!(rejection.kind(), RejectionKind::InsufficientScope);
    assert_eq!(rejection.required_scope(), Some("admin"));
    assert!(!rejection.counts_as_failure());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// P7: several required scopes are announced space-separated, once.
#[tokio::test]
async fn every_required_scope_must_be_present() {
    let calls = Arc::new(AtomicUsize::new(0));
    let layer = RequireScopeLayer::<ApiKeyIdentity>::all(["read", "write"]);
    let svc = layer.layer(inner(calls.clone()));

    let res = svc
        .clone()
        .oneshot(request_with(Some(
            ApiKeyIdentity::new("a").with_scopes(["read"]),
        )))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let challenge = res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(challenge.ends_with(r#"scope="read write""#), "{challenge}");
    assert_eq!(challenge.matches("scope=").count(), 1, "{challenge}");

    let both = ApiKeyIdentity::new("b").with_scopes(["write", "read"]);
    let res = svc.oneshot(request_with(Some(both))).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// P7 / P9: gRPC clients get PERMISSION_DENIED.
#[tokio::test]
async fn a_grpc_request_missing_a_scope_gets_permission_denied() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequireScopeLayer::<ApiKeyIdentity>::new("admin").layer(inner(calls.clone()));
    let mut req = request_with(Some(ApiKeyIdentity::new("bot")));
    req.headers_mut()
        .insert(header::CONTENT_TYPE, "application/grpc".parse().unwrap());
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "7");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// P6: no identity at all is "no credential": 401 with a bare challenge.
#[tokio::test]
async fn a_request_without_an_identity_is_a_401_missing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequireScopeLayer::<ApiKeyIdentity>::new("admin").layer(inner(calls.clone()));
    let res = svc.oneshot(request_with(None)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="api""#
    );
    let rejection = res.extensions().get::<AuthRejection>().unwrap();
    assert_eq!(rejection.kind(), RejectionKind::Missing);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn scopes_compare_case_sensitively() {
    let calls = Arc::new(AtomicUsize::new(0));
    let svc = RequireScopeLayer::<ApiKeyIdentity>::new("admin").layer(inner(calls.clone()));
    let id = ApiKeyIdentity::new("bot").with_scopes(["Admin", "admin:read"]);
    let res = svc.oneshot(request_with(Some(id))).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_custom_renderer_answers_rejections() {
    let calls = Arc::new(AtomicUsize::new(0));
    let renderer = |rejection: &AuthRejection, _: &http::request::Parts| {
        Response::builder()
            .status(StatusCode::FORBIDDEN)
            .body(Bytes::from(format!(
                "need {}",
                rejection.required_scope().unwrap_or("-")
            )))
            .unwrap()
    };
    let svc = RequireScopeLayer::<ApiKeyIdentity>::new("admin")
        .renderer(renderer)
        .layer(inner(calls.clone()));
    let res = svc
        .oneshot(request_with(Some(ApiKeyIdentity::new("bot"))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert!(res.extensions().get::<AuthRejection>().is_some());
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "need admin"
    );
}
