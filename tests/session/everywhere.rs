//! S5: signing out everywhere is for good: no refresh token issued before
//! refreshes again, however long it is kept.

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::StreamBody;
use portcullis::{
    AuthLayer, ValidationErrorKind,
    events::{self, Event, SessionEndReason},
    session::SessionErrorKind,
};
use tokio::time::{advance, timeout};
use tower::ServiceBuilder;

use super::*;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// In-memory sessions that live 30 days, idle or not, so that only a
/// sign-out ends them within the tests.
fn long_lived() -> (Sessions, Revocations) {
    support::logs::capture();
    let revocations = Revocations::new();
    let sessions = Sessions::builder(AccessTokens::generate().unwrap(), &revocations)
        .idle_lifetime(30 * DAY)
        .absolute_lifetime(30 * DAY)
        .build()
        .unwrap();
    (sessions, revocations)
}

#[tokio::test(start_paused = true)]
async fn a_refresh_cookie_kept_for_8_days_after_signing_out_everywhere_never_refreshes() {
    // S5: the revocation list forgets the subject's cutoff after its
    // max_lifetime (24 h); the sessions must be gone by then.
    let (sessions, revocations) = long_lived();
    assert_eq!(revocations.max_lifetime(), DAY);
    let validator = validator(&sessions);
    let mut audit = events::subscribe(1024);
    let phone = sessions.sign_in("alice").await.unwrap();
    let laptop = sessions.sign_in("alice").await.unwrap();
    let bob = sessions.sign_in("bob").await.unwrap();
    // The thief's copy: the laptop's newest refresh cookie.
    let stolen = sessions.refresh_with(laptop.refresh_token()).await.unwrap();

    assert_eq!(sessions.sign_out_everywhere("alice").await.unwrap(), 2);
    for grant in [&phone, &stolen] {
        let error = access(&validator, grant).await.unwrap_err();
        assert_eq!(error.kind(), ValidationErrorKind::Revoked);
    }
    let ended: Vec<String> = std::iter::from_fn(|| audit.try_recv())
        .filter_map(|event| match event {
            Event::SessionEnded {
                subject,
                session,
                reason: SessionEndReason::SignedOutEverywhere,
            } if subject == "alice" => Some(session),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 2, "{ended:?}");
    assert!(ended.contains(&phone.session_id().to_owned()));

    // Eight days later the list no longer holds alice's cutoff; her old
    // cookies still refresh no more.
    for _ in 0..8 {
        advance(DAY).await;
    }
    assert_eq!(revocations.stats().entries, 0, "the cutoff was forgotten");
    for grant in [&phone, &laptop, &stolen] {
        let refused = sessions
            .refresh_with(grant.refresh_token())
            .await
            .unwrap_err();
        assert_eq!(refused.kind(), SessionErrorKind::Unknown);
    }
    // bob's session was not touched, and alice signs in again.
    sessions.refresh_with(bob.refresh_token()).await.unwrap();
    let again = sessions.sign_in("alice").await.unwrap();
    sessions.refresh_with(again.refresh_token()).await.unwrap();
    assert_eq!(sessions.stats().families, Some(2));
}

#[tokio::test(start_paused = true)]
async fn signing_out_everywhere_ends_the_open_streams_and_spares_later_sessions() {
    // S5, V3
    let (sessions, revocations) = long_lived();
    let stream = ServiceBuilder::new()
        .layer(AuthLayer::new(validator(&sessions)).leases(&revocations))
        .service_fn(|_: Request<String>| async {
            let never = futures_util::stream::pending::<Result<Frame<Bytes>, Infallible>>();
            Ok::<_, Infallible>(Response::new(StreamBody::new(never)))
        });
    let grant = sessions.sign_in("alice").await.unwrap();
    let request = Request::builder()
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", grant.access_token()),
        )
        .body(String::new())
        .unwrap();
    let mut body = stream.oneshot(request).await.unwrap().into_body();
    assert!(timeout(Duration::from_secs(3), body.frame()).await.is_err());

    // Signed out everywhere through the endpoint: the cookie is cleared.
    let app = endpoints_with_everywhere(sessions.clone());
    let cookie = format!("refresh={}", grant.refresh_token());
    let response = app
        .oneshot(post("/auth/logout?all=1", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let end = timeout(Duration::from_secs(1), body.frame())
        .await
        .expect("the stream ends within a second");
    // V5: cut by its lease, the body ends with an error, never as complete.
    assert!(matches!(end, Some(Err(_))), "the stream was not cut");

    // A session started afterwards lives on.
    advance(Duration::from_secs(2)).await;
    let later = sessions.sign_in("alice").await.unwrap();
    assert_eq!(sessions.sign_out_everywhere("nobody").await.unwrap(), 0);
    advance(8 * DAY).await;
    sessions.refresh_with(later.refresh_token()).await.unwrap();
}

/// The endpoints, with `?all=1` on the sign-out.
fn endpoints_with_everywhere(sessions: Sessions) -> Endpoints {
    let inner = endpoints(sessions.clone());
    BoxCloneService::new(service_fn(move |request: Request<String>| {
        let (sessions, inner) = (sessions.clone(), inner.clone());
        async move {
            if request.uri() == "/auth/logout?all=1" {
                let (parts, _) = request.into_parts();
                let response = answer(sessions.sign_out_everywhere_from(&parts).await);
                return Ok(response.map(Full::new));
            }
            inner.oneshot(request).await
        }
    }))
}
