//! `Stack`: the login route set up in one call, a stricter rate limit for
//! one route, and the warning for a login route that is not public.

use axum::{Extension, Router, body::Body, response::IntoResponse, routing::post};
use portcullis::{
    AuthLayer, Credential, ValidationError,
    body_key::{BodyField, BodyKeyLayer},
    cross_origin::{CrossOriginLayer, CrossOriginProtection},
    rate_limit::RateLimitLayer,
    stack::Stack,
};

use super::*;

fn validate(c: Credential) -> impl Future<Output = Result<(), ValidationError>> {
    let ok = c.secret() == "alice-token";
    async move {
        if ok {
            Ok(())
        } else {
            Err(ValidationError::invalid())
        }
    }
}

/// `POST /login`: "wonderland" is alice's password; counts its calls.
fn login_router(calls: &Arc<AtomicUsize>) -> Router {
    let calls = Arc::clone(calls);
    let login = move |body: String| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if body.ends_with("password=wonderland") {
                (StatusCode::OK, Extension(Succeeded)).into_response()
            } else {
                (StatusCode::UNAUTHORIZED, Extension(Failed::new())).into_response()
            }
        }
    };
    Router::new().route("/login", post(login))
}

fn attempt(from: u8, site: &str, form: &str) -> Request<Body> {
    Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header("sec-fetch-site", site)
        .extension(PeerAddr(([192, 0, 2, from], 1).into()))
        .body(Body::from(form.to_owned()))
        .unwrap()
}

/// Alice's right password, as a login form.
const ALICE: &str = "username=alice&password=wonderland";

async fn send(app: &Router, req: Request<Body>) -> Response<Body> {
    app.clone().oneshot(req).await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn login_route_makes_the_route_public_keys_the_account_and_refuses_cross_site_posts() {
    // B13, B17, C1: one call sets the three things a login route needs.
    support::logs::capture();
    let calls = Arc::new(AtomicUsize::new(0));
    let per_account = Policy::builder().max_failures(2).build().unwrap();
    let lockout = LockoutLayer::builder(Policy::default())
        .also_key(BodyField::key, per_account)
        .build()
        .unwrap();
    let app = login_router(&calls).layer(
        Stack::new(AuthLayer::new(validate))
            .lockout(lockout)
            .login_route("/login"),
    );

    // Public: the right password reaches the handler without a credential.
    let res = send(&app, attempt(1, "same-origin", ALICE)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // The account is the key, trimmed and lowercased, from any address.
    for (from, form) in [
        (2, "username=Alice&password=a"),
        (3, "username=%20alice&password=b"),
    ] {
        let res = send(&app, attempt(from, "same-origin", form)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = send(&app, attempt(4, "same-origin", ALICE)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Login CSRF: a cross-site post is refused before anything counts.
    let res = send(&app, attempt(5, "cross-site", "username=bob&password=x")).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(rejection_kind(&res), Some(RejectionKind::CrossOrigin));
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    // Other routes still need a credential.
    let res = send(
        &app,
        Request::post("/elsewhere")
            .extension(PeerAddr(([192, 0, 2, 6], 1).into()))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(rejection_kind(&res), Some(RejectionKind::Missing));
}

fn from_partner(form: &str) -> Request<Body> {
    let mut req = attempt(7, "cross-site", form);
    req.headers_mut().insert(
        header::ORIGIN,
        header::HeaderValue::from_static("https://partner.example"),
    );
    req
}

#[tokio::test(start_paused = true)]
async fn a_cross_origin_layer_beside_login_route_is_asked_first_and_replaces_nothing() {
    // C1, B17: the application's own check and the login route's are both
    // kept, in either order of the calls. Before, whichever call came last
    // replaced the other: a check of the API routes only, given after
    // `login_route`, left the login form open to login CSRF.
    let calls = Arc::new(AtomicUsize::new(0));
    let api_only = CrossOriginLayer::new(CrossOriginProtection::new())
        .when(|req| req.uri.path().starts_with("/api/"));
    let app = login_router(&calls).layer(
        Stack::new(AuthLayer::new(validate))
            .login_route("/login")
            .cross_origin(api_only),
    );
    let res = send(&app, attempt(1, "cross-site", ALICE)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(rejection_kind(&res), Some(RejectionKind::CrossOrigin));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // A check that trusts the application's other front end decides for
    // the requests it checks, the login route's included.
    let trusting = CrossOriginProtection::builder()
        .trust_origin("https://partner.example")
        .build()
        .unwrap();
    let app = login_router(&calls).layer(
        Stack::new(AuthLayer::new(validate))
            .cross_origin(CrossOriginLayer::new(trusting))
            .login_route("/login"),
    );
    let res = send(&app, from_partner(ALICE)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Any other site is still refused on the login route.
    let res = send(&app, attempt(2, "cross-site", ALICE)).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn login_route_keeps_the_public_routes_already_given() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = login_router(&calls)
        .route("/health", axum::routing::get(|| async { "ok" }))
        .layer(
            Stack::new(AuthLayer::new(validate).public(|req| req.uri.path() == "/health"))
                .lockout(LockoutLayer::new(Policy::default()))
                .login_route("/login"),
        );
    let health = Request::get("/health")
        .extension(PeerAddr(([192, 0, 2, 1], 1).into()))
        .body(Body::empty())
        .unwrap();
    assert_eq!(send(&app, health).await.status(), StatusCode::OK);
    let res = send(&app, attempt(1, "same-origin", ALICE)).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn route_rate_limit_limits_its_route_only() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = login_router(&calls)
        .route("/page", axum::routing::get(|| async { "hi" }))
        .layer(
            Stack::new(AuthLayer::new(validate).public(|req| req.uri.path() == "/page"))
                .rate_limit(RateLimitLayer::builder().per_second(100).build().unwrap())
                .route_rate_limit(
                    "/login",
                    RateLimitLayer::builder().per_minute(2).build().unwrap(),
                )
                .login_route("/login"),
        );
    let page = || {
        Request::get("/page")
            .extension(PeerAddr(([192, 0, 2, 1], 1).into()))
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..2 {
        let res = send(&app, attempt(1, "same-origin", ALICE)).await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = send(&app, attempt(1, "same-origin", ALICE)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(rejection_kind(&res), Some(RejectionKind::RateLimited));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // The general limit is the only one on other routes.
    for _ in 0..10 {
        assert_eq!(send(&app, page()).await.status(), StatusCode::OK);
    }
    // The login route's allowance comes back with time.
    advance(Duration::from_secs(30)).await;
    let res = send(&app, attempt(1, "same-origin", ALICE)).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_sign_in_refused_for_a_missing_credential_is_logged_once() {
    // B17: the login route was forgotten in `AuthLayer::public`; the right
    // password gets a bare 401, and the log says why, once.
    let logs = support::logs::capture();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = login_router(&calls).layer(
        Stack::new(AuthLayer::new(validate))
            .lockout(LockoutLayer::new(Policy::default()))
            .body_key(BodyKeyLayer::new("username", |req| {
                req.uri.path() == "/login"
            })),
    );
    for from in 1..=2 {
        let res = send(&app, attempt(from, "same-origin", ALICE)).await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(rejection_kind(&res), Some(RejectionKind::Missing));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let text = logs.text();
    let warning = "its route is not public";
    assert_eq!(text.matches(warning).count(), 1, "{text}");
    assert!(
        text.contains("path=\"/login\"") || text.contains("path=/login"),
        "{text}"
    );
}
