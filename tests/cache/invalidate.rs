//! Invalidation: after `invalidate*` returns, no request is answered from an
//! outcome that started before it, in any carrier (B12).

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::HeaderName;
use portcullis::{
    Credential, CredentialSource, ValidationError, ValidationErrorKind, Validator,
    validate::{ApiKeyIdentity, ApiKeys, CachingValidator, GeneratedKey, KeyDigest},
};
use tokio::{sync::Semaphore, task::JoinSet};

use super::{Backend, User, bearer};

fn cookie(secret: &str) -> Credential {
    Credential::new(secret, CredentialSource::Cookie("session".into()))
}

fn api_key_header(secret: &str) -> Credential {
    Credential::new(
        secret,
        CredentialSource::Header(HeaderName::from_static("x-api-key")),
    )
}

/// Every carrier a secret can arrive in.
fn carriers(secret: &str) -> [Credential; 3] {
    [bearer(secret), cookie(secret), api_key_header(secret)]
}

/// A session store: `alice-*` secrets belong to alice, `bob-*` ones to bob.
/// Whether a secret is revoked is read when a call starts; a gated store
/// then waits for the test to [`open`](Self::open) it, like a lookup that
/// raced with a revocation.
#[derive(Clone, Default)]
struct Sessions {
    calls: Arc<AtomicUsize>,
    revoked: Arc<Mutex<HashSet<String>>>,
    gate: Option<Arc<Semaphore>>,
}

impl Sessions {
    fn gated() -> Self {
        Self {
            gate: Some(Arc::new(Semaphore::new(0))),
            ..Self::default()
        }
    }

    fn open(&self) {
        if let Some(gate) = &self.gate {
            gate.add_permits(Semaphore::MAX_PERMITS / 2);
        }
    }

    fn revoke(&self, secret: &str) {
        self.revoked.lock().unwrap().insert(secret.to_owned());
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Validator for Sessions {
    type Identity = User;

    async fn validate(&self, credential: &Credential) -> Result<User, ValidationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let secret = credential.secret();
        let name = match secret.split_once('-') {
            Some(("alice", _)) => "alice",
            Some(("bob", _)) => "bob",
            _ => return Err(ValidationError::invalid()),
        };
        let revoked = self.revoked.lock().unwrap().contains(secret);
        if let Some(gate) = &self.gate {
            gate.acquire().await.unwrap().forget();
        }
        if revoked {
            Err(ValidationError::revoked())
        } else {
            Ok(User { name, until: None })
        }
    }
}

fn subject(user: &User) -> Option<&str> {
    Some(user.name)
}

fn sessions_cache(sessions: &Sessions) -> CachingValidator<Sessions> {
    CachingValidator::builder(sessions.clone())
        .ttl(Duration::from_secs(60))
        .subject(subject)
        .build()
        .unwrap()
}

/// Yields until `condition` holds (other tasks make progress meanwhile).
async fn until(mut condition: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if condition() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("the condition never held");
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

fn spawn_validate<V: Validator>(
    tasks: &mut JoinSet<Result<V::Identity, ValidationError>>,
    cache: &CachingValidator<V>,
    credential: Credential,
) {
    let cache = cache.clone();
    tasks.spawn(async move { cache.validate(&credential).await });
}

async fn kinds<I: 'static>(
    tasks: &mut JoinSet<Result<I, ValidationError>>,
) -> Vec<Option<ValidationErrorKind>> {
    let mut kinds = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        kinds.push(outcome.unwrap().err().map(|e| e.kind()));
    }
    kinds
}

