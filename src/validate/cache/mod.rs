//! A bounded cache in front of any validator: [`CachingValidator`].
//!
//! Outcomes are kept per secret and, within a secret, per carrier
//! (`entry.rs`); invalidations are counted and remembered so that no
//! request is answered from an outcome that started before one
//! (`invalidation.rs`); one backend call serves every request that missed
//! on the same credential (`flight.rs`). The validator and its public
//! methods are in `validator.rs`, its configuration in `builder.rs`.

mod builder;
mod entry;
mod flight;
mod honour;
mod invalidation;
mod revoke;
mod validator;

pub use builder::CachingValidatorBuilder;
pub use validator::CachingValidator;
