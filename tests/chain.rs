//! Behaviour of validator chains.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use portcullis::{
    Credential, CredentialSource, ValidationError, ValidationErrorKind, Validator,
    validate::{ApiKeyIdentity, ApiKeys, Chain, GeneratedKey, ValidatorExt},
};

fn bearer(secret: &str) -> Credential {
    Credential::new(secret, CredentialSource::Bearer)
}

#[derive(Clone, Debug, PartialEq)]
enum Principal {
    Service(String),
    User(String),
}

/// A validator that counts calls and answers `outcome` for every credential.
#[derive(Clone)]
struct Fixed {
    calls: Arc<AtomicUsize>,
    outcome: Result<&'static str, ValidationError>,
}

impl Fixed {
    fn new(outcome: Result<&'static str, ValidationError>) -> Self {
        Self {
            calls: Arc::new(AtomicUsize::new(0)),
            outcome,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Validator for Fixed {
    type Identity = &'static str;

    async fn validate(&self, _: &Credential) -> Result<&'static str, ValidationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.outcome.clone()
    }
}

#[tokio::test]
async fn the_first_validator_that_accepts_decides() {
    let a = Fixed::new(Err(ValidationError::invalid()));
    let b = Fixed::new(Ok("b"));
    let c = Fixed::new(Ok("c"));
    let chain = Chain::new().then(a.clone()).then(b.clone()).then(c.clone());
    assert_eq!(chain.validate(&bearer("t")).await.unwrap(), "b");
    assert_eq!((a.calls(), b.calls(), c.calls()), (1, 1, 0));
}

// B2: an unavailable backend is not "invalid" and never falls through.
#[tokio::test]
async fn an_unavailable_validator_stops_the_chain() {
    let down = Fixed::new(Err(ValidationError::unavailable()));
    let weaker = Fixed::new(Ok("weaker"));
    let chain = Chain::new().then(down.clone()).then(weaker.clone());
    let err = chain.validate(&bearer("t")).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Unavailable);
    assert_eq!(weaker.calls(), 0);
}

#[tokio::test]
async fn expired_and_revoked_answers_are_definite() {
    for kind in [ValidationError::expired(), ValidationError::revoked()] {
        let first = Fixed::new(Err(kind.clone()));
        let second = Fixed::new(Ok("second"));
        let chain = Chain::new().then(first).then(second.clone());
        let err = chain.validate(&bearer("t")).await.unwrap_err();
        assert_eq!(err.kind(), kind.kind());
        assert_eq!(second.calls(), 0);
    }
}

#[tokio::test]
async fn when_every_validator_says_invalid_the_chain_says_invalid() {
    let a = Fixed::new(Err(ValidationError::invalid()));
    let b = Fixed::new(Err(ValidationError::invalid().with_reason("last")));
    let chain = Chain::new().then(a).then(b);
    let err = chain.validate(&bearer("t")).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    assert_eq!(err.reason(), Some("last"));

    let empty: Chain<&'static str> = Chain::new();
    let err = empty.validate(&bearer("t")).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
}

#[tokio::test]
async fn a_prefixed_credential_goes_only_to_its_route() {
    let keys = Fixed::new(Err(ValidationError::invalid()));
    let jwt = Fixed::new(Ok("jwt"));
    let chain = Chain::new()
        .prefixed("acme_", keys.clone())
        .then(jwt.clone());

    // Looks like an API key: its answer is final, the JWT validator is not asked.
    let err = chain.validate(&bearer("acme_abc")).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    assert_eq!((keys.calls(), jwt.calls()), (1, 0));

    // Anything else skips the route.
    assert_eq!(chain.validate(&bearer("eyJhbGciOi")).await.unwrap(), "jwt");
    assert_eq!((keys.calls(), jwt.calls()), (1, 1));
}

#[tokio::test]
async fn validators_with_different_identities_map_into_one() {
    let key = GeneratedKey::new("acme_").unwrap();
    let keys = ApiKeys::builder("acme_")
        .key(key.digest(), ApiKeyIdentity::new("ci-bot"))
        .build()
        .unwrap();
    let sessions = |credential: Credential| async move {
        match credential.secret() {
            "session-1" => Ok(String::from("alice")),
            _ => Err(ValidationError::invalid()),
        }
    };
    let chain = Chain::new()
        .prefixed_map(keys.prefix().to_owned(), keys, |id| {
            Principal::Service(id.id().to_owned())
        })
        .then_map(sessions, Principal::User);

    assert_eq!(
        chain.validate(&bearer(key.secret())).await.unwrap(),
        Principal::Service("ci-bot".into())
    );
    assert_eq!(
        chain.validate(&bearer("session-1")).await.unwrap(),
        Principal::User("alice".into())
    );
    // A clone answers the same.
    let clone = chain.clone();
    assert!(clone.validate(&bearer("session-2")).await.is_err());
}

#[tokio::test]
async fn map_identity_leaves_errors_untouched() {
    let down = Fixed::new(Err(ValidationError::unavailable().with_reason("db down")))
        .map_identity(|s| s.len());
    let err = down.validate(&bearer("t")).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Unavailable);
    assert_eq!(err.reason(), Some("db down"));
}

