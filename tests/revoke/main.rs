//! Revocation (V1): by secret in every carrier, by token or session id, and
//! by subject with a cutoff; honoured by the caching, API-key and JWT
//! validators; bounded, and expiring with what it revokes. With Redis (V2):
//! every replica within a second, and a replica that lost Redis answers
//! unavailable until it has caught up, and says so.

#[path = "../support/mod.rs"]
mod support;

mod api_keys;
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "redis")]
mod outages;
#[cfg(feature = "redis")]
mod replicas;
mod secrets;
mod subjects;

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
    validate::{CachingValidator, ExpiresAt},
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
