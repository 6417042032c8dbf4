use std::{
    any::Any,
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
};

use bytes::Bytes;
use http::{Extensions, Method, Request, Response, header, request::Parts};
use tower_service::Service;

use super::{ResponseFuture, Shared, future::Cut};
use crate::{
    AuthRejection, Credential, CredentialSource, ResponseBody, ValidationError, Validator,
    body_key::BodyField,
    cross_origin::{self, CrossOriginProtection},
    events::{self, Record},
    gate::{self, Admit, BoxFuture, Gate, Refusal},
    handoff::{self, Authenticated, Reservation},
    lease::Leases,
    reject::{self, RejectionKind, Renderer},
};

/// The validator's answer, with the credential handed back for logging.
type Validated<I> = (Credential, Result<I, ValidationError>);

/// The service built by [`AuthLayer`](crate::AuthLayer).
pub struct Auth<S, V, R> {
    inner: S,
    shared: Arc<Shared<V, R>>,
    /// Directly inside a stack's lockout layer: takes the reservation it
    /// offers (see `handoff`).
    direct: bool,
}

impl<S, V, R> Auth<S, V, R> {
    pub(super) fn new(inner: S, shared: Arc<Shared<V, R>>) -> Self {
        Self {
            inner,
            shared,
            direct: false,
        }
    }

    /// Takes the reservations offered by the lockout layer directly
    /// outside, which a [`Stack`](crate::stack::Stack) built so.
    pub(crate) fn taking_over(mut self) -> Self {
        self.direct = true;
        self
    }

    gate::inner_accessors!();
}

impl<S: Clone, V, R> Clone for Auth<S, V, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
            direct: self.direct,
        }
    }
}

impl<S: fmt::Debug, V, R> fmt::Debug for Auth<S, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("validator", &std::any::type_name::<V>())
            .finish_non_exhaustive()
    }
}

impl<S, V, R, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S, V, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    V: Validator,
    R: Renderer,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // First thing, before any code of the application runs: the
        // reservation the stack's lockout offers for this call.
        let offered = if self.direct {
            handoff::take_offered()
        } else {
            None
        };
        let shared = &self.shared;
        // The request stays whole on the way to an accepted credential:
        // only the rarer paths take it apart (`Parts` is large, and each
        // `into_parts` / `from_parts` moves it).
        if shared.preflight.is_some() || shared.public.is_some() {
            let (mut parts, body) = req.into_parts();
            if let Some(preflight) = &shared.preflight
                && is_preflight(&parts)
            {
                let mut response = preflight(&parts);
                response
                    .extensions_mut()
                    .insert(AuthRejection::new(RejectionKind::Missing));
                return ResponseFuture::new(Gate::refuse(response, ()));
            }
            if shared.public.as_ref().is_some_and(|public| public(&parts)) {
                shared.pass_anonymous(&mut parts);
                return self.pass(Request::from_parts(parts, body), Cut::default());
            }
            req = Request::from_parts(parts, body);
        }

        match shared.extractor.find(req.headers(), req.uri()) {
            Ok(Some(credential)) => {
                // C1: a cookie credential on a cross-site unsafe request is
                // refused before validation, and never counted, unless a
                // `CrossOriginLayer` let the request in.
                if matches!(credential.source(), CredentialSource::Cookie(_)) {
                    let (parts, body) = req.into_parts();
                    if !cross_origin::checked_outside(&parts) && !shared.cross_origin.allows(&parts)
                    {
                        let rejection = CrossOriginProtection::refuse(&parts);
                        return ResponseFuture::new(Gate::refuse(
                            shared.render(rejection, &parts),
                            (),
                        ));
                    }
                    req = Request::from_parts(parts, body);
                }
                if shared.extractor.strips() {
                    req = with_parts(req, |parts| shared.extractor.strip(parts));
                }
                // A validator that answers at once (an in-memory table, a
                // cache hit) is answered here: no future, no waiting state,
                // no clone of the inner service.
                if let Some(outcome) = shared.validate_now(&credential) {
                    return self.answer(req, &credential, outcome, offered);
                }
                let mut validation = shared.validate(credential);
                // Polling with a no-op waker is sound: a future that is not
                // ready registers the real waker when it is polled again.
                match validation
                    .as_mut()
                    .poll(&mut Context::from_waker(Waker::noop()))
                {
                    Poll::Ready((credential, outcome)) => {
                        self.answer(req, &credential, outcome, offered)
                    }
                    Poll::Pending => self.wait(validation, req, offered),
                }
            }
            Ok(None) if shared.optional => {
                let req = with_parts(req, |parts| shared.pass_anonymous(parts));
                self.pass(req, Cut::default())
            }
            Ok(None) => {
                let (parts, _body) = req.into_parts();
                tracing::debug!(target: "portcullis::auth", "no credential presented");
                warn_if_login_not_public(&parts);
                let rejection = AuthRejection::new(RejectionKind::Missing);
                events::emit(Record::Rejected {
                    kind: rejection.kind(),
                    source: None,
                    fingerprint: None,
                });
                ResponseFuture::new(Gate::refuse(shared.render(rejection, &parts), ()))
            }
            Err(error) => {
                let (parts, _body) = req.into_parts();
                tracing::debug!(target: "portcullis::auth", %error, "credential refused before validation");
                let rejection = AuthRejection::from(&error);
                events::emit(Record::Rejected {
                    kind: rejection.kind(),
                    source: None,
                    fingerprint: None,
                });
                ResponseFuture::new(Gate::refuse(shared.render(rejection, &parts), ()))
            }
        }
    }
}

