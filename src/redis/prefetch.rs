//! A new client's first request through a rate limiter and a lockout that
//! share one [`RedisStore`](super::RedisStore): one round trip, not two.
//!
//! Both limiters ask Redis on a key's first contact: the rate limiter for a
//! batch of tokens, the lockout for admission credits. Asked one after the
//! other (the lockout only once the rate limiter's answer let the request
//! through), that is two round trips. A lockout built on a store registers
//! here under the key its first [`KeyExtractor`](crate::KeyExtractor) derives; a rate limiter on
//! the same store whose extractor provably derives the same key from every
//! request asks the lockout to start its grant at the moment it sends its
//! own script. Both scripts then go out back to back on the multiplexed
//! connection (to the same master on a cluster: both keys carry the
//! limiter key as their hash tag), and the request that reaches the
//! lockout finds the grant done, or joins it under way.
//!
//! Only what can be proven the same is prefetched: two extractors are the
//! same when they are both [`ClientIp`](crate::ClientIp) with the same trusted proxies, the
//! same forwarding header and the same prefixes. A closure, or a
//! [`ClientIp`](crate::ClientIp) configured otherwise, is never matched, so a grant is never
//! started for a key the lockout would not count under.

use std::{
    any::Any,
    fmt,
    marker::PhantomData,
    sync::{Arc, PoisonError, RwLock, Weak},
};

/// Starts the work a limiter does at a key's first request, ahead of it.
pub(crate) trait Prefetch<K>: Send + Sync {
    /// Starts it for `key`, without waiting: at most one round trip per
    /// key is in flight, and nothing is started when there is nothing to
    /// fetch (the key is known, or the store is down).
    fn prefetch(&self, key: &K);
}

/// What a key extractor derives, when the crate can tell, in a form
/// computed once when a layer is built: two extractors of equal forms
/// derive the same key from every request. Made by the extractor's own
/// module (`client_ip::key_space`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeySpace(Arc<str>);

impl KeySpace {
    pub(crate) fn new(form: impl Into<Arc<str>>) -> Self {
        Self(form.into())
    }
}

/// The lockouts registered on one store (shared by its clones).
#[derive(Default)]
pub(crate) struct Prefetchers {
    entries: RwLock<Vec<Entry>>,
}

struct Entry {
    space: KeySpace,
    /// A `Weak<dyn Prefetch<K>>` of the lockout's key type: a lockout
    /// dropped is not kept alive, and not called.
    target: Box<dyn Any + Send + Sync>,
    gone: Box<dyn Fn() -> bool + Send + Sync>,
}

impl fmt::Debug for Prefetchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_list()
            .entries(entries.iter().map(|e| &e.space))
            .finish()
    }
}

impl Prefetchers {
    /// Registers `target`, which starts grants for keys of `space`.
    pub(crate) fn register<K: 'static>(&self, space: KeySpace, target: Weak<dyn Prefetch<K>>) {
        let probe = Weak::clone(&target);
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // Lockouts are built once per layer: forgetting the dropped ones
        // here keeps the list as short as the live ones.
        entries.retain(|e| !(e.gone)());
        entries.push(Entry {
            space,
            target: Box::new(target),
            gone: Box::new(move || probe.strong_count() == 0),
        });
    }

    /// A handle that starts, for keys of `space`, the grants of the
    /// lockouts registered (now or later) under the same space.
    pub(crate) fn for_space<K>(self: &Arc<Self>, space: KeySpace) -> Prefetcher<K> {
        Prefetcher {
            registry: Arc::clone(self),
            space,
            key: PhantomData,
        }
    }

    fn prefetch<K: 'static>(&self, space: &KeySpace, key: &K) {
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        for entry in entries.iter().filter(|e| e.space == *space) {
            // Another key type: not the same keys, whatever the extractor.
            let Some(target) = entry.target.downcast_ref::<Weak<dyn Prefetch<K>>>() else {
                continue;
            };
            if let Some(target) = target.upgrade() {
                target.prefetch(key);
            }
        }
    }
}

/// What a rate limiter holds to start the grants of the lockouts that count
/// its keys.
pub(crate) struct Prefetcher<K> {
    registry: Arc<Prefetchers>,
    space: KeySpace,
    key: PhantomData<fn(&K)>,
}

impl<K: 'static> Prefetcher<K> {
    /// Starts the grants of `key` of every lockout of the same keys.
    pub(crate) fn prefetch(&self, key: &K) {
        self.registry.prefetch(&self.space, key);
    }
}

impl<K> fmt::Debug for Prefetcher<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefetcher")
            .field("space", &self.space)
            .finish_non_exhaustive()
    }
}
