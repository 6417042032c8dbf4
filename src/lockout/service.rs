//! [`Lockout`]: the service built by [`LockoutLayer`](super::LockoutLayer).

use std::{
    fmt,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};

use http::{Extensions, Request, Response, request::Parts};
use tower_service::Service;

use super::{
    Refused, Shadowed,
    attempt::Acquire,
    future::ResponseFuture,
    keys::{Rule, Step, Waiting},
    layer::Config,
    reservation::{Held, Reservation, Settle, Slot, Slots},
    shadow::ShadowRecord,
    store::Admission,
};
use crate::{
    AuthRejection, ClientIp, KeyExtractor, ResponseBody,
    auth::Authenticated,
    client_list::Listed,
    events::{self, Record},
    gate::{self, Admit, BoxFuture, Decision, Gate, Refusal},
    reject::{self, DefaultRenderer, RejectionKind, Renderer},
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
        let (parts, body) = request.into_parts();
        warn_if_inside_auth(&self.config, &parts);
        if self.config.is_simple() {
            return self.call_one_key(parts, body);
        }
        let config = &*self.config;
        let mut mark = None;
        match config.lists.check(&parts) {
            // B16: allowed requests are neither limited nor counted.
            Listed::Allowed => return self.pass(parts, body, Held::NONE),
            Listed::Denied => {
                let rejection = AuthRejection::new(RejectionKind::Denied);
                if !config.shadow {
                    return self.refuse(rejection, &parts);
                }
                mark = Some(rejection);
            }
            Listed::Neither => {}
        }
        if config.shadow {
            self.call_shadow(parts, body, mark)
        } else {
            self.call_keys(parts, body)
        }
    }
}

