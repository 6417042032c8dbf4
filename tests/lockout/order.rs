//! Layer order (B17).

use axum::{Router, body::Body, routing::get};
use portcullis::{AuthLayer, Credential, ValidationError, stack::Stack};

use super::*;

// ---------------------------------------------------------------- B17

fn validate(c: Credential) -> impl Future<Output = Result<(), ValidationError>> {
    let ok = c.secret() == "good-token";
    async move {
        if ok {
            Ok(())
        } else {
            Err(ValidationError::invalid())
        }
    }
}

fn bearer(client: &str, token: &str) -> Request<Body> {
    Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .extension(PeerAddr(format!("{client}:1000").parse().unwrap()))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn b17_a_lockout_inside_auth_layer_is_detected_and_logged_once() {
    // B17: the README's order written as Router::layer calls puts the
    // lockout inside; it then never sees a bad token.
    let logs = support::logs::capture();
    let lockout = LockoutLayer::new(max(2));
    let tracker = lockout.tracker().clone();
    let app = Router::new()
        .route("/", get(|| async { "hi" }))
        .layer(lockout)
        .layer(AuthLayer::new(validate));
    for n in 0..8 {
        let res = app
            .clone()
            .oneshot(bearer("192.0.2.40", &format!("bad-{n}")))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    for _ in 0..3 {
        let res = app
            .clone()
            .oneshot(bearer("192.0.2.40", "good-token"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(tracker.stats().failures, 0, "inside, it counts nothing");
    let warnings = logs
        .text()
        .matches("a LockoutLayer sees requests that an AuthLayer has already authenticated")
        .count();
    assert_eq!(warnings, 1, "{}", logs.text());

    // In the same test: the captured logs are the whole binary's.
    a_lockout_inside_on_one_route_is_detected_after_many_requests_elsewhere(&logs).await;
    a_lockout_on_a_public_login_route_inside_auth_layer_counts_and_is_not_warned_about(&logs).await;
}

/// B17: a lockout on a public route (a login form) inside the AuthLayer is
/// a valid layout: the handler's refusals are counted, and nothing is
/// logged about the order.
async fn a_lockout_on_a_public_login_route_inside_auth_layer_counts_and_is_not_warned_about(
    logs: &support::logs::Logs,
) {
    let warnings = || {
        logs.text()
            .matches("a LockoutLayer sees requests that an AuthLayer has already authenticated")
            .count()
    };
    let before = warnings();
    let lockout = LockoutLayer::new(max(2));
    let tracker = lockout.tracker().clone();
    let app = Router::new()
        .route(
            "/login",
            axum::routing::post(|| async { StatusCode::UNAUTHORIZED }).layer(lockout),
        )
        .layer(AuthLayer::new(validate).public(|parts| parts.uri.path() == "/login"));
    let login = || {
        Request::post("/login")
            .extension(PeerAddr("192.0.2.43:1000".parse().unwrap()))
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..2 {
        let res = app.clone().oneshot(login()).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app.clone().oneshot(login()).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(tracker.stats().locked_out, 1);
    assert_eq!(warnings(), before, "{}", logs.text());
}

#[tokio::test(start_paused = true)]
async fn b17_the_stack_builder_puts_the_lockout_outside_auth_layer() {
    // B17
    let lockout = LockoutLayer::new(max(2));
    let tracker = lockout.tracker().clone();
    let app = Router::new()
        .route("/", get(|| async { "hi" }))
        .layer(Stack::new(AuthLayer::new(validate)).lockout(lockout));
    for n in 0..2 {
        let res = app
            .clone()
            .oneshot(bearer("192.0.2.41", &format!("bad-{n}")))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(tracker.stats().failures, 2);
    let res = app
        .clone()
        .oneshot(bearer("192.0.2.41", "good-token"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// B17: the lockout guards one route inside the AuthLayer, and the
/// application served thousands of requests on other routes before anyone
/// calls it: it still finds out, and says so once.
async fn a_lockout_inside_on_one_route_is_detected_after_many_requests_elsewhere(
    logs: &support::logs::Logs,
) {
    let app = Router::new()
        .route("/", get(|| async { "hi" }))
        .route(
            "/guarded",
            get(|| async { "guarded" }).layer(LockoutLayer::new(max(2))),
        )
        .layer(AuthLayer::new(validate));
    for _ in 0..5_000 {
        let res = app
            .clone()
            .oneshot(bearer("192.0.2.42", "good-token"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let guarded = || {
        let mut request = bearer("192.0.2.42", "good-token");
        *request.uri_mut() = "/guarded".parse().unwrap();
        request
    };
    for _ in 0..200 {
        let res = app.clone().oneshot(guarded()).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let warnings = logs
        .text()
        .matches("a LockoutLayer sees requests that an AuthLayer has already authenticated")
        .count();
    assert_eq!(warnings, 2, "{}", logs.text());
}
