//! Behaviour of the failed-attempt limiter. Each test cites the requirement
//! of SECURITY.md it proves.

mod support;

use std::{
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{Request, Response, StatusCode, header, request::Parts};
use http_body_util::BodyExt;
use portcullis::{
    AuthRejection, PeerAddr, ResponseBody,
    lockout::{Failed, FailureOutcome, LockoutLayer, Outcome, Policy, Tracker},
    reject::RejectionKind,
};
use tokio::{sync::Semaphore, time::advance};
use tower::{Layer, ServiceExt, service_fn, util::BoxCloneService};

type Svc = BoxCloneService<Request<String>, Response<ResponseBody<String>>, Infallible>;

type ByClient = fn(&Parts) -> Result<String, AuthRejection>;
type TestLayer = LockoutLayer<ByClient>;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// Keys on the `x-client` header; no header is "no client address".
fn by_client(parts: &Parts) -> Result<String, AuthRejection> {
    parts
        .headers
        .get("x-client")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| AuthRejection::new(RejectionKind::NoClientAddress))
}

/// What an auth layer or a handler would answer for the outcome named in
/// the `x-outcome` header.
fn answer(outcome: &str) -> Response<String> {
    let rejection = |status: u16, kind| {
        let mut res = Response::builder()
            .status(status)
            .body(String::new())
            .unwrap();
        res.extensions_mut().insert(AuthRejection::new(kind));
        res
    };
    match outcome {
        "invalid" => rejection(401, RejectionKind::Invalid),
        "revoked" => rejection(401, RejectionKind::Revoked),
        "missing" => rejection(401, RejectionKind::Missing),
        "malformed" => rejection(400, RejectionKind::Malformed),
        "scope" => rejection(403, RejectionKind::InsufficientScope),
        "expired" => rejection(401, RejectionKind::Expired),
        "unavailable" => {
            let mut res = Response::builder()
                .status(503)
                .header(header::RETRY_AFTER, "7")
                .body(String::new())
                .unwrap();
            res.extensions_mut().insert(
                AuthRejection::new(RejectionKind::Unavailable)
                    .with_retry_after(Duration::from_secs(7)),
            );
            res
        }
        "plain401" => Response::builder().status(401).body(String::new()).unwrap(),
        "422" => Response::builder().status(422).body(String::new()).unwrap(),
        "marker" => {
            let mut res = Response::new("try again".to_owned());
            res.extensions_mut().insert(Failed);
            res
        }
        _ => Response::new("welcome".to_owned()),
    }
}

fn outcome_of<B>(req: &Request<B>) -> String {
    req.headers()
        .get("x-outcome")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("ok")
        .to_owned()
}

/// The layer over an inner service that counts its calls.
fn guarded(layer: TestLayer) -> (Svc, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let inner = service_fn(move |req: Request<String>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let outcome = outcome_of(&req);
        async move { Ok::<_, Infallible>(answer(&outcome)) }
    });
    (BoxCloneService::new(layer.layer(inner)), calls)
}

fn layer(policy: Policy) -> TestLayer {
    support::logs::capture();
    LockoutLayer::keyed(by_client as ByClient, policy)
}

fn setup(policy: Policy) -> (Svc, Tracker<String>, Arc<AtomicUsize>) {
    let layer = layer(policy);
    let tracker = layer.tracker().clone();
    let (svc, calls) = guarded(layer);
    (svc, tracker, calls)
}

fn request(client: &str, outcome: &str) -> Request<String> {
    Request::builder()
        .header("x-client", client)
        .header("x-outcome", outcome)
        .header(header::AUTHORIZATION, "Bearer some-token")
        .body(String::new())
        .unwrap()
}

async fn send(svc: &Svc, client: &str, outcome: &str) -> Response<ResponseBody<String>> {
    svc.clone().oneshot(request(client, outcome)).await.unwrap()
}

fn max(n: u32) -> Policy {
    support::logs::capture();
    Policy::builder().max_failures(n).build().unwrap()
}

fn key(s: &str) -> String {
    s.to_owned()
}

fn rejection_kind<B>(res: &Response<B>) -> Option<RejectionKind> {
    res.extensions()
        .get::<AuthRejection>()
        .map(AuthRejection::kind)
}

