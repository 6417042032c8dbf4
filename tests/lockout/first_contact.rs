//! A new client's first request through a rate limiter and a lockout on one
//! Redis store (D5): one round trip, the lockout's grant sent beside the
//! rate limiter's batch when both count the same keys, and the bound on
//! guesses (B6, D2) intact whatever grants were started ahead.

use portcullis::{
    AuthLayer, ClientIp, Credential, RedisStore, ValidationError, rate_limit::RateLimitLayer,
};
use tower::ServiceBuilder;

use super::*;
use crate::support::{
    proxy::{Command, RedisProxy},
    redis::{Server, redis_url, store, unique_prefix, until},
};

/// A replica's stack as a service that answers with the status.
type Stack = BoxCloneService<Request<String>, StatusCode, Infallible>;

const GOOD: &str = "good-token";

/// A validator that knows [`GOOD`], counts the other guesses and checks
/// each only once the test lets it.
#[derive(Clone)]
struct Gated {
    guesses: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
}

impl Gated {
    fn new() -> Self {
        Self {
            guesses: Arc::new(AtomicUsize::new(0)),
            gate: Arc::new(Semaphore::new(0)),
        }
    }
}

impl portcullis::Validator for Gated {
    type Identity = ();

    async fn validate(&self, credential: &Credential) -> Result<(), ValidationError> {
        if credential.secret() == GOOD {
            return Ok(());
        }
        self.guesses.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        Err(ValidationError::invalid())
    }
}

async fn handler(_: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new("ok".to_owned()))
}

fn status<B>(res: Response<B>) -> StatusCode {
    res.status()
}

/// The full stack of one replica: rate limit → lockout → auth → handler.
fn replica(rate: RateLimitLayer, lockout: &LockoutLayer<ClientIp>, validator: &Gated) -> Stack {
    BoxCloneService::new(
        ServiceBuilder::new()
            .map_response(status)
            .layer(rate)
            .layer(lockout.clone())
            .layer(AuthLayer::new(validator.clone()))
            .service_fn(handler),
    )
}

/// The lockout alone (sharing the replica's tracker) → auth → handler.
fn lockout_only(lockout: &LockoutLayer<ClientIp>, validator: &Gated) -> Stack {
    BoxCloneService::new(
        ServiceBuilder::new()
            .map_response(status)
            .layer(lockout.clone())
            .layer(AuthLayer::new(validator.clone()))
            .service_fn(handler),
    )
}

fn lockout_on(store: &RedisStore, key: ClientIp, policy: Policy) -> LockoutLayer<ClientIp> {
    LockoutLayer::builder(policy)
        .key(key)
        .redis(store.clone())
        .build()
        .unwrap()
}

fn rate_on(store: &RedisStore) -> RateLimitLayer {
    RateLimitLayer::builder()
        .per_second(1000)
        .redis(store.clone())
        .build()
        .unwrap()
}

fn from(client: [u8; 4], token: &str) -> Request<String> {
    Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .extension(PeerAddr((client, 40_000).into()))
        .body(String::new())
        .unwrap()
}

/// A redis-server of the test's own behind a [`RedisProxy`], and a store
/// that connects through the proxy.
struct Proxied {
    _server: Server,
    proxy: RedisProxy,
    store: RedisStore,
}

impl Proxied {
    async fn start() -> Option<Self> {
        Self::with_timeout(Duration::from_secs(1)).await
    }

    /// With `timeout` per call.
    async fn with_timeout(timeout: Duration) -> Option<Self> {
        redis_url()?;
        let server = Server::start_free()?;
        server.ready().await;
        let proxy = RedisProxy::start(([127, 0, 0, 1], server.port()).into()).await;
        let store = store(&proxy.url(), &unique_prefix()).await.timeout(timeout);
        Some(Self {
            _server: server,
            proxy,
            store,
        })
    }

    /// The commands sent since `before` commands were.
    fn since(&self, before: usize) -> Vec<Command> {
        self.proxy.commands().split_off(before)
    }
}

/// Sends `req` through a clone of `svc`.
async fn send(svc: &Stack, req: Request<String>) -> StatusCode {
    svc.clone().oneshot(req).await.unwrap()
}

/// One request of another client, so that the server knows both scripts
/// before a test counts them (an unknown script costs a load and a second
/// call).
async fn load_scripts(svc: &Stack) {
    assert_eq!(send(svc, from([192, 0, 2, 1], GOOD)).await, StatusCode::OK);
}