impl<S, K, R> Lockout<S, K, R>
where
    K: KeyExtractor,
    R: Renderer,
{
    fn refuse<ReqBody>(&self, rejection: AuthRejection, parts: &Parts) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        // Lockout refusals carry the `RateLimit` field too.
        let response = reject::render(&*self.config.renderer, rejection, parts);
        ResponseFuture::new(Gate::refuse(response, Held::NONE))
    }

    fn pass<ReqBody>(
        &mut self,
        parts: Parts,
        body: ReqBody,
        held: Held,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        let future = self.inner.call(Request::from_parts(parts, body));
        ResponseFuture::new(Gate::pass(future, held))
    }

    /// The request waits for `decision`, with the inner service ready.
    fn wait<ReqBody>(
        &mut self,
        decision: Decision<Held>,
        parts: Parts,
        body: ReqBody,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>> + Clone,
    {
        let inner = gate::take_ready(&mut self.inner);
        let renderer: Arc<dyn Renderer> = self.config.renderer.clone();
        ResponseFuture::new(Gate::wait(
            decision,
            inner,
            Request::from_parts(parts, body),
            renderer,
        ))
    }

    /// The path of a layer with one key, no lists and no shadow mode.
    fn call_one_key<ReqBody>(
        &mut self,
        mut parts: Parts,
        body: ReqBody,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>> + Clone,
    {
        // Borrowed, not cloned: a clone per request is two atomic updates of
        // one counter that every core shares.
        let config = &*self.config;
        let key = match config.extractor.extract(&parts) {
            Ok(key) => key,
            // B10: no key (no client address) is an error, never a bucket
            // shared by everyone.
            Err(rejection) => return self.refuse(rejection, &parts),
        };
        let tracker = &config.tracker;
        let hash = tracker.hash(&key);
        let asking = match tracker.admit(&key, hash) {
            Admission::Admitted(ticket, failures) => {
                let slot = Slot::shared(
                    tracker.reserved(key, hash, ticket),
                    config.classifier.clone(),
                );
                Reservation::push(&mut parts.extensions, Arc::clone(&slot));
                return match tracker.policy().delay_for(failures) {
                    None => self.pass(parts, body, Held::slot(slot)),
                    Some(delay) => self.wait(delayed(slot, delay), parts, body),
                };
            }
            // B3: a locked-out client is answered before the inner service
            // runs.
            Admission::Locked(record, now) => {
                let refused = Refused::LockedOut(super::Locked::new(record, now));
                refused_event(Some(&key), &refused);
                return self.refuse(refused.to_rejection(), &parts);
            }
            Admission::Crowded => {
                refused_event(Some(&key), &Refused::Crowded);
                return self.refuse(Refused::Crowded.to_rejection(), &parts);
            }
            #[cfg(feature = "redis")]
            Admission::Ask(asking) => Some(asking),
            // Full, or a shared store unavailable: wait.
            _ => None,
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
                    Ok(admit(outer, slot))
                }
                // B3: locked out while waiting; the inner service is never
                // called.
                Err(refused) => {
                    refused_event(Some(&key), &refused);
                    Err(Refusal {
                        rejection: refused.to_rejection(),
                        hook: Held::NONE,
                    })
                }
            }
        });
        self.wait(decision, parts, body)
    }

    /// Several keys (B13): every key that applies must admit the request,
    /// asked in order; the most restrictive answer wins.
    fn call_keys<ReqBody>(&mut self, mut parts: Parts, body: ReqBody) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>> + Clone,
    {
        let config = &*self.config;
        let classifier = config.classifier.as_ref();
        let mut slots: Vec<Arc<dyn Settle>> = Vec::with_capacity(config.rules.len());
        let mut delay: Option<Duration> = None;
        for (i, rule) in config.rules.iter().enumerate() {
            let step = match rule.admit(&parts, classifier) {
                Ok(step) => step,
                // The slots taken so far are released as they drop.
                Err(rejection) => return self.refuse(rejection, &parts),
            };
            match step {
                Step::Skip => {}
                Step::Admitted((slot, wait)) => {
                    slots.push(slot);
                    delay = delay.max(wait);
                }
                Step::Refused(refused) => {
                    refused_event(None, &refused);
                    let rejection = most_restrictive(refused, &config.rules[i + 1..], &parts);
                    return self.refuse(rejection, &parts);
                }
                Step::Wait(first) => {
                    // The keys after this one are acquired once it admits,
                    // in order (see `keys` for why this cannot deadlock).
                    let mut later = vec![first];
                    for rule in &config.rules[i + 1..] {
                        match rule.acquire(&parts, classifier) {
                            Ok(Some(waiting)) => later.push(waiting),
                            Ok(None) => {}
                            Err(rejection) => return self.refuse(rejection, &parts),
                        }
                    }
                    let outer = Reservation::take(&mut parts.extensions);
                    let decision = acquire_in_order(slots, later, delay, outer);
                    return self.wait(decision, parts, body);
                }
            }
        }
        let slot = combined(slots);
        match delay {
            None => {
                Reservation::push(&mut parts.extensions, Arc::clone(&slot));
                self.pass(parts, body, Held::slot(slot))
            }
            Some(delay) => {
                Reservation::push(&mut parts.extensions, Arc::clone(&slot));
                self.wait(delayed(slot, delay), parts, body)
            }
        }
    }

    /// Shadow mode (B16): decide and count, but let the request through,
    /// marked when it would have been refused.
    fn call_shadow<ReqBody>(
        &mut self,
        parts: Parts,
        body: ReqBody,
        mut would: Option<AuthRejection>,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        let config = &*self.config;
        let mut keys = Vec::with_capacity(config.rules.len());
        let mut worst: Option<Refused> = None;
        for rule in &config.rules {
            match rule.shadow(&parts) {
                Ok(Some((locked, record))) => {
                    keys.push(record);
                    if let Some(locked) = locked
                        && worst
                            .as_ref()
                            .is_none_or(|w| locked.retry_after() > w.retry_after())
                    {
                        worst = Some(Refused::LockedOut(locked));
                    }
                }
                Ok(None) => {}
                Err(rejection) => would = would.or(Some(rejection)),
            }
        }
        if let Some(worst) = worst {
            would = would.or(Some(worst.to_rejection()));
        }
        if let Some(rejection) = &would {
            tracing::warn!(
                target: "portcullis::lockout",
                kind = ?rejection.kind(),
                retry_after_secs = rejection.retry_after().map(|d| d.as_secs()),
                path = parts.uri.path(),
                "shadow mode: the lockout would have refused this request"
            );
        }
        let record: Arc<dyn Settle> = Arc::new(ShadowRecord {
            keys,
            classifier: config.classifier.clone(),
        });
        let held = Held::shadow(Some(record), would.map(Shadowed::new));
        self.pass(parts, body, held)
    }
}

