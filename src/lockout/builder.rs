//! [`LockoutBuilder`]: the settings of a [`LockoutLayer`].

use std::{any::Any, fmt, hash::Hash, sync::Arc};

use tokio::time::Instant;

use super::{
    Classifier, LockoutLayer, Policy, Tracker,
    keys::{KeyRule, Optional, Rule},
    layer::Settings,
};
use crate::{
    ClientIp, ConfigError, KeyExtractor,
    client_list::{ClientList, Lists},
    reject::DefaultRenderer,
};

/// The hook of [`LockoutBuilder::on_lockout`], for keys of type `K`.
type Hook<K> = Arc<dyn Fn(&K, Instant) + Send + Sync>;

/// A further key, made at [`build`](LockoutBuilder::build) time once the
/// shared store is known: its rule, and its tracker (a `Tracker<K2>`) for
/// [`LockoutLayer::key_tracker`].
type MakeRule =
    Box<dyn FnOnce(&Backing) -> (Arc<dyn Rule>, Arc<dyn Any + Send + Sync>) + Send + Sync>;

/// Where the trackers of a layer keep their state: in memory, or shared
/// through Redis (feature `redis`).
#[derive(Clone, Default)]
pub(super) struct Backing {
    #[cfg(feature = "redis")]
    store: Option<crate::redis::RedisStore>,
}

impl Backing {
    /// A tracker for `policy` over this state.
    fn tracker<K>(&self, policy: Policy) -> Tracker<K>
    where
        K: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    {
        #[cfg(feature = "redis")]
        if let Some(store) = &self.store {
            return Tracker::shared(policy, store.clone());
        }
        Tracker::new(policy)
    }

    /// Lets a rate limiter on the same store that counts the same keys as
    /// `extractor` start `tracker`'s grant of a key with its own round
    /// trip (see [`RedisStore`](crate::RedisStore), "A new client").
    #[cfg(feature = "redis")]
    fn prefetch<E: KeyExtractor>(&self, extractor: &E, tracker: &Tracker<E::Key>) {
        if let (Some(store), Some(space)) = (&self.store, crate::client_ip::key_space(extractor)) {
            store.prefetchers().register(space, tracker.prefetcher());
        }
    }
}

impl LockoutLayer {
    /// A builder of a layer with `policy`, keyed by [`ClientIp`] (socket
    /// peer, no trusted proxies), in memory, answering with the
    /// [`DefaultRenderer`]: everything [`new`](Self::new) does, then
    /// whatever the builder's methods change.
    pub fn builder(policy: Policy) -> LockoutBuilder {
        LockoutBuilder {
            policy,
            extractor: ClientIp::new(),
            renderer: DefaultRenderer::new(),
            keys: Vec::new(),
            shared: Backing::default(),
            lists: Lists::default(),
            shadow: false,
            classifier: None,
            on_lockout: None,
        }
    }
}

/// Configures a [`LockoutLayer`]; see [`LockoutLayer::builder`].
///
/// The first key ([`key`](Self::key), by default [`ClientIp`]) applies to
/// every request; further keys ([`also_key`](Self::also_key)) to the
/// requests they find a key in. Every key keeps its state the same way: in
/// memory, or with [`redis`](Self::redis) shared by every replica.
///
/// # Example
///
/// ```
/// use http::request::Parts;
/// use portcullis::{AuthRejection, ClientIp, lockout::{LockoutLayer, Policy}};
///
/// # fn main() -> Result<(), portcullis::ConfigError> {
/// // The account a login request is for, when there is one.
/// let account = |req: &Parts| -> Result<Option<String>, AuthRejection> {
///     Ok(req.headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned))
/// };
/// let layer = LockoutLayer::builder(Policy::builder().max_failures(5).build()?)
///     .key(ClientIp::builder().trust_proxies(["10.0.0.0/8"]).build()?)
///     .also_key(account, Policy::builder().max_failures(10).build()?)
///     .build()?;
///
/// // The account key's tracker, for an operator's unlock endpoint.
/// let accounts = layer.key_tracker::<String>(1).expect("the account key");
/// accounts.record_failure(&"alice".to_owned());
/// assert_eq!(accounts.failures(&"alice".to_owned()), 1);
/// # Ok(())
/// # }
/// ```
#[must_use]
pub struct LockoutBuilder<K = ClientIp, R = DefaultRenderer>
where
    K: KeyExtractor,
{
    policy: Policy,
    extractor: K,
    renderer: R,
    keys: Vec<MakeRule>,
    shared: Backing,
    lists: Lists,
    shadow: bool,
    classifier: Option<Arc<dyn Classifier>>,
    /// A [`Hook`] of the key type it was given for.
    on_lockout: Option<Box<dyn Any + Send + Sync>>,
}

