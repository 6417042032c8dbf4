//! Progressive delay, a policy setting (B7), bounded and cancel-safe per
//! key (B6, B11).

use std::time::Duration;

use tokio::time::Instant;

use super::*;

fn delaying() -> Policy {
    support::logs::capture();
    Policy::builder()
        .max_failures(10)
        .delay_after(2)
        .delay(Duration::from_secs(1))
        .max_delay(Duration::from_secs(4))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn b7_attempts_wait_longer_after_each_failure_up_to_the_cap() {
    // B7: progressive delay before the lockout.
    let (svc, _, calls) = setup(delaying());
    let mut waited = Vec::new();
    for _ in 0..6 {
        let start = Instant::now();
        let res = send(&svc, "a", "invalid").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        waited.push(start.elapsed().as_secs());
    }
    assert_eq!(waited, [0, 0, 1, 2, 4, 4]);
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    // Another key is not slowed down.
    let start = Instant::now();
    send(&svc, "b", "ok").await;
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn b6_a_delayed_key_has_one_attempt_in_flight_and_a_dropped_one_frees_its_slot() {
    // B6, B11: bounded per key and cancel-safe.
    let (svc, tracker, calls) = setup(delaying());
    for _ in 0..2 {
        send(&svc, "a", "invalid").await;
    }
    // Three parallel attempts: one waits out the delay, two queue.
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move { svc.oneshot(request("a", "invalid")).await.unwrap() })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "nobody got past the delay yet"
    );
    // A client that goes away mid-delay frees the slot.
    for task in &tasks {
        task.abort();
    }
    for task in tasks {
        let _ = task.await;
    }
    assert_eq!(tracker.failures(&key("a")), 2);
    let start = Instant::now();
    let res = send(&svc, "a", "ok").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(start.elapsed().as_secs(), 1, "only its own delay");
}
