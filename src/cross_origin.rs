//! Cross-origin protection for requests a browser sends with cookies
//! (SECURITY.md C1), after Go's `net/http` `CrossOriginProtection`.
//!
//! A browser attaches cookies to requests that another site makes it send
//! (a form posted from `evil.example` to your `/logout`). [`CrossOriginProtection`]
//! tells such requests apart from your own pages' with the headers browsers
//! add, and refuses the cross-site ones that could change something:
//!
//! 1. Safe methods (`GET`, `HEAD`, `OPTIONS`) always pass: they must not
//!    change state. A WebSocket handshake is a `GET` that opens a
//!    connection with the user's cookie (cross-site WebSocket hijacking),
//!    so it is checked like an unsafe method.
//! 2. `Sec-Fetch-Site: same-origin` or `none` (the user typed the URL)
//!    passes; any other value (`same-site`, `cross-site`) is refused unless
//!    the `Origin` is [trusted](CrossOriginBuilder::trust_origin).
//! 3. Without `Sec-Fetch-Site` (older browsers), a request without `Origin`
//!    passes (not a browser, or a same-origin request of an old one); an
//!    `Origin` whose host equals the request's host (`Host`, or the
//!    authority of an HTTP/2 request) passes; a trusted origin passes;
//!    anything else is refused.
//!
//! A refused request is answered 403 (gRPC `PERMISSION_DENIED`) with an
//! [`AuthRejection`] of kind [`CrossOrigin`](RejectionKind::CrossOrigin),
//! which is not a failed attempt: a lockout does not count it.
//!
//! # Where it applies
//!
//! It is configured in one place, [`CrossOriginLayer`], and on by default
//! where cookies are read:
//!
//! - **[`CrossOriginLayer`]** applies the check to every request it sees,
//!   cookie or not: put it on public routes that act on ambient state, such
//!   as a login form (login CSRF) or a sign-out, or around a whole router.
//! - **On by default in [`AuthLayer`](crate::AuthLayer) for cookie
//!   credentials, and in the session endpoints** (feature `sessions`).
//!   `AuthLayer` checks every request whose credential came from a cookie
//!   source (and only those: a bearer token or API key is not sent by the
//!   browser on its own, so it needs no such check) with
//!   [`CrossOriginProtection::new`], no trusted origin. A request that a
//!   [`CrossOriginLayer`] checked and let in is not checked again: to trust
//!   origins, or to turn the check off
//!   ([`CrossOriginProtection::disabled`]), put a [`CrossOriginLayer`]
//!   configured that way in front. Requests its
//!   [`when`](CrossOriginLayer::when) predicate leaves out are still
//!   checked by the built-in checks. Of several `CrossOriginLayer`s, the
//!   first one that checks a request decides (one around the whole
//!   router that trusts an origin, say, and the one
//!   [`Stack::login_route`](crate::stack::Stack::login_route) adds).
//!
//! Non-browser clients (curl, SDKs, servers) send neither header and pass.
//!
//! # Example
//!
//! ```
//! use http::{Method, Request};
//! use portcullis::cross_origin::CrossOriginProtection;
//!
//! let protection = CrossOriginProtection::builder()
//!     .trust_origin("https://admin.example.com")
//!     .build()?;
//! let req = |site: &str, origin: &str| {
//!     Request::builder()
//!         .method(Method::POST)
//!         .uri("/logout")
//!         .header("host", "app.example.com")
//!         .header("sec-fetch-site", site)
//!         .header("origin", origin)
//!         .body(())
//!         .unwrap()
//!         .into_parts()
//!         .0
//! };
//! assert!(protection.allows(&req("same-origin", "https://app.example.com")));
//! assert!(!protection.allows(&req("cross-site", "https://evil.example")));
//! assert!(protection.allows(&req("same-site", "https://admin.example.com")));
//! # Ok::<(), portcullis::ConfigError>(())
//! ```

