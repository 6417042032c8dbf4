//! S4: the in-memory store is bounded and never drops a live session
//! silently.

use std::time::Duration;

use portcullis::session::SessionErrorKind;
use tokio::time::advance;

use super::*;

fn bounded(capacity: u64) -> Sessions {
    support::logs::capture();
    Sessions::builder(AccessTokens::generate().unwrap(), &Revocations::new())
        .capacity(capacity)
        .idle_lifetime(Duration::from_secs(3600))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_full_store_refuses_sign_ins_and_keeps_every_live_session() {
    // S4
    let sessions = bounded(3);
    let mut live = Vec::new();
    for _ in 0..3 {
        live.push(sessions.sign_in("alice").await.unwrap());
    }
    for _ in 0..10 {
        let refused = sessions.sign_in("mallory").await.unwrap_err();
        assert_eq!(refused.kind(), SessionErrorKind::Full);
        let response = refused.response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(rejection(response).is_some_and(|r| !r.counts_as_failure()));
    }
    // Every live session still refreshes.
    for grant in &mut live {
        *grant = sessions.refresh_with(grant.refresh_token()).await.unwrap();
    }
    let stats = sessions.stats();
    assert_eq!(stats.families, Some(3));
    assert_eq!(stats.full, 10);
    assert_eq!((stats.signed_in, stats.refreshed), (3, 3));

    // A sign-out makes room.
    sessions
        .sign_out_with(live[0].refresh_token())
        .await
        .unwrap();
    sessions.sign_in("bob").await.unwrap();
    assert!(sessions.sign_in("bob").await.is_err());
}

#[tokio::test(start_paused = true)]
async fn ended_sessions_make_room_for_new_ones() {
    // S4
    let sessions = bounded(2);
    let idle = sessions.sign_in("alice").await.unwrap();
    advance(Duration::from_secs(1800)).await;
    let active = sessions.sign_in("bob").await.unwrap();
    advance(Duration::from_secs(1800)).await;
    // alice's session idled out; bob's lives.
    let active = sessions.refresh_with(active.refresh_token()).await.unwrap();
    sessions.sign_in("carol").await.unwrap();
    assert_eq!(sessions.stats().families, Some(2));
    assert!(sessions.refresh_with(idle.refresh_token()).await.is_err());
    assert!(sessions.refresh_with(active.refresh_token()).await.is_ok());
}
