//! Subjects with a cutoff, and the bounds of the list: expiry with what a
//! revocation revokes, capacity, logs (V1, R3, L1).

use std::time::{Duration, SystemTime};

use portcullis::{
    ValidationErrorKind,
    revoke::{Revocations, RevokeErrorKind},
};
use tokio::time::Instant;

use super::*;

#[tokio::test(start_paused = true)]
async fn a_subjects_cutoff_revokes_what_was_issued_before_it_and_nothing_after() {
    // V1
    let revocations = Revocations::new();
    let before = Sessions::new();
    let cache_before = cached(&before, &revocations);
    assert_eq!(kind(&cache_before, &bearer("alice-1")).await, None);
    revocations.revoke_subject("alice").await.unwrap();
    assert_eq!(
        kind(&cache_before, &bearer("alice-1")).await,
        Some(ValidationErrorKind::Revoked)
    );
    assert_eq!(kind(&cache_before, &bearer("bob-1")).await, None);

    // Sessions issued after the cutoff are accepted at once.
    let after = Sessions {
        issued: Some(SystemTime::now() + Duration::from_millis(5)),
        ..Sessions::new()
    };
    assert_eq!(
        kind(&cached(&after, &revocations), &bearer("alice-9")).await,
        None
    );
    // Sessions that do not say when they were issued count as before.
    let unknown = Sessions {
        issued: None,
        ..Sessions::new()
    };
    assert_eq!(
        kind(&cached(&unknown, &revocations), &bearer("alice-9")).await,
        Some(ValidationErrorKind::Revoked)
    );
}

#[tokio::test(start_paused = true)]
async fn revocations_expire_when_what_they_revoke_would_have_expired() {
    // V1: bounded in time.
    let revocations = Revocations::builder()
        .max_lifetime(Duration::from_secs(600))
        .build()
        .unwrap();
    let cache = cached(&Sessions::new(), &revocations);
    let expires = Instant::now() + Duration::from_secs(60);
    revocations
        .revoke_secret("alice-1", Some(expires))
        .await
        .unwrap();
    // Unknown expiry: held for max_lifetime.
    revocations.revoke_secret("alice-2", None).await.unwrap();
    // Beyond max_lifetime: held for max_lifetime.
    revocations
        .revoke_secret(
            "alice-3",
            Some(Instant::now() + Duration::from_secs(86_400)),
        )
        .await
        .unwrap();
    // Already expired: nothing to hold.
    revocations
        .revoke_secret("alice-4", Some(Instant::now()))
        .await
        .unwrap();
    assert_eq!(revocations.stats().entries, 3);

    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(revocations.stats().entries, 2);
    assert_eq!(kind(&cache, &bearer("alice-1")).await, None);
    assert_eq!(
        kind(&cache, &bearer("alice-2")).await,
        Some(ValidationErrorKind::Revoked)
    );
    tokio::time::advance(Duration::from_secs(540)).await;
    assert_eq!(revocations.stats().entries, 0);
    assert_eq!(kind(&cache, &bearer("alice-3")).await, None);
}

#[tokio::test(start_paused = true)]
async fn the_revocation_table_is_bounded_and_refuses_rather_than_drop_a_live_revocation() {
    // V1, R3: a flood of revocations never grows the table past its
    // capacity. V5: one that does not fit is refused, loudly; none in
    // effect is pushed out by others (a thief's signed-out token stays
    // revoked whatever other accounts sign out).
    let logs = support::logs::capture();
    let revocations = Revocations::builder().capacity(100).build().unwrap();
    let now = Instant::now();
    revocations
        .revoke_secret("stolen", Some(now + Duration::from_secs(60)))
        .await
        .unwrap();
    let mut refused = 0;
    for i in 0..1_000u64 {
        let until = now + Duration::from_secs(120 + i);
        if let Err(error) = revocations
            .revoke_secret(&format!("flood-{i}"), Some(until))
            .await
        {
            assert_eq!(error.kind(), RevokeErrorKind::Full);
            assert!(!error.in_effect_here());
            refused += 1;
        }
        assert!(revocations.stats().entries <= 100);
    }
    let stats = revocations.stats();
    assert_eq!(stats.entries, 100, "{stats:?}");
    assert_eq!(stats.refused, refused);
    assert_eq!(stats.applied + stats.refused, 1_001);
    assert!(logs.text().contains("the revocation table is full"));
    let check = |secret: &str| {
        let user = User {
            name: "x".into(),
            issued: None,
        };
        revocations.check(&bearer(secret), &user).is_err()
    };
    // The first revocation, which ends soonest, is still in effect.
    assert!(check("stolen"));
    // When it ends it makes room.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert!(!check("stolen"));
    let full_shards_have_room_again = (0..1_000u64).any(|i| {
        let until = Instant::now() + Duration::from_secs(10);
        drop(revocations.revoke_secret(&format!("late-{i}"), Some(until)));
        check(&format!("late-{i}"))
    });
    assert!(full_shards_have_room_again);
}

#[tokio::test(start_paused = true)]
async fn logs_name_revoked_secrets_by_a_keyed_fingerprint_only() {
    // L1, L5
    let logs = support::logs::capture();
    let canary = "canary-revoke-7f3a-secret";
    let revocations = Revocations::new();
    revocations.revoke_secret(canary, None).await.unwrap();
    let text = logs.text();
    assert!(text.contains("secret revoked"), "{text}");
    assert!(!text.contains(canary));
    assert!(!text.contains(&portcullis::validate::KeyDigest::of(canary).to_hex()));
    assert!(!format!("{revocations:?}").contains(canary));
}

#[tokio::test(start_paused = true)]
async fn a_lifetime_that_overflows_the_clock_is_a_configuration_error_never_a_disabled_list() {
    // V5: `now + max_lifetime` overflowed, and every revocation counted as
    // already expired.
    for max_lifetime in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let built = Revocations::builder().max_lifetime(max_lifetime).build();
        let Err(error) = built else { panic!("refused") };
        assert!(error.to_string().contains("max_lifetime"), "{error}");
    }
    // The longest accepted lifetime still revokes, and holds.
    let revocations = Revocations::builder()
        .max_lifetime(Duration::from_secs(10 * 365 * 24 * 3600))
        .build()
        .unwrap();
    revocations.revoke_secret("alice-1", None).await.unwrap();
    revocations.revoke_subject("bob").await.unwrap();
    tokio::time::advance(Duration::from_secs(400 * 24 * 3600)).await;
    let cache = cached(&Sessions::new(), &revocations);
    for secret in ["alice-1", "bob-1"] {
        assert_eq!(
            kind(&cache, &bearer(secret)).await,
            Some(ValidationErrorKind::Revoked)
        );
    }
}
