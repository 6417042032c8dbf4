//! What every service of one [`RateLimitLayer`](super::RateLimitLayer)
//! shares: below the builder, the layer and the service, which all read it.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use super::{
    headers::{self, Headers},
    store::Store,
};
use crate::{
    KeyExtractor,
    client_list::Lists,
    events::{self, KeyText, Record},
};

/// What every service of one layer shares.
pub(crate) struct Shared<K: KeyExtractor, R> {
    pub(crate) extractor: K,
    pub(crate) renderer: Arc<R>,
    pub(crate) store: Box<dyn Store<K::Key>>,
    /// The `RateLimit` fields to send, if any.
    pub(crate) headers: Option<Arc<headers::Config>>,
    pub(crate) burst: u32,
    /// The time one request's allowance takes to come back.
    pub(crate) interval: Duration,
    pub(crate) refused: AtomicU64,
    /// Allow- and deny-lists (B16).
    pub(crate) lists: Lists,
}

impl<K: KeyExtractor, R> Shared<K, R> {
    /// The `RateLimit-*` fields of an allowed request, when enabled.
    pub(crate) fn allowed(&self, remaining: u32) -> Option<Headers> {
        self.headers.as_ref().map(|h| h.allowed(remaining))
    }

    /// Counts and logs a refusal; the `RateLimit-*` fields, when enabled.
    pub(crate) fn refused(&self, key: &K::Key, retry_after: Duration) -> Option<Headers> {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(target: "portcullis::rate_limit", key = %KeyText(key), ?retry_after, "rate limited");
        events::emit(Record::RateLimited { key, retry_after });
        self.headers.as_ref().map(|h| h.refused(retry_after))
    }
}