impl<S, V: Validator, R: Renderer> Auth<S, V, R> {
    /// Answers a request whose validator has answered.
    #[inline(always)]
    fn answer<ReqBody>(
        &mut self,
        mut req: Request<ReqBody>,
        credential: &Credential,
        outcome: Result<V::Identity, ValidationError>,
        offered: Option<Reservation>,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        let shared = &self.shared;
        match outcome {
            Ok(identity) => {
                let reservation = releasable(offered, req.extensions_mut());
                let hook = shared.accept(reservation, req.extensions_mut(), credential, identity);
                self.pass(req, hook)
            }
            Err(error) => {
                let rejection = shared.reject(credential, &error);
                let (parts, _body) = req.into_parts();
                ResponseFuture::new(Gate::refuse(shared.render(rejection, &parts), ()))
            }
        }
    }

    fn pass<ReqBody>(&mut self, req: Request<ReqBody>, hook: Cut) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        let future = self.inner.call(req);
        ResponseFuture::new(Gate::pass(future, hook))
    }

    /// The request waits for a validator that did not answer at once.
    fn wait<ReqBody>(
        &mut self,
        validation: BoxFuture<Validated<V::Identity>>,
        mut req: Request<ReqBody>,
        offered: Option<Reservation>,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>> + Clone,
    {
        // The reservations go with the validation, which releases them
        // (sign-in attempts keep them).
        let reservation = releasable(offered, req.extensions_mut());
        let shared = Arc::clone(&self.shared);
        let decision = Box::pin(async move {
            let (credential, outcome) = validation.await;
            match outcome {
                Ok(identity) => {
                    let mut extensions = Extensions::new();
                    let hook = shared.accept(reservation, &mut extensions, &credential, identity);
                    Ok(Admit {
                        hook,
                        extensions: Some(extensions),
                    })
                }
                // The reservations are not settled here: the lockout layers
                // count the rejection attached to the response.
                Err(error) => Err(Refusal {
                    rejection: shared.reject(&credential, &error),
                    hook: ().into(),
                }),
            }
        });
        let renderer: Arc<dyn Renderer> = self.shared.renderer.clone();
        let inner = gate::take_ready(&mut self.inner);
        ResponseFuture::new(Gate::wait(decision, inner, req, renderer))
    }
}

