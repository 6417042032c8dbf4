//! S2: a used refresh token presented again (outside the grace window)
//! revokes the whole session: its refresh tokens, its access tokens and its
//! open streams (V3), with an audit event.

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::StreamBody;
use portcullis::{
    AuthLayer, ValidationErrorKind,
    events::{self, Event, Subscription},
    lease::{End, Truncated},
    session::SessionErrorKind,
};
use tokio::time::{advance, timeout};
use tower::ServiceBuilder;

use super::*;

/// Whether `audit` got a `SessionReused` event for `session` of `subject`.
fn reported(audit: &mut Subscription, session: &str, subject: &str) -> bool {
    std::iter::from_fn(|| audit.try_recv()).any(|event| {
        event
            == Event::SessionReused {
                subject: subject.to_owned(),
                session: session.to_owned(),
            }
    })
}

#[tokio::test(start_paused = true)]
async fn reuse_revokes_the_session_its_access_tokens_and_its_open_streams() {
    // S2, V3
    let (sessions, revocations) = sessions(Duration::from_secs(5));
    let mut audit = events::subscribe(1024);
    let stream = ServiceBuilder::new()
        .layer(AuthLayer::new(validator(&sessions)).leases(&revocations))
        .service_fn(|_: Request<String>| async {
            let never = futures_util::stream::pending::<Result<Frame<Bytes>, Infallible>>();
            Ok::<_, Infallible>(Response::new(StreamBody::new(never)))
        });
    let first = sessions.sign_in("alice").await.unwrap();
    let second = sessions.refresh_with(first.refresh_token()).await.unwrap();
    let request = Request::builder()
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", second.access_token()),
        )
        .body(String::new())
        .unwrap();
    let response = stream.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    assert!(
        timeout(Duration::from_secs(3), body.frame()).await.is_err(),
        "the stream is open"
    );

    // The thief replays the first token after the grace window.
    advance(Duration::from_secs(5)).await;
    let refused = sessions
        .refresh_with(first.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Reused);
    assert!(reported(&mut audit, first.session_id(), "alice"));

    // The open stream ends within a second.
    let end = timeout(Duration::from_secs(1), body.frame())
        .await
        .expect("the stream ends within a second");
    // Cut with an error its client sees, never ended as complete (V5).
    let cut = end.expect("a last frame").expect_err("a cut");
    assert_eq!(
        cut.downcast_ref::<Truncated>().map(Truncated::end),
        Some(End::Revoked)
    );
    // Every access token of the session is refused.
    let validator = validator(&sessions);
    for grant in [&first, &second] {
        let error = access(&validator, grant).await.unwrap_err();
        assert_eq!(error.kind(), ValidationErrorKind::Revoked);
    }
    // And so is its newest refresh token.
    let refused = sessions
        .refresh_with(second.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Revoked);
    assert_eq!(sessions.stats().families, Some(0));
}

#[tokio::test(start_paused = true)]
async fn reuse_revokes_only_the_session_it_belongs_to() {
    // S2
    let (sessions, _) = sessions(Duration::ZERO);
    let validator = validator(&sessions);
    let laptop = sessions.sign_in("alice").await.unwrap();
    let phone = sessions.sign_in("alice").await.unwrap();
    sessions.refresh_with(laptop.refresh_token()).await.unwrap();
    let refused = sessions
        .refresh_with(laptop.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Reused);
    assert!(access(&validator, &laptop).await.is_err());

    assert!(access(&validator, &phone).await.is_ok());
    let phone = sessions.refresh_with(phone.refresh_token()).await.unwrap();
    assert!(access(&validator, &phone).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn signing_out_with_a_used_token_is_a_reuse_and_revokes_the_session() {
    // S2
    let (sessions, _) = sessions(Duration::from_secs(5));
    let validator = validator(&sessions);
    let mut audit = events::subscribe(1024);
    let first = sessions.sign_in("alice").await.unwrap();
    let second = sessions.refresh_with(first.refresh_token()).await.unwrap();
    advance(Duration::from_secs(10)).await;
    let refused = sessions
        .sign_out_with(first.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Reused);
    assert!(reported(&mut audit, first.session_id(), "alice"));
    assert!(access(&validator, &second).await.is_err());
    assert!(sessions.refresh_with(second.refresh_token()).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn signing_out_ends_the_session_its_access_tokens_and_refreshes() {
    // S2 (by its owner), V1
    let (sessions, _) = sessions(Duration::from_secs(5));
    let validator = validator(&sessions);
    let mut audit = events::subscribe(1024);
    let grant = sessions.sign_in("alice").await.unwrap();
    assert!(access(&validator, &grant).await.is_ok());
    let signed_out = sessions.sign_out_with(grant.refresh_token()).await.unwrap();
    assert!(
        signed_out
            .clear_cookie()
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(access(&validator, &grant).await.is_err());
    let refused = sessions
        .refresh_with(grant.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Revoked);
    // An ordinary sign-out is not a reuse.
    assert!(!reported(&mut audit, grant.session_id(), "alice"));
}

#[tokio::test(start_paused = true)]
async fn a_subject_signed_out_everywhere_refreshes_no_more() {
    // V1: a subject's cutoff reaches its sessions' refresh tokens.
    let (sessions, revocations) = sessions(Duration::ZERO);
    let laptop = sessions.sign_in("alice").await.unwrap();
    let bob = sessions.sign_in("bob").await.unwrap();
    revocations.revoke_subject("alice").await.unwrap();
    let refused = sessions
        .refresh_with(laptop.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Revoked);
    assert!(sessions.refresh_with(bob.refresh_token()).await.is_ok());
    // A session started after the cutoff refreshes.
    let later = sessions.sign_in("alice").await.unwrap();
    assert!(sessions.refresh_with(later.refresh_token()).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_operator_revokes_a_session_by_its_id() {
    // V1: by session id.
    let (sessions, _) = sessions(Duration::ZERO);
    let validator = validator(&sessions);
    let grant = sessions.sign_in("alice").await.unwrap();
    assert!(sessions.revoke_session(grant.session_id()).await.unwrap());
    assert!(!sessions.revoke_session(grant.session_id()).await.unwrap());
    assert!(access(&validator, &grant).await.is_err());
    assert!(sessions.refresh_with(grant.refresh_token()).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_sign_out_the_full_revocation_list_refused_is_not_answered_as_done() {
    // S7, V5: a list full of live revocations refuses the sign-out's; the
    // access token still works, so the answer is 503, not 204.
    support::logs::capture();
    let revocations = Revocations::builder().capacity(1).build().unwrap();
    let sessions = Sessions::builder(AccessTokens::generate().unwrap(), &revocations)
        .build()
        .unwrap();
    let validator = validator(&sessions);
    let grant = sessions.sign_in("alice").await.unwrap();
    // Another user's live revocation fills the list.
    revocations.revoke_subject("mallory").await.unwrap();
    let refused = sessions
        .sign_out_with(grant.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Unavailable);
    assert_eq!(refused.response().status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        access(&validator, &grant).await.is_ok(),
        "nothing was revoked"
    );
}
