//! The bounded tables under floods of keys (B4, B5, R3).

use super::*;

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
    assert_eq!(stats.locked_out, 1);
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
            assert!(tracker.stats().tracked <= CAPACITY);
        }
    }
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

#[tokio::test(start_paused = true)]
async fn b5_a_flood_of_clients_that_never_fail_does_not_push_a_count_out() {
    // B5, R3: returning clients keep their entries between requests, in a
    // bounded set of their own; a count is pushed out only by other counts.
    const CAPACITY: u64 = 1_000;
    let (svc, tracker, calls) = setup(Policy::builder().capacity(CAPACITY).build().unwrap());
    for _ in 0..4 {
        send(&svc, "attacker", "invalid").await;
    }
    for n in 0..10 * CAPACITY {
        let res = send(&svc, &format!("visitor-{n}"), "ok").await;
        assert_eq!(res.status(), StatusCode::OK);
        if n % 500 == 499 {
            assert_eq!(tracker.failures(&key("attacker")), 4, "dropped after {n}");
            assert_eq!(tracker.stats().tracked, 1);
        }
    }
    let before = calls.load(Ordering::SeqCst);
    assert_eq!(
        send(&svc, "attacker", "invalid").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&svc, "attacker", "ok").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(calls.load(Ordering::SeqCst) - before, 1);
}