impl<K: KeyExtractor, R> LockoutBuilder<K, R> {
    /// Keys the layer's first key, which every request must have, by
    /// `extractor` instead of [`ClientIp`]: an account name, the account and
    /// the address together, or a [`ClientIp`] that trusts your proxies. A
    /// request without a key is refused with the extractor's rejection,
    /// never lumped into a bucket shared by everyone (B10).
    pub fn key<K2: KeyExtractor>(self, extractor: K2) -> LockoutBuilder<K2, R> {
        LockoutBuilder {
            policy: self.policy,
            extractor,
            renderer: self.renderer,
            keys: self.keys,
            shared: self.shared,
            lists: self.lists,
            shadow: self.shadow,
            classifier: self.classifier,
            on_lockout: self.on_lockout,
        }
    }

    /// Also enforces the key `extractor` derives, with `policy` and a
    /// tracker of its own (SECURITY.md B13).
    ///
    /// The extractor answers `Ok(None)` for requests the key does not apply
    /// to (a request without an account name, say); an error refuses the
    /// request. A request is admitted only when every key that applies
    /// admits it, and the most restrictive answer wins: a lockout of any
    /// key refuses it, with the longest `Retry-After` among its keys. Each
    /// key holds its own reservation, so the exact bound under concurrency
    /// (B6) holds per key, and each counts the request's outcome under its
    /// own policy (a success resets an account key with
    /// [`reset_on_success`](super::PolicyBuilder::reset_on_success), say,
    /// while the address key keeps its count).
    ///
    /// Keys are numbered in the order they are added, from 1 (the first key
    /// is 0): [`LockoutLayer::key_tracker`] hands out their trackers.
    pub fn also_key<E, K2>(mut self, extractor: E, policy: Policy) -> Self
    where
        E: KeyExtractor<Key = Option<K2>>,
        K2: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    {
        self.keys.push(Box::new(move |shared: &Backing| {
            let tracker: Tracker<K2> = shared.tracker(policy);
            let rule: Arc<dyn Rule> = Arc::new(KeyRule {
                key: Optional(extractor),
                tracker: tracker.clone(),
            });
            (rule, Arc::new(tracker) as Arc<dyn Any + Send + Sync>)
        }));
        self
    }

    /// Shares the state of every key with other replicas through `store`
    /// (feature `redis`), the same store handle the rate limiter, the
    /// revocations and the sessions take, with in-memory tables as the
    /// fallback while Redis is unavailable. Build the layer inside a tokio
    /// runtime.
    ///
    /// Redis grants each replica admission credits per key, never more
    /// than the key has left (`failures + credits ≤ max_failures`), and
    /// the replica admits attempts against them without a round trip; see
    /// [`RedisStore`](crate::RedisStore) and the README's
    /// "Several replicas". A [`RateLimitLayer`](crate::rate_limit::RateLimitLayer)
    /// on the same store (or a clone) keyed by the same [`ClientIp`]
    /// configuration asks for this layer's credits with its own round trip,
    /// so a new client's first request through both waits for one round
    /// trip (not in [shadow mode](Self::shadow), which holds no credits).
    ///
    /// Through the layer's [`Tracker`], [`attempt`](Tracker::attempt) and
    /// [`unlock`](Tracker::unlock) use Redis. The other direct methods
    /// ([`check`](Tracker::check), [`record_failure`](Tracker::record_failure),
    /// [`record_success`](Tracker::record_success),
    /// [`failures`](Tracker::failures)) are synchronous and act on this
    /// replica's tables only (which include the lockouts seen in Redis).
    ///
    /// ```no_run
    /// use portcullis::{RedisStore, lockout::{LockoutLayer, Policy}};
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let store = RedisStore::connect("redis://127.0.0.1:6379").await?;
    /// let layer = LockoutLayer::builder(Policy::default()).redis(store.clone()).build()?;
    /// # let _ = layer;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "redis")]
    pub fn redis(mut self, store: crate::redis::RedisStore) -> Self {
        self.shared.store = Some(store);
        self
    }