use std::{
    collections::HashSet,
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{HeaderMap, Method, Request, Response, header, request::Parts};
use tower_layer::Layer;
use tower_service::Service;

use crate::{
    AuthRejection, ConfigError, ResponseBody,
    gate::{self, Gate},
    reject::{self, DefaultRenderer, RejectionKind, Renderer},
};

const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// The cross-origin check; see the [module docs](self).
#[derive(Clone, Default)]
pub struct CrossOriginProtection {
    trusted: Arc<HashSet<String>>,
    disabled: bool,
}

impl CrossOriginProtection {
    /// The check with no trusted origin.
    pub fn new() -> Self {
        Self::default()
    }

    /// No check at all: every request passes. A [`CrossOriginLayer`] with
    /// it in front of `AuthLayer` or the session endpoints turns their
    /// built-in check off too.
    ///
    /// # Security
    ///
    /// Only for services whose cookies no browser sends cross-site, or that
    /// check another way (a CSRF token).
    pub fn disabled() -> Self {
        Self {
            disabled: true,
            ..Self::default()
        }
    }

    /// A builder of a check that trusts some origins.
    pub fn builder() -> CrossOriginBuilder {
        CrossOriginBuilder::default()
    }

    /// Whether `request` may go on: not a cross-origin browser request with
    /// an unsafe method.
    pub fn allows(&self, request: &Parts) -> bool {
        let safe = matches!(request.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if self.disabled || (safe && !is_websocket_handshake(&request.headers)) {
            return true;
        }
        let headers = &request.headers;
        match headers.get(SEC_FETCH_SITE).map(|v| v.as_bytes()) {
            Some(b"same-origin" | b"none") => return true,
            Some(_) => return self.trusts(headers),
            None => {}
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            // Neither header: not a browser, or a same-origin request of an
            // old one.
            return true;
        };
        let host = request
            .uri
            .authority()
            .map(|a| a.as_str().as_bytes())
            .or_else(|| headers.get(header::HOST).map(|h| h.as_bytes()));
        if let (Some(origin_host), Some(host)) = (origin_host(origin.as_bytes()), host)
            && origin_host.eq_ignore_ascii_case(host)
        {
            // The scheme is not known from `Host`: an HTTP page posting to
            // the HTTPS site passes, as in Go. Modern browsers send
            // `Sec-Fetch-Site`; HSTS closes the rest.
            return true;
        }
        self.trusts(headers)
    }

    fn trusts(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| self.trusted.contains(o))
    }

    /// The rejection of a refused request, logged.
    pub(crate) fn refuse(request: &Parts) -> AuthRejection {
        tracing::info!(
            target: "portcullis::cross_origin",
            method = %request.method,
            path = request.uri.path(),
            origin = ?request.headers.get(header::ORIGIN),
            sec_fetch_site = ?request.headers.get(SEC_FETCH_SITE),
            "cross-origin request refused"
        );
        AuthRejection::new(RejectionKind::CrossOrigin)
    }
}

/// Configures a [`CrossOriginProtection`]; see
/// [`CrossOriginProtection::builder`].
#[must_use]
#[derive(Debug, Clone, Default)]
pub struct CrossOriginBuilder {
    trusted: Vec<String>,
}

impl CrossOriginBuilder {
    /// Lets requests from `origin` (`scheme://host[:port]`, exactly as
    /// browsers send it in `Origin`) through even when they are cross-site:
    /// your other front end, say. Calling it again adds to the list.
    pub fn trust_origin(mut self, origin: &str) -> Self {
        self.trusted.push(origin.to_owned());
        self
    }

    /// The check.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidName`] when a trusted origin is not a scheme,
    /// `://` and a host with an optional port, without a path, query or
    /// trailing slash.
    pub fn build(self) -> Result<CrossOriginProtection, ConfigError> {
        if let Some(origin) = self.trusted.iter().find(|o| !is_origin(o)) {
            return Err(ConfigError::InvalidName {
                what: "origin",
                name: origin.clone(),
                reason: "an origin is scheme://host[:port], with nothing after the host or port",
            });
        }
        Ok(CrossOriginProtection {
            trusted: Arc::new(self.trusted.into_iter().collect()),
            disabled: false,
        })
    }
}

/// The mark a [`CrossOrigin`] service leaves on the requests it checked and
/// let through, so that the checks built into `AuthLayer` and the session
/// endpoints, and any `CrossOriginLayer` further in, leave them to it.
#[derive(Debug, Clone, Copy)]
struct Checked;

/// Whether a [`CrossOriginLayer`] let `request` through on its way in; the
/// built-in checks then do not check it again.
pub(crate) fn checked_outside(request: &Parts) -> bool {
    request.extensions.get::<Checked>().is_some()
}

impl fmt::Debug for CrossOriginProtection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut trusted: Vec<_> = self.trusted.iter().collect();
        trusted.sort();
        f.debug_struct("CrossOriginProtection")
            .field("trusted", &trusted)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// `scheme://host[:port]` and nothing more.
fn is_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    !scheme.is_empty()
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' '])
}