/// Runs `f` on the parts of `req`: for the paths that need `Parts`.
fn with_parts<B>(req: Request<B>, f: impl FnOnce(&mut Parts)) -> Request<B> {
    let (mut parts, body) = req.into_parts();
    f(&mut parts);
    Request::from_parts(parts, body)
}

/// With leases on, grants the request its lease: into `extensions`, and as
/// the hook that ends the response body with it.
fn grant(
    leases: Option<&Leases>,
    extensions: &mut Extensions,
    credential: &Credential,
    identity: &dyn Any,
) -> Cut {
    let lease = leases.and_then(|leases| leases.grant(credential, identity));
    if let Some(lease) = &lease {
        extensions.insert(lease.clone());
    }
    Cut(lease)
}

/// The reservations of the lockout layers outside (the one `offered`
/// directly, then those in the extensions), to release once the credential
/// is accepted (B11). The outcome of the request is still recorded from its
/// response (B20).
///
/// A sign-in attempt (a request whose body names an account, read by a
/// `BodyKeyLayer`) keeps them until the response, whatever credential it
/// carries: its outcome is the handler's password check, and parallel
/// guesses must stay bounded (B6).
fn releasable(offered: Option<Reservation>, extensions: &mut Extensions) -> Option<Reservation> {
    // Without a lockout outside, one lookup.
    let found = Reservation::take(extensions);
    if offered.is_none() && found.is_none() {
        return None;
    }
    if extensions.get::<BodyField>().is_some() {
        // The offered reservation stays with its lockout's response.
        if let Some(found) = found {
            extensions.insert(found);
        }
        return None;
    }
    Reservation::join(offered, found)
}

/// A CORS preflight: `OPTIONS` with `Access-Control-Request-Method`.
fn is_preflight(parts: &Parts) -> bool {
    parts.method == Method::OPTIONS
        && parts
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// A sign-in request (its body named an account) refused for a missing
/// credential: its route is not public, so the right password gets a bare
/// 401 and the handler never runs. Says so once per process.
fn warn_if_login_not_public(parts: &Parts) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if parts.extensions.get::<BodyField>().is_some() && !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            target: "portcullis::auth",
            path = parts.uri.path(),
            "a sign-in request (its body names an account) was refused for a missing credential: \
             its route is not public, so no password reaches the login handler. Mark the route \
             public (AuthLayer::public) or build the layers with portcullis::stack::Stack and \
             its login_route (logged once)"
        );
    }
}

/// The rejection of a credential the validator refused, logged with its
/// fingerprint and the validator's reason (never the secret). It carries
/// the fingerprint, so a lockout outside counts a repeated wrong credential
/// once (B14).
fn reject_credential(credential: &Credential, error: &ValidationError) -> AuthRejection {
    let fingerprint = credential.fingerprint();
    let rejection = AuthRejection::from(error).with_fingerprint(fingerprint);
    let kind = rejection.kind();
    let source = credential.source();
    let reason = error.reason().unwrap_or("");
    if kind == RejectionKind::Unavailable {
        tracing::warn!(target: "portcullis::auth", ?kind, %source, %fingerprint, reason, "validator unavailable");
    } else {
        tracing::info!(target: "portcullis::auth", ?kind, %source, %fingerprint, reason, "credential rejected");
    }
    events::emit(Record::Rejected {
        kind,
        source: Some(source),
        fingerprint: Some(fingerprint),
    });
    rejection
}

trait ClearCookie {
    fn clear_cookie(self, removal: Option<http::HeaderValue>) -> Self;
}

impl ClearCookie for AuthRejection {
    /// Attaches `removal` to a rejection that says the credential is no
    /// good (invalid, revoked, expired); not to an unavailable validator or
    /// a missing scope, which say nothing against the cookie.
    fn clear_cookie(self, removal: Option<http::HeaderValue>) -> Self {
        use RejectionKind as K;
        match (removal, self.kind()) {
            (Some(removal), K::Invalid | K::Revoked | K::Expired) => {
                self.with_cleared_cookie(removal)
            }
            _ => self,
        }
    }
}

