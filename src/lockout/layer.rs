//! [`LockoutLayer`]: configuration shared by every service it builds.

use std::{
    any::Any,
    fmt,
    sync::{Arc, atomic::AtomicU32},
};

use tower_layer::Layer;

use super::{
    Classifier, Lockout, Policy, Tracker,
    config::Config,
    keys::{KeyRule, Required, Rule},
};
use crate::{
    ClientIp, KeyExtractor,
    client_list::Lists,
    reject::{DefaultRenderer, LockoutFields},
};

/// Applies the failed-attempt limiter to a service; see the
/// [module docs](super) for what counts and what a blocked client sees.
///
/// Build one with [`new`](Self::new) (keyed by [`ClientIp`], in memory) or
/// [`builder`](Self::builder) (other or further keys, Redis, lists, shadow
/// mode, a classifier, a renderer). Its [`tracker`](Self::tracker) is the
/// handle for handlers and operator endpoints.
#[must_use]
pub struct LockoutLayer<K = ClientIp, R = DefaultRenderer>
where
    K: KeyExtractor,
{
    config: Arc<Config<K, R>>,
    /// The tracker of every key (a `Tracker<Key>` each), for
    /// [`key_tracker`](Self::key_tracker).
    trackers: Arc<[Arc<dyn Any + Send + Sync>]>,
}

impl LockoutLayer {
    /// A layer keyed by the client's address (a [`ClientIp`] that trusts no
    /// proxy), with `policy`, in memory. Use [`builder`](Self::builder)
    /// behind proxies, for other or further keys, or to share the state
    /// through Redis.
    pub fn new(policy: Policy) -> Self {
        // `build` fails only on an `on_lockout` hook, which is not set here.
        Self::builder(policy)
            .build()
            .expect("a layer with nothing but a policy is always valid")
    }
}

/// What a [`LockoutBuilder`](super::LockoutBuilder) hands to
/// [`LockoutLayer::assemble`].
pub(super) struct Settings<K: KeyExtractor, R> {
    pub(super) extractor: K,
    pub(super) tracker: Tracker<K::Key>,
    /// The further keys, in the order they were added.
    pub(super) more: Vec<Arc<dyn Rule>>,
    pub(super) renderer: R,
    pub(super) classifier: Option<Arc<dyn Classifier>>,
    pub(super) lists: Lists,
    pub(super) shadow: bool,
}

impl<K: KeyExtractor, R> LockoutLayer<K, R> {
    /// A layer with `settings`; `trackers` holds the tracker of every key,
    /// the first one first.
    pub(super) fn assemble(
        settings: Settings<K, R>,
        trackers: Vec<Arc<dyn Any + Send + Sync>>,
    ) -> Self {
        let config = Config {
            first: KeyRule {
                key: Required(Arc::new(settings.extractor)),
                tracker: settings.tracker,
            },
            more: settings.more,
            renderer: Arc::new(LockoutFields(Arc::new(settings.renderer))),
            classifier: settings.classifier,
            lists: settings.lists,
            shadow: settings.shadow,
            order_checks: Arc::new(AtomicU32::new(0)),
        };
        Self {
            config: Arc::new(config),
            trackers: trackers.into(),
        }
    }

    /// The tracker of the first key, for handlers and operator endpoints
    /// ([`unlock`](Tracker::unlock), [`stats`](Tracker::stats),
    /// [`locked_keys`](Tracker::locked_keys)).
    pub fn tracker(&self) -> &Tracker<K::Key> {
        self.config.tracker()
    }

    /// The tracker of key `index` (0 is the first key, 1 the first
    /// [`also_key`](super::LockoutBuilder::also_key), and so on), when the
    /// layer has that many keys and that key's type is `K2`.
    ///
    /// # Example
    ///
    /// ```
    /// use http::request::Parts;
    /// use portcullis::{AuthRejection, lockout::{LockoutLayer, Policy}};
    ///
    /// let account = |req: &Parts| -> Result<Option<String>, AuthRejection> {
    ///     Ok(req.headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned))
    /// };
    /// let layer = LockoutLayer::builder(Policy::default())
    ///     .also_key(account, Policy::default())
    ///     .build()
    ///     .unwrap();
    /// assert!(layer.key_tracker::<String>(1).is_some());
    /// assert!(layer.key_tracker::<String>(0).is_none()); // an address key
    /// assert!(layer.key_tracker::<String>(2).is_none());
    /// ```
    pub fn key_tracker<K2: 'static>(&self, index: usize) -> Option<Tracker<K2>> {
        self.trackers
            .get(index)?
            .downcast_ref::<Tracker<K2>>()
            .cloned()
    }
}

impl<K: KeyExtractor, R> Clone for LockoutLayer<K, R> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
            trackers: Arc::clone(&self.trackers),
        }
    }
}

impl<K: KeyExtractor, R> fmt::Debug for LockoutLayer<K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockoutLayer")
            .field("tracker", self.config.tracker())
            .field("key", &std::any::type_name::<K>())
            .field("renderer", &std::any::type_name::<R>())
            .field("custom_classifier", &self.config.classifier.is_some())
            .field("keys", &(1 + self.config.more.len()))
            .field("lists", &self.config.lists)
            .field("shadow", &self.config.shadow)
            .finish()
    }
}

impl<S, K: KeyExtractor, R> Layer<S> for LockoutLayer<K, R> {
    type Service = Lockout<S, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Lockout::new(inner, Arc::clone(&self.config))
    }
}
