//! Allow- and deny-lists and shadow mode (B16).

use portcullis::{
    ClientIp, client_list::ClientList, lockout::Shadowed, rate_limit::RateLimitLayer,
};

use super::*;

// ---------------------------------------------------------------- B16

fn from(peer: &str, outcome: &str) -> Request<String> {
    Request::builder()
        .header("x-client", peer)
        .header("x-outcome", outcome)
        .extension(PeerAddr(peer.parse().unwrap()))
        .body(String::new())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn b16_an_allowed_client_is_neither_limited_nor_counted_by_the_lockout() {
    // B16
    let office = ClientList::cidrs(ClientIp::new(), ["192.0.2.0/24"]).unwrap();
    let layer = builder(max(2)).allow(office).build().unwrap();
    let tracker = layer.tracker().clone();
    let (svc, calls) = guarded(layer);
    for _ in 0..10 {
        let res = svc
            .clone()
            .oneshot(from("192.0.2.7:1000", "invalid"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert_eq!(tracker.stats().failures, 0);
    // Outside the list, the limit holds.
    for _ in 0..2 {
        svc.clone()
            .oneshot(from("198.51.100.1:1000", "invalid"))
            .await
            .unwrap();
    }
    let res = svc
        .clone()
        .oneshot(from("198.51.100.1:1000", "ok"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn b16_a_denied_client_is_refused_403_before_anything_runs_and_deny_wins() {
    // B16
    let bad = ClientList::cidrs(ClientIp::new(), ["203.0.113.0/24"]).unwrap();
    let everyone = ClientList::matching(|_| true);
    let layer = builder(max(2)).allow(everyone).deny(bad).build().unwrap();
    let tracker = layer.tracker().clone();
    let (svc, calls) = guarded(layer);
    let res = svc
        .clone()
        .oneshot(from("203.0.113.5:1", "ok"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    assert_eq!(rejection_kind(&res), Some(RejectionKind::Denied));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(tracker.stats().failures, 0);
    let res = svc
        .clone()
        .oneshot(from("192.0.2.1:1", "ok"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn b16_the_rate_limiter_lets_allowed_clients_through_and_refuses_denied_ones() {
    // B16
    let layer = RateLimitLayer::builder()
        .per_minute(1)
        .allow(ClientList::cidrs(ClientIp::new(), ["10.0.0.0/8"]).unwrap())
        .deny(ClientList::matching(|req| {
            req.headers.contains_key("x-bad")
        }))
        .build()
        .unwrap();
    let stats = layer.clone();
    let svc = layer.layer(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    for _ in 0..5 {
        let res = svc.clone().oneshot(from("10.1.2.3:1", "ok")).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    assert_eq!(stats.stats().entries, 0, "allowed clients are not counted");
    let res = svc
        .clone()
        .oneshot(from("192.0.2.1:1", "ok"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let res = svc
        .clone()
        .oneshot(from("192.0.2.1:1", "ok"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let mut bad = from("10.1.2.3:1", "ok");
    bad.headers_mut().insert("x-bad", "1".parse().unwrap());
    let res = svc.clone().oneshot(bad).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
}

#[tokio::test(start_paused = true)]
async fn b16_shadow_mode_decides_counts_and_logs_but_lets_the_request_through_marked() {
    // B16
    let logs = support::logs::capture();
    let layer = builder(max(2)).shadow(true).build().unwrap();
    let tracker = layer.tracker().clone();
    let (svc, calls) = guarded(layer);
    for _ in 0..2 {
        let res = send(&svc, "shadowed-client", "invalid").await;
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.extensions().get::<Shadowed>().is_none());
    }
    // Counted: the key is locked out…
    assert!(tracker.check(&key("shadowed-client")).is_err());
    // …but its requests go through, marked with what would have happened.
    let res = send(&svc, "shadowed-client", "ok").await;
    assert_eq!(res.status(), StatusCode::OK);
    let shadowed = res.extensions().get::<Shadowed>().unwrap();
    assert_eq!(shadowed.rejection().kind(), RejectionKind::LockedOut);
    assert!(shadowed.rejection().retry_after().unwrap() > MINUTE);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert!(
        logs.text()
            .contains("shadow mode: the lockout would have refused this request"),
        "{}",
        logs.text()
    );
}