// ---------------------------------------------------------------- B1

async fn assert_locks_out_after(outcome: &str, status: StatusCode) {
    let (svc, tracker, calls) = setup(max(3));
    for n in 1..=3 {
        let res = send(&svc, "a", outcome).await;
        assert_eq!(res.status(), status, "attempt {n} of {outcome}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let res = send(&svc, "a", "ok").await;
    assert_eq!(
        res.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "{outcome} did not count"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(tracker.stats().failures, 3);
}

async fn assert_never_counts(outcome: &str, status: StatusCode) {
    let (svc, tracker, calls) = setup(max(3));
    for _ in 0..20 {
        let res = send(&svc, "a", outcome).await;
        assert_eq!(res.status(), status);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 20);
    assert_eq!(tracker.failures(&key("a")), 0, "{outcome} counted");
    assert_eq!(tracker.stats().failures, 0);
    assert!(tracker.check(&key("a")).is_ok());
    assert_eq!(send(&svc, "a", "ok").await.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn b1_invalid_credential_counts_as_a_failure() {
    // B1
    assert_locks_out_after("invalid", StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(start_paused = true)]
async fn b1_revoked_credential_counts_as_a_failure() {
    // B1
    assert_locks_out_after("revoked", StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(start_paused = true)]
async fn b1_missing_credential_never_counts() {
    // B1
    assert_never_counts("missing", StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(start_paused = true)]
async fn b1_malformed_credential_never_counts() {
    // B1
    assert_never_counts("malformed", StatusCode::BAD_REQUEST).await;
}

#[tokio::test(start_paused = true)]
async fn b1_insufficient_scope_never_counts() {
    // B1
    assert_never_counts("scope", StatusCode::FORBIDDEN).await;
}

#[tokio::test(start_paused = true)]
async fn b1_unavailable_validator_never_counts() {
    // B1
    assert_never_counts("unavailable", StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test(start_paused = true)]
async fn b1_expired_credential_never_counts_although_it_is_a_401() {
    // B1
    assert_never_counts("expired", StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(start_paused = true)]
async fn b1_inner_401_without_rejection_counts_through_the_default_classifier() {
    // B1
    assert_locks_out_after("plain401", StatusCode::UNAUTHORIZED).await;
}

#[tokio::test(start_paused = true)]
async fn b1_failed_marker_counts_even_on_a_200() {
    // B1
    assert_locks_out_after("marker", StatusCode::OK).await;
}

#[tokio::test(start_paused = true)]
async fn b1_successes_and_other_statuses_never_count_by_default() {
    // B1
    assert_never_counts("ok", StatusCode::OK).await;
    assert_never_counts("422", StatusCode::UNPROCESSABLE_ENTITY).await;
}

#[tokio::test(start_paused = true)]
async fn b1_a_custom_classifier_decides_unmarked_responses_but_not_rejections() {
    // B1
    let layer = layer(max(2)).classifier(|res: &http::response::Parts| {
        if res.status == StatusCode::UNPROCESSABLE_ENTITY {
            Outcome::Failure
        } else {
            Outcome::Neutral
        }
    });
    let tracker = layer.tracker().clone();
    let (svc, _) = guarded(layer);
    // A rejection that does not count stays neutral whatever the classifier.
    for _ in 0..5 {
        send(&svc, "a", "missing").await;
    }
    assert_eq!(tracker.failures(&key("a")), 0);
    send(&svc, "a", "422").await;
    assert_eq!(tracker.failures(&key("a")), 1);
    send(&svc, "a", "422").await;
    assert!(tracker.check(&key("a")).is_err());
}

// ---------------------------------------------------------------- B2

#[tokio::test(start_paused = true)]
async fn b2_unavailable_passes_through_with_its_retry_after_and_is_never_counted() {
    // B2
    let (svc, tracker, calls) = setup(max(2));
    for _ in 0..50 {
        let res = send(&svc, "a", "unavailable").await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
        assert_eq!(rejection_kind(&res), Some(RejectionKind::Unavailable));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 50);
    assert_eq!(tracker.stats().failures, 0);
    // The next real failure is the first one.
    send(&svc, "a", "invalid").await;
    assert_eq!(tracker.failures(&key("a")), 1);
}

// ---------------------------------------------------------------- B3

#[tokio::test(start_paused = true)]
async fn b3_locked_out_client_never_reaches_the_inner_service_even_with_a_valid_credential() {
    // B3
    let (svc, _, calls) = setup(Policy::default());
    for _ in 0..5 {
        assert_eq!(
            send(&svc, "a", "invalid").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    let res = send(&svc, "a", "ok").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()[header::RETRY_AFTER], "1800");
    assert_eq!(rejection_kind(&res), Some(RejectionKind::LockedOut));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        5,
        "the inner service was called"
    );

    // Retry-After is rounded up and never 0.
    advance(Duration::from_millis(500)).await;
    let res = send(&svc, "a", "ok").await;
    assert_eq!(res.headers()[header::RETRY_AFTER], "1800");
    advance(Duration::from_millis(1_799_400)).await;
    let res = send(&svc, "a", "ok").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    assert_eq!(calls.load(Ordering::SeqCst), 5);

    // Other clients are unaffected.
    assert_eq!(send(&svc, "b", "ok").await.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn b3_locked_out_grpc_client_gets_resource_exhausted() {
    // B3
    let (svc, _, calls) = setup(max(1));
    send(&svc, "a", "invalid").await;
    let mut req = request("a", "ok");
    req.headers_mut()
        .insert(header::CONTENT_TYPE, "application/grpc".parse().unwrap());
    let res = svc.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "8");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------- B4, R3

#[tokio::test(start_paused = true)]
async fn b4_a_lockout_survives_a_flood_of_ten_times_capacity_distinct_keys() {
    // B4, R3
    const CAPACITY: u64 = 1_000;
    let (svc, tracker, _) = setup(Policy::builder().capacity(CAPACITY).build().unwrap());
    for _ in 0..5 {
        send(&svc, "attacker", "invalid").await;
    }
    assert_eq!(
        send(&svc, "attacker", "ok").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );

    for n in 0..10 * CAPACITY {
        let res = send(&svc, &format!("flood-{n}"), "invalid").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        if n % 100 == 99 {
            tracker.run_pending_tasks();
            let stats = tracker.stats();
            assert!(stats.tracked <= CAPACITY, "{} entries", stats.tracked);
            assert!(
                tracker.check(&key("attacker")).is_err(),
                "evicted after {n}"
            );
        }
    }
    assert_eq!(
        send(&svc, "attacker", "ok").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let stats = tracker.stats();
    assert_eq!(stats.blocked, 1);
    assert!(stats.evictions >= 9 * CAPACITY, "{stats:?}");
}

#[tokio::test(start_paused = true)]
async fn r3_entry_count_never_exceeds_capacity_under_a_flood_of_distinct_clients() {
    // R3
    const CAPACITY: u64 = 500;
    support::logs::capture();
    let tracker = Tracker::new(Policy::builder().capacity(CAPACITY).build().unwrap());
    for n in 0..40 * CAPACITY {
        tracker.record_failure(&n);
        if n % 250 == 0 {
            tracker.run_pending_tasks();
            assert!(tracker.stats().tracked <= CAPACITY);
        }
    }
    tracker.run_pending_tasks();
    let stats = tracker.stats();
    assert!(stats.tracked <= CAPACITY);
    assert!(stats.tracked >= CAPACITY / 2, "{stats:?}");
    assert_eq!(stats.failures, 40 * CAPACITY);
    assert!(stats.evictions >= 39 * CAPACITY, "{stats:?}");
}

// ---------------------------------------------------------------- B5

#[tokio::test(start_paused = true)]
async fn b5_a_new_attacker_key_is_limited_while_the_table_is_full_of_hot_keys() {
    // B5
    const CAPACITY: u64 = 1_000;
    let (svc, tracker, calls) = setup(Policy::builder().capacity(CAPACITY).build().unwrap());
    // Fill the table: the keys that survive are the table's content.
    let seen: Vec<String> = (0..3 * CAPACITY).map(|n| format!("hot-{n}")).collect();
    for key in &seen {
        tracker.record_failure(key);
    }
    let hot: Vec<&String> = seen.iter().filter(|k| tracker.failures(k) == 1).collect();
    assert_eq!(hot.len() as u64, CAPACITY);
    assert_eq!(tracker.stats().tracked, CAPACITY);
    // Hot keys are clients that keep making requests.
    let touch = || async {
        for _ in 0..3 {
            for key in &hot {
                assert_eq!(send(&svc, key, "ok").await.status(), StatusCode::OK);
            }
        }
    };
    touch().await;

    let mut attacker_calls = 0;
    for n in 1..=5 {
        let before = calls.load(Ordering::SeqCst);
        let res = send(&svc, "attacker", "invalid").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        attacker_calls += calls.load(Ordering::SeqCst) - before;
        if n < 5 {
            // A full table made room for the attacker: a hot key went, never
            // the new one.
            assert_eq!(
                tracker.failures(&key("attacker")),
                n,
                "the attacker's count was dropped"
            );
            assert_eq!(tracker.stats().tracked, CAPACITY);
        }
        // The hot keys stay hot between the attacker's guesses.
        touch().await;
    }
    for _ in 0..10 {
        let before = calls.load(Ordering::SeqCst);
        let res = send(&svc, "attacker", "ok").await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        attacker_calls += calls.load(Ordering::SeqCst) - before;
    }
    assert_eq!(attacker_calls, 5);
}

// ---------------------------------------------------------------- B6

/// An inner service that holds every call until the gate lets it through,
/// and records how many calls were inside at once.
struct Gated {
    svc: Svc,
    tracker: Tracker<String>,
    gate: Arc<Semaphore>,
    calls: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

fn gated(policy: Policy) -> Gated {
    let layer = layer(policy);
    let tracker = layer.tracker().clone();
    let gate = Arc::new(Semaphore::new(0));
    let calls = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let inside = Arc::new(AtomicUsize::new(0));
    let (g, c, p) = (Arc::clone(&gate), Arc::clone(&calls), Arc::clone(&peak));
    let inner = service_fn(move |req: Request<String>| {
        let (gate, inside, peak) = (Arc::clone(&g), Arc::clone(&inside), Arc::clone(&p));
        c.fetch_add(1, Ordering::SeqCst);
        let outcome = outcome_of(&req);
        async move {
            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            inside.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, Infallible>(answer(&outcome))
        }
    });
    Gated {
        svc: BoxCloneService::new(layer.layer(inner)),
        tracker,
        gate,
        calls,
        peak,
    }
}

async fn settle() {
    for _ in 0..200 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn b6_sixty_four_concurrent_wrong_guesses_reach_the_inner_service_at_most_max_failures_times()
{
    // B6
    let g = gated(Policy::default());
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let svc = g.svc.clone();
            tokio::spawn(async move { svc.oneshot(request("a", "invalid")).await.unwrap() })
        })
        .collect();
    settle().await;
    assert_eq!(g.calls.load(Ordering::SeqCst), 5);

    // Let the guesses through one at a time: nobody else gets in.
    for _ in 0..64 {
        g.gate.add_permits(1);
        settle().await;
        assert!(g.calls.load(Ordering::SeqCst) <= 5);
    }
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap().status());
    }
    let unauthorized = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let locked = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((unauthorized, locked), (5, 59));
    assert_eq!(g.calls.load(Ordering::SeqCst), 5);
    assert_eq!(g.tracker.stats().failures, 5);
}

#[tokio::test(start_paused = true)]
async fn b6_concurrent_guesses_released_all_at_once_still_stop_at_max_failures() {
    // B6
    let g = gated(Policy::default());
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let svc = g.svc.clone();
            tokio::spawn(async move { svc.oneshot(request("a", "invalid")).await.unwrap() })
        })
        .collect();
    settle().await;
    g.gate.add_permits(1000);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(g.calls.load(Ordering::SeqCst), 5);
    assert_eq!(g.peak.load(Ordering::SeqCst), 5);
}

#[tokio::test(start_paused = true)]
async fn b6_parallel_valid_requests_wait_instead_of_being_refused() {
    // B6
    let g = gated(Policy::default());
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let svc = g.svc.clone();
            tokio::spawn(async move { svc.oneshot(request("browser", "ok")).await.unwrap() })
        })
        .collect();
    settle().await;
    assert_eq!(g.calls.load(Ordering::SeqCst), 5);
    g.gate.add_permits(1000);
    for task in tasks {
        assert_eq!(task.await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(g.calls.load(Ordering::SeqCst), 20);
    assert_eq!(g.peak.load(Ordering::SeqCst), 5);
    assert_eq!(g.tracker.stats().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn b6_a_dropped_response_future_releases_its_reservation() {
    // B6: a client that disconnects mid-request must not hold a slot forever.
    let g = gated(max(2));
    let stuck: Vec<_> = (0..3)
        .map(|_| {
            let svc = g.svc.clone();
            tokio::spawn(async move { svc.oneshot(request("a", "invalid")).await })
        })
        .collect();
    settle().await;
    assert_eq!(g.calls.load(Ordering::SeqCst), 2);
    // Two in flight, one waiting: all three clients go away.
    for task in &stuck {
        task.abort();
    }
    settle().await;

    g.gate.add_permits(2);
    let res = tokio::time::timeout(Duration::from_secs(1), send(&g.svc, "a", "invalid"))
        .await
        .expect("the aborted requests still hold their slots");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    // The aborted requests recorded nothing.
    assert_eq!(g.tracker.failures(&key("a")), 1);
}

#[tokio::test(start_paused = true)]
async fn b6_the_attempt_api_reserves_like_the_layer() {
    // B6
    let tracker = Tracker::new(max(2));
    let first = tracker.attempt(key("a")).await.unwrap();
    let second = tracker.attempt(key("a")).await.unwrap();
    let waiting = tokio::spawn({
        let tracker = tracker.clone();
        async move { tracker.attempt(key("a")).await.map(drop) }
    });
    settle().await;
    assert!(!waiting.is_finished());
    assert!(matches!(
        first.failed(),
        FailureOutcome::Counted { failures: 1, .. }
    ));
    settle().await;
    assert!(!waiting.is_finished(), "a failure must not free a slot");
    assert!(matches!(second.failed(), FailureOutcome::LockedOut(_)));
    let locked = waiting.await.unwrap().unwrap_err();
    assert_eq!(locked.retry_after(), 30 * MINUTE);
}

// ---------------------------------------------------------------- B7

#[tokio::test(start_paused = true)]
async fn b7_failures_are_forgotten_a_window_after_the_last_one() {
    // B7
    let policy = Policy::builder()
        .max_failures(3)
        .window(HOUR)
        .build()
        .unwrap();
    let (svc, tracker, _) = setup(policy);
    send(&svc, "a", "invalid").await;
    send(&svc, "a", "invalid").await;
    advance(HOUR).await;
    assert_eq!(tracker.failures(&key("a")), 0);
    send(&svc, "a", "invalid").await;
    send(&svc, "a", "invalid").await;
    assert!(tracker.check(&key("a")).is_ok());
    // The window runs from the last failure, not the first.
    advance(59 * MINUTE).await;
    assert_eq!(tracker.failures(&key("a")), 2);
    send(&svc, "a", "invalid").await;
    assert_eq!(
        send(&svc, "a", "ok").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn b7_repeat_offenders_are_locked_out_longer_up_to_the_cap() {
    // B7
    let policy = Policy::builder()
        .max_failures(2)
        .lockout(10 * MINUTE)
        .multiplier(2.0)
        .max_lockout(30 * MINUTE)
        .window(HOUR)
        .build()
        .unwrap();
    let (svc, tracker, _) = setup(policy);
    for expected in [10, 20, 30, 30] {
        send(&svc, "a", "invalid").await;
        send(&svc, "a", "invalid").await;
        let res = send(&svc, "a", "ok").await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            res.headers()[header::RETRY_AFTER],
            (expected * 60).to_string()
        );
        advance(expected * MINUTE).await;
        assert!(
            tracker.check(&key("a")).is_ok(),
            "lockout of {expected} min did not end"
        );
    }
    assert_eq!(tracker.stats().lockouts, 4);
}

#[tokio::test(start_paused = true)]
async fn b7_escalation_is_forgotten_a_window_after_the_lockout_ends() {
    // B7
    let policy = Policy::builder()
        .max_failures(1)
        .lockout(10 * MINUTE)
        .window(HOUR)
        .build()
        .unwrap();
    support::logs::capture();
    let tracker = Tracker::new(policy);
    let FailureOutcome::LockedOut(first) = tracker.record_failure(&1) else {
        panic!("not locked out");
    };
    assert_eq!((first.retry_after(), first.lockouts()), (10 * MINUTE, 1));
    advance(10 * MINUTE + HOUR - Duration::from_secs(1)).await;
    let FailureOutcome::LockedOut(second) = tracker.record_failure(&1) else {
        panic!("not locked out");
    };
    assert_eq!((second.retry_after(), second.lockouts()), (20 * MINUTE, 2));
    advance(20 * MINUTE + HOUR).await;
    let FailureOutcome::LockedOut(third) = tracker.record_failure(&1) else {
        panic!("not locked out");
    };
    assert_eq!((third.retry_after(), third.lockouts()), (10 * MINUTE, 1));
}

#[tokio::test(start_paused = true)]
async fn b7_failures_while_locked_out_neither_count_nor_extend_the_lockout() {
    // B7
    let (svc, tracker, calls) = setup(max(2));
    send(&svc, "a", "invalid").await;
    send(&svc, "a", "invalid").await;
    let until = tracker.check(&key("a")).unwrap_err().until();
    advance(10 * MINUTE).await;
    for _ in 0..10 {
        // Through the layer: refused before the inner service.
        assert_eq!(
            send(&svc, "a", "invalid").await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        // Through the direct API: not counted.
        let FailureOutcome::AlreadyLocked(locked) = tracker.record_failure(&key("a")) else {
            panic!("a failure while locked out was counted");
        };
        assert_eq!(locked.until(), until);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(tracker.stats().failures, 2);
    assert_eq!(tracker.check(&key("a")).unwrap_err().until(), until);
    advance(20 * MINUTE).await;
    assert!(tracker.check(&key("a")).is_ok());
}

#[tokio::test(start_paused = true)]
async fn b7_lockouts_expire_and_the_key_starts_afresh() {
    // B7
    let (svc, tracker, calls) = setup(max(2));
    send(&svc, "a", "invalid").await;
    send(&svc, "a", "invalid").await;
    advance(30 * MINUTE - Duration::from_millis(1)).await;
    assert_eq!(
        send(&svc, "a", "ok").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    advance(Duration::from_millis(1)).await;
    assert_eq!(send(&svc, "a", "ok").await.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(tracker.failures(&key("a")), 0);
    assert_eq!(tracker.stats().blocked, 0);
    send(&svc, "a", "invalid").await;
    assert!(
        tracker.check(&key("a")).is_ok(),
        "one failure after a lockout locked out again"
    );
}

#[tokio::test(start_paused = true)]
async fn b7_an_operator_can_unlock_a_key() {
    // B7
    let (svc, tracker, _) = setup(max(2));
    send(&svc, "a", "invalid").await;
    send(&svc, "a", "invalid").await;
    send(&svc, "b", "invalid").await;
    send(&svc, "b", "invalid").await;
    let blocked: Vec<String> = tracker.blocked_keys().into_iter().map(|b| b.key).collect();
    assert_eq!(blocked.len(), 2);
    assert!(tracker.unlock(&key("a")));
    assert!(!tracker.unlock(&key("a")));
    assert_eq!(send(&svc, "a", "ok").await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, "b", "ok").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let blocked = tracker.blocked_keys();
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].key, "b");
    assert_eq!(blocked[0].retry_after, 30 * MINUTE);
}

#[tokio::test(start_paused = true)]
async fn b7_a_success_does_not_reset_the_count_by_default() {
    // B7: an attacker interleaving its own valid credential gains nothing.
    let (svc, tracker, _) = setup(max(3));
    for _ in 0..2 {
        send(&svc, "a", "invalid").await;
        assert_eq!(send(&svc, "a", "ok").await.status(), StatusCode::OK);
    }
    assert_eq!(tracker.failures(&key("a")), 2);
    send(&svc, "a", "invalid").await;
    assert_eq!(
        send(&svc, "a", "ok").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn b7_a_success_resets_the_count_when_the_policy_says_so() {
    // B7
    let policy = Policy::builder()
        .max_failures(3)
        .reset_on_success(true)
        .build()
        .unwrap();
    let (svc, tracker, _) = setup(policy);
    for _ in 0..5 {
        send(&svc, "a", "invalid").await;
        send(&svc, "a", "invalid").await;
        assert_eq!(send(&svc, "a", "ok").await.status(), StatusCode::OK);
        assert_eq!(tracker.failures(&key("a")), 0);
    }
    // A success never lifts a lockout.
    for _ in 0..3 {
        send(&svc, "a", "invalid").await;
    }
    tracker.record_success(&key("a"));
    assert_eq!(
        send(&svc, "a", "ok").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn lockout_hook_receives_the_key_and_the_end_of_the_lockout() {
    // B7
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let layer =
        layer(max(2)).on_lockout(move |key, until| log.lock().unwrap().push((key.clone(), until)));
    let tracker = layer.tracker().clone();
    let (svc, _) = guarded(layer);
    send(&svc, "a", "invalid").await;
    assert!(seen.lock().unwrap().is_empty());
    send(&svc, "a", "invalid").await;
    let until = tracker.check(&key("a")).unwrap_err().until();
    assert_eq!(*seen.lock().unwrap(), [(key("a"), until)]);
}

#[tokio::test(start_paused = true)]
async fn stats_count_failures_lockouts_and_blocked_keys() {
    let (svc, tracker, _) = setup(max(2));
    send(&svc, "a", "invalid").await;
    send(&svc, "b", "invalid").await;
    send(&svc, "b", "invalid").await;
    tracker.run_pending_tasks();
    let stats = tracker.stats();
    assert_eq!(
        (
            stats.tracked,
            stats.blocked,
            stats.failures,
            stats.lockouts,
            stats.evictions
        ),
        (1, 1, 3, 1, 0)
    );
}

// ---------------------------------------------------------------- B10

#[tokio::test(start_paused = true)]
async fn b10_a_request_without_a_key_is_answered_500_and_never_shares_a_bucket() {
    // B10
    let (svc, tracker, calls) = setup(max(1));
    let anonymous = || {
        Request::builder()
            .header("x-outcome", "invalid")
            .body(String::new())
            .unwrap()
    };
    for _ in 0..3 {
        let res = svc.clone().oneshot(anonymous()).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(rejection_kind(&res), Some(RejectionKind::NoClientAddress));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(tracker.stats().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn b10_client_ip_without_a_peer_address_is_answered_500_with_the_fix() {
    // B10
    let layer = LockoutLayer::new(max(1));
    let tracker = layer.tracker().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let svc = layer.layer(service_fn(move |req: Request<String>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let outcome = outcome_of(&req);
        async move { Ok::<_, Infallible>(answer(&outcome)) }
    }));
    for _ in 0..3 {
        let req = Request::builder()
            .header("x-outcome", "invalid")
            .body(String::new())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(rejection_kind(&res), Some(RejectionKind::NoClientAddress));
        let body = res.into_body().collect().await.unwrap().to_bytes();
        // B10: the fix goes to the server's log, not to every client.
        assert!(!String::from_utf8_lossy(&body).contains("connect info"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(tracker.stats().failures, 0);

    // With a peer address the same requests are counted per client.
    let from = |peer: &str| {
        Request::builder()
            .header("x-outcome", "invalid")
            .extension(PeerAddr(peer.parse().unwrap()))
            .body(String::new())
            .unwrap()
    };
    let res = svc.clone().oneshot(from("192.0.2.1:1000")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = svc.clone().oneshot(from("192.0.2.1:2000")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let res = svc.clone().oneshot(from("192.0.2.2:1000")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------- L1

#[tokio::test(start_paused = true)]
async fn l1_a_canary_credential_never_appears_in_logs() {
    // L1
    const CANARY: &str = "canary-7f3a9c2e-secret";
    let captured = support::logs::capture();

    let (svc, tracker, _) = setup(max(3));
    for _ in 0..5 {
        let mut req = request("client-1", "invalid");
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {CANARY}").parse().unwrap(),
        );
        let res = svc.clone().oneshot(req).await.unwrap();
        assert!(!format!("{res:?}").contains(CANARY));
    }
    tracker.unlock(&key("client-1"));

    let logs = captured.text();
    // Every test of this file logs into the same buffer, so the canary is
    // checked against all of their logs.
    assert!(
        logs.contains("locked out"),
        "no lockout event captured:\n{logs}"
    );
    assert!(
        logs.contains("client-1"),
        "the key is missing from the logs:\n{logs}"
    );
    assert!(logs.contains("lifted"), "no unlock event captured:\n{logs}");
    assert!(!logs.contains(CANARY), "the credential leaked:\n{logs}");
    assert!(!format!("{tracker:?}").contains(CANARY));
}

// ---------------------------------------------------------------- D, R5

#[cfg(feature = "redis")]
mod shared_store {
    //! Against a real redis-server: `PORTCULLIS_REDIS_URL` names one; without
    //! it these tests say they are skipped, except in CI, where that fails.

    use redis::AsyncCommands;

    use super::*;
    use portcullis::lockout::RedisStore;

    use crate::support::redis::{Server, redis_url, store, unique_prefix};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn d2_two_replicas_with_32_concurrent_failures_each_accept_at_most_max_failures() {
        // D1, D2, D3
        let Some(url) = redis_url() else { return };
        let prefix = unique_prefix();
        let replicas = [
            Tracker::with_redis(Policy::default(), store(&url, &prefix).await),
            Tracker::with_redis(Policy::default(), store(&url, &prefix).await),
        ];
        let accepted = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for tracker in &replicas {
            for _ in 0..32 {
                let (tracker, accepted) = (tracker.clone(), Arc::clone(&accepted));
                tasks.push(tokio::spawn(async move {
                    if let Ok(attempt) = tracker.attempt(key("victim")).await {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        // The validator rejects the guess.
                        attempt.failed();
                    }
                }));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 5);
        for tracker in &replicas {
            assert_eq!(
                tracker.stats().fallbacks,
                0,
                "a decision was made without redis"
            );
        }
        // Both replicas learn the lockout from redis (D3: its TTL decides).
        for tracker in &replicas {
            let locked = tracker.attempt(key("victim")).await.unwrap_err();
            assert!(locked.retry_after() > Duration::from_secs(29 * 60));
            assert!(tracker.check(&key("victim")).is_err());
        }

        // D1: every key the scripts left behind has a TTL.
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = con.keys(format!("{prefix}*")).await.unwrap();
        assert!(!keys.is_empty());
        for k in keys {
            let ttl: i64 = con.pttl(&k).await.unwrap();
            assert!(ttl > 0, "{k} has no TTL ({ttl})");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn r5_redis_killed_mid_run_falls_back_to_local_lockouts_and_recovers() {
        // R5
        if redis_url().is_none() {
            return;
        }
        let Some(mut server) = Server::start_free() else {
            return;
        };
        let port = server.port();
        server.ready().await;
        let prefix = unique_prefix();
        let redis = RedisStore::connect(&server.url())
            .await
            .unwrap()
            .prefix(&prefix)
            .timeout(Duration::from_millis(200));
        let tracker = Tracker::with_redis(max(3), redis);
        let (svc, calls) = guarded(LockoutLayer::with_tracker(
            by_client as ByClient,
            tracker.clone(),
        ));
        let send = |client: &str| {
            let svc = svc.clone();
            let req = request(client, "invalid");
            async move {
                tokio::time::timeout(Duration::from_secs(5), svc.oneshot(req))
                    .await
                    .expect("the layer kept answering")
                    .unwrap()
                    .status()
            }
        };

        assert_eq!(send("before").await, StatusCode::UNAUTHORIZED);
        assert_eq!(tracker.stats().fallbacks, 0);

        server.kill();
        for _ in 0..3 {
            assert_eq!(send("during").await, StatusCode::UNAUTHORIZED);
        }
        // Locked out locally while redis is away.
        assert_eq!(send("during").await, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        assert!(tracker.stats().fallbacks > 0);

        // Back on the same port: shared state resumes.
        let server = Server::start(port).unwrap();
        server.ready().await;
        let client = redis::Client::open(server.url()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let mut n = 0;
        let resumed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                n += 1;
                send(&format!("after-{n}")).await;
                let keys: Vec<String> = con.keys(format!("{prefix}*after-*")).await.unwrap();
                if !keys.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(resumed.is_ok(), "the tracker never went back to redis");
    }
}