/// Whether the request opens a WebSocket (`Upgrade: websocket`, any case,
/// among the listed protocols).
fn is_websocket_handshake(headers: &HeaderMap) -> bool {
    headers.get_all(header::UPGRADE).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"websocket"))
    })
}

/// The `host[:port]` of an `Origin` value (`null` has none).
fn origin_host(origin: &[u8]) -> Option<&[u8]> {
    let at = origin.windows(3).position(|w| w == b"://")?;
    let host = &origin[at + 3..];
    (!host.is_empty() && !host.contains(&b'/')).then_some(host)
}

/// Refuses cross-origin browser requests with unsafe methods, whether they
/// carry a cookie or not; see the [module docs](self).
///
/// # Example
///
/// ```
/// use std::convert::Infallible;
/// use http::{Method, Request, Response, StatusCode};
/// use portcullis::cross_origin::{CrossOriginProtection, CrossOriginLayer};
/// use tower::{ServiceBuilder, ServiceExt};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let svc = ServiceBuilder::new()
///     .layer(CrossOriginLayer::new(CrossOriginProtection::new()))
///     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
/// let forged = Request::builder()
///     .method(Method::POST)
///     .uri("/login")
///     .header("sec-fetch-site", "cross-site")
///     .body(())
///     .unwrap();
/// assert_eq!(svc.oneshot(forged).await.unwrap().status(), StatusCode::FORBIDDEN);
/// # });
/// ```
#[derive(Clone)]
#[must_use]
pub struct CrossOriginLayer<R = DefaultRenderer> {
    check: CrossOriginProtection,
    renderer: Arc<R>,
    when: Option<Predicate>,
}

/// Which requests a [`CrossOriginLayer`] checks.
type Predicate = Arc<dyn Fn(&Parts) -> bool + Send + Sync>;

impl CrossOriginLayer {
    /// A layer applying `check`, answering with the [`DefaultRenderer`].
    pub fn new(check: CrossOriginProtection) -> Self {
        Self {
            check,
            renderer: Arc::new(DefaultRenderer::new()),
            when: None,
        }
    }
}

impl<R> CrossOriginLayer<R> {
    /// Renders refusals with `renderer`.
    pub fn renderer<R2>(self, renderer: R2) -> CrossOriginLayer<R2> {
        CrossOriginLayer {
            check: self.check,
            renderer: Arc::new(renderer),
            when: self.when,
        }
    }

