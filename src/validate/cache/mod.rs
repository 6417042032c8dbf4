//! A bounded cache in front of any validator: [`CachingValidator`].
//!
//! Outcomes are kept per secret and, within a secret, per carrier
//! (`entry.rs`); invalidations are counted and remembered so that no
//! request is answered from an outcome that started before one
//! (`invalidation.rs`); the validator itself, with its single flight, is in
//! `validator.rs`, its configuration in `builder.rs`.

mod builder;
mod entry;
mod invalidation;
mod validator;

pub use builder::CachingValidatorBuilder;
pub use validator::CachingValidator;
