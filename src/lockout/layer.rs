//! [`LockoutLayer`]: configuration shared by every service it builds.

use std::{fmt, sync::Arc};

use tokio::time::Instant;
use tower_layer::Layer;

use super::{Classifier, Lockout, Policy, Tracker};
use crate::{ClientIp, KeyExtractor, reject::DefaultRenderer};

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

/// What every service built by one layer shares.
pub(crate) struct Config<K, R>
where
    K: KeyExtractor,
{
    pub(crate) extractor: Arc<K>,
    pub(crate) tracker: Tracker<K::Key>,
    pub(crate) renderer: Arc<R>,
    pub(crate) classifier: Option<Arc<dyn Classifier>>,
}

impl<K: KeyExtractor, R> Clone for Config<K, R> {
    fn clone(&self) -> Self {
        Self {
            extractor: Arc::clone(&self.extractor),
            tracker: self.tracker.clone(),
            renderer: Arc::clone(&self.renderer),
            classifier: self.classifier.clone(),
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
                extractor: Arc::new(extractor),
                tracker,
                renderer: Arc::new(DefaultRenderer::new()),
                classifier: None,
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
                extractor: config.extractor,
                tracker: config.tracker,
                renderer: Arc::new(renderer),
                classifier: config.classifier,
            }),
        }
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
        let tracker = self.config.tracker.clone().on_lockout(hook);
        self.edit(|c| c.tracker = tracker)
    }

    /// The tracker, for handlers and operator endpoints
    /// ([`unlock`](Tracker::unlock), [`stats`](Tracker::stats),
    /// [`locked_keys`](Tracker::locked_keys)).
    pub fn tracker(&self) -> &Tracker<K::Key> {
        &self.config.tracker
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
            .field("tracker", &self.config.tracker)
            .field("key", &std::any::type_name::<K>())
            .field("renderer", &std::any::type_name::<R>())
            .field("custom_classifier", &self.config.classifier.is_some())
            .finish()
    }
}

impl<S, K: KeyExtractor, R> Layer<S> for LockoutLayer<K, R> {
    type Service = Lockout<S, K, R>;

    fn layer(&self, inner: S) -> Self::Service {
        Lockout::new(inner, Arc::clone(&self.config))
    }
}
