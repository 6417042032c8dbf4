//! [`Lease`]: how long an authenticated request may go on, and [`End`]:
//! why it ended.

use std::{
    any::Any,
    fmt,
    sync::{Arc, OnceLock},
};

use tokio::time::Instant;

use crate::{
    Credential,
    credential::KeyDigest,
    revoke::{Facts, Hashed, Revocable, Revocations, Revoked},
    validate::ExpiresAt,
};

/// How long an authenticated request may go on: until its identity
/// expires ([`ExpiresAt`]) or its credential is revoked (through the
/// [`Revocations`] the lease was granted under).
///
/// [`AuthLayer::leases`](crate::AuthLayer::leases) grants one to every
/// request whose credential it accepts, puts it into the request extensions
/// (`request.extensions().get::<Lease>()`; with axum, the `Lease`
/// extractor), and ends streaming response bodies with it. Hold it in
/// long-lived work the response body does not cover (a WebSocket) and
/// `select!` on [`ended`](Self::ended).
///
/// Cheap to clone. `Debug` shows the credential's keyed fingerprint, never
/// the secret.
///
/// # Example
///
/// ```
/// use std::{convert::Infallible, time::Duration};
/// use http::{Request, Response, header::AUTHORIZATION};
/// use portcullis::{AuthLayer, Credential, ValidationError};
/// use portcullis::lease::Lease;
/// use portcullis::revoke::{Revocable, Revocations};
/// use portcullis::validate::ExpiresAt;
/// use tokio::time::Instant;
/// use http_body_util::BodyExt;
/// use tower::{ServiceBuilder, ServiceExt};
///
/// #[derive(Clone)]
/// struct User { until: Instant }
/// impl ExpiresAt for User {
///     fn expires_at(&self) -> Option<Instant> { Some(self.until) }
/// }
/// impl Revocable for User {}
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let until = Instant::now() + Duration::from_secs(60);
/// let validate = move |_: Credential| async move { Ok::<_, ValidationError>(User { until }) };
/// let revocations = Revocations::new();
/// let service = ServiceBuilder::new()
///     .layer(AuthLayer::new(validate).leases(&revocations))
///     .service_fn(|req: Request<String>| async move {
///         let lease = req.extensions().get::<Lease>().unwrap().clone();
///         // Long-lived work: stop when the lease ends.
///         let end = lease.ended().await;
///         Ok::<_, Infallible>(Response::new(end.to_string()))
///     });
/// let req = Request::builder().header(AUTHORIZATION, "Bearer t").body(String::new()).unwrap();
/// let res = service.oneshot(req).await.unwrap();
/// assert!(Instant::now() >= until);
/// assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "the credential expired");
/// # }
/// ```
#[derive(Clone)]
pub struct Lease {
    inner: Arc<Terms>,
}

/// What a lease ends with.
struct Terms {
    revocations: Revocations,
    /// Kept to compute the secret's digest if a revocation ever needs it.
    credential: Credential,
    expires_at: Option<Instant>,
    facts: Hashed,
    /// The keyed hash of the secret's digest, computed once, when first
    /// needed.
    secret: OnceLock<u64>,
}

impl Lease {
    /// The lease of `credential`, accepted as `identity`.
    pub(crate) fn grant<I>(revocations: &Revocations, credential: &Credential, identity: &I) -> Self
    where
        I: ExpiresAt + Revocable + ?Sized,
    {
        Self {
            inner: Arc::new(Terms {
                facts: revocations.inner.hash_facts(&Facts::of(identity)),
                revocations: revocations.clone(),
                // A stream may outlive its request by far: the lease keeps a
                // copy of the secret, not the request's header value.
                credential: credential.detached(),
                expires_at: identity.expires_at(),
                secret: OnceLock::new(),
            }),
        }
    }

    /// When the lease ends by itself: its identity's expiry, if it has one.
    pub fn expires_at(&self) -> Option<Instant> {
        self.inner.expires_at
    }

    /// Whether the lease has ended, and why.
    pub fn end(&self) -> Option<End> {
        self.end_at(Instant::now())
    }

    /// Revokes the credential this lease was granted for, in every carrier,
    /// until it would have expired (plus the list's
    /// [leeway](crate::revoke::RevocationsBuilder::leeway), so it lasts as
    /// long as any validator honouring the list accepts it): a sign-out. Ends this lease and every
    /// other request's lease for the same credential.
    pub fn revoke(&self) -> Revoked {
        let digest = KeyDigest::of(self.inner.credential.secret());
        self.inner
            .revocations
            .revoke_digest(&digest, self.inner.expires_at)
    }

    pub(crate) fn revocations(&self) -> &Revocations {
        &self.inner.revocations
    }

    pub(crate) fn credential(&self) -> &Credential {
        &self.inner.credential
    }

    pub(crate) fn end_at(&self, now: Instant) -> Option<End> {
        if self.inner.expires_at.is_some_and(|at| now >= at) {
            return Some(End::Expired);
        }
        self.revocation_end()
    }

    /// Whether the revocation list ends the lease.
    pub(crate) fn revocation_end(&self) -> Option<End> {
        let terms = &*self.inner;
        let list = &*terms.revocations.inner;
        if !list.answers() {
            return Some(End::Unavailable);
        }
        if list.is_empty() {
            return None;
        }
        let secret = || {
            *terms
                .secret
                .get_or_init(|| list.hash_secret(&KeyDigest::of(terms.credential.secret())))
        };
        list.revoked(secret, &terms.facts).map(|_| End::Revoked)
    }
}

/// Why a [`Lease`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum End {
    /// Its identity expired.
    Expired,
    /// Its credential was revoked.
    Revoked,
    /// The revocation list cannot tell whether the credential was revoked:
    /// it lost its shared store past its staleness bound and refuses (see
    /// [`SyncState`](crate::revoke::SyncState)).
    Unavailable,
}

impl End {
    /// The reason in words, for a WebSocket close frame or a `grpc-message`.
    pub fn message(self) -> &'static str {
        match self {
            Self::Expired => "the credential expired",
            Self::Revoked => "the credential was revoked",
            Self::Unavailable => "revocations are unavailable, sign in again later",
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("credential", &self.inner.credential)
            .field("expires_at", &self.inner.expires_at)
            .finish_non_exhaustive()
    }
}

/// Grants leases for an `AuthLayer`: the list, and how to read the facts of
/// its validator's identity type.
#[derive(Clone)]
pub(crate) struct Leases {
    revocations: Revocations,
    grant: fn(&Revocations, &Credential, &dyn Any) -> Option<Lease>,
}

impl Leases {
    pub(crate) fn new<I>(revocations: &Revocations) -> Self
    where
        I: ExpiresAt + Revocable + 'static,
    {
        Self {
            revocations: revocations.clone(),
            grant: grant::<I>,
        }
    }

    /// The lease of `credential`, accepted as `identity` (of the identity
    /// type this was made for).
    pub(crate) fn grant(&self, credential: &Credential, identity: &dyn Any) -> Option<Lease> {
        (self.grant)(&self.revocations, credential, identity)
    }
}

impl fmt::Debug for Leases {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leases")
            .field("revocations", &self.revocations)
            .finish()
    }
}

fn grant<I>(revocations: &Revocations, credential: &Credential, identity: &dyn Any) -> Option<Lease>
where
    I: ExpiresAt + Revocable + 'static,
{
    let identity = identity.downcast_ref::<I>()?;
    Some(Lease::grant(revocations, credential, identity))
}
