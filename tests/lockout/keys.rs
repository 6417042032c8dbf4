//! Requests without a key (B10).

use super::*;

// ---------------------------------------------------------------- B10

#[tokio::test(start_paused = true)]
async fn b10_a_request_without_a_key_is_answered_500_and_never_shares_a_bucket() {
    // B10
    let (svc, tracker, calls) = setup(max(1));
    let anonymous = || {
        Request::builder()
            .header("x-outcome", "invalid")
            .body(String::new())
            .unwrap()
    };
    for _ in 0..3 {
        let res = svc.clone().oneshot(anonymous()).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(rejection_kind(&res), Some(RejectionKind::NoClientAddress));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(tracker.stats().failures, 0);
}

#[tokio::test(start_paused = true)]
async fn b10_client_ip_without_a_peer_address_is_answered_500_without_a_shared_bucket() {
    // B10
    let layer = LockoutLayer::new(max(1));
    let tracker = layer.tracker().clone();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let svc = layer.layer(service_fn(move |req: Request<String>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let outcome = outcome_of(&req);
        async move { Ok::<_, Infallible>(answer(&outcome)) }
    }));
    for _ in 0..3 {
        let req = Request::builder()
            .header("x-outcome", "invalid")
            .body(String::new())
            .unwrap();
        let res = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(rejection_kind(&res), Some(RejectionKind::NoClientAddress));
        let body = res.into_body().collect().await.unwrap().to_bytes();
        // B10: the fix goes to the server's log, not to every client.
        assert!(!String::from_utf8_lossy(&body).contains("connect info"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(tracker.stats().failures, 0);

    // With a peer address the same requests are counted per client.
    let from = |peer: &str| {
        Request::builder()
            .header("x-outcome", "invalid")
            .extension(PeerAddr(peer.parse().unwrap()))
            .body(String::new())
            .unwrap()
    };
    let res = svc.clone().oneshot(from("192.0.2.1:1000")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let res = svc.clone().oneshot(from("192.0.2.1:2000")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let res = svc.clone().oneshot(from("192.0.2.2:1000")).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
