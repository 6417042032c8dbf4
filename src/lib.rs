//! Tower middleware that authenticates requests and shuts the gate on brute force.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

mod body;
pub mod client_ip;
mod credential;
mod error;
mod key;
pub mod lockout;
pub mod rate_limit;
pub mod reject;
pub mod validate;

pub use body::ResponseBody;
pub use client_ip::{ClientIp, PeerAddr};
pub use credential::{Credential, CredentialSource, Fingerprint};
pub use error::ConfigError;
pub use key::KeyExtractor;
pub use reject::AuthRejection;
pub use validate::{ValidationError, ValidationErrorKind, Validator};
