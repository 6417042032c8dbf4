//! Cross-origin protection (C1): on by default in `AuthLayer` for cookie
//! credentials, and configured in a layer of its own, which also protects
//! public routes.
#![cfg(feature = "cookie")]

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, combinators::UnsyncBoxBody};
use portcullis::BoxError;
use portcullis::{
    AuthLayer, AuthRejection, Credential, PeerAddr, ValidationError,
    cross_origin::{CrossOriginLayer, CrossOriginProtection},
    extract::{Bearer, Cookie, Extractor},
    lockout::{LockoutLayer, Policy},
    reject::RejectionKind,
};
use tower::{Layer, ServiceBuilder, ServiceExt, util::BoxCloneService};

type Svc = BoxCloneService<Request<String>, Response<UnsyncBoxBody<Bytes, BoxError>>, Infallible>;

/// `AuthLayer` (session cookie or bearer token, both "alice-token") behind
/// a lockout of one failure, behind a `CrossOriginLayer` with `protection`
/// when there is one; counts validator calls.
fn app(
    protection: Option<CrossOriginProtection>,
) -> (
    Svc,
    Arc<AtomicUsize>,
    portcullis::lockout::Tracker<std::net::IpAddr>,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let validate = move |c: Credential| {
        counter.fetch_add(1, Ordering::SeqCst);
        let ok = c.secret() == "alice-token";
        async move {
            if ok {
                Ok(())
            } else {
                Err(ValidationError::invalid())
            }
        }
    };
    let auth = AuthLayer::new(validate)
        .extractor(Extractor::new(Bearer::new()).or(Cookie::new("session")));
    let lockout = LockoutLayer::new(Policy::builder().max_failures(1).build().unwrap());
    let tracker = lockout.tracker().clone();
    let svc =
        ServiceBuilder::new()
            .layer(lockout)
            .layer(auth)
            .service_fn(|_: Request<String>| async {
                Ok::<_, Infallible>(Response::new("done".to_owned()))
            });
    let svc = match protection {
        Some(protection) => BoxCloneService::new(
            CrossOriginLayer::new(protection)
                .layer(svc)
                .map_response(|res| res.map(|body| body.boxed_unsync())),
        ),
        None => BoxCloneService::new(svc.map_response(|res| res.map(|body| body.boxed_unsync()))),
    };
    (svc, calls, tracker)
}

fn post(headers: &[(&str, &str)]) -> Request<String> {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/logout")
        .header(header::HOST, "app.example")
        .extension(PeerAddr("192.0.2.1:1000".parse().unwrap()));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    req.body(String::new()).unwrap()
}

const COOKIE: (&str, &str) = ("cookie", "session=alice-token");

