//! Smart counting: a repeated wrong guess counts once (B14), and a stale
//! cookie is cleared instead of locking its browser out.

use super::*;

// ---------------------------------------------------------------- B14

/// A login handler that reports its wrong guesses with `Failed::guess`.
fn login(policy: Policy) -> (Svc, Tracker<String>) {
    let layer = layer(policy);
    let tracker = layer.tracker().clone();
    let inner = service_fn(|req: Request<String>| async move {
        let (user, password) = req.body().split_once(':').unwrap();
        let mut res = Response::builder().status(401).body(String::new()).unwrap();
        res.extensions_mut().insert(Failed::guess(user, password));
        Ok::<_, Infallible>(res)
    });
    (BoxCloneService::new(layer.layer(inner)), tracker)
}

fn guess(client: &str, body: &str) -> Request<String> {
    let mut req = request(client, "ok");
    *req.body_mut() = body.to_owned();
    req
}

#[tokio::test(start_paused = true)]
async fn b14_the_same_wrong_password_repeated_by_one_key_counts_once() {
    // B14
    let (svc, tracker) = login(max(3));
    for _ in 0..10 {
        let res = svc
            .clone()
            .oneshot(guess("a", "alice:hunter3"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(tracker.failures(&key("a")), 1);
    assert_eq!(tracker.stats().failures, 1);
    // Distinct guesses count, each once.
    svc.clone()
        .oneshot(guess("a", "alice:hunter4"))
        .await
        .unwrap();
    svc.clone()
        .oneshot(guess("a", "alice:hunter3"))
        .await
        .unwrap();
    assert_eq!(tracker.failures(&key("a")), 2);
    svc.clone()
        .oneshot(guess("a", "alice:hunter5"))
        .await
        .unwrap();
    let res = svc
        .clone()
        .oneshot(guess("a", "alice:hunter3"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn b14_a_repeat_counts_again_after_the_window() {
    // B14
    let policy = Policy::builder()
        .max_failures(3)
        .window(MINUTE)
        .build()
        .unwrap();
    let (svc, tracker) = login(policy);
    svc.clone().oneshot(guess("a", "alice:x")).await.unwrap();
    advance(MINUTE + Duration::from_secs(1)).await;
    svc.clone().oneshot(guess("a", "alice:x")).await.unwrap();
    assert_eq!(
        tracker.failures(&key("a")),
        1,
        "the first one was forgotten"
    );
    assert_eq!(tracker.stats().failures, 2);
}

#[tokio::test(start_paused = true)]
async fn b14_one_password_sprayed_over_many_accounts_counts_for_every_account() {
    // B14: the guess is the account and the password together.
    let (svc, tracker) = login(max(3));
    for user in ["alice", "bob", "carol"] {
        svc.clone()
            .oneshot(guess("a", &format!("{user}:Summer2025!")))
            .await
            .unwrap();
    }
    assert!(
        tracker.check(&key("a")).is_err(),
        "three accounts, three failures"
    );
}

#[tokio::test(start_paused = true)]
async fn b14_without_smart_counting_every_repeat_counts() {
    // B14
    let policy = Policy::builder()
        .max_failures(3)
        .remember_guesses(0)
        .build()
        .unwrap();
    let (svc, tracker) = login(policy);
    for _ in 0..3 {
        svc.clone().oneshot(guess("a", "alice:x")).await.unwrap();
    }
    assert!(tracker.check(&key("a")).is_err());
}

#[tokio::test(start_paused = true)]
async fn b14_the_direct_api_reports_a_repeat() {
    // B14
    let tracker = Tracker::new(max(3));
    let attempt = tracker.attempt(key("a")).await.unwrap();
    assert!(matches!(
        attempt.failed_with(Failed::guess("alice", "x")),
        FailureOutcome::Counted { failures: 1, .. }
    ));
    let attempt = tracker.attempt(key("a")).await.unwrap();
    assert_eq!(attempt.failures(), 1);
    assert_eq!(
        attempt.failed_with(Failed::guess("alice", "x")),
        FailureOutcome::Repeated
    );
    assert_eq!(tracker.failures(&key("a")), 1);
}

// ------------------------------------------------ B14: stale cookies

#[cfg(feature = "cookie")]
mod stale_cookies {
    use portcullis::{
        AuthLayer, Credential, ValidationError,
        extract::{Cookie, Extractor},
    };

    use super::*;

    type CookieSvc =
        BoxCloneService<Request<String>, Response<ResponseBody<ResponseBody<String>>>, Infallible>;

    /// `AuthLayer` with a `session` cookie source (and bearer tokens), behind a
    /// lockout of 3 failures.
    fn cookie_app() -> (CookieSvc, Tracker<String>, Arc<AtomicUsize>) {
        let validations = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&validations);
        let validate = move |c: Credential| {
            counter.fetch_add(1, Ordering::SeqCst);
            async move {
                match c.secret() {
                    "alice-token" => Ok(()),
                    "expired-token" => Err(ValidationError::expired()),
                    "scoped-token" => Err(ValidationError::insufficient_scope("admin")),
                    _ => Err(ValidationError::invalid()),
                }
            }
        };
        let session = Cookie::new("session").path("/app");
        let auth = AuthLayer::new(validate)
            .extractor(Extractor::new(portcullis::extract::Bearer::new()).or(session));
        let lockout = layer(max(3));
        let tracker = lockout.tracker().clone();
        let svc = tower::ServiceBuilder::new()
            .layer(lockout)
            .layer(auth)
            .service_fn(|_: Request<String>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            });
        (BoxCloneService::new(svc), tracker, validations)
    }

    fn with_cookie(client: &str, cookie: &str) -> Request<String> {
        Request::get("/app/page")
            .header("x-client", client)
            .header(header::COOKIE, cookie)
            .body(String::new())
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn b14_a_stale_session_cookie_resent_on_every_page_costs_one_failure_and_is_cleared() {
        // B14: the browser of a user signed out elsewhere keeps sending the
        // same dead cookie; that is one failure, not a lockout of its address.
        let (svc, tracker, _) = cookie_app();
        for _ in 0..10 {
            let res = svc
                .clone()
                .oneshot(with_cookie("a", "session=signed-out"))
                .await
                .unwrap();
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(
                res.headers()[header::SET_COOKIE],
                "session=; HttpOnly; SameSite=Lax; Path=/app; Max-Age=0"
            );
        }
        assert_eq!(tracker.failures(&key("a")), 1);
        // The user signs in again: the address is not locked out.
        let res = svc
            .clone()
            .oneshot(with_cookie("a", "session=alice-token"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get(header::SET_COOKIE).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn b14_only_a_rejected_cookie_is_cleared() {
        // B14: an expired cookie is cleared too; a missing scope, a bearer
        // token and a cross-site refusal say nothing against the cookie.
        let (svc, _, _) = cookie_app();
        let res = svc
            .clone()
            .oneshot(with_cookie("a", "session=expired-token"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().contains_key(header::SET_COOKIE));
        let res = svc
            .clone()
            .oneshot(with_cookie("a", "session=scoped-token"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::FORBIDDEN);
        assert!(!res.headers().contains_key(header::SET_COOKIE));
        let res = wrong_bearer(&svc, "a").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(!res.headers().contains_key(header::SET_COOKIE));
    }

    async fn wrong_bearer(
        svc: &CookieSvc,
        client: &str,
    ) -> Response<ResponseBody<ResponseBody<String>>> {
        svc.clone()
            .oneshot(
                Request::get("/")
                    .header("x-client", client)
                    .header(header::AUTHORIZATION, "Bearer wrong-token")
                    .body(String::new())
                    .unwrap(),
            )
            .await
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn b14_clearing_stale_cookies_can_be_turned_off() {
        // B14
        let validate = |_: Credential| async { Err::<(), _>(ValidationError::invalid()) };
        let auth = AuthLayer::new(validate)
            .extractor(Extractor::new(Cookie::new("session")))
            .clear_stale_cookies(false);
        let svc = tower::ServiceBuilder::new()
            .layer(auth)
            .service_fn(|_: Request<String>| async {
                Ok::<_, Infallible>(Response::new(String::new()))
            });
        let res = svc.oneshot(with_cookie("a", "session=x")).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(!res.headers().contains_key(header::SET_COOKIE));
    }
}
