//! Several keys per decision, and keys from a body field (B13).

use bytes::Bytes;
use http_body_util::Full;
use portcullis::body_key::{BodyField, BodyKeyLayer};

use super::*;

// ---------------------------------------------------------------- B13

/// The account a request is for: the `x-account` header, when present.
fn by_account(parts: &Parts) -> Result<Option<String>, AuthRejection> {
    Ok(parts
        .headers
        .get("x-account")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned))
}

type ByAccount = fn(&Parts) -> Result<Option<String>, AuthRejection>;

fn attempt(client: &str, account: &str, outcome: &str) -> Request<String> {
    let mut req = request(client, outcome);
    req.headers_mut()
        .insert("x-account", account.parse().unwrap());
    req
}

/// Address key (max `per_address`) and account key (max `per_account`).
fn two_keys(per_address: u32, per_account: Policy) -> (Svc, Tracker<String>, Arc<AtomicUsize>) {
    let layer = builder(max(per_address))
        .also_key(by_account as ByAccount, per_account)
        .build()
        .unwrap();
    let account = layer.key_tracker(1).unwrap();
    let (svc, calls) = guarded(layer);
    (svc, account, calls)
}

#[tokio::test(start_paused = true)]
async fn b13_an_account_key_locks_the_account_out_whatever_the_address() {
    // B13: distributed guessing, one address per guess.
    let (svc, account, calls) = two_keys(100, max(3));
    for n in 0..3 {
        let res = svc
            .clone()
            .oneshot(attempt(&format!("10.0.0.{n}"), "alice", "marker"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "guess {n}");
    }
    assert!(account.check(&key("alice")).is_err());
    let res = svc
        .clone()
        .oneshot(attempt("10.9.9.9", "alice", "ok"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(calls.load(Ordering::SeqCst), 3, "the handler never saw it");
    // Other accounts, and requests without an account, are not affected.
    let res = svc
        .clone()
        .oneshot(attempt("10.0.0.1", "bob", "ok"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(send(&svc, "10.0.0.1", "ok").await.status(), StatusCode::OK);
}

/// Two keys that lock out after two failures: the address for a minute,
/// the account for an hour.
fn minute_and_hour() -> (Svc, Arc<AtomicUsize>) {
    let address = Policy::builder()
        .max_failures(2)
        .lockout(MINUTE)
        .build()
        .unwrap();
    let account = Policy::builder()
        .max_failures(2)
        .lockout(HOUR)
        .build()
        .unwrap();
    guarded(
        builder(address)
            .also_key(by_account as ByAccount, account)
            .build()
            .unwrap(),
    )
}

#[tokio::test(start_paused = true)]
async fn b13_the_most_restrictive_key_wins_with_the_longest_retry_after() {
    // B13
    let (svc, calls) = minute_and_hour();
    for _ in 0..2 {
        svc.clone()
            .oneshot(attempt("a", "alice", "invalid"))
            .await
            .unwrap();
    }
    // Both keys are locked out: the address for a minute, the account for
    // an hour. The answer is the hour.
    let res = svc
        .clone()
        .oneshot(attempt("a", "alice", "ok"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()[header::RETRY_AFTER], "3600");
    // Without the account, only the address's minute applies.
    let res = send(&svc, "a", "ok").await;
    assert_eq!(res.headers()[header::RETRY_AFTER], "60");
    advance(MINUTE + Duration::from_secs(1)).await;
    assert_eq!(send(&svc, "a", "ok").await.status(), StatusCode::OK);
    let res = svc
        .clone()
        .oneshot(attempt("a", "alice", "ok"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn b13_a_refusal_names_the_key_whose_answer_was_sent() {
    // B13: the audit event of a refusal names the key that refused, with
    // several keys as with one: the one with the longest `Retry-After`.
    let mut audit = portcullis::events::subscribe(1 << 16);
    let (svc, _) = minute_and_hour();
    for _ in 0..2 {
        let guess = attempt("named-client", "named-account", "invalid");
        svc.clone().oneshot(guess).await.unwrap();
    }
    let res = svc
        .clone()
        .oneshot(attempt("named-client", "named-account", "ok"))
        .await
        .unwrap();
    assert_eq!(res.headers()[header::RETRY_AFTER], "3600");
    // Without the account, the address refuses.
    let res = send(&svc, "named-client", "ok").await;
    assert_eq!(res.headers()[header::RETRY_AFTER], "60");

    // Other tests of this binary emit events too: only ours count.
    let mut named = Vec::new();
    while let Some(event) = audit.try_recv() {
        if let portcullis::events::Event::LockoutRefused { key, crowded } = event
            && key.contains("named-")
        {
            assert!(!crowded);
            named.push(key);
        }
    }
    assert_eq!(named.len(), 2, "{named:?}");
    assert!(named[0].contains("named-account"), "{named:?}");
    assert!(named[1].contains("named-client"), "{named:?}");
}

#[tokio::test(start_paused = true)]
async fn b13_each_key_counts_under_its_own_policy_and_a_success_resets_only_where_it_should() {
    // B13, B19
    let account = Policy::builder()
        .max_failures(5)
        .reset_on_success(true)
        .build()
        .unwrap();
    let layer = builder(max(5))
        .also_key(by_account as ByAccount, account)
        .build()
        .unwrap();
    let tracker: Tracker<String> = layer.key_tracker(1).unwrap();
    let address = layer.tracker().clone();
    let (svc, _) = guarded(layer);
    for _ in 0..2 {
        svc.clone()
            .oneshot(attempt("a", "alice", "invalid"))
            .await
            .unwrap();
    }
    assert_eq!(
        (address.failures(&key("a")), tracker.failures(&key("alice"))),
        (2, 2)
    );
    // A 2xx that is no sign-in clears nothing…
    svc.clone()
        .oneshot(attempt("a", "alice", "ok"))
        .await
        .unwrap();
    assert_eq!(
        (address.failures(&key("a")), tracker.failures(&key("alice"))),
        (2, 2)
    );
    // …her sign-in clears her account's count.
    svc.clone()
        .oneshot(attempt("a", "alice", "succeeded"))
        .await
        .unwrap();
    assert_eq!(
        (address.failures(&key("a")), tracker.failures(&key("alice"))),
        (2, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn b13_b6_sixty_four_concurrent_guesses_from_sixty_four_addresses_reach_the_handler_at_most_max_failures_times()
 {
    // B13, B6: the exact bound under concurrency holds for the account key.
    let gate = Arc::new(Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let (g, c) = (Arc::clone(&gate), Arc::clone(&calls));
    let inner = service_fn(move |req: Request<String>| {
        let gate = Arc::clone(&g);
        c.fetch_add(1, Ordering::SeqCst);
        let outcome = outcome_of(&req);
        async move {
            gate.acquire().await.unwrap().forget();
            Ok::<_, Infallible>(answer(&outcome))
        }
    });
    let layer = builder(max(5))
        .also_key(by_account as ByAccount, max(3))
        .build()
        .unwrap();
    let svc = BoxCloneService::new(layer.layer(inner));
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let svc = svc.clone();
            let req = attempt(&format!("10.0.{n}.1"), "alice", "invalid");
            tokio::spawn(async move { svc.oneshot(req).await.unwrap().status() })
        })
        .collect();
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    gate.add_permits(64);
    let mut locked = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::TOO_MANY_REQUESTS {
            locked += 1;
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(locked, 61);
}

#[tokio::test(start_paused = true)]
async fn b13_a_key_that_fails_to_derive_refuses_the_request() {
    // B13, B10: an error from any key refuses, never a shared bucket.
    let no_key = |_: &Parts| -> Result<Option<String>, AuthRejection> {
        Err(AuthRejection::new(RejectionKind::NoClientAddress))
    };
    let (svc, calls) = guarded(builder(max(3)).also_key(no_key, max(3)).build().unwrap());
    let res = send(&svc, "a", "ok").await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

// ------------------------------------------------- B13: body-field keys

type FormBody = portcullis::body_key::Body<Full<Bytes>>;
type LoginApp =
    BoxCloneService<Request<Full<Bytes>>, Response<ResponseBody<ResponseBody<String>>>, Infallible>;

/// A login handler behind `BodyKeyLayer` and a lockout keyed by address and
/// account: echoes the body it received, 401 unless the password is right.
fn login_app(per_account: u32) -> (LoginApp, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let handler = service_fn(move |req: Request<FormBody>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let account = req.extensions().get::<BodyField>().cloned();
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let text = String::from_utf8(body.to_vec()).unwrap();
            let ok = text.contains("password=wonderland");
            let mut res = Response::new(format!("{account:?} {text}"));
            if !ok {
                *res.status_mut() = StatusCode::UNAUTHORIZED;
            }
            Ok::<_, Infallible>(res)
        }
    });
    let lockout = builder(max(100))
        .also_key(BodyField::key, max(per_account))
        .build()
        .unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(BodyKeyLayer::new("username", |_: &Parts| true).limit(64))
        .layer(lockout)
        .service(handler);
    (BoxCloneService::new(svc), calls)
}

fn form(client: &str, body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/login")
        .header("x-client", client)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn text<B: http_body::Body>(res: Response<B>) -> (StatusCode, String)
where
    B::Error: std::fmt::Debug,
{
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn b13_a_body_field_key_hands_the_body_on_intact() {
    // B13
    let (svc, _) = login_app(3);
    let body = "username=Alice&password=wonderland&note=%C3%A9t%C3%A9";
    let res = svc.clone().oneshot(form("a", body)).await.unwrap();
    let (status, echoed) = text(res).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        echoed,
        format!(r#"Some(BodyField("alice")) {body}"#),
        "the handler got the same bytes, and the key is normalized"
    );
}

#[tokio::test(start_paused = true)]
async fn b13_unknown_usernames_are_counted_exactly_like_known_ones() {
    // B13: no user enumeration through the lockout.
    let (svc, _) = login_app(2);
    let mut answers = Vec::new();
    for user in ["alice", "no-such-user"] {
        let mut seen = Vec::new();
        for (n, body) in ["password=a", "password=b", "password=wonderland"]
            .iter()
            .enumerate()
        {
            let body: &'static str = Box::leak(format!("username={user}&{body}").into_boxed_str());
            let res = svc
                .clone()
                .oneshot(form(&format!("10.0.0.{n}"), body))
                .await
                .unwrap();
            let retry = res.headers().get(header::RETRY_AFTER).cloned();
            seen.push((res.status(), retry));
        }
        answers.push(seen);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0][2].0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn b13_a_body_past_the_limit_is_answered_413_and_never_buffered_whole() {
    // B13
    let (svc, calls) = login_app(3);
    // Announced too large.
    let long: &'static str =
        Box::leak(format!("username=alice&password={}", "x".repeat(100)).into_boxed_str());
    let res = svc.clone().oneshot(form("a", long)).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(rejection_kind(&res), Some(RejectionKind::BodyTooLarge));

    // Streamed without a length: refused once the limit is passed, with
    // the rest of the stream never read.
    let produced = Arc::new(AtomicUsize::new(0));
    let chunks = Chunks {
        left: 1000,
        produced: Arc::clone(&produced),
    };
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&handled);
    let inner = builder(max(100))
        .also_key(BodyField::key, max(3))
        .build()
        .unwrap()
        .layer(service_fn(
            move |_: Request<portcullis::body_key::Body<_>>| {
                counter.fetch_add(1, Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(String::new())) }
            },
        ));
    let svc2 = BodyKeyLayer::new("username", |_: &Parts| true)
        .limit(64)
        .layer(inner);
    let req = Request::post("/login")
        .header("x-client", "a")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(chunks)
        .unwrap();
    let res = svc2.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(produced.load(Ordering::SeqCst) <= 3, "read past the limit");
    assert_eq!(handled.load(Ordering::SeqCst), 0, "the handler never ran");

    // A field given twice is refused: the handler might read the other one.
    let res = svc
        .clone()
        .oneshot(form("a", "username=alice&username=bob&password=x"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A body without a length that yields the same chunk `left` times and
/// counts the chunks it produced.
struct Chunks {
    left: usize,
    produced: Arc<AtomicUsize>,
}

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        self.produced.fetch_add(1, Ordering::SeqCst);
        let chunk = Bytes::from_static(b"username=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&");
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk))))
    }
}

#[tokio::test(start_paused = true)]
async fn b13_the_tracker_of_each_key_is_handed_out_by_position_and_type() {
    // B13
    let layer = builder(max(5))
        .also_key(by_account as ByAccount, max(2))
        .build()
        .unwrap();
    assert!(layer.key_tracker::<String>(2).is_none());
    assert!(layer.key_tracker::<u32>(1).is_none());
    let account: Tracker<String> = layer.key_tracker(1).unwrap();
    let address: Tracker<String> = layer.key_tracker(0).unwrap();
    let (svc, _) = guarded(layer);
    for client in ["a", "b"] {
        svc.clone()
            .oneshot(attempt(client, "alice", "invalid"))
            .await
            .unwrap();
    }
    assert!(account.check(&key("alice")).is_err());
    assert_eq!(address.failures(&key("a")), 1);
    assert!(account.unlock(&key("alice")));
    let res = svc.oneshot(attempt("c", "alice", "ok")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}
