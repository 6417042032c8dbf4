//! [`Lockout`]: the service built by [`LockoutLayer`](super::LockoutLayer).

use std::{
    fmt, iter,
    sync::{Arc, atomic::Ordering},
    task::{Context, Poll},
    time::Duration,
};

use http::{Extensions, Request, Response, request::Parts};
use tower_service::Service;

use super::{
    Refused, Shadowed,
    config::Config,
    future::ResponseFuture,
    keys::{KeyName, Rule, ShadowRecord, Step, Waiting},
    reservation::{Held, Settle, Slots},
};
use crate::{
    AuthRejection, ClientIp, KeyExtractor, ResponseBody,
    client_list::Listed,
    events::{self, KeyText, Record},
    gate::{self, Admit, BoxFuture, Decision, Gate, Refusal},
    handoff::{self, Authenticated, ORDER_CHECKS, Reservation},
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
    /// The inner service is a stack's auth service, offered the
    /// reservation directly (see `handoff`).
    direct: bool,
}

impl<S, K: KeyExtractor, R> Lockout<S, K, R> {
    pub(crate) fn new(inner: S, config: Arc<Config<K, R>>) -> Self {
        Self {
            inner,
            config,
            direct: false,
        }
    }

    /// Hands reservations to the inner service directly: it is the auth
    /// service of a [`Stack`](crate::stack::Stack), built to take them.
    pub(crate) fn handing_over(mut self) -> Self {
        self.direct = true;
        self
    }

    gate::inner_accessors!();

    /// The tracker this service records into.
    pub fn tracker(&self) -> &super::Tracker<K::Key> {
        self.config.tracker()
    }
}

impl<S: Clone, K: KeyExtractor, R> Clone for Lockout<S, K, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: Arc::clone(&self.config),
            direct: self.direct,
        }
    }
}

