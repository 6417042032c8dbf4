//! [`LockoutLayer`]: configuration shared by every service it builds.

use std::{
    fmt,
    hash::Hash,
    iter, slice,
    sync::{Arc, atomic::AtomicU32},
};

use tokio::time::Instant;
use tower_layer::Layer;

use super::{
    Classifier, Lockout, Policy, Tracker,
    keys::{KeyRule, Optional, Required, Rule},
};
use crate::{
    ClientIp, KeyExtractor,
    client_list::{ClientList, Lists},
    reject::{DefaultRenderer, LockoutFields},
};

/// Applies the failed-attempt limiter to a service; see the
/// [module docs](super) for what counts and what a blocked client sees.
///
/// Build one with [`new`](Self::new) (keyed by [`ClientIp`]),
/// [`keyed`](Self::keyed) (any key extractor and a policy) or
/// [`with_tracker`](Self::with_tracker) (a key extractor and a [`Tracker`]
/// shared with handlers or operator endpoints).
#[must_use]
pub struct LockoutLayer<K = ClientIp, R = DefaultRenderer>
where
    K: KeyExtractor,
{
    config: Arc<Config<K, R>>,
}

/// The keys of a layer, in order.
pub(crate) type Rules<'a> = iter::Chain<
    iter::Once<&'a dyn Rule>,
    iter::Map<slice::Iter<'a, Arc<dyn Rule>>, fn(&Arc<dyn Rule>) -> &dyn Rule>,
>;

/// What every service built by one layer shares.
pub(crate) struct Config<K, R>
where
    K: KeyExtractor,
{
    /// The layer's first key, which every request has (or is refused
    /// without), and its tracker.
    pub(crate) first: KeyRule<Required<K>>,
    /// The further keys (B13), asked after the first, in the order they
    /// were added.
    pub(crate) more: Vec<Arc<dyn Rule>>,
    /// The renderer, adding the `RateLimit` field to lockout refusals;
    /// built once, shared by every refusal and every waiting request.
    pub(crate) renderer: Arc<LockoutFields<R>>,
    pub(crate) classifier: Option<Arc<dyn Classifier>>,
    pub(crate) lists: Lists,
    pub(crate) shadow: bool,
    /// Requests checked for the wrong layer order so far (B17).
    pub(crate) order_checks: Arc<AtomicU32>,
}

impl<K: KeyExtractor, R> Config<K, R> {
    /// Every key of the layer, the first one first. (A named iterator, not
    /// `impl Iterator`: it has no destructor, so a request path may return
    /// from inside a loop over it.)
    pub(crate) fn rules(&self) -> Rules<'_> {
        let deref: fn(&Arc<dyn Rule>) -> &dyn Rule = |rule| &**rule;
        iter::once(&self.first as &dyn Rule).chain(self.more.iter().map(deref))
    }

    /// The layer's tracker: its first key's.
    pub(crate) fn tracker(&self) -> &Tracker<K::Key> {
        &self.first.tracker
    }
}

impl<K: KeyExtractor, R> Clone for Config<K, R> {
    fn clone(&self) -> Self {
        Self {
            first: self.first.clone(),
            more: self.more.clone(),
            renderer: Arc::clone(&self.renderer),
            classifier: self.classifier.clone(),
            lists: self.lists.clone(),
            shadow: self.shadow,
            order_checks: Arc::clone(&self.order_checks),
        }
    }
}

impl LockoutLayer {
    /// A layer keyed by the client's address (a [`ClientIp`] that trusts no
    /// proxy), with a new [`Tracker`] for `policy`. Use
    /// [`with_tracker`](Self::with_tracker) with a configured [`ClientIp`]
    /// behind proxies.
    pub fn new(policy: Policy) -> Self {
        Self::keyed(ClientIp::new(), policy)
    }
}

impl<K: KeyExtractor> LockoutLayer<K> {
    /// A layer keyed by `extractor`, with a new [`Tracker`] for `policy`.
    pub fn keyed(extractor: K, policy: Policy) -> Self {
        Self::with_tracker(extractor, Tracker::new(policy))
    }

    /// A layer keyed by `extractor` that records into `tracker`.
    pub fn with_tracker(extractor: K, tracker: Tracker<K::Key>) -> Self {
        Self {
            config: Arc::new(Config {
                first: KeyRule {
                    key: Required(Arc::new(extractor)),
                    tracker,
                },
                more: Vec::new(),
                renderer: Arc::new(LockoutFields(Arc::new(DefaultRenderer::new()))),
                classifier: None,
                lists: Lists::default(),
                shadow: false,
                order_checks: Arc::new(AtomicU32::new(0)),
            }),
        }
    }
}

