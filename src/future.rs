//! The boxed future the layers, the stores and their background work share.

use std::{future::Future, pin::Pin};

/// A boxed, sendable future: what a layer waits for, and what a store's
/// round trip returns.
pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
