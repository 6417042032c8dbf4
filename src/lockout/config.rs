//! What every [`Lockout`](super::Lockout) service built by one
//! [`LockoutLayer`](super::LockoutLayer) shares: below both, so the layer
//! builds it and the service reads it without either importing the other.

use std::{
    iter, slice,
    sync::{Arc, atomic::AtomicU32},
};

use super::{
    Classifier, Tracker,
    keys::{KeyRule, Required, Rule},
};
use crate::{KeyExtractor, client_list::Lists, reject::LockoutFields};

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