impl<S: fmt::Debug, K: KeyExtractor, R> fmt::Debug for Lockout<S, K, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lockout")
            .field("inner", &self.inner)
            .field("tracker", self.config.tracker())
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
        // Borrowed, not cloned: a clone per request is two atomic updates of
        // one counter that every core shares.
        let config = &*self.config;
        let mut mark = None;
        if !config.lists.is_empty() {
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

    #[inline(always)]
    fn pass<ReqBody>(
        &mut self,
        parts: Parts,
        body: ReqBody,
        held: Held,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        self.pass_offering(parts, body, held, None)
    }

    /// Calls the inner service; a stack's auth service inside is offered
    /// `reservation` (and nothing, when it is `None`) for that call.
    #[inline(always)]
    fn pass_offering<ReqBody>(
        &mut self,
        parts: Parts,
        body: ReqBody,
        held: Held,
        reservation: Option<Reservation>,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
    {
        let request = Request::from_parts(parts, body);
        let future = if self.direct {
            let inner = &mut self.inner;
            handoff::offering(reservation, || inner.call(request))
        } else {
            self.inner.call(request)
        };
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

    /// Every key that applies must admit the request (B13), asked in
    /// order; the most restrictive answer wins. A layer with one key takes
    /// the same path, without allocating for it.
    #[inline(always)]
    fn call_keys<ReqBody>(&mut self, mut parts: Parts, body: ReqBody) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>> + Clone,
    {
        let config = &*self.config;
        let classifier = config.classifier.as_ref();
        // The first key is asked directly (no dynamic call on the path of a
        // layer with one key), the others in turn, each only when the keys
        // before it admitted the request.
        let first = match config.first.admit(&parts, classifier) {
            // One key that admits: its slot is the request's (the common
            // case, answered without gathering slots).
            Ok(Step::Admitted((slot, delay))) if config.more.is_empty() => {
                return self.admitted(parts, body, slot, delay);
            }
            first => first,
        };
        let mut taken = Taken::default();
        let mut delay: Option<Duration> = None;
        let more = config
            .more
            .iter()
            .map(|rule| rule.admit(&parts, classifier));
        for (i, step) in iter::once(first).chain(more).enumerate() {
            // B10: a key that cannot be found (no client address) refuses
            // the request, never a bucket shared by everyone. The slots
            // taken so far are released as they drop.
            let step = match step {
                Ok(step) => step,
                Err(rejection) => return self.refuse(rejection, &parts),
            };
            match step {
                Step::Skip => {}
                Step::Admitted((slot, wait)) => {
                    taken.push(slot);
                    delay = delay.max(wait);
                }
                // B3: a refused request never reaches the inner service.
                Step::Refused(refused, key) => {
                    let rest = config.rules().skip(i + 1);
                    let rejection = most_restrictive(refused, key, rest, &parts);
                    return self.refuse(rejection, &parts);
                }
                Step::Wait(first) => {
                    // The keys after this one are acquired once it admits,
                    // in order (see `keys` for why this cannot deadlock).
                    let mut later = vec![first];
                    for rule in config.rules().skip(i + 1) {
                        match rule.acquire(&parts, classifier) {
                            Ok(Some(waiting)) => later.push(waiting),
                            Ok(None) => {}
                            Err(rejection) => return self.refuse(rejection, &parts),
                        }
                    }
                    // Reservations of outer lockout layers go with the
                    // request and are put back with these.
                    let outer = Reservation::take(&mut parts.extensions);
                    let decision = acquire_in_order(taken, later, delay, outer);
                    return self.wait(decision, parts, body);
                }
            }
        }
        match taken.combined() {
            Some(slot) => self.admitted(parts, body, slot, delay),
            None => self.pass(parts, body, Held::NONE),
        }
    }

    /// The request holds `slot` (its reservations under every key): it
    /// goes on, after `delay` when its failures call for one.
    #[inline(always)]
    fn admitted<ReqBody>(
        &mut self,
        mut parts: Parts,
        body: ReqBody,
        slot: Arc<dyn Settle>,
        delay: Option<Duration>,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>> + Clone,
    {
        let handle = Arc::<dyn Settle>::clone(&slot);
        match delay {
            // A stack's auth service takes the reservation from the call
            // itself: nothing goes into the extensions.
            None if self.direct => {
                let offered = Reservation::with(None, handle);
                self.pass_offering(parts, body, Held::slot(slot), Some(offered))
            }
            None => {
                Reservation::push(&mut parts.extensions, handle);
                self.pass(parts, body, Held::slot(slot))
            }
            Some(delay) => {
                Reservation::push(&mut parts.extensions, handle);
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
        let mut keys = Vec::with_capacity(1 + config.more.len());
        let mut worst: Option<Refused> = None;
        for rule in config.rules() {
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
    extensions.insert(Reservation::with(outer, Arc::<dyn Settle>::clone(&slot)));
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
    mut taken: Taken,
    later: Vec<Waiting>,
    delay: Option<Duration>,
    outer: Option<Reservation>,
) -> Decision<Held> {
    let decision: BoxFuture<_> = Box::pin(async move {
        for waiting in later {
            match waiting.await {
                Ok(slot) => taken.push(slot),
                // B3: locked out while waiting; the inner service is never
                // called.
                Err((refused, key)) => {
                    refused_event(&*key, &refused);
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
        // `later` is never empty, so a slot was taken.
        let slot = taken.combined().expect("a waiting key took a slot");
        Ok(admit(outer, slot))
    });
    decision
}

/// The slots a request took, one per key that admitted it: one key's slot
/// costs no allocation.
#[derive(Default)]
struct Taken {
    first: Option<Arc<dyn Settle>>,
    more: Vec<Arc<dyn Settle>>,
}

impl Taken {
    #[inline]
    fn push(&mut self, slot: Arc<dyn Settle>) {
        if self.first.is_none() {
            self.first = Some(slot);
        } else {
            self.more.push(slot);
        }
    }

    /// One handle for them all; `None` when no key applied.
    #[inline]
    fn combined(self) -> Option<Arc<dyn Settle>> {
        let first = self.first?;
        if self.more.is_empty() {
            return Some(first);
        }
        let mut all = Vec::with_capacity(1 + self.more.len());
        all.push(first);
        all.extend(self.more);
        Some(Arc::new(Slots(all)))
    }
}

/// The refusal with the longest `Retry-After` among `refused` (by `key`)
/// and the lockouts of the keys not asked yet; reported to the audit events
/// with the key whose answer is sent.
fn most_restrictive<'a>(
    refused: Refused,
    key: KeyName,
    rest: impl Iterator<Item = &'a dyn Rule>,
    parts: &Parts,
) -> AuthRejection {
    let (mut worst, mut by) = (refused, key);
    for rule in rest {
        if let Some((locked, key)) = rule.locked(parts)
            && locked.retry_after() > worst.retry_after()
        {
            (worst, by) = (Refused::LockedOut(locked), key);
        }
    }
    refused_event(&*by, &worst);
    worst.to_rejection()
}

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
    if !Authenticated::marked(&parts.extensions) {
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

/// Reports a refusal, and the key that refused, to the audit events and
/// the log.
fn refused_event(key: &dyn fmt::Debug, refused: &Refused) {
    tracing::debug!(
        target: "portcullis::lockout",
        key = %KeyText(key),
        crowded = matches!(refused, Refused::Crowded),
        "request refused by the lockout"
    );
    events::emit(Record::LockoutRefused {
        key,
        crowded: matches!(refused, Refused::Crowded),
    });
}
