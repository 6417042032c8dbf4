//! What a revocation can reach an identity by.

use std::{sync::Arc, time::SystemTime};

/// What a revocation can reach an identity by, besides the secret it was
/// presented with: its subject, the ids of its token and session, and when
/// it was issued.
///
/// Implemented by JWT claims (`Claims`, feature `jwt`: `sub`, `jti`, `sid`,
/// `iat`) and by [`ApiKeyIdentity`](crate::validate::ApiKeyIdentity) (its
/// id is the subject). Implement it for your own identity types; every
/// method has a default that says "unknown".
///
/// # Security
///
/// A credential that does not say when it was issued is revoked by every
/// cutoff of its subject ([`Revocations::revoke_subject`](super::Revocations::revoke_subject)),
/// until that cutoff expires: nothing proves it is newer. Give identities an
/// issue time so that credentials issued after a "sign out everywhere" are
/// accepted again at once.
///
/// # Example
///
/// ```
/// use std::time::SystemTime;
/// use portcullis::revoke::Revocable;
///
/// #[derive(Clone)]
/// struct Session {
///     user: String,
///     id: String,
///     created: SystemTime,
/// }
///
/// impl Revocable for Session {
///     fn subject(&self) -> Option<&str> {
///         Some(&self.user)
///     }
///     fn session_id(&self) -> Option<&str> {
///         Some(&self.id)
///     }
///     fn issued_at(&self) -> Option<SystemTime> {
///         Some(self.created)
///     }
/// }
/// # let s = Session { user: "alice".into(), id: "s1".into(), created: SystemTime::now() };
/// # assert_eq!(s.subject(), Some("alice"));
/// ```
pub trait Revocable {
    /// Whom the credential is about (a user, a service account), for
    /// [`revoke_subject`](super::Revocations::revoke_subject).
    fn subject(&self) -> Option<&str> {
        None
    }

    /// The id of the token (a JWT's `jti`), for
    /// [`revoke_id`](super::Revocations::revoke_id).
    fn token_id(&self) -> Option<&str> {
        None
    }

    /// The id of the session the credential belongs to (a JWT's `sid`),
    /// for [`revoke_id`](super::Revocations::revoke_id).
    fn session_id(&self) -> Option<&str> {
        None
    }

    /// When the credential was issued (a JWT's `iat`), compared with a
    /// cutoff of its subject.
    fn issued_at(&self) -> Option<SystemTime> {
        None
    }
}

impl<T: Revocable + ?Sized> Revocable for Arc<T> {
    fn subject(&self) -> Option<&str> {
        (**self).subject()
    }

    fn token_id(&self) -> Option<&str> {
        (**self).token_id()
    }

    fn session_id(&self) -> Option<&str> {
        (**self).session_id()
    }

    fn issued_at(&self) -> Option<SystemTime> {
        (**self).issued_at()
    }
}

/// What a revocation can reach an identity by, read once.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Facts<'a> {
    pub(crate) subject: Option<&'a str>,
    pub(crate) ids: [Option<&'a str>; 2],
    pub(crate) issued_at: Option<SystemTime>,
}

impl Facts<'_> {
    /// The facts of `identity`.
    pub(crate) fn of<I: Revocable + ?Sized>(identity: &I) -> Facts<'_> {
        Facts {
            subject: identity.subject(),
            ids: [identity.token_id(), identity.session_id()],
            issued_at: identity.issued_at(),
        }
    }
}
