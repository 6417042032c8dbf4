//! What a locked-out client sees, and the policy over time (B3, B7).

use super::*;

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
    assert_eq!(tracker.stats().locked_out, 0);
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
    let blocked: Vec<String> = tracker.locked_keys().into_iter().map(|b| b.key).collect();
    assert_eq!(blocked.len(), 2);
    assert!(tracker.unlock(&key("a")));
    assert!(!tracker.unlock(&key("a")));
    assert_eq!(send(&svc, "a", "ok").await.status(), StatusCode::OK);
    assert_eq!(
        send(&svc, "b", "ok").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let blocked = tracker.locked_keys();
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
    // B7, B19: a response marked `Succeeded` is a success.
    let policy = Policy::builder()
        .max_failures(3)
        .reset_on_success(true)
        .build()
        .unwrap();
    let (svc, tracker, _) = setup(policy);
    for _ in 0..5 {
        send(&svc, "a", "invalid").await;
        send(&svc, "a", "invalid").await;
        assert_eq!(send(&svc, "a", "succeeded").await.status(), StatusCode::OK);
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
async fn b19_a_plain_2xx_is_no_success_and_resets_nothing() {
    // B19: only an explicit success clears a key, never any 2xx.
    let policy = Policy::builder()
        .max_failures(3)
        .reset_on_success(true)
        .build()
        .unwrap();
    let (svc, tracker, _) = setup(policy);
    send(&svc, "a", "invalid").await;
    send(&svc, "a", "invalid").await;
    for _ in 0..5 {
        assert_eq!(send(&svc, "a", "ok").await.status(), StatusCode::OK);
    }
    assert_eq!(tracker.failures(&key("a")), 2);
    send(&svc, "a", "invalid").await;
    assert_eq!(
        send(&svc, "a", "succeeded").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn lockout_hook_receives_the_key_and_the_end_of_the_lockout() {
    // B7
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let layer = builder(max(2))
        .on_lockout(move |key, until| log.lock().unwrap().push((key.clone(), until)))
        .build()
        .unwrap();
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
    let stats = tracker.stats();
    assert_eq!(
        (
            stats.tracked,
            stats.locked_out,
            stats.failures,
            stats.lockouts,
            stats.evictions
        ),
        (1, 1, 3, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn b3_a_lockout_429_carries_the_ratelimit_field_with_t_equal_to_retry_after() {
    // B3, draft-ietf-httpapi-ratelimit-headers-10: `RateLimit` on the
    // lockout's 429, `t` never later than Retry-After, no policy (the
    // quota is failed attempts, not requests).
    let (svc, _, _) = setup(
        Policy::builder()
            .max_failures(1)
            .lockout(Duration::from_secs(90))
            .build()
            .unwrap(),
    );
    let res = send(&svc, "a", "invalid").await;
    assert!(res.headers().get("ratelimit").is_none());
    advance(Duration::from_millis(500)).await;
    let res = send(&svc, "a", "ok").await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()[header::RETRY_AFTER], "90");
    assert_eq!(res.headers()["ratelimit"], r#""lockout";r=0;t=90"#);
    assert!(res.headers().get("ratelimit-policy").is_none());
    // Admitted requests carry none.
    assert!(
        send(&svc, "b", "ok")
            .await
            .headers()
            .get("ratelimit")
            .is_none()
    );
}

#[test]
fn a_hook_given_before_the_key_it_takes_is_refused_by_build() {
    // B7: the hook takes the first key's type; given for the default
    // address key and then re-keyed by string, it could never be called.
    let built = LockoutLayer::builder(max(2))
        .on_lockout(|_: &std::net::IpAddr, _| {})
        .key(by_client as ByClient)
        .build();
    assert!(matches!(
        built,
        Err(portcullis::ConfigError::Incompatible {
            setting: "on_lockout",
            ..
        })
    ));
}
