//! Revocation (V1): by secret in every carrier, by token or session id, and
//! by subject with a cutoff; honoured by the caching, API-key and JWT
//! validators; bounded, and expiring with what it revokes. With Redis (V2):
//! every replica within a second, and a replica that lost Redis answers
//! unavailable until it has caught up, and says so.

#[path = "support/mod.rs"]
mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use http::HeaderName;
use portcullis::{
    Credential, CredentialSource, ValidationError, ValidationErrorKind, Validator,
    revoke::{Revocable, Revocations},
    validate::{ApiKeyIdentity, ApiKeys, CachingValidator, ExpiresAt, GeneratedKey},
};
use tokio::{sync::Semaphore, time::Instant};

/// The caller of a session store: `alice-*` secrets are alice's, `bob-*`
/// bob's; every session was issued when the test started (`issued`).
#[derive(Clone, Debug, PartialEq)]
struct User {
    name: String,
    issued: Option<SystemTime>,
}

impl ExpiresAt for User {
    fn expires_at(&self) -> Option<Instant> {
        None
    }
}

impl Revocable for User {
    fn subject(&self) -> Option<&str> {
        Some(&self.name)
    }

    fn session_id(&self) -> Option<&str> {
        None
    }

    fn issued_at(&self) -> Option<SystemTime> {
        self.issued
    }
}

/// A session store that knows nothing of revocations, counting its calls;
/// optionally gated, like a lookup that races with a revocation.
#[derive(Clone)]
struct Sessions {
    issued: Option<SystemTime>,
    calls: Arc<AtomicUsize>,
    gate: Option<Arc<Semaphore>>,
}