#[tokio::test]
async fn c1_a_cross_site_post_with_the_session_cookie_is_refused_403_and_not_counted() {
    // C1
    let (svc, calls, tracker) = app(None);
    for site in ["cross-site", "same-site"] {
        let res = svc
            .clone()
            .oneshot(post(&[
                COOKIE,
                ("sec-fetch-site", site),
                ("origin", "https://evil.example"),
            ]))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{site}");
        assert_eq!(
            res.extensions()
                .get::<AuthRejection>()
                .map(AuthRejection::kind),
            Some(RejectionKind::CrossOrigin)
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "the validator never ran");
    assert_eq!(tracker.stats().failures, 0, "not a failed attempt");
    // The same request from the site itself goes through.
    let res = svc
        .clone()
        .oneshot(post(&[
            COOKIE,
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://app.example"),
        ]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn c1_without_sec_fetch_site_the_origin_is_compared_with_the_host() {
    // C1
    let (svc, _, _) = app(None);
    let status = |headers: &'static [(&'static str, &'static str)]| {
        let svc = svc.clone();
        async move { svc.oneshot(post(headers)).await.unwrap().status() }
    };
    assert_eq!(
        status(&[COOKIE, ("origin", "https://app.example")]).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&[COOKIE, ("origin", "https://evil.example")]).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&[COOKIE, ("origin", "null")]).await,
        StatusCode::FORBIDDEN
    );
    // Neither header: not a browser (curl, a server), or an old browser's
    // same-origin request.
    assert_eq!(status(&[COOKIE]).await, StatusCode::OK);
    assert_eq!(
        status(&[COOKIE, ("sec-fetch-site", "none")]).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn c1_safe_methods_and_bearer_tokens_are_not_checked() {
    // C1
    let (svc, _, _) = app(None);
    let mut get = post(&[COOKIE, ("sec-fetch-site", "cross-site")]);
    *get.method_mut() = Method::GET;
    assert_eq!(
        svc.clone().oneshot(get).await.unwrap().status(),
        StatusCode::OK
    );
    // A bearer token is never sent by the browser on its own.
    let bearer = post(&[
        ("authorization", "Bearer alice-token"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "https://spa.example"),
    ]);
    assert_eq!(
        svc.clone().oneshot(bearer).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn c1_a_cross_site_websocket_handshake_with_the_session_cookie_is_refused() {
    // C1: a WebSocket handshake is a GET that opens a connection with the
    // user's cookie (cross-site WebSocket hijacking): checked like a POST.
    let (svc, calls, _) = app(None);
    let handshake = |headers: &[(&str, &str)]| {
        let mut request = post(headers);
        *request.method_mut() = Method::GET;
        request
    };
    let upgrade = ("upgrade", "WebSocket");
    for refused in [
        handshake(&[COOKIE, upgrade, ("origin", "https://evil.example")]),
        handshake(&[
            COOKIE,
            ("upgrade", "h2c, websocket"),
            ("sec-fetch-site", "cross-site"),
        ]),
    ] {
        let response = svc.clone().oneshot(refused).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0, "refused before validation");
    for allowed in [
        handshake(&[COOKIE, upgrade, ("origin", "https://app.example")]),
        handshake(&[COOKIE, upgrade, ("sec-fetch-site", "same-origin")]),
        // Not a browser: no Origin, no Sec-Fetch-Site.
        handshake(&[COOKIE, upgrade]),
    ] {
        let response = svc.clone().oneshot(allowed).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn c1_trusted_origins_pass_and_the_check_can_be_turned_off() {
    // C1
    let trusted = CrossOriginProtection::builder()
        .trust_origin("https://admin.example")
        .build()
        .unwrap();
    let (svc, _, _) = app(Some(trusted));
    let from = |origin: &'static str| {
        post(&[COOKIE, ("sec-fetch-site", "cross-site"), ("origin", origin)])
    };
    assert_eq!(
        svc.clone()
            .oneshot(from("https://admin.example"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        svc.clone()
            .oneshot(from("https://evil.example"))
            .await
            .unwrap()
            .status(),
        StatusCode::FORBIDDEN
    );
    assert!(
        CrossOriginProtection::builder()
            .trust_origin("https://a.example/path")
            .build()
            .is_err()
    );

    let (svc, _, _) = app(Some(CrossOriginProtection::disabled()));
    assert_eq!(
        svc.oneshot(from("https://evil.example"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn c1_the_layer_protects_a_public_login_form_and_answers_grpc_with_permission_denied() {
    // C1: login CSRF, on a route without a credential.
    let svc = ServiceBuilder::new()
        .layer(CrossOriginLayer::new(CrossOriginProtection::new()))
        .service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    let mut login = post(&[("sec-fetch-site", "cross-site")]);
    *login.uri_mut() = "/login".parse().unwrap();
    assert_eq!(
        svc.clone().oneshot(login).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let login = post(&[("sec-fetch-site", "same-origin")]);
    assert_eq!(
        svc.clone().oneshot(login).await.unwrap().status(),
        StatusCode::OK
    );
    let grpc = post(&[
        ("sec-fetch-site", "cross-site"),
        ("content-type", "application/grpc"),
    ]);
    let res = svc.oneshot(grpc).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "7");
}

#[tokio::test]
async fn c1_the_layer_with_when_checks_only_the_requests_it_selects() {
    // C1: the login form is checked; a cross-origin API call elsewhere (a
    // webhook a partner posts) is not.
    let svc = ServiceBuilder::new()
        .layer(
            CrossOriginLayer::new(CrossOriginProtection::new())
                .when(|req| req.uri.path() == "/login"),
        )
        .service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    let cross_site = |path: &str| {
        let mut req = post(&[("sec-fetch-site", "cross-site")]);
        *req.uri_mut() = path.parse().unwrap();
        req
    };
    let res = svc.clone().oneshot(cross_site("/login")).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        res.extensions()
            .get::<AuthRejection>()
            .map(AuthRejection::kind),
        Some(RejectionKind::CrossOrigin)
    );
    let res = svc.clone().oneshot(cross_site("/webhook")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Same-origin requests to the selected route still pass.
    let mut login = post(&[("sec-fetch-site", "same-origin")]);
    *login.uri_mut() = "/login".parse().unwrap();
    assert_eq!(svc.oneshot(login).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn c1_the_first_cross_origin_layer_that_checks_a_request_decides() {
    // C1: a layer around everything that trusts an origin decides for the
    // strict one on the login route; a request it leaves out is checked by
    // the login route's own layer.
    let app = |outer_checks_login: bool| {
        let trusted = CrossOriginProtection::builder()
            .trust_origin("https://admin.example")
            .build()
            .unwrap();
        ServiceBuilder::new()
            .layer(
                CrossOriginLayer::new(trusted)
                    .when(move |req| outer_checks_login || req.uri.path() != "/login"),
            )
            .layer(
                CrossOriginLayer::new(CrossOriginProtection::new())
                    .when(|req| req.uri.path() == "/login"),
            )
            .service_fn(|_: Request<String>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            })
    };
    let login = |origin: &'static str| {
        let mut req = post(&[("sec-fetch-site", "cross-site"), ("origin", origin)]);
        *req.uri_mut() = "/login".parse().unwrap();
        req
    };
    let status = |outer_checks_login: bool, origin: &'static str| async move {
        app(outer_checks_login)
            .oneshot(login(origin))
            .await
            .unwrap()
            .status()
    };
    assert_eq!(status(true, "https://admin.example").await, StatusCode::OK);
    assert_eq!(
        status(true, "https://evil.example").await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(false, "https://admin.example").await,
        StatusCode::FORBIDDEN
    );
}