    /// Checks only the requests `when` selects (the login route:
    /// `|req| req.uri.path() == "/login"`, say); the others pass unchecked.
    /// Without it, every request is checked.
    ///
    /// The predicate is the same kind as
    /// [`BodyKeyLayer::new`](crate::body_key::BodyKeyLayer::new)'s and
    /// [`AuthLayer::public`](crate::AuthLayer::public)'s, so one route can
    /// be given to all three; [`Stack::login_route`](crate::stack::Stack::login_route)
    /// does that for you. Safe methods pass whatever `when` says (see the
    /// [module docs](self)).
    ///
    /// # Example
    ///
    /// ```
    /// use std::convert::Infallible;
    /// use http::{Method, Request, Response, StatusCode};
    /// use portcullis::cross_origin::{CrossOriginProtection, CrossOriginLayer};
    /// use tower::{ServiceBuilder, ServiceExt};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let svc = ServiceBuilder::new()
    ///     .layer(CrossOriginLayer::new(CrossOriginProtection::new()).when(|req| req.uri.path() == "/login"))
    ///     .service_fn(|_: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) });
    /// let post = |path: &str| {
    ///     Request::builder()
    ///         .method(Method::POST)
    ///         .uri(path)
    ///         .header("sec-fetch-site", "cross-site")
    ///         .body(())
    ///         .unwrap()
    /// };
    /// assert_eq!(svc.clone().oneshot(post("/login")).await.unwrap().status(), StatusCode::FORBIDDEN);
    /// // A cross-origin API call elsewhere (a webhook, say) is not checked.
    /// assert_eq!(svc.oneshot(post("/webhook")).await.unwrap().status(), StatusCode::OK);
    /// # });
    /// ```
    pub fn when<F>(mut self, when: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.when = Some(Arc::new(when));
        self
    }
}

impl<R> fmt::Debug for CrossOriginLayer<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrossOriginLayer")
            .field("check", &self.check)
            .field("when", &self.when.as_ref().map(|_| ".."))
            .finish_non_exhaustive()
    }
}

impl<S, R> Layer<S> for CrossOriginLayer<R> {
    type Service = CrossOrigin<S, R>;

    fn layer(&self, inner: S) -> Self::Service {
        CrossOrigin {
            inner,
            check: self.check.clone(),
            renderer: Arc::clone(&self.renderer),
            when: self.when.clone(),
        }
    }
}

/// The service built by [`CrossOriginLayer`].
#[derive(Clone)]
pub struct CrossOrigin<S, R = DefaultRenderer> {
    inner: S,
    check: CrossOriginProtection,
    renderer: Arc<R>,
    when: Option<Predicate>,
}

impl<S: fmt::Debug, R> fmt::Debug for CrossOrigin<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CrossOrigin")
            .field("inner", &self.inner)
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

impl<S, R> CrossOrigin<S, R> {
    gate::inner_accessors!();
}

crate::gate::response_future! {
    /// The response future of [`CrossOrigin`].
    ()
}

impl<S, R, ReqBody, ResBody> Service<Request<ReqBody>> for CrossOrigin<S, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    R: Renderer,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let selected = self.when.as_ref().is_none_or(|when| when(&parts));
        // A `CrossOriginLayer` further out checked the request already: the
        // first one a request passes decides.
        if !selected || checked_outside(&parts) || self.check.allows(&parts) {
            if selected {
                parts.extensions.insert(Checked);
            }
            let future = self.inner.call(Request::from_parts(parts, body));
            return ResponseFuture::new(Gate::pass(future, ()));
        }
        let rejection = CrossOriginProtection::refuse(&parts);
        let response = reject::render(&*self.renderer, rejection, &parts);
        ResponseFuture::new(Gate::refuse(response, ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_strictly() {
        for good in ["https://a.example", "http://localhost:3000", "app://x"] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "a.example",
            "https://",
            "https://a.example/",
            "https://a.example/path",
            "https://u@a.example",
            "://a.example",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
        assert_eq!(
            origin_host(b"https://a.example:8443"),
            Some(&b"a.example:8443"[..])
        );
        assert_eq!(origin_host(b"null"), None);
    }
}