impl<V: Validator, R: Renderer> Shared<V, R> {
    /// The removal of `credential`'s cookie, when it came from one and
    /// stale cookies are cleared.
    fn stale_cookie(&self, credential: &Credential) -> Option<http::HeaderValue> {
        if !self.clear_stale_cookies {
            return None;
        }
        match credential.source() {
            #[cfg(feature = "cookie")]
            CredentialSource::Cookie(name) => self.extractor.cookie_removal(name),
            _ => None,
        }
    }

    /// The credential was accepted, now or after waiting for the validator:
    /// the identity (and, with leases on, its lease) goes into `extensions`
    /// for the inner service, and the lockout layers outside need not hold
    /// `reservation` any longer (B11). Returns the hook of the response.
    #[inline]
    fn accept(
        &self,
        reservation: Option<Reservation>,
        extensions: &mut Extensions,
        credential: &Credential,
        identity: V::Identity,
    ) -> Cut {
        events::emit(Record::Authenticated {
            source: credential.source(),
        });
        if let Some(reservation) = reservation {
            reservation.release();
        }
        let hook = grant(self.leases.as_ref(), extensions, credential, &identity);
        extensions.insert(identity);
        // B17: tells a lockout inside this layer that it is in the wrong
        // place.
        Authenticated::mark(extensions);
        hook
    }

    /// The credential was refused: its rejection, with the removal of its
    /// cookie when it is stale.
    fn reject(&self, credential: &Credential, error: &ValidationError) -> AuthRejection {
        reject_credential(credential, error).clear_cookie(self.stale_cookie(credential))
    }

    fn render(&self, rejection: AuthRejection, parts: &Parts) -> Response<Bytes> {
        reject::render(&*self.renderer, rejection, parts)
    }

    fn pass_anonymous(&self, parts: &mut Parts) {
        self.extractor.strip(parts);
        // For the identity extractors of the integrations.
        #[cfg(any(feature = "axum", feature = "tonic"))]
        parts.extensions.insert(super::Anonymous {
            #[cfg(feature = "axum")]
            renderer: self.renderer.clone() as Arc<dyn Renderer>,
        });
    }

    /// The validator's immediate answer ([`Validator::validate_now`]), if it
    /// has one.
    #[inline]
    fn validate_now(
        &self,
        credential: &Credential,
    ) -> Option<Result<V::Identity, ValidationError>> {
        // Timed only for the metrics: no clock read when nothing listens.
        #[cfg(feature = "metrics")]
        let started = events::listening().then(std::time::Instant::now);
        let outcome = self.validator.validate_now(credential)?;
        #[cfg(feature = "metrics")]
        if let Some(started) = started {
            events::emit(Record::Validated {
                source: credential.source(),
                elapsed: started.elapsed(),
            });
        }
        Some(outcome)
    }

    fn validate(&self, credential: Credential) -> BoxFuture<Validated<V::Identity>> {
        let validator = self.validator.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            // Timed only for the metrics: no clock read when nothing listens.
            #[cfg(feature = "metrics")]
            let started = events::listening().then(std::time::Instant::now);
            let validation = validator.validate(&credential);
            let outcome = match timeout {
                None => validation.await,
                Some(limit) => tokio::time::timeout(limit, validation)
                    .await
                    .unwrap_or_else(|_| {
                        Err(ValidationError::unavailable().with_reason("validator timed out"))
                    }),
            };
            #[cfg(feature = "metrics")]
            if let Some(started) = started {
                events::emit(Record::Validated {
                    source: credential.source(),
                    elapsed: started.elapsed(),
                });
            }
            (credential, outcome)
        })
    }
}