/// The rate limiter's script: it takes tokens (`…:t`).
fn is_batch(command: &Command) -> bool {
    command.is_script_on(":t")
}

/// The lockout's grant: failures, grants, lockout and wanted keys (`…:f`,
/// `…:c`, `…:l`, `…:w`; the recording of a failure has a fifth).
fn is_grant(command: &Command) -> bool {
    command.is_script_on(":f") && command.keys.len() == 4 && command.keys[1].ends_with(":c")
}

#[tokio::test]
async fn d5_a_new_clients_first_request_through_both_layers_costs_one_round_trip() {
    // D5: the lockout's grant goes out right behind the rate limiter's
    // batch, before any reply: both scripts reach the server while every
    // reply is held, and the request, once they are released, succeeds.
    let Some(own) = Proxied::start().await else {
        return;
    };
    support::logs::capture();
    let validator = Gated::new();
    let lockout = lockout_on(&own.store, ClientIp::new(), Policy::default());
    let rate = rate_on(&own.store);
    let svc = replica(rate.clone(), &lockout, &validator);
    load_scripts(&svc).await;

    let before = own.proxy.commands().len();
    own.proxy.hold();
    let first = tokio::spawn(svc.clone().oneshot(from([192, 0, 2, 2], GOOD)));
    own.proxy
        .until("the rate limiter's and the lockout's scripts", |commands| {
            let new = &commands[before..];
            new.iter().any(is_batch) && new.iter().any(is_grant)
        })
        .await;
    let sent = own.since(before);
    assert!(
        sent.iter().filter(|c| c.is_script()).all(|c| c.held),
        "a script was sent after a reply: {sent:?}"
    );
    assert_eq!(sent.iter().filter(|c| c.is_script()).count(), 2, "{sent:?}");
    own.proxy.release();
    assert_eq!(first.await.unwrap().unwrap(), StatusCode::OK);
    assert_eq!(
        own.since(before).iter().filter(|c| c.is_script()).count(),
        2,
        "the lockout asked again"
    );
    // Both answered by Redis: neither layer gave up waiting and decided
    // locally (which would let the request on without its reply).
    assert_eq!(rate.stats().fallbacks, 0);
    assert_eq!(lockout.tracker().stats().fallbacks, 0);

    // The same client again: the lockout holds its credits (the rate
    // limiter takes its second batch, which grows with use).
    let before = own.proxy.commands().len();
    assert_eq!(send(&svc, from([192, 0, 2, 2], GOOD)).await, StatusCode::OK);
    let sent = own.since(before);
    assert!(
        !sent.iter().any(is_grant),
        "a returning client's lockout asked redis: {sent:?}"
    );
    // And once the batch holds a token, its requests wait for no reply at
    // all: answered while Redis's replies are held.
    own.proxy.hold();
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        svc.clone().oneshot(from([192, 0, 2, 2], GOOD)),
    )
    .await
    .expect("a returning client waited for redis");
    assert_eq!(answered.unwrap(), StatusCode::OK);
    own.proxy.release();
    assert_eq!(lockout.tracker().stats().fallbacks, 0);
    assert_eq!(rate.stats().fallbacks, 0);
    assert_eq!(lockout.tracker().stats().leased, 2);
}

#[tokio::test]
async fn d5_layers_keyed_differently_ask_redis_one_after_the_other() {
    // D5: a lockout whose ClientIp groups IPv6 otherwise might count other
    // keys than the rate limiter: its grant is not started ahead, and goes
    // out only once the rate limiter's reply let the request through.
    let Some(own) = Proxied::start().await else {
        return;
    };
    support::logs::capture();
    let validator = Gated::new();
    let key = ClientIp::builder().ipv6_prefix(56).build().unwrap();
    let lockout = lockout_on(&own.store, key, Policy::default());
    let svc = replica(rate_on(&own.store), &lockout, &validator);
    load_scripts(&svc).await;

    let before = own.proxy.commands().len();
    own.proxy.hold();
    let first = tokio::spawn(svc.clone().oneshot(from([192, 0, 2, 2], GOOD)));
    own.proxy
        .until("the rate limiter's script", |commands| {
            commands[before..].iter().any(is_batch)
        })
        .await;
    own.proxy.release();
    assert_eq!(first.await.unwrap().unwrap(), StatusCode::OK);
    let sent = own.since(before);
    let grant = sent
        .iter()
        .find(|c| is_grant(c))
        .expect("the lockout asked for credits");
    assert!(
        !grant.held,
        "the lockout's grant went out before the rate limiter's reply: {sent:?}"
    );
}