impl Sessions {
    fn new() -> Self {
        Self {
            issued: Some(SystemTime::now() - Duration::from_secs(60)),
            calls: Arc::default(),
            gate: None,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Validator for Sessions {
    type Identity = User;

    async fn validate(&self, credential: &Credential) -> Result<User, ValidationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(gate) = &self.gate {
            drop(gate.acquire().await.unwrap());
        }
        match credential.secret().split_once('-') {
            Some((name @ ("alice" | "bob"), _)) => Ok(User {
                name: name.to_owned(),
                issued: self.issued,
            }),
            _ => Err(ValidationError::invalid()),
        }
    }
}

fn cached(sessions: &Sessions, revocations: &Revocations) -> CachingValidator<Sessions> {
    CachingValidator::builder(sessions.clone())
        .ttl(Duration::from_secs(600))
        .revocations(revocations)
        .build()
        .unwrap()
}

fn bearer(secret: &str) -> Credential {
    Credential::new(secret, CredentialSource::Bearer)
}

/// Every carrier a secret can arrive in.
fn carriers(secret: &str) -> [Credential; 5] {
    [
        bearer(secret),
        Credential::new(secret, CredentialSource::Cookie("session".into())),
        Credential::new(
            secret,
            CredentialSource::Header(HeaderName::from_static("x-api-key")),
        ),
        Credential::new(secret, CredentialSource::Query("access_token".into())),
        Credential::new(secret, CredentialSource::WebSocketProtocol),
    ]
}

async fn kind<V: Validator>(validator: &V, credential: &Credential) -> Option<ValidationErrorKind> {
    validator.validate(credential).await.err().map(|e| e.kind())
}

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

#[tokio::test(start_paused = true)]
async fn a_subjects_cutoff_revokes_what_was_issued_before_it_and_nothing_after() {
    // V1
    let revocations = Revocations::new();
    let before = Sessions::new();
    let cache_before = cached(&before, &revocations);
    assert_eq!(kind(&cache_before, &bearer("alice-1")).await, None);
    revocations.revoke_subject("alice").await.unwrap();
    assert_eq!(
        kind(&cache_before, &bearer("alice-1")).await,
        Some(ValidationErrorKind::Revoked)
    );
    assert_eq!(kind(&cache_before, &bearer("bob-1")).await, None);

    // Sessions issued after the cutoff are accepted at once.
    let after = Sessions {
        issued: Some(SystemTime::now() + Duration::from_millis(5)),
        ..Sessions::new()
    };
    assert_eq!(
        kind(&cached(&after, &revocations), &bearer("alice-9")).await,
        None
    );
    // Sessions that do not say when they were issued count as before.
    let unknown = Sessions {
        issued: None,
        ..Sessions::new()
    };
    assert_eq!(
        kind(&cached(&unknown, &revocations), &bearer("alice-9")).await,
        Some(ValidationErrorKind::Revoked)
    );
}

#[tokio::test(start_paused = true)]
async fn revocations_expire_when_what_they_revoke_would_have_expired() {
    // V1: bounded in time.
    let revocations = Revocations::builder()
        .max_lifetime(Duration::from_secs(600))
        .build()
        .unwrap();
    let cache = cached(&Sessions::new(), &revocations);
    let expires = Instant::now() + Duration::from_secs(60);
    revocations
        .revoke_secret("alice-1", Some(expires))
        .await
        .unwrap();
    // Unknown expiry: held for max_lifetime.
    revocations.revoke_secret("alice-2", None).await.unwrap();
    // Beyond max_lifetime: held for max_lifetime.
    revocations
        .revoke_secret(
            "alice-3",
            Some(Instant::now() + Duration::from_secs(86_400)),
        )
        .await
        .unwrap();
    // Already expired: nothing to hold.
    revocations
        .revoke_secret("alice-4", Some(Instant::now()))
        .await
        .unwrap();
    assert_eq!(revocations.stats().entries, 3);

    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(revocations.stats().entries, 2);
    assert_eq!(kind(&cache, &bearer("alice-1")).await, None);
    assert_eq!(
        kind(&cache, &bearer("alice-2")).await,
        Some(ValidationErrorKind::Revoked)
    );
    tokio::time::advance(Duration::from_secs(540)).await;
    assert_eq!(revocations.stats().entries, 0);
    assert_eq!(kind(&cache, &bearer("alice-3")).await, None);
}

#[tokio::test(start_paused = true)]
async fn the_revocation_table_is_bounded_and_keeps_the_revocations_that_end_last() {
    // V1, R3: a flood of revocations never grows the table past its
    // capacity; those that end soonest make room (and are counted).
    let logs = support::logs::capture();
    let revocations = Revocations::builder().capacity(100).build().unwrap();
    let now = Instant::now();
    for i in 0..1_000u64 {
        let until = now + Duration::from_secs(60 + i);
        drop(revocations.revoke_secret(&format!("flood-{i}"), Some(until)));
        assert!(revocations.stats().entries <= 100);
    }
    let stats = revocations.stats();
    assert_eq!(stats.entries, 100);
    assert_eq!(stats.evictions, 900);
    assert_eq!(stats.applied, 1_000);
    assert!(logs.text().contains("the revocation table is full"));
    // The latest-ending revocation is held, the earliest is gone.
    let check = |secret: &str| {
        let user = User {
            name: "x".into(),
            issued: None,
        };
        revocations.check(&bearer(secret), &user).is_err()
    };
    assert!(check("flood-999"));
    assert!(!check("flood-0"));
}

#[tokio::test(start_paused = true)]
async fn logs_name_revoked_secrets_by_a_keyed_fingerprint_only() {
    // L1, L5
    let logs = support::logs::capture();
    let canary = "canary-revoke-7f3a-secret";
    let revocations = Revocations::new();
    revocations.revoke_secret(canary, None).await.unwrap();
    let text = logs.text();
    assert!(text.contains("secret revoked"), "{text}");
    assert!(!text.contains(canary));
    assert!(!text.contains(&portcullis::validate::KeyDigest::of(canary).to_hex()));
    assert!(!format!("{revocations:?}").contains(canary));
}

#[tokio::test(start_paused = true)]
async fn api_keys_refuse_a_revoked_key_and_forget_it_for_good() {
    // V1
    let revocations = Revocations::builder()
        .max_lifetime(Duration::from_secs(60))
        .build()
        .unwrap();
    let (leaked, kept) = (
        GeneratedKey::new("acme_").unwrap(),
        GeneratedKey::new("acme_").unwrap(),
    );
    let keys = ApiKeys::builder("acme_")
        .key(leaked.digest(), ApiKeyIdentity::new("ci-bot"))
        .key(kept.digest(), ApiKeyIdentity::new("deployer"))
        .revocations(&revocations)
        .build()
        .unwrap();
    // A cache in front honours the same list.
    let cache = CachingValidator::builder(keys.clone())
        .revocations(&revocations)
        .build()
        .unwrap();
    for carrier in carriers(leaked.secret()) {
        assert_eq!(kind(&cache, &carrier).await, None);
    }
    revocations
        .revoke_secret(leaked.secret(), None)
        .await
        .unwrap();
    for carrier in carriers(leaked.secret()) {
        assert_eq!(
            kind(&cache, &carrier).await,
            Some(ValidationErrorKind::Revoked)
        );
    }
    assert_eq!(keys.len(), 1, "removed from the table");
    // Once the revocation has expired, the key is still unknown.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(revocations.stats().entries, 0);
    assert_eq!(
        kind(&keys, &bearer(leaked.secret())).await,
        Some(ValidationErrorKind::Invalid)
    );
    assert_eq!(kind(&cache, &bearer(kept.secret())).await, None);

    // `ApiKeys::revoke` goes through the list: the cache forgets too.
    assert!(keys.revoke(&kept.digest()));
    assert_eq!(
        kind(&cache, &bearer(kept.secret())).await,
        Some(ValidationErrorKind::Revoked)
    );
}

#[tokio::test(start_paused = true)]
async fn a_subjects_cutoff_removes_its_older_api_keys_and_keeps_newer_ones() {
    // V1
    let revocations = Revocations::new();
    let (old, unknown, new) = (
        GeneratedKey::new("acme_").unwrap(),
        GeneratedKey::new("acme_").unwrap(),
        GeneratedKey::new("acme_").unwrap(),
    );
    let keys = ApiKeys::builder("acme_")
        .key(
            old.digest(),
            ApiKeyIdentity::new("ci-bot")
                .with_issued_at(SystemTime::now() - Duration::from_secs(5)),
        )
        .key(unknown.digest(), ApiKeyIdentity::new("ci-bot"))
        .key(
            new.digest(),
            ApiKeyIdentity::new("ci-bot")
                .with_issued_at(SystemTime::now() + Duration::from_secs(5)),
        )
        .revocations(&revocations)
        .build()
        .unwrap();
    revocations.revoke_subject("ci-bot").await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        kind(&keys, &bearer(old.secret())).await,
        Some(ValidationErrorKind::Invalid)
    );
    assert_eq!(
        kind(&keys, &bearer(unknown.secret())).await,
        Some(ValidationErrorKind::Invalid)
    );
    assert_eq!(kind(&keys, &bearer(new.secret())).await, None);
}

#[cfg(feature = "jwt")]
mod jwt {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use jsonwebtoken::{EncodingKey, Header, encode};
    use portcullis::{
        ValidationErrorKind,
        revoke::Revocations,
        validate::jwt::{Algorithm, JwtKey, JwtValidator},
    };
    use serde_json::{Value, json};

