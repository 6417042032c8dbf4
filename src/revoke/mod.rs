//! Revocation: credentials that are no longer accepted, though they still
//! verify.
//!
//! One mechanism, [`Revocations`], revokes
//!
//! - **a secret**, in every carrier it can arrive in (bearer, cookie,
//!   header, query, WebSocket subprotocol), by its digest;
//! - **a token or session id** (`jti`, `sid`);
//! - **a subject with a cutoff**: every credential of a user issued until
//!   now ("sign out everywhere"), JWTs included (by `iat`).
//!
//! Every validator that honours the list refuses what it revokes:
//! [`CachingValidator`](crate::validate::CachingValidator) (in front of any
//! backend), [`ApiKeys`](crate::validate::ApiKeys),
//! `JwtValidator` (feature `jwt`: `jti`, `sid`, `sub` and
//! `iat`), and yours through [`Revocations::check`]. With leases on
//! ([`AuthLayer::leases`](crate::AuthLayer::leases)), open streams end too:
//! see [`lease`](crate::lease). With Redis (feature `redis`,
//! `RevocationsBuilder::redis`) a revocation reaches every replica within a
//! second; a replica that lost Redis serves its local copy for a bounded
//! staleness, then answers `unavailable` (or keeps serving, as configured)
//! until it has caught up ([`SyncState`]).
//!
//! What the list can reach an identity by (its subject, ids and issue
//! time) is read through the [`Revocable`] trait.
//!
//! # Example
//!
//! ```
//! use std::time::SystemTime;
//! use portcullis::{Credential, CredentialSource, ValidationError, ValidationErrorKind, Validator};
//! use portcullis::revoke::{Revocable, Revocations};
//! use portcullis::validate::{CachingValidator, ExpiresAt};
//! use tokio::time::Instant;
//!
//! #[derive(Clone, Debug)]
//! struct User { name: &'static str, signed_in: SystemTime }
//!
//! impl ExpiresAt for User {
//!     fn expires_at(&self) -> Option<Instant> { None }
//! }
//! impl Revocable for User {
//!     fn subject(&self) -> Option<&str> { Some(self.name) }
//!     fn issued_at(&self) -> Option<SystemTime> { Some(self.signed_in) }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let signed_in = SystemTime::now();
//! let sessions = move |credential: Credential| async move {
//!     match credential.secret() {
//!         "laptop" | "phone" => Ok(User { name: "alice", signed_in }),
//!         _ => Err(ValidationError::invalid()),
//!     }
//! };
//! let revocations = Revocations::new();
//! let validator = CachingValidator::builder(sessions).revocations(&revocations).build()?;
//! let laptop = Credential::new("laptop", CredentialSource::Bearer);
//! let phone = Credential::new("phone", CredentialSource::Cookie("session".into()));
//!
//! // Sign out on the laptop: that secret, in every carrier.
//! revocations.revoke_secret("laptop", None).await?;
//! assert_eq!(validator.validate(&laptop).await.unwrap_err().kind(), ValidationErrorKind::Revoked);
//! assert!(validator.validate(&phone).await.is_ok());
//!
//! // Sign out everywhere.
//! revocations.revoke_subject("alice").await?;
//! assert_eq!(validator.validate(&phone).await.unwrap_err().kind(), ValidationErrorKind::Revoked);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod builder;
mod engine;
mod list;
#[cfg(feature = "redis")]
mod redis;
mod revocable;
mod revoked;
mod sync;
mod table;

pub use builder::RevocationsBuilder;
pub use engine::WhenStale;
pub(crate) use engine::{Hashed, Listener, Revocation, Target};
pub use list::{RevocationStats, Revocations};
pub(crate) use revocable::Facts;
pub use revocable::Revocable;
pub use revoked::{RevokeError, RevokeErrorKind, Revoked};
pub use sync::SyncState;
