//! Reservations under concurrency (B6, B11).

use super::*;

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

// ---------------------------------------------------------------- B11

/// A validator that accepts `good` and counts its calls; with `gate`, every
/// call waits for a permit first (a slow backend).
#[derive(Clone)]
struct Counting {
    calls: Arc<AtomicUsize>,
    gate: Option<Arc<Semaphore>>,
}

impl portcullis::Validator for Counting {
    type Identity = String;

    async fn validate(
        &self,
        credential: &portcullis::Credential,
    ) -> Result<String, portcullis::ValidationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        match credential.secret() {
            "good" => Ok("alice".to_owned()),
            _ => Err(portcullis::ValidationError::invalid()),
        }
    }
}

type Stack =
    BoxCloneService<Request<String>, Response<ResponseBody<ResponseBody<String>>>, Infallible>;

/// How the lockout and the auth layer are put together: by hand (the
/// reservation reaches the auth service in the request extensions), or by
/// a `portcullis::stack::Stack` (it goes with the call itself).
#[derive(Clone, Copy, Debug)]
enum Compose {
    ByHand,
    Stack,
}

const BOTH: [Compose; 2] = [Compose::ByHand, Compose::Stack];

/// `LockoutLayer` → `AuthLayer` (with `/login` public) → a handler that
/// waits at `barrier`, then answers 401 on `/login` and 200 elsewhere.
fn composed(
    how: Compose,
    policy: Policy,
    validator: Counting,
    barrier: Arc<tokio::sync::Barrier>,
    handled: Arc<AtomicUsize>,
) -> (Stack, Tracker<String>) {
    let lockout = layer(policy);
    let tracker = lockout.tracker().clone();
    let auth = portcullis::AuthLayer::new(validator).public(|p| p.uri.path() == "/login");
    let handler = service_fn(move |req: Request<String>| {
        let (barrier, handled) = (Arc::clone(&barrier), Arc::clone(&handled));
        async move {
            handled.fetch_add(1, Ordering::SeqCst);
            barrier.wait().await;
            let status = if req.uri().path() == "/login" {
                401
            } else {
                200
            };
            Ok::<_, Infallible>(
                Response::builder()
                    .status(status)
                    .body(String::new())
                    .unwrap(),
            )
        }
    });
    let svc = match how {
        Compose::ByHand => BoxCloneService::new(
            tower::ServiceBuilder::new()
                .layer(lockout)
                .layer(auth)
                .service(handler),
        ),
        Compose::Stack => BoxCloneService::new(
            portcullis::stack::Stack::new(auth)
                .lockout(lockout)
                .layer(handler),
        ),
    };
    (svc, tracker)
}

fn bearer(client: &str, token: &str) -> Request<String> {
    Request::builder()
        .uri("/me")
        .header("x-client", client)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap()
}

async fn all_at_once(how: Compose, validator_gate: Option<Arc<Semaphore>>) {
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let handled = Arc::new(AtomicUsize::new(0));
    let validator = Counting {
        calls: Arc::default(),
        gate: validator_gate.clone(),
    };
    let (svc, tracker) = composed(how, max(5), validator, barrier, Arc::clone(&handled));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(bearer("nat", "good")).await.unwrap() })
        })
        .collect();
    if let Some(gate) = validator_gate {
        settle().await;
        gate.add_permits(64);
    }
    // The handler waits until all 64 are inside it at once: with reservations
    // held for the whole request, only 5 would ever be.
    let statuses = tokio::time::timeout(Duration::from_secs(10), async {
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap().status());
        }
        statuses
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{how:?}: only {} of 64 valid requests reached the handler together",
            handled.load(Ordering::SeqCst)
        )
    });
    assert!(statuses.iter().all(|s| *s == StatusCode::OK));
    assert_eq!(tracker.stats().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn b11_sixty_four_parallel_valid_requests_all_reach_the_handler_at_once() {
    // B11, by hand and in a stack
    for how in BOTH {
        all_at_once(how, None).await;
    }
}

#[tokio::test(start_paused = true)]
async fn b11_valid_requests_with_a_slow_validator_also_reach_the_handler_at_once() {
    // B11: the validator answers later, through the waiting path.
    for how in BOTH {
        all_at_once(how, Some(Arc::new(Semaphore::new(0)))).await;
    }
}

#[tokio::test(start_paused = true)]
async fn b11_parallel_wrong_tokens_still_reach_the_validator_at_most_max_failures_times() {
    // B11, B6: settling on acceptance does not loosen the bound for guesses.
    for how in BOTH {
        wrong_tokens_in_parallel(how).await;
    }
}

/// What the composed lockout and auth layer answer.
type Answer = Response<ResponseBody<ResponseBody<String>>>;

/// `n` wrong guesses from one address in parallel, through a lockout with
/// `max_failures` 5, held at a validator that answers once its gate opens;
/// the first five have reached it.
struct Guessing {
    svc: Stack,
    tracker: Tracker<String>,
    gate: Arc<Semaphore>,
    calls: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<Result<Answer, Infallible>>>,
}

async fn guessing(how: Compose, n: usize) -> Guessing {
    let gate = Arc::new(Semaphore::new(0));
    let validator = Counting {
        calls: Arc::default(),
        gate: Some(Arc::clone(&gate)),
    };
    let calls = Arc::clone(&validator.calls);
    let barrier = Arc::new(tokio::sync::Barrier::new(1));
    let (svc, tracker) = composed(how, max(5), validator, barrier, Arc::default());
    let tasks = (0..n)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(bearer("nat", &format!("guess-{i}"))).await })
        })
        .collect();
    settle().await;
    assert_eq!(calls.load(Ordering::SeqCst), 5, "{how:?}");
    Guessing {
        svc,
        tracker,
        gate,
        calls,
        tasks,
    }
}

