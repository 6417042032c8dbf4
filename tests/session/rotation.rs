//! S1: refresh tokens are rotated at every use, with exactly one successor
//! per token, also under concurrent refreshes.

use std::{collections::HashSet, sync::Arc, time::Duration};

use portcullis::{revoke::Revocable, session::SessionErrorKind};
use tokio::{sync::Barrier, time::advance};

use super::*;

#[tokio::test(start_paused = true)]
async fn a_refresh_rotates_the_refresh_token_and_issues_a_new_access_token() {
    // S1
    let (sessions, _) = sessions(Duration::ZERO);
    let validator = validator(&sessions);
    let first = sessions.sign_in("alice").await.unwrap();
    let second = sessions.refresh_with(first.refresh_token()).await.unwrap();
    assert_ne!(second.refresh_token(), first.refresh_token());
    assert_ne!(second.access_token(), first.access_token());
    assert_eq!(second.session_id(), first.session_id());

    let claims = access(&validator, &second).await.unwrap();
    assert_eq!(claims.subject(), Some("alice"));
    assert_eq!(claims.session_id(), Some(first.session_id()));
    let jti = |grant| {
        let validator = validator.clone();
        async move {
            access(&validator, grant)
                .await
                .unwrap()
                .token_id()
                .unwrap()
                .to_owned()
        }
    };
    assert_ne!(jti(&first).await, jti(&second).await);

    // The successor rotates in turn.
    let third = sessions.refresh_with(second.refresh_token()).await.unwrap();
    assert_ne!(third.refresh_token(), second.refresh_token());
}

#[tokio::test]
async fn refresh_tokens_are_a_session_id_and_256_random_bits() {
    // S1: 43 base64url characters hold 256 bits.
    let (sessions, _) = sessions(Duration::ZERO);
    let mut seen = HashSet::new();
    for _ in 0..100 {
        let grant = sessions.sign_in("alice").await.unwrap();
        let (sid, secret) = grant.refresh_token().split_once('.').unwrap();
        assert_eq!(sid, grant.session_id());
        assert_eq!(secret.len(), 43);
        assert!(
            secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(seen.insert(secret.to_owned()));
        assert!(!format!("{grant:?}").contains(secret));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_refreshes_of_one_token_all_get_its_one_successor() {
    // S1: 64 refreshes of one token at once, within the grace window.
    let (sessions, _) = sessions(Duration::from_secs(60));
    let first = sessions.sign_in("alice").await.unwrap();
    let token: Arc<str> = first.refresh_token().into();
    let barrier = Arc::new(Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (sessions, token, barrier) = (sessions.clone(), token.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                sessions.refresh_with(&token).await
            })
        })
        .collect();
    let mut successors = HashSet::new();
    let mut access_tokens = HashSet::new();
    for task in tasks {
        let grant = task
            .await
            .unwrap()
            .expect("every racing refresh is answered");
        successors.insert(grant.refresh_token().to_owned());
        access_tokens.insert(grant.access_token().to_owned());
    }
    assert_eq!(successors.len(), 1, "exactly one successor");
    assert_eq!(access_tokens.len(), 64, "each its own access token");
    assert_eq!(sessions.stats().refreshed, 64);
    // The successor is the session's current token.
    let successor = successors.into_iter().next().unwrap();
    sessions.refresh_with(&successor).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_grace_window_one_racing_refresh_wins_and_the_others_revoke_the_session() {
    // S1, S2: exactly one successor; every other use is a reuse.
    let (sessions, _) = sessions(Duration::ZERO);
    let first = sessions.sign_in("alice").await.unwrap();
    let token: Arc<str> = first.refresh_token().into();
    let barrier = Arc::new(Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (sessions, token, barrier) = (sessions.clone(), token.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                sessions.refresh_with(&token).await
            })
        })
        .collect();
    let mut granted = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(grant) => granted.push(grant),
            Err(error) => assert!(
                matches!(
                    error.kind(),
                    SessionErrorKind::Reused
                        | SessionErrorKind::Revoked
                        | SessionErrorKind::Unknown
                ),
                "{error:?}"
            ),
        }
    }
    assert_eq!(granted.len(), 1, "exactly one successor");
    assert!(sessions.stats().reused >= 1);
    let refused = sessions
        .refresh_with(granted[0].refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Revoked);
}

#[tokio::test(start_paused = true)]
async fn within_the_grace_window_a_token_gets_the_same_successor_and_after_it_revokes() {
    // S1, S2
    let (sessions, _) = sessions(Duration::from_secs(5));
    let first = sessions.sign_in("alice").await.unwrap();
    let second = sessions.refresh_with(first.refresh_token()).await.unwrap();
    advance(Duration::from_millis(4999)).await;
    let again = sessions.refresh_with(first.refresh_token()).await.unwrap();
    assert_eq!(again.refresh_token(), second.refresh_token());
    // The cookie ends when the session would: 5 s sooner than at first.
    assert!(
        again
            .set_cookie()
            .to_str()
            .unwrap()
            .ends_with("; Max-Age=604795")
    );
    assert_eq!(sessions.stats().reused, 0);

    advance(Duration::from_millis(1)).await;
    let refused = sessions
        .refresh_with(first.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Reused);
    assert_eq!(sessions.stats().reused, 1);
    let refused = sessions
        .refresh_with(second.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Revoked);
}

#[tokio::test(start_paused = true)]
async fn a_race_lost_after_the_successor_rotated_is_a_conflict_that_revokes_nothing() {
    // S1: within the grace window, a refusal that revokes nothing.
    let (sessions, _) = sessions(Duration::from_secs(5));
    let validator = validator(&sessions);
    let first = sessions.sign_in("alice").await.unwrap();
    let second = sessions.refresh_with(first.refresh_token()).await.unwrap();
    advance(Duration::from_secs(1)).await;
    let third = sessions.refresh_with(second.refresh_token()).await.unwrap();

    let refused = sessions
        .refresh_with(first.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Conflict);
    let response = refused.response();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    assert!(rejection(response).is_none(), "not a failed attempt");
    assert!(response.headers().get(header::SET_COOKIE).is_none());

    assert!(access(&validator, &third).await.is_ok());
    let fourth = sessions.refresh_with(third.refresh_token()).await.unwrap();
    assert!(access(&validator, &fourth).await.is_ok());
    assert_eq!(sessions.stats().reused, 0);
}
