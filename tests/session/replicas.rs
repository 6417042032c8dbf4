//! S4: sessions in a real redis-server, shared by two replicas and kept
//! across a restart of the service. `PORTCULLIS_REDIS_URL` names the
//! server; without it these tests say they are skipped, except in CI.

use std::{collections::HashSet, sync::Arc, time::Duration};

use ::redis::AsyncCommands;
use portcullis::{
    events::{self, Event},
    session::SessionErrorKind,
};
use tokio::{sync::Barrier, time::Instant};

use super::*;
use crate::support::redis::{Server, redis_url, store, unique_prefix};

/// One replica: its sessions over the shared store, and its revocation
/// list, shared too.
async fn replica(url: &str, prefix: &str, tokens: &AccessTokens, grace: Duration) -> Sessions {
    support::logs::capture();
    let revocations = Revocations::with_redis(store(url, &format!("{prefix}revoke:")).await);
    tokio::time::timeout(Duration::from_secs(5), revocations.synced())
        .await
        .expect("the revocation list catches up with redis");
    Sessions::builder(tokens.clone(), &revocations)
        .grace(grace)
        .idle_lifetime(Duration::from_secs(3600))
        .absolute_lifetime(Duration::from_secs(2 * 3600))
        .build_with_redis(store(url, &format!("{prefix}session:")).await)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_on_one_replica_and_a_reuse_on_the_other_revoke_the_session_on_both() {
    // S2, S4, V2
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let tokens = AccessTokens::generate().unwrap();
    let a = replica(&url, &prefix, &tokens, Duration::ZERO).await;
    let b = replica(&url, &prefix, &tokens, Duration::ZERO).await;
    let (validator_a, validator_b) = (validator(&a), validator(&b));
    let mut audit = events::subscribe(1024);

    let first = a.sign_in("alice").await.unwrap();
    let second = b.refresh_with(first.refresh_token()).await.unwrap();
    let third = a.refresh_with(second.refresh_token()).await.unwrap();
    assert!(access(&validator_b, &third).await.is_ok());

    // The thief replays the second token on B.
    let refused = b.refresh_with(second.refresh_token()).await.unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Reused);
    let reported = std::iter::from_fn(|| audit.try_recv()).any(|event| {
        event
            == Event::SessionReused {
                subject: "alice".to_owned(),
                session: first.session_id().to_owned(),
            }
    });
    assert!(reported);
    // The newest refresh token is gone everywhere at once.
    assert!(a.refresh_with(third.refresh_token()).await.is_err());
    // Its access tokens are refused on B at once, and on A within a second.
    assert!(access(&validator_b, &third).await.is_err());
    let revoked = Instant::now();
    while access(&validator_a, &third).await.is_ok() {
        assert!(
            revoked.elapsed() < Duration::from_secs(1),
            "A still accepts the access token"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_refreshes_on_two_replicas_get_exactly_one_successor() {
    // S1, S4: one script per rotation.
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let tokens = AccessTokens::generate().unwrap();
    let replicas = [
        replica(&url, &prefix, &tokens, Duration::from_secs(30)).await,
        replica(&url, &prefix, &tokens, Duration::from_secs(30)).await,
    ];
    let first = replicas[0].sign_in("alice").await.unwrap();
    let token: Arc<str> = first.refresh_token().into();
    let barrier = Arc::new(Barrier::new(32));
    let mut tasks = Vec::new();
    for sessions in &replicas {
        for _ in 0..16 {
            let (sessions, token, barrier) = (sessions.clone(), token.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                sessions.refresh_with(&token).await
            }));
        }
    }
    let mut successors = HashSet::new();
    for task in tasks {
        let grant = task
            .await
            .unwrap()
            .expect("every racing refresh is answered");
        successors.insert(grant.refresh_token().to_owned());
    }
    assert_eq!(successors.len(), 1, "exactly one successor");
    let successor = successors.into_iter().next().unwrap();
    replicas[1].refresh_with(&successor).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_restart_of_the_service_and_expire_with_their_lifetimes() {
    // S4
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let tokens = AccessTokens::generate().unwrap();
    let before = replica(&url, &prefix, &tokens, Duration::ZERO).await;
    let first = before.sign_in("alice").await.unwrap();
    let second = before.refresh_with(first.refresh_token()).await.unwrap();
    drop(before);

    let after = replica(&url, &prefix, &tokens, Duration::ZERO).await;
    let third = after.refresh_with(second.refresh_token()).await.unwrap();
    assert_eq!(third.session_id(), first.session_id());
    assert_eq!(after.stats().families, None);

    // One key per session, with a TTL of the idle lifetime, holding no
    // token: digests only; and the subject's index, with a TTL of the
    // absolute lifetime.
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut keys: Vec<String> = con.keys(format!("{prefix}session:*")).await.unwrap();
    keys.sort_by_key(|key| key.contains("subject:"));
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys[0].ends_with(first.session_id()), "{keys:?}");
    let ttl: i64 = con.pttl(&keys[1]).await.unwrap();
    assert!(ttl > 7_190_000 && ttl <= 7_200_000, "{ttl}");
    let ttl: i64 = con.pttl(&keys[0]).await.unwrap();
    assert!(ttl > 3_590_000 && ttl <= 3_600_000, "{ttl}");
    let fields: Vec<(String, String)> = con.hgetall(&keys[0]).await.unwrap();
    for grant in [&first, &second, &third] {
        let secret = grant.refresh_token().split_once('.').unwrap().1;
        for (_, value) in &fields {
            assert!(!value.contains(secret));
        }
    }
    let digest = portcullis::validate::KeyDigest::of(third.refresh_token()).to_hex();
    assert!(fields.contains(&("cur".to_owned(), digest)), "{fields:?}");

    // Signing out deletes it (the index forgets it when next read).
    after.sign_out_with(third.refresh_token()).await.unwrap();
    assert!(after.list("alice", None).await.unwrap().is_empty());
    let keys: Vec<String> = con.keys(format!("{prefix}session:*")).await.unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_a_refresh_is_unavailable_and_never_decided_locally() {
    // S4: no local fallback, which would let a stolen token be refreshed
    // beside its owner's.
    let Some(mut server) = Server::start_free() else {
        return;
    };
    server.ready().await;
    let url = server.url();
    let prefix = unique_prefix();
    let revocations = Revocations::new();
    let sessions = Sessions::builder(AccessTokens::generate().unwrap(), &revocations)
        .build_with_redis(
            store(&url, &prefix)
                .await
                .timeout(Duration::from_millis(200)),
        )
        .unwrap();
    let grant = sessions.sign_in("alice").await.unwrap();
    server.kill();
    let refused = sessions
        .refresh_with(grant.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Unavailable);
    let response = refused.response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    assert!(rejection(response).is_some_and(|r| !r.counts_as_failure()));
    let refused = sessions.sign_in("bob").await.unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Unavailable);
}