// B12: the request whose backend call was in flight when `invalidate`
// returned, the requests waiting on that call, and the requests that came
// after all get an outcome from after the revocation; nothing stale is
// cached. Each trial varies the waiters, the late requests and the kind of
// invalidation.
#[tokio::test(start_paused = true)]
async fn a_lookup_in_flight_during_invalidate_answers_nobody() {
    for trial in 0..120 {
        let sessions = Sessions::gated();
        let cache = sessions_cache(&sessions);
        let mut tasks = JoinSet::new();
        for _ in 0..=trial % 5 {
            spawn_validate(&mut tasks, &cache, bearer("alice-1"));
        }
        until(|| sessions.calls() == 1).await;
        settle().await;

        sessions.revoke("alice-1");
        match trial % 4 {
            0 => cache.invalidate(&bearer("alice-1")),
            // B12: every carrier, so revoking the cookie reaches the bearer lookup.
            1 => cache.invalidate(&cookie("alice-1")),
            2 => cache.invalidate_subject("alice"),
            _ => cache.invalidate_all(),
        }
        for _ in 0..trial % 3 {
            spawn_validate(&mut tasks, &cache, bearer("alice-1"));
        }
        settle().await;
        sessions.open();

        let kinds = kinds(&mut tasks).await;
        assert!(
            kinds
                .iter()
                .all(|k| *k == Some(ValidationErrorKind::Revoked)),
            "trial {trial}: {kinds:?}"
        );
        let err = cache.validate(&bearer("alice-1")).await.unwrap_err();
        assert_eq!(err.kind(), ValidationErrorKind::Revoked, "trial {trial}");
        assert!(sessions.calls() <= 3, "trial {trial}: {}", sessions.calls());
    }
}

// B12: the request whose lookup was in flight asks again, and what it gets
// then is cached as usual.
#[tokio::test(start_paused = true)]
async fn a_lookup_in_flight_during_invalidate_is_repeated_and_its_new_outcome_cached() {
    let backend = Backend::alice().delayed(Duration::from_secs(1));
    let cache = super::cached(&backend);
    let mut tasks = JoinSet::new();
    spawn_validate(&mut tasks, &cache, bearer("alice-token"));
    tokio::time::advance(Duration::from_millis(500)).await;
    cache.invalidate(&bearer("alice-token"));
    assert_eq!(kinds(&mut tasks).await, [None]);
    assert_eq!(backend.calls(), 2);
    cache.validate(&bearer("alice-token")).await.unwrap();
    assert_eq!(backend.calls(), 2);
}

// B12: a credential invalidated during every lookup made for it is answered
// unavailable (503, never counted) after three lookups, not answered from a
// stale outcome and not retried forever.
#[tokio::test(start_paused = true)]
async fn a_request_invalidated_during_every_attempt_is_answered_unavailable() {
    let sessions = Sessions::gated();
    let cache = sessions_cache(&sessions);
    let mut tasks = JoinSet::new();
    spawn_validate(&mut tasks, &cache, bearer("alice-1"));
    let gate = sessions.gate.clone().unwrap();
    for attempt in 1..=3 {
        until(|| sessions.calls() == attempt).await;
        cache.invalidate(&cookie("alice-1"));
        gate.add_permits(1);
    }
    let outcome = tasks.join_next().await.unwrap().unwrap();
    assert_eq!(
        outcome.unwrap_err().kind(),
        ValidationErrorKind::Unavailable
    );
    assert_eq!(sessions.calls(), 3);
}

// B12: the cache key keeps the carrier (a validator may treat them
// differently), but invalidating a secret reaches it in every carrier.
#[tokio::test(start_paused = true)]
async fn invalidating_a_secret_reaches_every_carrier_it_was_cached_in() {
    let sessions = Sessions::default();
    let cache = sessions_cache(&sessions);
    for _ in 0..2 {
        for credential in carriers("alice-1") {
            assert_eq!(cache.validate(&credential).await.unwrap().name, "alice");
        }
    }
    assert_eq!(sessions.calls(), 3, "one lookup per carrier, then hits");

    sessions.revoke("alice-1");
    cache.invalidate(&cookie("alice-1"));
    for credential in carriers("alice-1") {
        let err = cache.validate(&credential).await.unwrap_err();
        assert_eq!(err.kind(), ValidationErrorKind::Revoked, "{credential}");
    }
    assert_eq!(sessions.calls(), 6);
}