async fn wrong_tokens_in_parallel(how: Compose) {
    let Guessing {
        tracker,
        gate,
        calls,
        tasks,
        ..
    } = guessing(how, 64).await;
    gate.add_permits(1000);
    let mut refused = 0;
    for task in tasks {
        if task.await.unwrap().unwrap().status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(refused, 59);
    assert_eq!(tracker.stats().failures, 5);
}

#[tokio::test(start_paused = true)]
async fn b6_requests_dropped_while_their_validator_runs_free_their_slots() {
    // B6, B11: in a stack the auth service holds the reservation while the
    // validator runs; clients that go away then (and one waiting for a
    // slot) leave the key as they found it, either way it is composed.
    for how in BOTH {
        let Guessing {
            svc,
            tracker,
            gate,
            tasks: stuck,
            ..
        } = guessing(how, 6).await;
        for task in &stuck {
            task.abort();
        }
        settle().await;

        gate.add_permits(1000);
        let response = tokio::time::timeout(Duration::from_secs(1), async {
            svc.clone().oneshot(bearer("nat", "good")).await.unwrap()
        })
        .await
        .unwrap_or_else(|_| panic!("{how:?}: the dropped requests still hold their slots"));
        assert_eq!(response.status(), StatusCode::OK, "{how:?}");
        // The dropped requests recorded nothing.
        assert_eq!(tracker.stats().failures, 0, "{how:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn b11_bad_passwords_on_a_public_login_handler_hold_their_reservation_until_the_response() {
    // B11, B6: nothing settles a public request early, so the login
    // handler's 401s are bounded like wrong tokens.
    for how in BOTH {
        bad_passwords_in_parallel(how).await;
    }
}

async fn bad_passwords_in_parallel(how: Compose) {
    let barrier = Arc::new(tokio::sync::Barrier::new(1));
    let handled = Arc::new(AtomicUsize::new(0));
    let validator = Counting {
        calls: Arc::default(),
        gate: None,
    };
    let (svc, tracker) = composed(how, max(5), validator, barrier, Arc::clone(&handled));
    let login = || {
        Request::builder()
            .method("POST")
            .uri("/login")
            .header("x-client", "nat")
            .body("password=guess".to_owned())
            .unwrap()
    };
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(login()).await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(handled.load(Ordering::SeqCst), 5);
    let unauthorized = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(unauthorized, 5);
    assert_eq!(tracker.stats().failures, 5);
}

#[tokio::test(start_paused = true)]
async fn b11_a_full_queue_of_waiting_requests_answers_429_without_counting() {
    // B11: the requests waiting for a key's reservation are bounded.
    let policy = Policy::builder()
        .max_failures(1)
        .max_waiting(2)
        .build()
        .unwrap();
    let g = gated(policy);
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let svc = g.svc.clone();
            tokio::spawn(async move { svc.oneshot(request("a", "invalid")).await.unwrap() })
        })
        .collect();
    settle().await;
    // One inside, two waiting: the fourth is turned away at once.
    let res = send(&g.svc, "a", "invalid").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    assert_eq!(rejection_kind(&res), Some(RejectionKind::RateLimited));
    assert_eq!(g.tracker.failures(&key("a")), 0);
    g.gate.add_permits(10);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(g.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn b3_requests_refused_while_waiting_carry_the_ratelimit_field_too() {
    // B3, B11: locked out while waiting for a reservation, or turned away
    // by a full queue; both 429s say `RateLimit: "lockout";r=0;t=…`.
    let policy = Policy::builder()
        .max_failures(1)
        .max_waiting(1)
        .lockout(Duration::from_secs(60))
        .build()
        .unwrap();
    let g = gated(policy);
    let first = {
        let svc = g.svc.clone();
        tokio::spawn(async move { svc.oneshot(request("a", "invalid")).await.unwrap() })
    };
    settle().await;
    let waiting = {
        let svc = g.svc.clone();
        tokio::spawn(async move { svc.oneshot(request("a", "ok")).await.unwrap() })
    };
    settle().await;
    let crowded = send(&g.svc, "a", "ok").await;
    assert_eq!(crowded.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(crowded.headers()["ratelimit"], r#""lockout";r=0;t=1"#);
    g.gate.add_permits(10);
    assert_eq!(first.await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let waited = waiting.await.unwrap();
    assert_eq!(rejection_kind(&waited), Some(RejectionKind::LockedOut));
    assert_eq!(waited.headers()[header::RETRY_AFTER], "60");
    assert_eq!(waited.headers()["ratelimit"], r#""lockout";r=0;t=60"#);
}

/// An outer and an inner lockout, both outside `AuthLayer`, put together
/// by `nest` around a handler that waits until 64 requests are inside it.
type Nested = BoxCloneService<
    Request<String>,
    Response<ResponseBody<ResponseBody<ResponseBody<String>>>>,
    Infallible,
>;

/// The handler the lockouts are nested around.
type Handler = BoxCloneService<Request<String>, Response<String>, Infallible>;

async fn both_lockouts_released_and_counting(
    nest: impl FnOnce(TestLayer, TestLayer, portcullis::AuthLayer<Counting>, Handler) -> Nested,
) {
    let outer = layer(max(5));
    let inner = layer(max(3));
    let (outer_tracker, inner_tracker) = (outer.tracker().clone(), inner.tracker().clone());
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let validator = Counting {
        calls: Arc::default(),
        gate: None,
    };
    let handler = {
        let barrier = Arc::clone(&barrier);
        service_fn(move |_: Request<String>| {
            let barrier = Arc::clone(&barrier);
            async move {
                barrier.wait().await;
                Ok::<_, Infallible>(Response::new(String::new()))
            }
        })
    };
    let svc = nest(
        outer,
        inner,
        portcullis::AuthLayer::new(validator),
        BoxCloneService::new(handler),
    );
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(bearer("nat", "good")).await.unwrap() })
        })
        .collect();
    tokio::time::timeout(Duration::from_secs(10), async {
        for task in tasks {
            assert_eq!(task.await.unwrap().status(), StatusCode::OK);
        }
    })
    .await
    .expect("all 64 reach the handler together: neither lockout holds them");
    assert_eq!(outer_tracker.stats().failures, 0);
    assert_eq!(inner_tracker.stats().failures, 0);

    // Wrong tokens: each is a failure of both keys, and the stricter inner
    // lockout stops them after 3.
    for i in 0..3 {
        let response = svc
            .clone()
            .oneshot(bearer("nat", &format!("guess-{i}")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(outer_tracker.stats().failures, 3);
    assert_eq!(inner_tracker.stats().failures, 3);
    let response = svc.clone().oneshot(bearer("nat", "good")).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn b11_two_nested_lockouts_are_both_settled_when_the_credential_is_accepted() {
    // B11, B6: a lockout for the whole application and one for a group of
    // routes, both outside AuthLayer: an accepted credential releases both
    // reservations, and wrong tokens count in both.
    both_lockouts_released_and_counting(|outer, inner, auth, handler| {
        let svc = tower::ServiceBuilder::new()
            .layer(outer)
            .layer(inner)
            .layer(auth)
            .service(handler);
        BoxCloneService::new(svc)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn b11_a_lockout_outside_a_stack_is_released_with_the_stacks_own() {
    // B11, B6: the stack's lockout hands its reservation to the auth
    // service with the call; one added by hand outside the stack passes
    // its reservation in the extensions. Both are released, both count.
    both_lockouts_released_and_counting(|outer, inner, auth, handler| {
        let stack = portcullis::stack::Stack::new(auth).lockout(inner);
        BoxCloneService::new(outer.layer(stack.layer(handler)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_racing_admissions_on_two_threads_keep_the_bound_and_strand_no_waiter() {
    // B6, B11: a returning client's release takes no lock unless someone
    // waits for its key; on two threads at once, no more than the in-flight
    // limit are ever inside, and every waiting attempt is admitted in the
    // end (a release that raced a waiter's registration would leave it
    // waiting for ever, and the timeout below would say so).
    let tracker = Tracker::new(
        Policy::builder()
            .max_failures(3)
            .max_waiting(64)
            .build()
            .unwrap(),
    );
    let inside = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (tracker, inside, peak) = (tracker.clone(), Arc::clone(&inside), Arc::clone(&peak));
        tasks.push(tokio::spawn(async move {
            for round in 0..200u32 {
                let attempt = tracker.attempt("alice".to_owned()).await.unwrap();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                if round % 2 == 0 {
                    tokio::task::yield_now().await;
                }
                inside.fetch_sub(1, Ordering::SeqCst);
                attempt.succeeded();
            }
        }));
    }
    let all = futures_util::future::join_all(tasks);
    let done = tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("a waiting attempt was never woken");
    assert!(done.iter().all(Result::is_ok));
    assert!(
        peak.load(Ordering::SeqCst) <= 3,
        "{} inside at once",
        peak.load(Ordering::SeqCst)
    );
    assert_eq!(tracker.failures(&"alice".to_owned()), 0);
}