/// Answers at once (`validate_now`); its future is never to be polled.
#[derive(Clone)]
struct Immediate(Result<&'static str, ValidationError>);

impl Validator for Immediate {
    type Identity = &'static str;

    async fn validate(&self, _: &Credential) -> Result<&'static str, ValidationError> {
        self.0.clone()
    }

    fn validate_now(&self, _: &Credential) -> Option<Result<&'static str, ValidationError>> {
        Some(self.0.clone())
    }
}

#[tokio::test]
async fn a_chain_answers_at_once_when_every_validator_it_asks_does() {
    let invalid = || Err(ValidationError::invalid());
    // Immediate validators only: answered at once, the same as `validate`.
    let chain = Chain::new()
        .prefixed("svc_", Immediate(Ok("service")))
        .then(Immediate(invalid()))
        .then(Immediate(Ok("user")));
    for (secret, expected) in [("svc_1", "service"), ("token", "user")] {
        let now = chain
            .validate_now(&bearer(secret))
            .expect("answered at once");
        assert_eq!(now.unwrap(), expected);
        assert_eq!(chain.validate(&bearer(secret)).await.unwrap(), expected);
    }
    // A fallback that must wait, after an immediate "invalid": not at once.
    let waiting = Fixed::new(Ok("slow"));
    let chain = Chain::new()
        .then(Immediate(invalid()))
        .then(waiting.clone());
    assert!(chain.validate_now(&bearer("token")).is_none());
    assert_eq!(waiting.calls(), 0);
    assert_eq!(chain.validate(&bearer("token")).await.unwrap(), "slow");
    // An immediate definite answer stops before the waiting one.
    let chain = Chain::new()
        .then(Immediate(Err(ValidationError::revoked())))
        .then(waiting.clone());
    let kind = chain
        .validate_now(&bearer("token"))
        .unwrap()
        .unwrap_err()
        .kind();
    assert_eq!(kind, ValidationErrorKind::Revoked);
    // Mapped identities keep answering at once.
    let mapped = Immediate(Ok("alice")).map_identity(|name| name.len());
    assert_eq!(mapped.validate_now(&bearer("t")).unwrap().unwrap(), 5);
    assert!(
        Fixed::new(Ok("x"))
            .map_identity(|x| x)
            .validate_now(&bearer("t"))
            .is_none()
    );
}

#[tokio::test]
async fn api_keys_answer_at_once_as_they_answer_later() {
    let key = GeneratedKey::new("pk_").unwrap();
    let keys = ApiKeys::builder("pk_")
        .key(key.digest(), ApiKeyIdentity::new("ci"))
        .build()
        .unwrap();
    for secret in [key.secret(), "pk_wrong", "nope"] {
        let now = keys.validate_now(&bearer(secret)).expect("in memory");
        let later = keys.validate(&bearer(secret)).await;
        assert_eq!(
            now.map(|id| id.id().to_owned()).ok(),
            later.map(|id| id.id().to_owned()).ok()
        );
    }
}
