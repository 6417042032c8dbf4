//! axum integration: the `Identity` extractor, query tokens and axum's
//! `OriginalUri`.
#![cfg(feature = "axum")]

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, OriginalUri, Request as AxumRequest, State},
    middleware::{self, Next},
    response::Response,
    routing::get,
};
use http::{Request, StatusCode, Uri, header};
use http_body_util::BodyExt;
use portcullis::{
    AuthLayer, Credential, ValidationError,
    extract::{Bearer, Extractor, Query},
    integration::axum::Identity,
    lockout::{LockoutLayer, Policy},
};
use tower::ServiceExt;

#[derive(Clone, Debug)]
struct User(String);

#[derive(Clone, Debug)]
struct Admin;

async fn validator(credential: Credential) -> Result<User, ValidationError> {
    match credential.secret() {
        "alice-token" => Ok(User("alice".into())),
        _ => Err(ValidationError::invalid()),
    }
}

async fn me(Identity(user): Identity<User>) -> String {
    user.0
}

async fn maybe(user: Option<Identity<User>>) -> String {
    user.map_or("anonymous".into(), |Identity(u)| u.0)
}

async fn admin(Identity(_): Identity<Admin>) -> &'static str {
    "admin"
}

fn app() -> Router {
    let authed = Router::new()
        .route("/me", get(me))
        .route("/maybe", get(maybe))
        .route("/admin", get(admin))
        .layer(AuthLayer::new(validator).optional());
    let bare = Router::new()
        .route("/bare", get(me))
        .route("/bare-maybe", get(maybe));
    authed.merge(bare)
}

async fn get_(uri: &str, token: Option<&str>) -> (StatusCode, http::HeaderMap, String) {
    let mut req = Request::get(uri);
    if let Some(token) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let res = app()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let body = String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
    (parts.status, parts.headers, body)
}

#[tokio::test]
async fn the_identity_reaches_the_handler() {
    assert_eq!(get_("/me", Some("alice-token")).await.2, "alice");
    assert_eq!(get_("/maybe", Some("alice-token")).await.2, "alice");
}

#[tokio::test]
async fn an_anonymous_request_is_a_401_challenge_for_identity_and_none_for_option() {
    let (status, headers, _) = get_("/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Bearer realm="api""#);
    assert_eq!(get_("/maybe", None).await.2, "anonymous");
}

#[tokio::test]
async fn a_route_without_the_layer_is_a_clear_500_not_a_401() {
    for uri in ["/bare", "/bare-maybe"] {
        let (status, _, body) = get_(uri, Some("alice-token")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}");
        assert!(body.contains("not behind an AuthLayer"), "{body}");
        assert!(body.contains("User"), "the message names the type: {body}");
    }
}

#[tokio::test]
async fn asking_for_another_identity_type_names_it() {
    let (status, _, body) = get_("/admin", Some("alice-token")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("Admin"), "{body}");
}

/// The URIs a logging middleware inside the router saw.
#[derive(Clone, Default)]
struct AccessLog(Arc<Mutex<Vec<String>>>);

/// Records `OriginalUri`, as request-logging middleware in a router does.
async fn log_original_uri(State(log): State<AccessLog>, req: AxumRequest, next: Next) -> Response {
    let OriginalUri(original) = req.extensions().get::<OriginalUri>().unwrap().clone();
    log.0.lock().unwrap().push(original.to_string());
    next.run(req).await
}

async fn events(OriginalUri(original): OriginalUri, uri: Uri) -> String {
    format!("{original} {uri}")
}

/// A nested router whose handler and logging middleware read `OriginalUri`,
/// behind an `AuthLayer` that accepts query tokens.
fn query_app(log: AccessLog) -> Router {
    let api = Router::new().route("/events", get(events));
    let auth = AuthLayer::new(validator)
        .optional()
        .extractor(Extractor::new(Bearer::new()).or(Query::new("access_token")));
    Router::new()
        .nest("/api", api)
        .layer(middleware::from_fn_with_state(log, log_original_uri))
        .layer(auth)
}

#[tokio::test]
async fn a_query_token_never_reaches_original_uri() {
    // P5, L1: axum records `OriginalUri` before `Router::layer` runs; the
    // token must be gone from it too, for handlers, nested routers and logs.
    let log = AccessLog::default();
    let req = Request::get("/api/events?since=7&access_token=alice-token&page=2")
        .body(Body::empty())
        .unwrap();
    let res = query_app(log.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "/api/events?since=7&page=2 /events?since=7&page=2");
    assert_eq!(*log.0.lock().unwrap(), ["/api/events?since=7&page=2"]);
}

#[tokio::test]
async fn an_anonymous_request_keeps_its_query() {
    // P5: only the token parameter is removed.
    let log = AccessLog::default();
    let req = Request::get("/api/events?since=7")
        .body(Body::empty())
        .unwrap();
    let res = query_app(log.clone()).oneshot(req).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "/api/events?since=7 /events?since=7");
    assert_eq!(*log.0.lock().unwrap(), ["/api/events?since=7"]);
}

#[tokio::test]
async fn anonymous_requests_refused_by_identity_never_count_as_failures() {
    // B1: `Identity` answers an anonymous request 401 with a `Missing`
    // rejection, which the lockout in front does not count.
    let policy = Policy::builder().max_failures(3).build().unwrap();
    let lockout = LockoutLayer::new(policy);
    let tracker = lockout.tracker().clone();
    let app = Router::new()
        .route("/me", get(me))
        .layer(AuthLayer::new(validator).optional())
        .layer(lockout);
    let peer: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let call = |token: Option<&str>| {
        let mut req = Request::get("/me").extension(ConnectInfo(peer));
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        app.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let client: IpAddr = peer.ip();

    for _ in 0..10 {
        let res = call(None).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(tracker.failures(&client), 0);

    // Wrong tokens from the same client do count: the lockout is watching
    // (distinct ones: a repeated wrong token counts once, B14).
    for token in ["wrong-1", "wrong-2", "wrong-3"] {
        let res = call(Some(token)).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = call(None).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}
