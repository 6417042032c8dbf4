//! Streaming bodies end with their lease; others are left as they are
//! (paused time).

use super::*;

#[tokio::test(start_paused = true)]
async fn a_streaming_body_ends_at_its_identitys_expiry() {
    // V3
    let revocations = Revocations::new();
    let (mut service, seen) = streaming(&revocations, Some(Duration::from_secs(30)), None);
    let opened = Instant::now();
    let (mut body, chunks, _) = open_stream(&mut service, &seen, "alice-1").await;

    tokio::time::advance(Duration::from_secs(29)).await;
    chunks.send(Bytes::from_static(b"event 2")).unwrap();
    assert_eq!(data(&mut body).await, "event 2");
    assert!(poll_now(&mut body).is_pending());

    // The body ends at the expiry, without another event to wake it, as an
    // error (V5: a cut, never a complete body).
    assert_eq!(cut(&mut body).await, End::Expired);
    let ended = Instant::now() - opened;
    assert!(
        ended >= Duration::from_secs(30) && ended < Duration::from_secs(31),
        "{ended:?}"
    );
    assert!(body.is_end_stream());
    // Later events never reach the client.
    let _ = chunks.send(Bytes::from_static(b"event 3"));
    assert!(next(&mut body).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_ends_as_soon_as_its_credential_is_revoked() {
    // V3, V1: revoked by secret, however it was presented.
    let revocations = Revocations::new();
    let (mut service, seen) = streaming(&revocations, None, None);
    let (mut revoked, _chunks, _) = open_stream(&mut service, &seen, "alice-1").await;
    let (mut other, other_chunks, _) = open_stream(&mut service, &seen, "alice-2").await;

    let at = Instant::now();
    revocations.revoke_secret("alice-1", None).await.unwrap();
    assert_eq!(cut(&mut revoked).await, End::Revoked);
    assert_eq!(Instant::now(), at, "ended at once, not at a timer");

    // The other credential's stream goes on.
    assert!(poll_now(&mut other).is_pending());
    other_chunks.send(Bytes::from_static(b"event 2")).unwrap();
    assert_eq!(data(&mut other).await, "event 2");
}

#[tokio::test(start_paused = true)]
async fn signing_a_subject_out_everywhere_ends_every_stream_issued_before() {
    // V1, V3: a subject with a cutoff.
    let revocations = Revocations::new();
    let (mut service, seen) = streaming(&revocations, None, None);
    let (mut laptop, _l, _) = open_stream(&mut service, &seen, "alice-laptop").await;
    let (mut phone, _p, _) = open_stream(&mut service, &seen, "alice-phone").await;
    revocations.revoke_subject("alice").await.unwrap();
    assert_eq!(cut(&mut laptop).await, End::Revoked);
    assert_eq!(cut(&mut phone).await, End::Revoked);
    assert_eq!(
        seen.lock().unwrap()[0].lease.as_ref().unwrap().end(),
        Some(End::Revoked)
    );
}

#[tokio::test(start_paused = true)]
async fn a_grpc_stream_ends_with_unauthenticated_trailers_that_say_why() {
    // V3
    for (lifetime, revoke, message) in [
        (
            Some(Duration::from_secs(5)),
            false,
            "the credential expired",
        ),
        (None, true, "the credential was revoked"),
    ] {
        let revocations = Revocations::new();
        let (mut service, seen) = streaming(&revocations, lifetime, Some("application/grpc"));
        let (mut body, _chunks, headers) = open_stream(&mut service, &seen, "alice-1").await;
        assert_eq!(headers[header::CONTENT_TYPE], "application/grpc");
        if revoke {
            revocations.revoke_secret("alice-1", None).await.unwrap();
        }
        let last = next(&mut body).await.expect("trailers").unwrap();
        let trailers = last.into_trailers().expect("a trailers frame");
        assert_eq!(trailers["grpc-status"], "16");
        assert_eq!(trailers["grpc-message"], message);
        assert!(next(&mut body).await.is_none());
        assert!(body.is_end_stream());
    }
}

#[tokio::test(start_paused = true)]
async fn grpc_web_and_connect_streams_end_with_their_own_status_frame() {
    // V3, P9: browsers' RPC protocols read the status from the body, so the
    // stream ends with one more frame in its framing, not a silent end
    // (which their clients report as an unknown error and retry).
    let trailers = b"grpc-status:16\r\ngrpc-message:the credential was revoked\r\n";
    let mut grpc_web = vec![0x80, 0, 0, 0, u8::try_from(trailers.len()).unwrap()];
    grpc_web.extend_from_slice(trailers);
    let grpc_web_text =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &grpc_web);
    let connect = br#"{"error":{"code":"unauthenticated","message":"the credential was revoked"}}"#;
    let mut connect_end = vec![0x02, 0, 0, 0, u8::try_from(connect.len()).unwrap()];
    connect_end.extend_from_slice(connect);
    for (content_type, last) in [
        ("application/grpc-web+proto", grpc_web.clone()),
        ("application/grpc-web-text", grpc_web_text.into_bytes()),
        ("application/connect+proto", connect_end),
    ] {
        let revocations = Revocations::new();
        let (mut service, seen) = streaming(&revocations, None, Some(content_type));
        let (mut body, _chunks, _) = open_stream(&mut service, &seen, "alice-1").await;
        revocations.revoke_secret("alice-1", None).await.unwrap();
        let frame = next(&mut body).await.expect("a last frame").unwrap();
        let data = frame.into_data().expect("in the body");
        assert_eq!(data.as_ref(), last.as_slice(), "{content_type}");
        assert!(next(&mut body).await.is_none(), "{content_type}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_that_does_not_stream_is_untouched_and_carries_a_lease() {
    // V4: the body is the handler's, frame for frame.
    let revocations = Revocations::new();
    let validate = |_: Credential| async {
        Ok::<_, ValidationError>(User {
            name: "alice",
            until: None,
            issued: None,
        })
    };
    let leases = Arc::new(Mutex::new(Vec::new()));
    let seen = leases.clone();
    let inner = service_fn(move |req: Request<String>| {
        seen.lock()
            .unwrap()
            .push(req.extensions().get::<Lease>().cloned());
        async {
            let body = Full::new(Bytes::from_static(b"{\"ok\":true}"));
            Ok::<_, Infallible>(Response::new(body))
        }
    });
    let service = AuthLayer::new(validate).leases(&revocations).layer(inner);
    let response = service.oneshot(request("Bearer t")).await.unwrap();
    let body = response.into_body();
    assert_eq!(body.size_hint().exact(), Some(11));
    assert_eq!(body.collect().await.unwrap().to_bytes(), "{\"ok\":true}");
    let lease = leases.lock().unwrap()[0].clone().expect("a lease");
    assert_eq!(lease.expires_at(), None);
    assert_eq!(lease.end(), None);
}

#[tokio::test(start_paused = true)]
async fn the_lease_future_resolves_at_the_expiry_or_at_the_revocation() {
    // V3: what a WebSocket handler selects on.
    let revocations = Revocations::new();
    let (mut service, seen) = streaming(&revocations, Some(Duration::from_secs(60)), None);
    let _open = open_stream(&mut service, &seen, "alice-1").await;
    let lease = seen.lock().unwrap()[0].lease.clone().unwrap();
    let opened = Instant::now();
    assert_eq!(lease.ended().await, End::Expired);
    assert_eq!(Instant::now() - opened, Duration::from_secs(60));
    assert_eq!(lease.end(), Some(End::Expired));

    let _open = open_stream(&mut service, &seen, "alice-2").await;
    let lease = seen.lock().unwrap()[1].lease.clone().unwrap();
    let mut ended = lease.ended();
    assert!(futures_poll(&mut ended).is_pending());
    tokio::time::advance(Duration::from_secs(10)).await;
    // A lease revokes its own credential: a sign-out.
    lease.revoke().await.unwrap();
    assert_eq!(ended.await, End::Revoked);
    assert_eq!(
        revocations.stats().entries,
        1,
        "held until the credential would have expired"
    );
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(
        revocations.stats().entries,
        0,
        "V1: expires with the credential"
    );
}

fn futures_poll<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(std::task::Waker::noop()))
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_waits_still_ends_with_its_lease() {
    // V3: a stream that always has the next frame ready (a fast download)
    // is looked at before each frame.
    let revocations = Revocations::new();
    let (mut service, seen) = streaming(&revocations, None, None);
    let (mut body, chunks, _) = open_stream(&mut service, &seen, "alice-1").await;
    for _ in 0..3 {
        chunks.send(Bytes::from_static(b"x")).unwrap();
    }
    assert_eq!(data(&mut body).await, "x");
    revocations.revoke_secret("alice-1", None).await.unwrap();
    // The frames still queued are not sent.
    assert_eq!(cut(&mut body).await, End::Revoked);
    assert!(next(&mut body).await.is_none());
}
