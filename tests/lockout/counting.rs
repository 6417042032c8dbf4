//! Which outcomes count as failures (B1, B2).

use super::*;

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
    let layer = builder(max(2))
        .classifier(|res: &http::response::Parts| {
            if res.status == StatusCode::UNPROCESSABLE_ENTITY {
                Outcome::Failure
            } else {
                Outcome::Neutral
            }
        })
        .build()
        .unwrap();
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
