//! S3: the refresh cookie's attributes; the refresh and sign-out endpoints
//! behind cross-origin protection (C1) and the lockout (B1, B14); L1, L3.

use std::time::Duration;

use portcullis::{
    cross_origin::{CrossOriginLayer, CrossOriginProtection},
    lockout::{LockoutLayer, Policy, Tracker},
    reject::RejectionKind,
};
use tower::Layer;

use super::*;

fn by_client(parts: &Parts) -> Result<String, AuthRejection> {
    parts
        .headers
        .get("x-client")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| AuthRejection::new(RejectionKind::NoClientAddress))
}

type ByClient = fn(&Parts) -> Result<String, AuthRejection>;

/// The endpoints behind a lockout.
type Locked =
    BoxCloneService<Request<String>, Response<portcullis::ResponseBody<Full<Bytes>>>, Infallible>;

/// The endpoints behind a lockout of `max_failures` per client.
fn locked(sessions: Sessions, max_failures: u32) -> (Locked, Tracker<String>) {
    let policy = Policy::builder()
        .max_failures(max_failures)
        .build()
        .unwrap();
    let layer = LockoutLayer::builder(policy)
        .key(by_client as ByClient)
        .build()
        .unwrap();
    let tracker = layer.tracker().clone();
    (
        BoxCloneService::new(layer.layer(endpoints(sessions))),
        tracker,
    )
}

