//! Behaviour of the caching validator: what is cached and for how long
//! here, invalidation in `invalidate.rs`.

#[path = "../support/mod.rs"]
mod support;

mod invalidate;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use portcullis::{
    ConfigError, Credential, CredentialSource, ValidationError, ValidationErrorKind, Validator,
    validate::{ApiKeyIdentity, ApiKeys, CachingValidator, ExpiresAt, GeneratedKey},
};
use tokio::time::{Instant, advance};

fn bearer(secret: &str) -> Credential {
    Credential::new(secret, CredentialSource::Bearer)
}

#[derive(Clone, Debug, PartialEq)]
struct User {
    name: &'static str,
    until: Option<Instant>,
}

impl ExpiresAt for User {
    fn expires_at(&self) -> Option<Instant> {
        self.until
    }
}

type Script = Arc<dyn Fn(&str, usize) -> Result<User, ValidationError> + Send + Sync>;

/// A backend that counts its calls, answers from `script` (given the secret
/// and the call number) and takes `delay` (tokio time) to answer.
#[derive(Clone)]
struct Backend {
    calls: Arc<AtomicUsize>,
    delay: Duration,
    script: Script,
}

impl Backend {
    fn new(
        script: impl Fn(&str, usize) -> Result<User, ValidationError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            calls: Arc::new(AtomicUsize::new(0)),
            delay: Duration::ZERO,
            script: Arc::new(script),
        }
    }

    fn alice() -> Self {
        Self::new(|secret, _| match secret {
            "alice-token" => Ok(User {
                name: "alice",
                until: None,
            }),
            _ => Err(ValidationError::invalid()),
        })
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Validator for Backend {
    type Identity = User;

    async fn validate(&self, credential: &Credential) -> Result<User, ValidationError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        (self.script)(credential.secret(), n)
    }
}

