//! [`BodyKeyLayer`]: which field, which requests, how much body.

use std::{fmt, sync::Arc};

use http::request::Parts;
use tower_layer::Layer;

use super::BodyKey;
use crate::reject::{DefaultRenderer, Renderer};

/// The default body limit: 16 KiB, plenty for a login form.
const DEFAULT_LIMIT: usize = 16 * 1024;

type Predicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

/// Reads a limiter key from a form or JSON body field; see the
/// [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct BodyKeyLayer {
    pub(super) config: Arc<Config>,
}

pub(super) struct Config {
    pub(super) field: Arc<str>,
    pub(super) limit: usize,
    pub(super) when: Option<Predicate>,
    pub(super) case_sensitive: bool,
    pub(super) renderer: Arc<dyn Renderer>,
}

impl BodyKeyLayer {
    /// Reads field `field` (`username`, `email`) of form bodies, and with
    /// feature `json` of JSON bodies.
    pub fn new(field: &str) -> Self {
        Self {
            config: Arc::new(Config {
                field: field.into(),
                limit: DEFAULT_LIMIT,
                when: None,
                case_sensitive: false,
                renderer: Arc::new(DefaultRenderer::new()),
            }),
        }
    }

    fn edit(self, edit: impl FnOnce(&mut Config)) -> Self {
        let c = &self.config;
        let mut config = Config {
            field: Arc::clone(&c.field),
            limit: c.limit,
            when: c.when.clone(),
            case_sensitive: c.case_sensitive,
            renderer: Arc::clone(&c.renderer),
        };
        edit(&mut config);
        Self {
            config: Arc::new(config),
        }
    }

    /// The most body bytes buffered (default 16 KiB); a larger body is
    /// answered 413.
    pub fn limit(self, bytes: usize) -> Self {
        self.edit(|c| c.limit = bytes)
    }

    /// Reads bodies only of the requests `predicate` accepts (the login
    /// route, say); others pass untouched and unbuffered.
    pub fn when<F>(self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.edit(|c| c.when = Some(Arc::new(predicate)))
    }

    /// Keeps the field's case (default: lowercased, so `Alice` and `alice`
    /// are one key).
    pub fn case_sensitive(self, case_sensitive: bool) -> Self {
        self.edit(|c| c.case_sensitive = case_sensitive)
    }

    /// Renders refusals (413, 400) with `renderer`.
    pub fn renderer(self, renderer: impl Renderer) -> Self {
        let renderer: Arc<dyn Renderer> = Arc::new(renderer);
        self.edit(|c| c.renderer = renderer)
    }
}

impl fmt::Debug for BodyKeyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyKeyLayer")
            .field("field", &self.config.field)
            .field("limit", &self.config.limit)
            .field("when", &self.config.when.is_some())
            .field("case_sensitive", &self.config.case_sensitive)
            .finish()
    }
}

impl<S> Layer<S> for BodyKeyLayer {
    type Service = BodyKey<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BodyKey::new(inner, Arc::clone(&self.config))
    }
}
