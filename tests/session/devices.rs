//! S6: a user sees their live sessions and ends any one of them; a cap on
//! sessions per subject ends the least recently used one, so one account
//! cannot fill the store. S7: signing in is behind cross-origin
//! protection.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body::Frame;
use http_body_util::StreamBody;
use portcullis::{
    AuthLayer, PeerAddr, ValidationErrorKind,
    events::{self, Event, SessionEndReason, Subscription},
    session::SessionErrorKind,
};
use tokio::time::{advance, timeout};
use tower::ServiceBuilder;

use super::*;

/// The parts of a same-origin sign-in from `agent` at `addr`.
fn sign_in_request(agent: &str, addr: [u8; 4]) -> Parts {
    let mut request = post("/auth/login", None);
    request
        .headers_mut()
        .insert(header::USER_AGENT, agent.parse().unwrap());
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from((addr, 4711))));
    request.into_parts().0
}

/// The sessions `audit` saw end for `reason`.
fn ended(audit: &mut Subscription, reason: SessionEndReason) -> Vec<String> {
    std::iter::from_fn(|| audit.try_recv())
        .filter_map(|event| match event {
            Event::SessionEnded {
                session, reason: r, ..
            } if r == reason => Some(session),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_user_sees_their_live_sessions_and_how_each_signed_in() {
    // S6
    let (sessions, _) = sessions(Duration::from_secs(5));
    let before = SystemTime::now() - Duration::from_secs(1);
    let phone = sessions
        .sign_in_from(&sign_in_request("Phone/1.0", [192, 0, 2, 7]), "alice")
        .await
        .unwrap();
    let laptop = sessions
        .sign_in_from(&sign_in_request("Laptop/2.0", [198, 51, 100, 9]), "alice")
        .await
        .unwrap();
    sessions.sign_in("bob").await.unwrap();
    advance(Duration::from_secs(60)).await;
    // The laptop refreshed last: it comes first.
    let laptop = sessions.refresh_with(laptop.refresh_token()).await.unwrap();

    let list = sessions
        .list("alice", Some(laptop.session_id()))
        .await
        .unwrap();
    let ids: Vec<&str> = list.iter().map(|s| s.id()).collect();
    assert_eq!(ids, [laptop.session_id(), phone.session_id()]);
    let [first, second] = [&list.iter().next().unwrap(), &list.iter().nth(1).unwrap()];
    assert!(first.is_current() && !second.is_current());
    assert_eq!(first.device().user_agent(), Some("Laptop/2.0"));
    assert_eq!(
        first.device().address(),
        Some(IpAddr::from([198, 51, 100, 9]))
    );
    assert_eq!(second.device().user_agent(), Some("Phone/1.0"));
    assert!(first.created_at() >= before && first.last_used_at() >= first.created_at());
    assert_eq!(second.last_used_at(), second.created_at());

    // As a response: a JSON array the user can read.
    let response: Response<Bytes> = list.into();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    let first = &json[0];
    assert_eq!(first["id"], laptop.session_id());
    assert_eq!(first["current"], true);
    assert_eq!(first["user_agent"], "Laptop/2.0");
    let secs = before.duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!(first["created_at"].as_u64().unwrap() >= secs);
    assert!(first["last_used_at"].as_u64().unwrap() >= secs);
    assert_eq!(json[1]["current"], false);
    assert_eq!(json.as_array().unwrap().len(), 2);
    // Nothing of a token in the list.
    let body = String::from_utf8(response.body().to_vec()).unwrap();
    for grant in [&phone, &laptop] {
        assert!(!body.contains(grant.refresh_token().split_once('.').unwrap().1));
        assert!(!body.contains(grant.access_token()));
    }
}

#[tokio::test(start_paused = true)]
async fn the_client_address_can_be_left_out() {
    // S6: privacy.
    support::logs::capture();
    let sessions = Sessions::builder(AccessTokens::generate().unwrap(), &Revocations::new())
        .record_address(false)
        .build()
        .unwrap();
    sessions
        .sign_in_from(&sign_in_request("Phone/1.0", [192, 0, 2, 7]), "alice")
        .await
        .unwrap();
    let list = sessions.list("alice", None).await.unwrap();
    let session = list.iter().next().unwrap();
    assert_eq!(session.device().address(), None);
    assert_eq!(session.device().user_agent(), Some("Phone/1.0"));
    assert_eq!(session.json()["address"], serde_json::Value::Null);
}

#[tokio::test(start_paused = true)]
async fn ending_a_session_ends_its_refresh_token_access_tokens_and_stream_within_a_second() {
    // S6, V3
    let (sessions, revocations) = sessions(Duration::from_secs(5));
    let mut audit = events::subscribe(1024);
    let validator = validator(&sessions);
    let stream = ServiceBuilder::new()
        .layer(AuthLayer::new(validator.clone()).leases(&revocations))
        .service_fn(|_: Request<String>| async {
            let never = futures_util::stream::pending::<Result<Frame<Bytes>, Infallible>>();
            Ok::<_, Infallible>(Response::new(StreamBody::new(never)))
        });
    let stolen = sessions.sign_in("alice").await.unwrap();
    let mine = sessions.sign_in("alice").await.unwrap();
    let request = Request::builder()
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", stolen.access_token()),
        )
        .body(String::new())
        .unwrap();
    let mut body = stream.oneshot(request).await.unwrap().into_body();
    assert!(timeout(Duration::from_secs(3), body.frame()).await.is_err());

    // Another subject cannot end it, nor can an id that is not a session.
    assert!(!sessions.end("mallory", stolen.session_id()).await.unwrap());
    assert!(!sessions.end("alice", "not-a-session").await.unwrap());
    assert!(access(&validator, &stolen).await.is_ok());

    assert!(sessions.end("alice", stolen.session_id()).await.unwrap());
    let end = timeout(Duration::from_secs(1), body.frame())
        .await
        .expect("the stream ends within a second");
    // V5: cut by its lease, the body ends with an error, never as complete.
    assert!(matches!(end, Some(Err(_))), "the stream was not cut");
    let error = access(&validator, &stolen).await.unwrap_err();
    assert_eq!(error.kind(), ValidationErrorKind::Revoked);
    let refused = sessions
        .refresh_with(stolen.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Revoked);
    let ours: Vec<String> = ended(&mut audit, SessionEndReason::EndedByUser)
        .into_iter()
        .filter(|sid| [&stolen, &mine].iter().any(|g| g.session_id() == sid))
        .collect();
    assert_eq!(ours, [stolen.session_id()]);
    // Once is enough; the other session lives on.
    assert!(!sessions.end("alice", stolen.session_id()).await.unwrap());
    assert!(access(&validator, &mine).await.is_ok());
    let list = sessions
        .list("alice", Some(mine.session_id()))
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    sessions.refresh_with(mine.refresh_token()).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn signing_in_past_the_cap_ends_the_least_recently_used_session() {
    // S6
    support::logs::capture();
    let revocations = Revocations::new();
    let sessions = Sessions::builder(AccessTokens::generate().unwrap(), &revocations)
        .max_sessions(3)
        .build()
        .unwrap();
    let validator = validator(&sessions);
    let mut audit = events::subscribe(1024);
    let mut grants = Vec::new();
    for _ in 0..3 {
        grants.push(sessions.sign_in("alice").await.unwrap());
        advance(Duration::from_secs(10)).await;
    }
    // The oldest refreshes: the second is now the least recently used.
    grants[0] = sessions
        .refresh_with(grants[0].refresh_token())
        .await
        .unwrap();
    advance(Duration::from_secs(10)).await;
    let fourth = sessions.sign_in("alice").await.unwrap();

    let refused = sessions
        .refresh_with(grants[1].refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Revoked);
    let error = access(&validator, &grants[1]).await.unwrap_err();
    assert_eq!(error.kind(), ValidationErrorKind::Revoked);
    // Events are process-wide: other tests' sessions end too.
    let ours: Vec<String> = ended(&mut audit, SessionEndReason::Cap)
        .into_iter()
        .filter(|sid| {
            grants
                .iter()
                .chain([&fourth])
                .any(|g| g.session_id() == sid)
        })
        .collect();
    assert_eq!(ours, [grants[1].session_id()]);
    let list = sessions.list("alice", None).await.unwrap();
    let mut ids: Vec<&str> = list.iter().map(|s| s.id()).collect();
    ids.sort_unstable();
    let mut expected = [
        grants[0].session_id(),
        grants[2].session_id(),
        fourth.session_id(),
    ];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    for grant in [&grants[0], &grants[2], &fourth] {
        sessions.refresh_with(grant.refresh_token()).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn one_subject_signing_in_in_a_loop_cannot_fill_the_store() {
    // S6, S4: the store's bound holds and one subject never takes more
    // than its cap.
    support::logs::capture();
    let sessions = Sessions::builder(AccessTokens::generate().unwrap(), &Revocations::new())
        .capacity(10)
        .max_sessions(4)
        .build()
        .unwrap();
    for _ in 0..1000 {
        sessions.sign_in("mallory").await.unwrap();
    }
    assert_eq!(sessions.stats().families, Some(4));
    assert_eq!(sessions.list("mallory", None).await.unwrap().len(), 4);
    // Everyone else still signs in, up to the store's bound.
    for user in ["alice", "bob", "carol", "dave", "erin", "frank"] {
        sessions.sign_in(user).await.unwrap();
    }
    assert_eq!(sessions.stats().families, Some(10));
    let refused = sessions.sign_in("grace").await.unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Full);
    // mallory again: her own oldest goes, nobody else's.
    sessions.sign_in("mallory").await.unwrap();
    assert_eq!(sessions.stats().families, Some(10));
    assert_eq!(sessions.stats().full, 1);
}

#[tokio::test(start_paused = true)]
async fn a_cross_site_sign_in_is_refused_and_starts_no_session() {
    // S7: login CSRF; C1.
    let (sessions, _) = sessions(Duration::ZERO);
    let app = endpoints(sessions.clone());
    let mut login = post("/auth/login", None);
    *login.body_mut() = "alice:wonderland".to_owned();
    login
        .headers_mut()
        .insert("sec-fetch-site", "cross-site".parse().unwrap());
    let response = app.clone().oneshot(login).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(header::SET_COOKIE).is_none());
    assert!(rejection(&response).is_some_and(|r| !r.counts_as_failure()));
    assert!(sessions.list("alice", None).await.unwrap().is_empty());
    let (parts, ()) = Request::builder()
        .uri("/auth/login")
        .method(Method::POST)
        .header(header::HOST, "memos.example")
        .header(header::ORIGIN, "https://evil.example")
        .body(())
        .unwrap()
        .into_parts();
    let refused = sessions.sign_in_from(&parts, "alice").await.unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::CrossOrigin);
    assert_eq!(sessions.stats().signed_in, 0);

    // Same-origin, it signs in.
    let mut login = post("/auth/login", None);
    *login.body_mut() = "alice:wonderland".to_owned();
    let response = app.oneshot(login).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_session_that_ended_is_reported_expired_when_the_store_drops_it() {
    // S6: every end has its reason.
    let (sessions, _) = sessions(Duration::from_secs(5));
    let mut audit = events::subscribe(1024);
    let old = sessions.sign_in("alice").await.unwrap();
    advance(Duration::from_secs(7 * 24 * 3600)).await;
    assert!(sessions.list("alice", None).await.unwrap().is_empty());
    let ours: Vec<String> = ended(&mut audit, SessionEndReason::Expired)
        .into_iter()
        .filter(|sid| sid == old.session_id())
        .collect();
    assert_eq!(ours.len(), 1);
}