fn cached(backend: &Backend) -> CachingValidator<Backend> {
    CachingValidator::builder(backend.clone())
        .ttl(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_cached_credential_is_answered_without_the_backend() {
    let backend = Backend::alice();
    let cache = cached(&backend);
    for _ in 0..5 {
        assert_eq!(
            cache.validate(&bearer("alice-token")).await.unwrap().name,
            "alice"
        );
    }
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hit_is_answered_at_once_and_a_miss_or_an_expired_entry_is_not() {
    let backend = Backend::alice();
    let cache = cached(&backend);
    let alice = bearer("alice-token");
    assert!(
        cache.validate_now(&alice).is_none(),
        "a miss waits for the backend"
    );
    cache.validate(&alice).await.unwrap();
    assert_eq!(cache.validate_now(&alice).unwrap().unwrap().name, "alice");
    // The answer is the one `validate` gives: invalidated, gone.
    cache.invalidate(&alice);
    assert!(cache.validate_now(&alice).is_none());
    cache.validate(&alice).await.unwrap();
    advance(Duration::from_secs(61)).await;
    assert!(cache.validate_now(&alice).is_none(), "past its TTL");
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hundred_concurrent_misses_make_one_backend_call() {
    let backend = Backend::alice().delayed(Duration::from_secs(1));
    let cache = cached(&backend);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let cache = cache.clone();
        tasks.spawn(async move { cache.validate(&bearer("alice-token")).await });
    }
    let mut ok = 0;
    while let Some(res) = tasks.join_next().await {
        assert_eq!(res.unwrap().unwrap().name, "alice");
        ok += 1;
    }
    assert_eq!(ok, 100);
    assert_eq!(backend.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_caller_hands_the_backend_call_to_a_waiting_one() {
    let backend = Backend::alice().delayed(Duration::from_secs(1));
    let cache = cached(&backend);
    let leader = tokio::spawn({
        let cache = cache.clone();
        async move { cache.validate(&bearer("alice-token")).await }
    });
    let follower = tokio::spawn({
        let cache = cache.clone();
        async move { cache.validate(&bearer("alice-token")).await }
    });
    advance(Duration::from_millis(500)).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    assert_eq!(follower.await.unwrap().unwrap().name, "alice");
    assert_eq!(backend.calls(), 2);
    // Settled: the next request is a hit.
    cache.validate(&bearer("alice-token")).await.unwrap();
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_positive_entry_lives_no_longer_than_the_ttl() {
    let backend = Backend::alice();
    let cache = cached(&backend);
    cache.validate(&bearer("alice-token")).await.unwrap();
    advance(Duration::from_secs(59)).await;
    cache.validate(&bearer("alice-token")).await.unwrap();
    assert_eq!(backend.calls(), 1);
    advance(Duration::from_secs(1)).await;
    cache.validate(&bearer("alice-token")).await.unwrap();
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_positive_entry_never_outlives_the_identitys_own_expiry() {
    let expiry = Instant::now() + Duration::from_secs(10);
    let backend = Backend::new(move |_, _| {
        if Instant::now() < expiry {
            Ok(User {
                name: "alice",
                until: Some(expiry),
            })
        } else {
            Err(ValidationError::expired())
        }
    });
    let cache = cached(&backend);
    cache.validate(&bearer("t")).await.unwrap();
    advance(Duration::from_secs(9)).await;
    cache.validate(&bearer("t")).await.unwrap();
    assert_eq!(backend.calls(), 1);
    advance(Duration::from_secs(1)).await;
    let err = cache.validate(&bearer("t")).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Expired);
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_identity_that_has_already_expired_is_not_cached() {
    let backend = Backend::new(|_, _| {
        Ok(User {
            name: "stale",
            until: Some(Instant::now()),
        })
    });
    let cache = cached(&backend);
    cache.validate(&bearer("t")).await.unwrap();
    cache.validate(&bearer("t")).await.unwrap();
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_result_is_cached_briefly() {
    let backend = Backend::alice();
    let cache = CachingValidator::builder(backend.clone())
        .negative_ttl(Duration::from_secs(5))
        .build()
        .unwrap();
    for _ in 0..3 {
        let err = cache.validate(&bearer("wrong")).await.unwrap_err();
        assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    }
    assert_eq!(backend.calls(), 1);
    advance(Duration::from_secs(5)).await;
    cache.validate(&bearer("wrong")).await.unwrap_err();
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn negative_caching_can_be_turned_off() {
    let backend = Backend::alice();
    let cache = CachingValidator::builder(backend.clone())
        .negative_ttl(Duration::ZERO)
        .build()
        .unwrap();
    cache.validate(&bearer("wrong")).await.unwrap_err();
    cache.validate(&bearer("wrong")).await.unwrap_err();
    assert_eq!(backend.calls(), 2);
}

// B2: an unavailable backend is never cached as a negative result.
#[tokio::test(start_paused = true)]
async fn an_unavailable_result_is_never_cached() {
    let backend = Backend::new(|_, n| match n {
        0 | 1 => Err(ValidationError::unavailable().with_retry_after(Duration::from_secs(3))),
        _ => Ok(User {
            name: "alice",
            until: None,
        }),
    });
    let cache = CachingValidator::builder(backend.clone())
        .negative_ttl(Duration::from_secs(60))
        .build()
        .unwrap();
    for _ in 0..2 {
        let err = cache.validate(&bearer("alice-token")).await.unwrap_err();
        assert_eq!(err.kind(), ValidationErrorKind::Unavailable);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
    }
    assert_eq!(
        cache.validate(&bearer("alice-token")).await.unwrap().name,
        "alice"
    );
    assert_eq!(backend.calls(), 3);
    assert_eq!(cache.entry_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn after_invalidate_the_next_request_goes_to_the_backend() {
    let backend = Backend::new(|_, n| match n {
        0 => Ok(User {
            name: "alice",
            until: None,
        }),
        _ => Err(ValidationError::revoked()),
    });
    let cache = cached(&backend);
    let alice = bearer("alice-token");
    cache.validate(&alice).await.unwrap();
    cache.invalidate(&alice);
    let err = cache.validate(&alice).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Revoked);
    assert_eq!(backend.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn after_invalidate_all_every_credential_goes_to_the_backend() {
    let backend = Backend::new(|_, _| {
        Ok(User {
            name: "any",
            until: None,
        })
    });
    let cache = cached(&backend);
    for s in ["a", "b", "c"] {
        cache.validate(&bearer(s)).await.unwrap();
    }
    cache.invalidate_all();
    for s in ["a", "b", "c"] {
        cache.validate(&bearer(s)).await.unwrap();
    }
    assert_eq!(backend.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn revoking_a_key_behind_the_cache_takes_effect_after_invalidate() {
    let key = GeneratedKey::new("acme_").unwrap();
    let keys = ApiKeys::builder("acme_")
        .key(key.digest(), ApiKeyIdentity::new("ci-bot"))
        .build()
        .unwrap();
    let cache = CachingValidator::builder(keys.clone()).build().unwrap();
    let credential = bearer(key.secret());
    cache.validate(&credential).await.unwrap();

    keys.revoke(&key.digest());
    cache.invalidate(&credential);
    let err = cache.validate(&credential).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
}

#[tokio::test(start_paused = true)]
async fn api_key_expiry_caps_the_cache_entry() {
    let key = GeneratedKey::new("acme_").unwrap();
    let keys = ApiKeys::builder("acme_")
        .key(
            key.digest(),
            ApiKeyIdentity::new("temp").with_expiry(Instant::now() + Duration::from_secs(5)),
        )
        .build()
        .unwrap();
    let cache = CachingValidator::builder(keys).build().unwrap();
    cache.validate(&bearer(key.secret())).await.unwrap();
    advance(Duration::from_secs(5)).await;
    let err = cache.validate(&bearer(key.secret())).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Expired);
}

#[tokio::test(start_paused = true)]
async fn the_entry_count_never_exceeds_the_capacity() {
    let backend = Backend::new(|_, _| {
        Ok(User {
            name: "any",
            until: None,
        })
    });
    let cache = CachingValidator::builder(backend.clone())
        .max_capacity(50)
        .build()
        .unwrap();
    for i in 0..500 {
        cache
            .validate(&bearer(&format!("token-{i}")))
            .await
            .unwrap();
        if i % 50 == 0 {
            assert!(cache.entry_count() <= 50);
        }
    }
    assert!(cache.entry_count() <= 50);
}

// R2: a TTL too long to add to any instant saturates instead of panicking
// (at build or when an outcome is stored).
#[tokio::test(start_paused = true)]
async fn a_ttl_of_duration_max_saturates_instead_of_panicking() {
    let backend = Backend::alice();
    let cache = CachingValidator::builder(backend.clone())
        .ttl(Duration::MAX)
        .negative_ttl(Duration::MAX)
        .build()
        .unwrap();
    for _ in 0..2 {
        cache.validate(&bearer("alice-token")).await.unwrap();
        cache.validate(&bearer("wrong")).await.unwrap_err();
    }
    assert_eq!(backend.calls(), 2);
    advance(Duration::from_secs(10 * 365 * 86_400)).await;
    cache.validate(&bearer("alice-token")).await.unwrap();
    assert_eq!(backend.calls(), 2);
}

#[test]
fn a_zero_capacity_or_ttl_is_a_configuration_error() {
    let backend = Backend::alice();
    let err = CachingValidator::builder(backend.clone())
        .max_capacity(0)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::OutOfRange {
            setting: "max_capacity",
            ..
        }
    ));
    let err = CachingValidator::builder(backend)
        .ttl(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(matches!(
        err,
        ConfigError::OutOfRange { setting: "ttl", .. }
    ));
}

// L1: a canary secret never reaches the logs, only its fingerprint does.
#[tokio::test(start_paused = true)]
async fn a_canary_secret_never_appears_in_tracing_output() {
    let captured = support::logs::capture();

    let key = GeneratedKey::new("acme_").unwrap();
    let keys = ApiKeys::builder("acme_")
        .key(key.digest(), ApiKeyIdentity::new("ci-bot"))
        .build()
        .unwrap();
    let cache = CachingValidator::builder(keys).build().unwrap();
    let canary = "acme_CANARY-0b5e1d7a";
    let good = bearer(key.secret());
    let bad = bearer(canary);
    cache.validate(&good).await.unwrap();
    cache.validate(&good).await.unwrap();
    cache.validate(&bad).await.unwrap_err();
    cache.validate(&bad).await.unwrap_err();

    let logs = captured.text();
    assert!(logs.contains(&bad.fingerprint().to_string()), "{logs}");
    assert!(logs.contains("cache hit"), "{logs}");
    assert!(!logs.contains("CANARY"), "{logs}");
    assert!(!logs.contains(key.secret()), "{logs}");
}
