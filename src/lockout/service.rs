//! [`Lockout`]: the service built by [`LockoutLayer`](super::LockoutLayer).

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Extensions, Request, Response};
use tower_service::Service;

use super::{
    attempt::Acquire,
    future::ResponseFuture,
    layer::Config,
    reservation::{Held, Reservation, Slot},
    store::Admission,
};
use crate::{
    ClientIp, KeyExtractor, ResponseBody,
    events::{self, Record},
    gate::{self, Admit, Gate, Refusal},
    rate_limit::LockoutFields,
    reject::{self, DefaultRenderer, Renderer},
};

/// Answers locked-out clients itself and counts the failed attempts of the
/// others; built by [`LockoutLayer`](super::LockoutLayer).
pub struct Lockout<S, K = ClientIp, R = DefaultRenderer>
where
    K: KeyExtractor,
{
    inner: S,
    config: Arc<Config<K, R>>,
}

impl<S, K: KeyExtractor, R> Lockout<S, K, R> {
    pub(crate) fn new(inner: S, config: Arc<Config<K, R>>) -> Self {
        Self { inner, config }
    }

    gate::inner_accessors!();

    /// The tracker this service records into.
    pub fn tracker(&self) -> &super::Tracker<K::Key> {
        &self.config.tracker
    }
}

impl<S: Clone, K: KeyExtractor, R> Clone for Lockout<S, K, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
        }
    }
}

impl<S: fmt::Debug, K: KeyExtractor, R> fmt::Debug for Lockout<S, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lockout")
            .field("inner", &self.inner)
            .field("tracker", &self.config.tracker)
            .finish_non_exhaustive()
    }
}

impl<S, K, R, ReqBody, ResBody> Service<Request<ReqBody>> for Lockout<S, K, R>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    K: KeyExtractor,
    R: Renderer,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let (mut parts, body) = request.into_parts();
        let refuse = |rejection, parts: &_| {
            let renderer = LockoutFields(Arc::clone(&config.renderer));
            let response = reject::render(&renderer, rejection, parts);
            ResponseFuture::new(Gate::refuse(response, Held(None)))
        };
        let key = match config.extractor.extract(&parts) {
            Ok(key) => key,
            // B10: no key (no client address) is an error, never a bucket
            // shared by everyone.
            Err(rejection) => return refuse(rejection, &parts),
        };
        let tracker = &config.tracker;
        let hash = tracker.hash(&key);
        let asking = match tracker.admit(&key, hash) {
            Admission::Admitted(ticket) => {
                let slot = Slot::shared(
                    tracker.reserved(key, hash, ticket),
                    config.classifier.clone(),
                );
                Reservation::push(&mut parts.extensions, Arc::clone(&slot));
                let future = self.inner.call(Request::from_parts(parts, body));
                return ResponseFuture::new(Gate::pass(future, Held(Some(slot))));
            }
            // B3: a locked-out client is answered before the inner service
            // runs.
            Admission::Locked(record, now) => {
                let refused = super::Refused::LockedOut(super::Locked::new(record, now));
                refused_event(&key, &refused);
                return refuse(refused.to_rejection(), &parts);
            }
            Admission::Crowded => {
                refused_event(&key, &super::Refused::Crowded);
                return refuse(super::Refused::Crowded.to_rejection(), &parts);
            }
            Admission::Ask(asking) => Some(asking),
            Admission::Full | Admission::Unavailable => None,
        };
        // The request waits for a reservation. Reservations of outer
        // lockout layers go with it and are put back with this one.
        let outer = Reservation::take(&mut parts.extensions);
        let acquire = Acquire::new(tracker.clone(), key.clone(), hash, asking);
        let classifier = config.classifier.clone();
        let decision = Box::pin(async move {
            match acquire.await {
                Ok(attempt) => {
                    let slot = Slot::shared(attempt.into_reserved(), classifier);
                    let mut extensions = Extensions::new();
                    extensions.insert(Reservation::with(outer, Arc::clone(&slot)));
                    Ok(Admit {
                        hook: Held(Some(slot)),
                        extensions: Some(extensions),
                    })
                }
                // B3: locked out while waiting; the inner service is never
                // called.
                Err(refused) => {
                    refused_event(&key, &refused);
                    Err(Refusal {
                        rejection: refused.to_rejection(),
                        hook: Held(None),
                    })
                }
            }
        });
        let inner = gate::take_ready(&mut self.inner);
        let renderer: Arc<dyn Renderer> = Arc::new(LockoutFields(config.renderer.clone()));
        ResponseFuture::new(Gate::wait(
            decision,
            inner,
            Request::from_parts(parts, body),
            renderer,
        ))
    }
}

/// Reports a refusal to the audit events.
fn refused_event(key: &dyn fmt::Debug, refused: &super::Refused) {
    events::emit(Record::LockoutRefused {
        key,
        crowded: matches!(refused, super::Refused::Crowded),
    });
}