/// The admitted request's hook, and its reservations for the layers inside
/// (after those of outer lockout layers).
fn admit(outer: Option<Reservation>, slot: Arc<dyn Settle>) -> Admit<Held> {
    let mut extensions = Extensions::new();
    extensions.insert(Reservation::with(outer, Arc::clone(&slot)));
    Admit {
        hook: Held::slot(slot),
        extensions: Some(extensions),
    }
}

/// Progressive delay: the request waits, holding its slot (cancel-safe:
/// dropping the request frees it).
fn delayed(slot: Arc<dyn Settle>, delay: Duration) -> Decision<Held> {
    Box::pin(async move {
        tokio::time::sleep(delay).await;
        Ok(Admit {
            hook: Held::slot(slot),
            extensions: None,
        })
    })
}

/// Waits for the keys in `later`, one after the other, holding the slots
/// of the keys before them; then the longest delay of those admitted at
/// once.
fn acquire_in_order(
    mut slots: Vec<Arc<dyn Settle>>,
    later: Vec<Waiting>,
    delay: Option<Duration>,
    outer: Option<Reservation>,
) -> Decision<Held> {
    let decision: BoxFuture<_> = Box::pin(async move {
        for waiting in later {
            match waiting.await {
                Ok(slot) => slots.push(slot),
                Err(refused) => {
                    refused_event(None, &refused);
                    return Err(Refusal {
                        rejection: refused.to_rejection(),
                        hook: Held::NONE,
                    });
                }
            }
        }
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        Ok(admit(outer, combined(slots)))
    });
    decision
}

/// One handle for the slots of all keys of a request.
fn combined(mut slots: Vec<Arc<dyn Settle>>) -> Arc<dyn Settle> {
    if slots.len() == 1 {
        slots.pop().expect("one slot")
    } else {
        Arc::new(Slots(slots))
    }
}

/// The refusal with the longest `Retry-After` among `refused` and the
/// lockouts of the keys not asked yet.
fn most_restrictive(refused: Refused, rest: &[Arc<dyn Rule>], parts: &Parts) -> AuthRejection {
    let mut worst = refused;
    for rule in rest {
        if let Some(locked) = rule.locked(parts)
            && locked.retry_after() > worst.retry_after()
        {
            worst = Refused::LockedOut(locked);
        }
    }
    worst.to_rejection()
}

/// How many requests a layer checks for the wrong order: the order is a
/// property of the stack, so the first requests tell; after them the check
/// costs one relaxed load.
pub(crate) const ORDER_CHECKS: u32 = 4096;

/// B17: a lockout inside `AuthLayer` sees requests that were authenticated
/// already, and would never see a rejected credential; says so once.
fn warn_if_inside_auth<K: KeyExtractor, R>(config: &Config<K, R>, parts: &Parts) {
    let checks = &config.order_checks;
    if checks.load(Ordering::Relaxed) >= ORDER_CHECKS {
        return;
    }
    // Only accepted credentials tell: an anonymous request (a public login
    // route) may well meet a lockout inside the `AuthLayer`, which then
    // counts the handler's refusals as it should.
    if parts.extensions.get::<Authenticated>().is_none() {
        checks.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if checks.swap(ORDER_CHECKS, Ordering::Relaxed) < ORDER_CHECKS {
        tracing::warn!(
            target: "portcullis::lockout",
            "a LockoutLayer sees requests that an AuthLayer has already authenticated: it is \
             inside the AuthLayer and never sees a rejected credential, so it counts no failed \
             attempt. Put it outside: with tower::ServiceBuilder add it before the AuthLayer; \
             with axum's Router::layer call it after (the last layer added runs first); or \
             build both with portcullis::stack::Stack (logged once)"
        );
    }
}

/// Reports a refusal to the audit events; `key` is `None` for a layer with
/// several keys.
fn refused_event(key: Option<&dyn fmt::Debug>, refused: &Refused) {
    events::emit(Record::LockoutRefused {
        key,
        crowded: matches!(refused, Refused::Crowded),
    });
}