    use super::{carriers, kind};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(claims: Value) -> String {
        encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn validator(revocations: &Revocations) -> JwtValidator<Value> {
        JwtValidator::builder()
            .algorithm(Algorithm::HS256)
            .key(JwtKey::secret(SECRET))
            .revocations(revocations)
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn a_revoked_jti_or_sid_is_refused_and_others_are_not() {
        // V1: JWTs are checked by jti and sid.
        let revocations = Revocations::new();
        let jwt = validator(&revocations);
        let exp = now() + 600;
        let by_jti = token(json!({ "sub": "alice", "exp": exp, "jti": "t-1" }));
        let by_sid = token(json!({ "sub": "alice", "exp": exp, "sid": "s-1" }));
        let other = token(json!({ "sub": "alice", "exp": exp, "jti": "t-2", "sid": "s-2" }));
        for t in [&by_jti, &by_sid, &other] {
            assert_eq!(kind(&jwt, &super::bearer(t)).await, None);
        }
        revocations.revoke_id("t-1", None).await.unwrap();
        revocations.revoke_id("s-1", None).await.unwrap();
        assert_eq!(
            kind(&jwt, &super::bearer(&by_jti)).await,
            Some(ValidationErrorKind::Revoked)
        );
        assert_eq!(
            kind(&jwt, &super::bearer(&by_sid)).await,
            Some(ValidationErrorKind::Revoked)
        );
        assert_eq!(kind(&jwt, &super::bearer(&other)).await, None);
    }

    #[tokio::test]
    async fn a_subjects_cutoff_revokes_jwts_issued_before_it_by_iat() {
        // V1: JWTs are checked by sub and iat.
        let revocations = Revocations::new();
        let jwt = validator(&revocations);
        let (now, exp) = (now(), now() + 600);
        let older = token(json!({ "sub": "alice", "exp": exp, "iat": now - 10 }));
        let no_iat = token(json!({ "sub": "alice", "exp": exp }));
        let newer = token(json!({ "sub": "alice", "exp": exp, "iat": now + 5 }));
        let bob = token(json!({ "sub": "bob", "exp": exp, "iat": now - 10 }));
        revocations.revoke_subject("alice").await.unwrap();
        assert_eq!(
            kind(&jwt, &super::bearer(&older)).await,
            Some(ValidationErrorKind::Revoked)
        );
        assert_eq!(
            kind(&jwt, &super::bearer(&no_iat)).await,
            Some(ValidationErrorKind::Revoked)
        );
        assert_eq!(kind(&jwt, &super::bearer(&newer)).await, None);
        assert_eq!(kind(&jwt, &super::bearer(&bob)).await, None);
    }

    #[tokio::test]
    async fn a_revoked_jwt_is_refused_in_every_carrier() {
        // V1
        let revocations = Revocations::new();
        let jwt = validator(&revocations);
        let t = token(json!({ "sub": "alice", "exp": now() + 600 }));
        revocations.revoke_secret(&t, None).await.unwrap();
        for carrier in carriers(&t) {
            assert_eq!(
                kind(&jwt, &carrier).await,
                Some(ValidationErrorKind::Revoked)
            );
        }
    }

    #[tokio::test]
    async fn a_jwt_that_would_outlive_its_revocation_is_refused() {
        // V1: a revocation lasts max_lifetime; a longer-lived token could
        // come back from the dead.
        let revocations = Revocations::builder()
            .max_lifetime(Duration::from_secs(3600))
            .build()
            .unwrap();
        let jwt = validator(&revocations);
        let short = token(json!({ "sub": "alice", "exp": now() + 3000 }));
        let long = token(json!({ "sub": "alice", "exp": now() + 7200 }));
        assert_eq!(kind(&jwt, &super::bearer(&short)).await, None);
        assert_eq!(
            kind(&jwt, &super::bearer(&long)).await,
            Some(ValidationErrorKind::Invalid)
        );
    }
}

/// Several replicas against a real redis-server (V2). `PORTCULLIS_REDIS_URL`
/// names one; without it these tests say they are skipped, except in CI,
/// where that fails. Tests that cut or kill Redis use their own proxy or
/// server.
#[cfg(feature = "redis")]
mod replicas {
    use std::{net::SocketAddr, sync::Arc, time::Duration};

    use http::{Request, Response, StatusCode, header};
    use portcullis::{
        AuthLayer, ValidationErrorKind, Validator,
        lease::{End, Lease},
        lockout::RedisStore,
        revoke::Revocations,
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
        let a = Revocations::with_redis(store(&url, &prefix).await);
        let b = Revocations::with_redis(store(&url, &prefix).await);
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

        // A replica that starts later reads what is stored.
        let c = Revocations::with_redis(store(&url, &prefix).await);
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
        assert_eq!(c.stats().entries, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_disconnected_replica_answers_unavailable_then_catches_up_and_says_so() {
        // V2, V1: never "valid" while it cannot know.
        let Some(url) = redis_url() else { return };
        let logs = capture();
        let upstream: SocketAddr = url
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .parse()
            .expect("PORTCULLIS_REDIS_URL is redis://host:port");
        let proxy = Proxy::start(upstream).await;
        let prefix = unique_prefix();
        let a = Revocations::with_redis(store(&url, &prefix).await);
        let b = Revocations::with_redis(store(&proxy.url(), &prefix).await);
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
        assert!(
            logs.text()
                .contains("revocations are out of sync with redis")
        );
        // Cached and valid, yet not vouched for.
        let answer = on_b.validate(&bearer("alice-2")).await.unwrap_err();
        assert_eq!(answer.kind(), ValidationErrorKind::Unavailable);
        assert_eq!(answer.retry_after(), Some(Duration::from_secs(1)));

        // Revoked elsewhere while b cannot hear it.
        a.revoke_secret("alice-1", None).await.unwrap();
        proxy.restore();
        in_sync(&b).await;
        assert_eq!(b.stats().catch_ups, 2);
        assert!(logs.text().contains("revocations caught up with redis"));
        assert_eq!(
            kind(&on_b, &bearer("alice-1")).await,
            Some(ValidationErrorKind::Revoked)
        );
        assert_eq!(kind(&on_b, &bearer("alice-2")).await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_killed_ends_open_leases_and_refuses_with_503_until_it_is_back() {
        // V1, V2, V3, B2
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
        let revocations = Revocations::with_redis(redis);
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
}
