//! Helpers shared by the behaviour tests, one module per kind of helper.
#![allow(dead_code, unreachable_pub)]

pub(crate) mod logs;
pub(crate) mod proxy;
#[cfg(feature = "redis")]
pub(crate) mod redis;
pub(crate) mod rpc;