    /// Lets the requests on `list` through untouched: neither limited nor
    /// counted (SECURITY.md B16). See [`client_list`](crate::client_list).
    pub fn allow(mut self, list: ClientList) -> Self {
        self.lists.allow = Some(list);
        self
    }

    /// Refuses the requests on `list` with 403 (gRPC `PERMISSION_DENIED`)
    /// before anything else runs; the deny list wins over the allow list
    /// (SECURITY.md B16).
    pub fn deny(mut self, list: ClientList) -> Self {
        self.lists.deny = Some(list);
        self
    }

    /// Shadow mode (SECURITY.md B16): the layer decides, counts failures and
    /// logs as usual, but lets every request through, marking the response
    /// of each request it would have refused with a
    /// [`Shadowed`](super::Shadowed) extension and logging it at `warn`
    /// (target `portcullis::lockout`). Requests hold no reservation in
    /// shadow mode, so nothing waits either. Use it to roll a policy out:
    /// watch what it would refuse, then turn it off.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// Classifies responses that carry neither an
    /// [`AuthRejection`](crate::AuthRejection) nor the
    /// [`Failed`](super::Failed) marker (default: [`DefaultClassifier`](super::DefaultClassifier)).
    pub fn classifier(mut self, classifier: impl Classifier) -> Self {
        self.classifier = Some(Arc::new(classifier));
        self
    }

    /// Calls `hook` with the key and the end of the lockout each time the
    /// first key is locked out; see [`Tracker::on_lockout`]. Call it after
    /// [`key`](Self::key): the hook takes that key's type.
    pub fn on_lockout(mut self, hook: impl Fn(&K::Key, Instant) + Send + Sync + 'static) -> Self {
        let hook: Hook<K::Key> = Arc::new(hook);
        self.on_lockout = Some(Box::new(hook));
        self
    }

    /// Renders rejections with `renderer` instead of the [`DefaultRenderer`].
    pub fn renderer<R2>(self, renderer: R2) -> LockoutBuilder<K, R2> {
        LockoutBuilder {
            policy: self.policy,
            extractor: self.extractor,
            renderer,
            keys: self.keys,
            shared: self.shared,
            lists: self.lists,
            shadow: self.shadow,
            classifier: self.classifier,
            on_lockout: self.on_lockout,
        }
    }

    /// The layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Incompatible`] when [`on_lockout`](Self::on_lockout)
    /// was given a hook for another key type than the first key's (it was
    /// called before [`key`](Self::key)).
    pub fn build(self) -> Result<LockoutLayer<K, R>, ConfigError> {
        let mut tracker: Tracker<K::Key> = self.shared.tracker(self.policy);
        if let Some(hook) = self.on_lockout {
            let Ok(hook) = hook.downcast::<Hook<K::Key>>() else {
                return Err(ConfigError::Incompatible {
                    setting: "on_lockout",
                    reason: "the hook takes another key type than the layer's key: call key() before on_lockout()",
                });
            };
            tracker = tracker.on_lockout(move |key: &K::Key, until| hook(key, until));
        }
        // In shadow mode nothing is reserved: credits fetched ahead would
        // wait unused.
        #[cfg(feature = "redis")]
        if !self.shadow {
            self.shared.prefetch(&self.extractor, &tracker);
        }
        let mut more = Vec::with_capacity(self.keys.len());
        let mut trackers: Vec<Arc<dyn Any + Send + Sync>> = vec![Arc::new(tracker.clone())];
        for make in self.keys {
            let (rule, tracker) = make(&self.shared);
            more.push(rule);
            trackers.push(tracker);
        }
        let settings = Settings {
            extractor: self.extractor,
            tracker,
            more,
            renderer: self.renderer,
            classifier: self.classifier,
            lists: self.lists,
            shadow: self.shadow,
        };
        Ok(LockoutLayer::assemble(settings, trackers))
    }
}

impl<K: KeyExtractor, R> fmt::Debug for LockoutBuilder<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("LockoutBuilder");
        debug
            .field("policy", &self.policy)
            .field("key", &std::any::type_name::<K>())
            .field("renderer", &std::any::type_name::<R>())
            .field("keys", &(self.keys.len() + 1))
            .field("lists", &self.lists)
            .field("shadow", &self.shadow)
            .field("custom_classifier", &self.classifier.is_some())
            .field("on_lockout", &self.on_lockout.is_some());
        #[cfg(feature = "redis")]
        debug.field("redis", &self.shared.store);
        debug.finish()
    }
}