impl<K: KeyExtractor, R> LockoutLayer<K, R> {
    fn edit(self, edit: impl FnOnce(&mut Config<K, R>)) -> Self {
        let mut config = Config::clone(&self.config);
        edit(&mut config);
        Self {
            config: Arc::new(config),
        }
    }

    /// Renders rejections with `renderer` instead of the [`DefaultRenderer`].
    pub fn renderer<R2>(self, renderer: R2) -> LockoutLayer<K, R2> {
        let config = Config::clone(&self.config);
        LockoutLayer {
            config: Arc::new(Config {
                first: config.first,
                more: config.more,
                renderer: Arc::new(LockoutFields(Arc::new(renderer))),
                classifier: config.classifier,
                lists: config.lists,
                shadow: config.shadow,
                order_checks: config.order_checks,
            }),
        }
    }

    /// Also enforces the key `extractor` derives, with a new [`Tracker`]
    /// for `policy` (SECURITY.md B13); see [`key_with`](Self::key_with).
    pub fn key<E, K2>(self, extractor: E, policy: Policy) -> Self
    where
        E: KeyExtractor<Key = Option<K2>>,
        K2: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    {
        self.key_with(extractor, Tracker::new(policy))
    }

    /// Also enforces the key `extractor` derives, recording into `tracker`
    /// (SECURITY.md B13).
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
    /// # Example
    ///
    /// ```
    /// use http::request::Parts;
    /// use portcullis::{AuthRejection, lockout::{LockoutLayer, Policy}};
    ///
    /// // The account a login request is for, when there is one.
    /// let account = |req: &Parts| -> Result<Option<String>, AuthRejection> {
    ///     Ok(req.headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned))
    /// };
    /// let layer = LockoutLayer::new(Policy::default()) // per address
    ///     .key(account, Policy::builder().max_failures(10).build().unwrap());
    /// # let _ = layer;
    /// ```
    pub fn key_with<E, K2>(self, extractor: E, tracker: Tracker<K2>) -> Self
    where
        E: KeyExtractor<Key = Option<K2>>,
        K2: Clone + Eq + Hash + fmt::Debug + Send + Sync + 'static,
    {
        let rule: Arc<dyn Rule> = Arc::new(KeyRule {
            key: Optional(extractor),
            tracker,
        });
        self.edit(|c| c.more.push(rule))
    }

    /// Lets the requests on `list` through untouched: neither limited nor
    /// counted (SECURITY.md B16). See [`client_list`](crate::client_list).
    pub fn allow(self, list: ClientList) -> Self {
        self.edit(|c| c.lists.allow = Some(list))
    }

    /// Refuses the requests on `list` with 403 (gRPC `PERMISSION_DENIED`)
    /// before anything else runs; the deny list wins over the allow list
    /// (SECURITY.md B16).
    pub fn deny(self, list: ClientList) -> Self {
        self.edit(|c| c.lists.deny = Some(list))
    }

    /// Shadow mode (SECURITY.md B16): the layer decides, counts failures and
    /// logs as usual, but lets every request through, marking the response
    /// of each request it would have refused with a
    /// [`Shadowed`](super::Shadowed) extension and logging it at `warn`
    /// (target `portcullis::lockout`). Requests hold no reservation in
    /// shadow mode, so nothing waits either. Use it to roll a policy out:
    /// watch what it would refuse, then turn it off.
    pub fn shadow(self, shadow: bool) -> Self {
        self.edit(|c| c.shadow = shadow)
    }

    /// Classifies responses that carry neither an
    /// [`AuthRejection`](crate::AuthRejection) nor the
    /// [`Failed`](super::Failed) marker (default: [`DefaultClassifier`](super::DefaultClassifier)).
    pub fn classifier(self, classifier: impl Classifier) -> Self {
        self.edit(|c| c.classifier = Some(Arc::new(classifier)))
    }

    /// Calls `hook` on every lockout of the layer's tracker; see
    /// [`Tracker::on_lockout`].
    pub fn on_lockout(self, hook: impl Fn(&K::Key, Instant) + Send + Sync + 'static) -> Self {
        let tracker = self.config.tracker().clone().on_lockout(hook);
        self.edit(|c| c.first.tracker = tracker)
    }

    /// The tracker, for handlers and operator endpoints
    /// ([`unlock`](Tracker::unlock), [`stats`](Tracker::stats),
    /// [`locked_keys`](Tracker::locked_keys)).
    pub fn tracker(&self) -> &Tracker<K::Key> {
        self.config.tracker()
    }
}

impl<K: KeyExtractor, R> Clone for LockoutLayer<K, R> {
    fn clone(&self) -> Self {
        Self {
            config: Arc::clone(&self.config),
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
