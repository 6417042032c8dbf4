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
    let revocations = Revocations::builder()
        .redis(store(url, &format!("{prefix}revoke:")).await)
        .build()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), revocations.synced())
        .await
        .expect("the revocation list catches up with redis");
    Sessions::builder(tokens.clone(), &revocations)
        .grace(grace)
        .idle_lifetime(Duration::from_secs(3600))
        .absolute_lifetime(Duration::from_secs(2 * 3600))
        .redis(store(url, &format!("{prefix}session:")).await)
        .build()
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
        .redis(
            store(&url, &prefix)
                .await
                .timeout(Duration::from_millis(200)),
        )
        .build()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_everywhere_is_for_good_on_every_replica_and_after_a_restart() {
    // S5. Redis keeps the server's time, which tokio cannot advance: "days
    // later" is a replica whose revocation list no longer holds the
    // subject's cutoff (it forgets it after max_lifetime, and a restarted
    // process starts with none). The refresh tokens must be gone from the
    // store itself.
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let tokens = AccessTokens::generate().unwrap();
    let a = replica(&url, &prefix, &tokens, Duration::ZERO).await;
    let b = replica(&url, &prefix, &tokens, Duration::ZERO).await;
    let phone = a.sign_in("alice").await.unwrap();
    let laptop = b.sign_in("alice").await.unwrap();
    let bob = b.sign_in("bob").await.unwrap();
    let stolen = a.refresh_with(laptop.refresh_token()).await.unwrap();

    assert_eq!(b.sign_out_everywhere("alice").await.unwrap(), 2);
    assert!(a.refresh_with(stolen.refresh_token()).await.is_err());
    assert!(a.list("alice", None).await.unwrap().is_empty());

    let later = Sessions::builder(tokens.clone(), &Revocations::new())
        .idle_lifetime(Duration::from_secs(3600))
        .absolute_lifetime(Duration::from_secs(2 * 3600))
        .redis(store(&url, &format!("{prefix}session:")).await)
        .build()
        .unwrap();
    for grant in [&phone, &laptop, &stolen] {
        let refused = later.refresh_with(grant.refresh_token()).await.unwrap_err();
        assert_eq!(refused.kind(), SessionErrorKind::Unknown);
    }
    later.refresh_with(bob.refresh_token()).await.unwrap();
    // A sign-in afterwards lives on.
    let again = later.sign_in("alice").await.unwrap();
    a.refresh_with(again.refresh_token()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_listed_on_one_replica_and_ended_on_the_other_ends_everywhere_within_a_second() {
    // S6, V2
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let tokens = AccessTokens::generate().unwrap();
    let a = replica(&url, &prefix, &tokens, Duration::ZERO).await;
    let b = replica(&url, &prefix, &tokens, Duration::ZERO).await;
    let validator_a = validator(&a);
    let mut request = Request::builder()
        .header(header::USER_AGENT, "Phone/1.0")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(portcullis::PeerAddr(std::net::SocketAddr::from((
            [192, 0, 2, 7],
            4711,
        ))));
    let (parts, ()) = request.into_parts();
    let phone = b.sign_in_from(&parts, "alice").await.unwrap();
    let laptop = a.sign_in("alice").await.unwrap();
    let phone = b.refresh_with(phone.refresh_token()).await.unwrap();

    let list = a.list("alice", Some(laptop.session_id())).await.unwrap();
    assert_eq!(list.len(), 2);
    let first = list.iter().next().unwrap();
    assert_eq!(first.id(), phone.session_id(), "most recently used first");
    assert!(!first.is_current());
    assert_eq!(first.device().user_agent(), Some("Phone/1.0"));
    assert_eq!(first.device().address(), Some([192, 0, 2, 7].into()));
    assert!(first.last_used_at() >= first.created_at());
    assert!(list.iter().nth(1).unwrap().is_current());

    // Not bob's to end; then alice ends it from the laptop's replica.
    assert!(!a.end("bob", phone.session_id()).await.unwrap());
    assert!(access(&validator_a, &phone).await.is_ok());
    assert!(b.end("alice", phone.session_id()).await.unwrap());
    assert!(a.refresh_with(phone.refresh_token()).await.is_err());
    let ended = Instant::now();
    while access(&validator_a, &phone).await.is_ok() {
        assert!(
            ended.elapsed() < Duration::from_secs(1),
            "A still accepts the ended session's access token"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let list = a.list("alice", None).await.unwrap();
    assert_eq!(list.len(), 1);
    a.refresh_with(laptop.refresh_token()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_keep_a_subject_within_its_cap_and_end_the_oldest() {
    // S6: one account cannot fill redis either.
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let tokens = AccessTokens::generate().unwrap();
    let capped = |revocations: Revocations| {
        let (tokens, url, prefix) = (tokens.clone(), url.clone(), prefix.clone());
        async move {
            Sessions::builder(tokens, &revocations)
                .max_sessions(3)
                .redis(store(&url, &format!("{prefix}session:")).await)
                .build()
                .unwrap()
        }
    };
    let a = capped(Revocations::new()).await;
    let b = capped(Revocations::new()).await;
    let mut grants = Vec::new();
    for i in 0..20 {
        let replica = if i % 2 == 0 { &a } else { &b };
        grants.push(replica.sign_in("mallory").await.unwrap());
    }
    let list = a.list("mallory", None).await.unwrap();
    let mut listed: Vec<&str> = list.iter().map(|s| s.id()).collect();
    let mut newest: Vec<&str> = grants[17..].iter().map(|g| g.session_id()).collect();
    listed.sort_unstable();
    newest.sort_unstable();
    assert_eq!(listed, newest, "the three newest");
    for old in &grants[..17] {
        let refused = b.refresh_with(old.refresh_token()).await.unwrap_err();
        // Revoked when b ended it, unknown when a did.
        assert!(
            matches!(
                refused.kind(),
                SessionErrorKind::Unknown | SessionErrorKind::Revoked
            ),
            "{refused:?}"
        );
    }
    // Three sessions and the index: nothing else in redis.
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = con.keys(format!("{prefix}session:*")).await.unwrap();
    assert_eq!(keys.len(), 4, "{keys:?}");
    for grant in &grants[17..] {
        a.refresh_with(grant.refresh_token()).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_answered_503_leaves_its_token_usable_when_redis_runs_it_late() {
    // S7: redis pauses; the rotation times out (503), then runs when the
    // pause ends. The client's retry, after the grace window, refreshes:
    // no reuse, nothing revoked.
    let Some(server) = Server::start_free() else {
        return;
    };
    server.ready().await;
    let url = server.url();
    let prefix = unique_prefix();
    let revocations = Revocations::new();
    let mut audit = events::subscribe(1024);
    let sessions = Sessions::builder(AccessTokens::generate().unwrap(), &revocations)
        .grace(Duration::from_millis(60))
        .redis(
            store(&url, &prefix)
                .await
                .timeout(Duration::from_millis(50)),
        )
        .build()
        .unwrap();
    let first = sessions.sign_in("alice").await.unwrap();
    // The rotation script is loaded: a paused server runs it late.
    let token = sessions.refresh_with(first.refresh_token()).await.unwrap();

    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut pauser = client.get_multiplexed_async_connection().await.unwrap();
    let mut waiter = client.get_multiplexed_async_connection().await.unwrap();
    let pause = |ms: u64| {
        ::redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("ALL")
            .clone()
    };
    pause(300).exec_async(&mut pauser).await.unwrap();
    let refused = sessions
        .refresh_with(token.refresh_token())
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Unavailable);
    assert_eq!(refused.response().status(), StatusCode::SERVICE_UNAVAILABLE);
    // Wait on the server, not the clock: past the pause, then past the
    // grace window after the late rotation.
    ::redis::cmd("PING").exec_async(&mut waiter).await.unwrap();
    pause(150).exec_async(&mut pauser).await.unwrap();
    ::redis::cmd("PING").exec_async(&mut waiter).await.unwrap();

    let retried = sessions
        .refresh_with(token.refresh_token())
        .await
        .expect("the token refused with 503 still refreshes");
    sessions
        .refresh_with(retried.refresh_token())
        .await
        .unwrap();
    let reused = std::iter::from_fn(|| audit.try_recv()).any(|event| {
        matches!(event, Event::SessionReused { session, .. } if session == first.session_id())
    });
    assert!(!reused, "a retry is not a theft");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_window_within_the_store_timeout_is_a_configuration_error() {
    // S7
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let build = |grace: Duration| {
        let (url, prefix) = (url.clone(), prefix.clone());
        async move {
            Sessions::builder(AccessTokens::generate().unwrap(), &Revocations::new())
                .grace(grace)
                .redis(
                    store(&url, &prefix)
                        .await
                        .timeout(Duration::from_millis(100)),
                )
                .build()
        }
    };
    assert!(build(Duration::from_millis(100)).await.is_err());
    assert!(build(Duration::from_millis(50)).await.is_err());
    assert!(build(Duration::from_millis(101)).await.is_ok());
    assert!(build(Duration::ZERO).await.is_ok(), "zero: no grace at all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_out_everywhere_redis_did_not_take_is_kept_and_stored_when_it_returns() {
    // S5: not quietly shortened; the caller is told.
    let Some(url) = redis_url() else { return };
    let upstream: std::net::SocketAddr = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("PORTCULLIS_REDIS_URL is redis://host:port");
    let proxy = crate::support::proxy::Proxy::start(upstream).await;
    let prefix = unique_prefix();
    let tokens = AccessTokens::generate().unwrap();
    let on = |url: String, revocations: Revocations| {
        let (tokens, prefix) = (tokens.clone(), prefix.clone());
        async move {
            Sessions::builder(tokens, &revocations)
                .redis(
                    store(&url, &format!("{prefix}session:"))
                        .await
                        .timeout(Duration::from_millis(200)),
                )
                .build()
                .unwrap()
        }
    };
    let a = on(proxy.url(), Revocations::new()).await;
    let b = on(url.clone(), Revocations::new()).await;
    let phone = b.sign_in("alice").await.unwrap();
    let laptop = b.sign_in("alice").await.unwrap();

    proxy.cut();
    let refused = a.sign_out_everywhere("alice").await.unwrap_err();
    assert_eq!(refused.kind(), SessionErrorKind::Unavailable);
    assert_eq!(refused.response().status(), StatusCode::SERVICE_UNAVAILABLE);
    // In effect on A at once.
    let kind = access(&validator(&a), &phone).await.unwrap_err().kind();
    assert_eq!(kind, portcullis::ValidationErrorKind::Revoked);
    // A sign-in after it is not touched when it is stored (the cutoff is in
    // whole milliseconds: a session of the same millisecond is ended too).
    let millis = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    };
    let signed_out = millis();
    while millis() <= signed_out {
        tokio::task::yield_now().await;
    }
    let later = b.sign_in("alice").await.unwrap();

    proxy.restore();
    let restored = Instant::now();
    while b.list("alice", None).await.unwrap().len() > 1 {
        assert!(
            restored.elapsed() < Duration::from_secs(10),
            "the sign-out reached redis"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for grant in [&phone, &laptop] {
        let refused = b.refresh_with(grant.refresh_token()).await.unwrap_err();
        assert_eq!(refused.kind(), SessionErrorKind::Unknown);
    }
    b.refresh_with(later.refresh_token()).await.unwrap();
}