async fn sign_in(app: &Endpoints) -> String {
    let mut login = post("/auth/login", None);
    *login.body_mut() = "alice:wonderland".to_owned();
    let (status, headers, _) = read(app.clone().oneshot(login).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    cookie_token(&headers)
}

#[tokio::test(start_paused = true)]
async fn sign_in_answers_json_and_a_strict_secure_http_only_cookie_for_the_auth_path() {
    // S3
    let (sessions, _) = sessions(Duration::from_secs(5));
    let app = endpoints(sessions);
    let mut login = post("/auth/login", None);
    *login.body_mut() = "alice:wonderland".to_owned();
    let (status, headers, body) = read(app.clone().oneshot(login).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 900);
    assert!(json["access_token"].as_str().unwrap().starts_with("eyJ"));
    assert_eq!(json.as_object().unwrap().len(), 3, "{json}");
    let token = cookie_token(&headers);
    assert!(
        !body.contains(&token),
        "the refresh token travels in the cookie only"
    );
    assert_eq!(
        headers[header::SET_COOKIE],
        format!("refresh={token}; HttpOnly; SameSite=Strict; Secure; Path=/auth; Max-Age=604800")
    );

    // The refresh sets its successor the same way.
    let response = app
        .clone()
        .oneshot(post("/auth/refresh", Some(&format!("refresh={token}"))))
        .await
        .unwrap();
    let (status, headers, body) = read(response).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(r#""token_type":"Bearer""#));
    let successor = cookie_token(&headers);
    assert_ne!(successor, token);
    assert_eq!(
        headers[header::SET_COOKIE],
        format!(
            "refresh={successor}; HttpOnly; SameSite=Strict; Secure; Path=/auth; Max-Age=604800"
        )
    );

    // Sign-out: 204 and the cookie cleared.
    let response = app
        .clone()
        .oneshot(post("/auth/logout", Some(&format!("refresh={successor}"))))
        .await
        .unwrap();
    let (status, headers, _) = read(response).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        headers[header::SET_COOKIE],
        "refresh=; HttpOnly; SameSite=Strict; Secure; Path=/auth; Max-Age=0"
    );
}

#[tokio::test(start_paused = true)]
async fn the_cookie_can_be_named_and_placed_elsewhere() {
    // S3
    let revocations = Revocations::new();
    let sessions = Sessions::builder(AccessTokens::generate().unwrap(), &revocations)
        .cookie_name("__Secure-memos-refresh")
        .cookie_path("/api/auth/refresh")
        .build()
        .unwrap();
    let grant = sessions.sign_in("alice").await.unwrap();
    let set_cookie = grant.set_cookie().to_str().unwrap();
    assert!(
        set_cookie.starts_with("__Secure-memos-refresh="),
        "{set_cookie}"
    );
    assert!(
        set_cookie.contains("; Path=/api/auth/refresh;"),
        "{set_cookie}"
    );
    let request = Request::post("/api/auth/refresh")
        .header(
            header::COOKIE,
            format!(
                "theme=dark; __Secure-memos-refresh={}",
                grant.refresh_token()
            ),
        )
        .body(())
        .unwrap();
    assert!(sessions.refresh(&request.into_parts().0).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn cross_site_refreshes_and_sign_outs_are_refused_uncounted_and_change_nothing() {
    // S3, C1
    let (sessions, _) = sessions(Duration::ZERO);
    let token = sign_in(&endpoints(sessions.clone())).await;
    let (app, tracker) = locked(sessions, 1);
    let cookie = format!("refresh={token}");
    for path in ["/auth/refresh", "/auth/logout"] {
        for (name, value) in [
            ("sec-fetch-site", "cross-site"),
            ("sec-fetch-site", "same-site"),
        ] {
            let mut request = post(path, Some(&cookie));
            request.headers_mut().insert(name, value.parse().unwrap());
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path} {value}");
            assert_eq!(
                rejection(&response).map(AuthRejection::kind),
                Some(RejectionKind::CrossOrigin)
            );
        }
        // An old browser: no Sec-Fetch-Site, an Origin of another host.
        let mut request = post(path, Some(&cookie));
        request.headers_mut().remove("sec-fetch-site");
        request
            .headers_mut()
            .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // Not counted (max_failures is 1), and the token was not used up.
    assert_eq!(tracker.failures(&"192.0.2.1".to_owned()), 0);
    let response = app
        .clone()
        .oneshot(post("/auth/refresh", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn origins_trusted_by_a_cross_origin_layer_may_refresh_cross_site() {
    // C1: the endpoints' own check trusts no origin; a `CrossOriginLayer`
    // in front decides for them.
    let revocations = Revocations::new();
    let sessions = Sessions::builder(AccessTokens::generate().unwrap(), &revocations)
        .build()
        .unwrap();
    let grant = sessions.sign_in("alice").await.unwrap();
    let request = |origin: &str| {
        Request::post("/auth/refresh")
            .header("sec-fetch-site", "same-site")
            .header(header::ORIGIN, origin)
            .header(header::COOKIE, format!("refresh={}", grant.refresh_token()))
            .body(String::new())
            .unwrap()
    };
    let refused = sessions
        .refresh(&request("https://app.memos.example").into_parts().0)
        .await
        .unwrap_err();
    assert_eq!(
        refused.kind(),
        portcullis::session::SessionErrorKind::CrossOrigin
    );

    let trusted = CrossOriginProtection::builder()
        .trust_origin("https://app.memos.example")
        .build()
        .unwrap();
    let app = CrossOriginLayer::new(trusted).layer(endpoints(sessions));
    let response = app
        .clone()
        .oneshot(request("https://evil.example"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .oneshot(request("https://app.memos.example"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn unknown_refresh_tokens_are_failed_attempts_and_the_lockout_shuts_the_endpoints() {
    // S3, B1, B14: an unknown token counts (each distinct one once); a
    // missing cookie does not.
    let (sessions, _) = sessions(Duration::ZERO);
    let token = sign_in(&endpoints(sessions.clone())).await;
    let (app, tracker) = locked(sessions.clone(), 3);
    let client = "192.0.2.1".to_owned();

    let response = app
        .clone()
        .oneshot(post("/auth/refresh", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        rejection(&response).map(AuthRejection::kind),
        Some(RejectionKind::Missing)
    );
    assert_eq!(tracker.failures(&client), 0);

    let guess = |n: u8| {
        format!(
            "refresh={}.{}{}",
            &token[..22],
            (b'A' + n) as char,
            "A".repeat(42)
        )
    };
    for (n, path) in [
        (0, "/auth/refresh"),
        (0, "/auth/refresh"),
        (1, "/auth/logout"),
    ] {
        let response = app
            .clone()
            .oneshot(post(path, Some(&guess(n))))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(rejection(&response).unwrap().counts_as_failure());
    }
    // The same wrong token twice counted once.
    assert_eq!(tracker.failures(&client), 2);
    // A garbage cookie value counts too.
    let response = app
        .clone()
        .oneshot(post("/auth/refresh", Some("refresh=nope")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Locked out: even the right token is refused, before it is used up.
    let cookie = format!("refresh={token}");
    let response = app
        .clone()
        .oneshot(post("/auth/refresh", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    tracker.unlock(&client);
    let response = app
        .clone()
        .oneshot(post("/auth/refresh", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The guesses did not touch the session.
    assert_eq!(sessions.stats().reused, 0);
}

#[tokio::test(start_paused = true)]
async fn unknown_reused_and_revoked_refresh_tokens_get_identical_answers() {
    // L3
    let (sessions, revocations) = sessions(Duration::ZERO);
    let app = endpoints(sessions.clone());
    let answer = |token: String| {
        let app = app.clone();
        async move {
            let response = app
                .oneshot(post("/auth/refresh", Some(&format!("refresh={token}"))))
                .await
                .unwrap();
            read(response).await
        }
    };
    // Well formed (the last base64url character carries no stray bits),
    // so it reaches the store, which has no such session.
    let unknown = answer(format!("{}.{}A", "A".repeat(22), "B".repeat(42))).await;
    let first = sessions.sign_in("alice").await.unwrap();
    sessions.refresh_with(first.refresh_token()).await.unwrap();
    let reused = answer(first.refresh_token().to_owned()).await;
    let other = sessions.sign_in("bob").await.unwrap();
    revocations.revoke_subject("bob").await.unwrap();
    let revoked = answer(other.refresh_token().to_owned()).await;
    assert_eq!(unknown.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown.1[header::WWW_AUTHENTICATE],
        r#"Bearer realm="api", error="invalid_token", error_description="the refresh token is invalid""#
    );
    // The answer names the refresh token: a client that reads "the access
    // token is invalid" refreshes again instead of signing in.
    assert_eq!(unknown.2, "the refresh token is invalid");
    assert_eq!(
        unknown.1[header::SET_COOKIE],
        "refresh=; HttpOnly; SameSite=Strict; Secure; Path=/auth; Max-Age=0"
    );
    assert_eq!(unknown, reused);
    assert_eq!(unknown, revoked);
}

#[tokio::test(start_paused = true)]
async fn a_malformed_or_doubled_refresh_cookie_is_refused_without_clearing_anything() {
    // S3, B1, S7: a sibling subdomain can add a second `refresh` cookie;
    // clearing "the" cookie then signs its owner out.
    let (sessions, _) = sessions(Duration::ZERO);
    let (app, tracker) = locked(sessions.clone(), 3);
    let grant = sessions.sign_in("alice").await.unwrap();
    let planted = format!("{}.{}A", "A".repeat(22), "B".repeat(42));
    for (cookie, status) in [
        (
            format!("refresh={}; refresh={planted}", grant.refresh_token()),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("refresh={0}; refresh={0}", grant.refresh_token()),
            StatusCode::BAD_REQUEST,
        ),
        ("refresh=\"unbalanced".to_owned(), StatusCode::BAD_REQUEST),
        // Not shaped like a refresh token: not this service's cookie.
        ("refresh=junk".to_owned(), StatusCode::UNAUTHORIZED),
    ] {
        for path in ["/auth/refresh", "/auth/logout"] {
            let response = app
                .clone()
                .oneshot(post(path, Some(&cookie)))
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{path} {cookie}");
            assert!(
                response.headers().get(header::SET_COOKIE).is_none(),
                "{path} {cookie}: {:?}",
                response.headers()
            );
        }
    }
    // Not a failed attempt, except the junk token (counted once).
    assert_eq!(tracker.failures(&"192.0.2.1".to_owned()), 1);
    // The real session lives on.
    sessions.refresh_with(grant.refresh_token()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn no_refresh_or_access_token_reaches_the_logs() {
    // L1
    let logs = support::logs::capture();
    let (sessions, _) = sessions(Duration::ZERO);
    let first = sessions.sign_in("carol").await.unwrap();
    let second = sessions.refresh_with(first.refresh_token()).await.unwrap();
    let _ = sessions.refresh_with(first.refresh_token()).await;
    let _ = sessions
        .refresh_with(&format!("{}.{}A", first.session_id(), "C".repeat(42)))
        .await;
    let _ = sessions.sign_out_with(second.refresh_token()).await;
    let text = logs.text();
    assert!(
        text.contains(first.session_id()),
        "the session id is logged"
    );
    for token in [&first, &second] {
        let secret = token.refresh_token().split_once('.').unwrap().1;
        assert!(!text.contains(secret));
        assert!(!text.contains(token.access_token()));
    }
    assert!(!text.contains(&"C".repeat(43)));
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_cookie_names_the_refresh_token_in_every_protocol() {
    let (sessions, _) = sessions(Duration::ZERO);
    let app = endpoints(sessions);
    let unknown = format!("refresh={}.{}A", "A".repeat(22), "B".repeat(42));
    let mut request = post("/auth/refresh", Some(&unknown));
    request
        .headers_mut()
        .insert("connect-protocol-version", "1".parse().unwrap());
    let (status, _, body) = read(app.clone().oneshot(request).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        r#"{"code":"unauthenticated","message":"the refresh token is invalid"}"#
    );
    // No cookie at all: still about the refresh token, and not counted.
    let (status, headers, body) =
        read(app.oneshot(post("/auth/refresh", None)).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body, "no refresh token was presented");
    assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Bearer realm="api""#);
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_token_is_an_audit_event_of_a_counted_failure() {
    // S3, B1: the lockout counts it, and operators see it counted.
    let mut audit = portcullis::events::subscribe(4096);
    let (sessions, _) = sessions(Duration::ZERO);
    let (app, tracker) = locked(sessions, 3);
    let mut request = post(
        "/auth/refresh",
        Some(&format!("refresh={}.{}A", "A".repeat(22), "B".repeat(42))),
    );
    request
        .headers_mut()
        .insert("x-client", "ops-refresh-client".parse().unwrap());
    let (status, _, _) = read(app.oneshot(request).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(tracker.failures(&"ops-refresh-client".to_owned()), 1);
    let seen: Vec<_> = std::iter::from_fn(|| audit.try_recv())
        .filter(|e| {
            matches!(e, portcullis::events::Event::FailureCounted { key, .. } if key == "ops-refresh-client")
        })
        .collect();
    assert_eq!(
        seen,
        [portcullis::events::Event::FailureCounted {
            key: "ops-refresh-client".to_owned(),
            failures: 1,
            remaining: 2,
        }]
    );
}