// B12: an operator who holds only the stored digest of an API key revokes it
// in the table and in the cache, in every carrier.
#[tokio::test(start_paused = true)]
async fn an_api_key_revoked_by_digest_is_refused_in_every_carrier() {
    let key = GeneratedKey::new("acme_").unwrap();
    let keys = ApiKeys::builder("acme_")
        .key(key.digest(), ApiKeyIdentity::new("ci-bot"))
        .build()
        .unwrap();
    let cache = CachingValidator::builder(keys.clone()).build().unwrap();
    for credential in carriers(key.secret()) {
        cache.validate(&credential).await.unwrap();
    }

    let stored: KeyDigest = key.digest().to_hex().parse().unwrap();
    assert!(keys.revoke(&stored));
    cache.invalidate_digest(&stored);
    for credential in carriers(key.secret()) {
        let err = cache.validate(&credential).await.unwrap_err();
        assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    }
}

// B12: "sign out everywhere": every cached credential of one subject, in
// every carrier, goes back to the backend; other subjects stay cached.
#[tokio::test(start_paused = true)]
async fn invalidating_a_subject_reaches_all_its_credentials_and_no_others() {
    let sessions = Sessions::default();
    let cache = sessions_cache(&sessions);
    let secrets = ["alice-1", "alice-2", "bob-1"];
    for secret in secrets {
        for credential in carriers(secret) {
            cache.validate(&credential).await.unwrap();
        }
    }
    assert_eq!(sessions.calls(), 9);

    sessions.revoke("alice-1");
    sessions.revoke("alice-2");
    cache.invalidate_subject("alice");
    for secret in secrets {
        for credential in carriers(secret) {
            let outcome = cache.validate(&credential).await;
            if secret.starts_with("alice") {
                assert_eq!(outcome.unwrap_err().kind(), ValidationErrorKind::Revoked);
            } else {
                assert_eq!(outcome.unwrap().name, "bob");
            }
        }
    }
    assert_eq!(
        sessions.calls(),
        15,
        "alice's six entries asked again, bob's none"
    );

    // A credential validated after the invalidation is cached as usual.
    cache.validate(&bearer("alice-3")).await.unwrap();
    cache.validate(&bearer("alice-3")).await.unwrap();
    assert_eq!(sessions.calls(), 16);
}

// B12: a handler holds only the identity; `invalidate_subject` is how it
// signs its caller out everywhere. Without a subject function the cache
// cannot tell whose entries are whose, so it forgets everything rather than
// nothing.
#[tokio::test(start_paused = true)]
async fn invalidate_subject_without_a_subject_function_forgets_everything() {
    let backend = Backend::alice();
    let cache = CachingValidator::builder(backend.clone()).build().unwrap();
    cache.validate(&bearer("alice-token")).await.unwrap();
    cache.invalidate_subject("alice");
    cache.validate(&bearer("alice-token")).await.unwrap();
    assert_eq!(backend.calls(), 2);
}

// B12: invalidations that do not concern a lookup in flight leave it alone:
// its outcome is answered and cached.
#[tokio::test(start_paused = true)]
async fn unrelated_invalidations_do_not_disturb_a_lookup_in_flight() {
    let sessions = Sessions::gated();
    let cache = sessions_cache(&sessions);
    let mut tasks = JoinSet::new();
    spawn_validate(&mut tasks, &cache, bearer("alice-1"));
    until(|| sessions.calls() == 1).await;
    cache.invalidate(&bearer("bob-1"));
    cache.invalidate_subject("bob");
    sessions.open();
    assert_eq!(kinds(&mut tasks).await, [None]);
    cache.validate(&bearer("alice-1")).await.unwrap();
    assert_eq!(sessions.calls(), 1);
}
