//! Revoked secrets: refused in every carrier, by the cache and through
//! `AuthLayer`, even for a lookup in flight (V1, B12, L3).

use std::sync::Arc;

use portcullis::{ValidationErrorKind, revoke::Revocations};
use tokio::sync::Semaphore;

use super::*;

#[tokio::test(start_paused = true)]
async fn a_revoked_secret_is_refused_in_every_carrier_even_when_cached() {
    // V1, B12
    let revocations = Revocations::new();
    let sessions = Sessions::new();
    let cache = cached(&sessions, &revocations);
    for credential in carriers("alice-1").iter().chain(&carriers("alice-2")) {
        assert_eq!(kind(&cache, credential).await, None);
    }
    let calls = sessions.calls();

    revocations.revoke_secret("alice-1", None).await.unwrap();
    for credential in carriers("alice-1") {
        assert_eq!(
            kind(&cache, &credential).await,
            Some(ValidationErrorKind::Revoked),
            "{}",
            credential.source()
        );
    }
    // Another secret of the same subject is untouched, still from the cache.
    for credential in carriers("alice-2") {
        assert_eq!(kind(&cache, &credential).await, None);
    }
    assert!(sessions.calls() <= calls + 5);
}

#[tokio::test(start_paused = true)]
async fn a_revocation_made_while_the_backend_answers_is_honoured() {
    // V1, B12: the answer of a lookup that started before the revocation
    // is not given after it.
    let revocations = Revocations::new();
    let sessions = Sessions {
        gate: Some(Arc::new(Semaphore::new(0))),
        ..Sessions::new()
    };
    let cache = cached(&sessions, &revocations);
    let lookup = tokio::spawn({
        let cache = cache.clone();
        async move { kind(&cache, &bearer("alice-1")).await }
    });
    while sessions.calls() == 0 {
        tokio::task::yield_now().await;
    }
    revocations.revoke_secret("alice-1", None).await.unwrap();
    sessions.gate.as_ref().unwrap().add_permits(100);
    assert_eq!(lookup.await.unwrap(), Some(ValidationErrorKind::Revoked));
}

#[cfg(feature = "cookie")]
#[tokio::test(start_paused = true)]
async fn auth_layer_refuses_a_revoked_secret_in_every_carrier_like_an_unknown_one() {
    // V1, L3
    use std::convert::Infallible;

    use http::{Request, Response, StatusCode, header};
    use http_body_util::BodyExt;
    use portcullis::{
        AuthLayer,
        extract::{Bearer, Cookie, Extractor, Header, Query},
    };
    use tower::{Layer, ServiceExt, service_fn};

    let revocations = Revocations::new();
    let cache = cached(&Sessions::new(), &revocations);
    let auth = AuthLayer::new(cache)
        .extractor(
            Extractor::new(Bearer::new())
                .or(Cookie::new("session"))
                .or(Header::new(HeaderName::from_static("x-api-key")))
                .or(Query::new("access_token")),
        )
        .leases(&revocations);
    let service = auth.layer(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::from("ok")))
    }));
    let requests = |secret: &str| {
        [
            Request::get("/").header(header::AUTHORIZATION, format!("Bearer {secret}")),
            Request::get("/").header(header::COOKIE, format!("session={secret}")),
            Request::get("/").header("x-api-key", secret),
            Request::get(format!("/?access_token={secret}")),
        ]
        .map(|req| req.body(String::new()).unwrap())
    };
    for req in requests("alice-1") {
        assert_eq!(
            service.clone().oneshot(req).await.unwrap().status(),
            StatusCode::OK
        );
    }
    revocations.revoke_secret("alice-1", None).await.unwrap();
    // L3: in each carrier, the revoked secret gets exactly the answer an
    // unknown one gets (a cookie's answer also clears the cookie).
    for (revoked, unknown) in requests("alice-1").into_iter().zip(requests("nobody-1")) {
        let (unknown_head, unknown_body) =
            service.clone().oneshot(unknown).await.unwrap().into_parts();
        let (head, body) = service.clone().oneshot(revoked).await.unwrap().into_parts();
        assert_eq!(head.status, StatusCode::UNAUTHORIZED);
        assert_eq!(head.headers, unknown_head.headers);
        assert_eq!(
            body.collect().await.unwrap().to_bytes(),
            unknown_body.collect().await.unwrap().to_bytes()
        );
    }
}
