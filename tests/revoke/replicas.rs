//! Several replicas against a real redis-server (V2). `PORTCULLIS_REDIS_URL`
//! names one; without it these tests say they are skipped, except in CI,
//! where that fails. Tests that cut or kill Redis use their own proxy or
//! server.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::{Request, Response, StatusCode, header};
use portcullis::{
    AuthLayer, RedisStore, ValidationErrorKind, Validator,
    events::{self, Event, RevocationOrigin, RevocationTarget},
    lease::{End, Lease},
    revoke::{Revocations, SyncState},
};
use tokio::time::{Instant, timeout};
use tower::{Layer, ServiceExt, service_fn};

use super::{Sessions, bearer, cached, kind};
use crate::support::{
    logs::capture,
    proxy::Proxy,
    redis::{Server, redis_url, store, unique_prefix, until},
};

async fn in_sync(revocations: &Revocations) {
    timeout(Duration::from_secs(10), revocations.synced())
        .await
        .expect("the list catches up with redis");
}

/// Polls (real time: another process decides) until `validator` refuses
/// `secret` as revoked; returns how long that took.
async fn refused_within<V: portcullis::Validator>(validator: &V, secret: &str) -> Duration {
    let started = Instant::now();
    loop {
        if kind(validator, &bearer(secret)).await == Some(ValidationErrorKind::Revoked) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never refused");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_reaches_the_other_within_a_second() {
    // V2
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let a = Revocations::builder()
        .redis(store(&url, &prefix).await)
        .build()
        .unwrap();
    let b = Revocations::builder()
        .redis(store(&url, &prefix).await)
        .build()
        .unwrap();
    in_sync(&a).await;
    in_sync(&b).await;
    let on_b = cached(&Sessions::new(), &b);
    for secret in ["alice-1", "alice-2", "bob-1"] {
        assert_eq!(kind(&on_b, &bearer(secret)).await, None);
    }

    a.revoke_secret("alice-1", None)
        .await
        .expect("stored in redis");
    assert!(refused_within(&on_b, "alice-1").await < Duration::from_secs(1));
    assert_eq!(kind(&on_b, &bearer("alice-2")).await, None);

    a.revoke_subject("bob").await.unwrap();
    assert!(refused_within(&on_b, "bob-1").await < Duration::from_secs(1));
    assert_eq!(kind(&on_b, &bearer("alice-2")).await, None);
    assert_eq!(b.stats().catch_ups, 1);
    assert!(b.stats().in_sync);

    // The audit events tell where a revocation was made: here on a, from a
    // replica on b. (Subscriptions are process-wide: look for this id.)
    // Room for the events of every test of this binary running meanwhile
    // (one writes 100,000 revocations): none of these may be dropped.
    let mut audit = events::subscribe(1 << 20);
    a.revoke_id(&prefix, None).await.unwrap();
    let mut origins = Vec::new();
    while origins.len() < 2 {
        let event = timeout(Duration::from_secs(1), audit.recv())
            .await
            .expect("both replicas report the revocation within a second")
            .expect("subscribed");
        if let Event::Revoked {
            target: RevocationTarget::Id { id },
            origin,
            ..
        } = event
            && id == prefix
        {
            origins.push(origin);
        }
    }
    assert_eq!(origins, [RevocationOrigin::Here, RevocationOrigin::Replica]);

    // A replica that starts later reads what is stored.
    let c = Revocations::builder()
        .redis(store(&url, &prefix).await)
        .build()
        .unwrap();
    in_sync(&c).await;
    let on_c = cached(&Sessions::new(), &c);
    assert_eq!(
        kind(&on_c, &bearer("alice-1")).await,
        Some(ValidationErrorKind::Revoked)
    );
    assert_eq!(
        kind(&on_c, &bearer("bob-1")).await,
        Some(ValidationErrorKind::Revoked)
    );
    assert_eq!(c.stats().entries, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_replica_past_its_staleness_answers_unavailable_then_catches_up_and_says_so()
{
    // V2, V1, D6: never "valid" past the staleness bound (zero here) with
    // the default choice (refuse).
    let Some(url) = redis_url() else { return };
    let logs = capture();
    let upstream: SocketAddr = url
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .parse()
        .expect("PORTCULLIS_REDIS_URL is redis://host:port");
    let proxy = Proxy::start(upstream).await;
    let prefix = unique_prefix();
    let a = Revocations::builder()
        .redis(store(&url, &prefix).await)
        .build()
        .unwrap();
    let b = Revocations::builder()
        .staleness(Duration::ZERO)
        .redis(store(&proxy.url(), &prefix).await)
        .build()
        .unwrap();
    in_sync(&a).await;
    in_sync(&b).await;
    let on_b = cached(&Sessions::new(), &b);
    for secret in ["alice-1", "alice-2"] {
        assert_eq!(kind(&on_b, &bearer(secret)).await, None);
    }

    proxy.cut();
    let lost = Instant::now();
    until("b to notice it lost redis", || !b.is_in_sync()).await;
    assert!(lost.elapsed() < Duration::from_secs(1));
    assert!(!b.stats().in_sync);
    assert_eq!(b.stats().state, SyncState::Refusing);
    assert!(
        logs.text()
            .contains("revocations are out of sync with redis")
    );
    // Cached and valid, yet not vouched for.
    let answer = on_b.validate(&bearer("alice-2")).await.unwrap_err();
    assert_eq!(answer.kind(), ValidationErrorKind::Unavailable);
    assert_eq!(answer.retry_after(), Some(Duration::from_secs(1)));

    // Revoked elsewhere while b cannot hear it.
    // Room for the events of every test of this binary running meanwhile
    // (one writes 100,000 revocations): none of these may be dropped.
    let mut audit = events::subscribe(1 << 20);
    a.revoke_secret("alice-1", None).await.unwrap();
    a.revoke_id(&prefix, None).await.unwrap();
    proxy.restore();
    in_sync(&b).await;
    // b learnt it from the store, not from a message: its event says so.
    let caught_up = std::iter::from_fn(|| audit.try_recv()).any(|event| {
        matches!(event, Event::Revoked {
            target: RevocationTarget::Id { id },
            origin: RevocationOrigin::CatchUp,
            ..
        } if id == prefix)
    });
    assert!(caught_up);
    assert_eq!(b.stats().catch_ups, 2);
    assert!(logs.text().contains("revocations caught up with redis"));
    assert_eq!(
        kind(&on_b, &bearer("alice-1")).await,
        Some(ValidationErrorKind::Revoked)
    );
    assert_eq!(kind(&on_b, &bearer("alice-2")).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_past_the_staleness_ends_open_leases_and_refuses_with_503_until_it_is_back() {
    // V1, V2, V3, B2, D6 (a staleness bound of zero, refusing)
    if redis_url().is_none() {
        return;
    }
    let Some(mut server) = Server::start_free() else {
        return;
    };
    let port = server.port();
    server.ready().await;
    let redis = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .prefix(unique_prefix());
    let revocations = Revocations::builder()
        .staleness(Duration::ZERO)
        .redis(redis)
        .build()
        .unwrap();
    in_sync(&revocations).await;
    let leases = Arc::new(std::sync::Mutex::new(Vec::<Lease>::new()));
    let seen = leases.clone();
    let service = AuthLayer::new(cached(&Sessions::new(), &revocations))
        .leases(&revocations)
        .layer(service_fn(move |req: Request<String>| {
            seen.lock()
                .unwrap()
                .extend(req.extensions().get::<Lease>().cloned());
            async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) }
        }));
    let call = || {
        service.clone().oneshot(
            Request::get("/")
                .header(header::AUTHORIZATION, "Bearer alice-1")
                .body(String::new())
                .unwrap(),
        )
    };
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);
    let lease = leases.lock().unwrap()[0].clone();

    server.kill();
    let end = timeout(Duration::from_secs(1), lease.ended())
        .await
        .expect("the lease ends within a second");
    assert_eq!(end, End::Unavailable);
    let refused = call().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");

    let server = Server::start(port).unwrap();
    server.ready().await;
    in_sync(&revocations).await;
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);
}
