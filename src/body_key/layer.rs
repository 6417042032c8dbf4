//! [`BodyKeyLayer`]: which field, which requests, how much body.

use std::{fmt, sync::Arc};

use http::request::Parts;
use tower_layer::Layer;

use super::service::{BodyKey, Config};
use crate::reject::{DefaultRenderer, Renderer};

/// The default body limit: 16 KiB, plenty for a login form.
const DEFAULT_LIMIT: usize = 16 * 1024;

/// Reads a limiter key from a form or JSON body field; see the
/// [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct BodyKeyLayer {
    pub(super) config: Arc<Config>,
}

impl BodyKeyLayer {
    /// Reads field `field` (`username`, `email`) of form bodies, and with
    /// feature `json` of JSON bodies, in the requests `when` selects: the
    /// login route (`|req| req.uri.path() == "/login"`, say).
    ///
    /// The route is required: a body key for every request would buffer
    /// every form or JSON body of the application, and refuse the larger
    /// ones (an API call over the limit) with 413. Requests with a safe
    /// method (`GET`, `HEAD`, `OPTIONS`, `TRACE`) are never read, whatever
    /// `when` says; every other request `when` selects must carry a body
    /// the layer can read (see the [module docs](super)).
    pub fn new<F>(field: &str, when: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        Self {
            config: Arc::new(Config {
                field: field.into(),
                limit: DEFAULT_LIMIT,
                when: Arc::new(when),
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
            when: Arc::clone(&c.when),
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