#[tokio::test]
async fn r5_a_grant_started_ahead_that_redis_does_not_answer_falls_back_like_any_grant() {
    // R5, D6: Redis stops answering during a new client's first request.
    // The rate limiter and the lockout both decide locally; the lockout's
    // grant, started ahead, sends the key to the fallback when it fails, so
    // the request waiting for it is decided locally rather than asking
    // Redis a second time.
    let Some(own) = Proxied::with_timeout(Duration::from_millis(200)).await else {
        return;
    };
    support::logs::capture();
    let validator = Gated::new();
    validator.gate.add_permits(100);
    let lockout = lockout_on(&own.store, ClientIp::new(), max(3));
    let rate = rate_on(&own.store);
    let svc = replica(rate.clone(), &lockout, &validator);
    load_scripts(&svc).await;

    let before = own.proxy.commands().len();
    own.proxy.hold();
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        svc.clone().oneshot(from([192, 0, 2, 2], "guess-0")),
    )
    .await
    .expect("answered without redis");
    assert_eq!(answered.unwrap(), StatusCode::UNAUTHORIZED);
    assert_eq!(validator.guesses.load(Ordering::SeqCst), 1);
    assert!(rate.stats().fallbacks >= 1);
    assert!(lockout.tracker().stats().fallbacks >= 1);
    // One grant asked for (the release of what it may have granted is a
    // plain EVAL), not a second one by the request.
    let sent = own.since(before);
    let grants = sent
        .iter()
        .filter(|c| c.name == "EVALSHA" && is_grant(c))
        .filter(|c| c.keys[0].contains("192.0.2.2"))
        .count();
    assert_eq!(grants, 1, "{sent:?}");
    // The key is limited locally meanwhile (R5).
    for guess in 1..3 {
        let res = send(&svc, from([192, 0, 2, 2], &format!("guess-{guess}"))).await;
        assert_eq!(res, StatusCode::UNAUTHORIZED);
    }
    let res = send(&svc, from([192, 0, 2, 2], "guess-3")).await;
    assert_eq!(res, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(validator.guesses.load(Ordering::SeqCst), 3);
    own.proxy.release();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b6_d2_grants_started_by_refused_requests_keep_guesses_at_max_failures() {
    // B6, D2, D5: the rate limiter of replica A refuses a client (the
    // quota was spent on replica B), after starting A's lockout grant for
    // it. The credits A holds that way are counted in Redis like any
    // others: 32 parallel wrong guesses on each replica still reach the
    // validator max_failures times, all at once, and no more.
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let validator = Gated::new();
    let client: [u8; 4] = [198, 51, 100, 7];
    let mut full = Vec::new();
    let mut direct = Vec::new();
    let mut trackers = Vec::new();
    for _ in 0..2 {
        let store = store(&url, &prefix).await;
        let lockout = lockout_on(&store, ClientIp::new(), max(4));
        let rate = RateLimitLayer::builder()
            .rate(1, HOUR)
            .burst(1)
            .redis(store.clone())
            .build()
            .unwrap();
        full.push(replica(rate, &lockout, &validator));
        direct.push(lockout_only(&lockout, &validator));
        trackers.push(lockout.tracker().clone());
    }
    // B takes the client's only token; A's rate limiter then asks Redis,
    // starting A's grant, and is refused.
    assert_eq!(send(&full[1], from(client, GOOD)).await, StatusCode::OK);
    assert_eq!(trackers[0].stats().leased, 0);
    assert_eq!(
        send(&full[0], from(client, GOOD)).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    until("replica A to hold the grant started ahead", || {
        trackers[0].stats().leased == 1
    })
    .await;

    let mut tasks = Vec::new();
    for svc in &direct {
        for _ in 0..32 {
            // Each guess differs: a repeated one would count once (B14).
            let guess = format!("guess-{}", tasks.len());
            let svc = svc.clone();
            tasks.push(tokio::spawn(svc.oneshot(from(client, &guess))));
        }
    }
    until("four guesses in the validator at once", || {
        validator.guesses.load(Ordering::SeqCst) >= 4
    })
    .await;
    validator.gate.add_permits(64);
    let mut unauthorized = 0;
    for task in tasks {
        if task.await.unwrap().unwrap() == StatusCode::UNAUTHORIZED {
            unauthorized += 1;
        }
    }
    assert_eq!(validator.guesses.load(Ordering::SeqCst), 4);
    assert_eq!(unauthorized, 4);
    for tracker in &trackers {
        assert_eq!(tracker.stats().fallbacks, 0);
    }
}
