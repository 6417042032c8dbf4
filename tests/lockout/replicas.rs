//! Several replicas against a real redis-server (D, R5). `PORTCULLIS_REDIS_URL`
//! names one; without it these tests say they are skipped, except in CI,
//! where that fails. Tests that pause or kill the server start their own.

use std::collections::HashMap;

use ::redis::AsyncCommands;
use portcullis::RedisStore;

use super::*;

use crate::support::redis::{
    Server, command_calls, redis_url, shared_tracker, store, unique_prefix,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_two_replicas_with_32_concurrent_failures_each_accept_at_most_max_failures() {
    // D1, D2, D3
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let replicas = [
        shared_tracker(Policy::default(), store(&url, &prefix).await),
        shared_tracker(Policy::default(), store(&url, &prefix).await),
    ];
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for tracker in &replicas {
        for _ in 0..32 {
            let (tracker, accepted) = (tracker.clone(), Arc::clone(&accepted));
            tasks.push(tokio::spawn(async move {
                if let Ok(attempt) = tracker.attempt(key("victim")).await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    // The validator rejects the guess.
                    attempt.failed();
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 5);
    for tracker in &replicas {
        assert_eq!(
            tracker.stats().fallbacks,
            0,
            "a decision was made without redis"
        );
    }
    // Both replicas learn the lockout from redis (D3: its TTL decides).
    for tracker in &replicas {
        let locked = tracker.attempt(key("victim")).await.unwrap_err();
        assert!(locked.retry_after() > Duration::from_secs(29 * 60));
        assert!(tracker.check(&key("victim")).is_err());
    }

    // D1: every key the scripts left behind has a TTL.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = con.keys(format!("{prefix}*")).await.unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        let ttl: i64 = con.pttl(&k).await.unwrap();
        assert!(ttl > 0, "{k} has no TTL ({ttl})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_redis_killed_mid_run_falls_back_to_local_lockouts_and_recovers() {
    // R5
    if redis_url().is_none() {
        return;
    }
    let Some(mut server) = Server::start_free() else {
        return;
    };
    let port = server.port();
    server.ready().await;
    let prefix = unique_prefix();
    let redis = RedisStore::connect(&server.url())
        .await
        .unwrap()
        .prefix(&prefix)
        .timeout(Duration::from_millis(200));
    let layer = LockoutLayer::builder(max(3))
        .key(by_client as ByClient)
        .redis(redis)
        .build()
        .unwrap();
    let tracker = layer.tracker().clone();
    let (svc, calls) = guarded(layer);
    let send = |client: &str| {
        let svc = svc.clone();
        let req = request(client, "invalid");
        async move {
            tokio::time::timeout(Duration::from_secs(5), svc.oneshot(req))
                .await
                .expect("the layer kept answering")
                .unwrap()
                .status()
        }
    };

    assert_eq!(send("before").await, StatusCode::UNAUTHORIZED);
    assert_eq!(tracker.stats().fallbacks, 0);

    server.kill();
    for _ in 0..3 {
        assert_eq!(send("during").await, StatusCode::UNAUTHORIZED);
    }
    // Locked out locally while redis is away.
    assert_eq!(send("during").await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    assert!(tracker.stats().fallbacks > 0);

    // Back on the same port: shared state resumes.
    let server = Server::start(port).unwrap();
    server.ready().await;
    let client = redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let mut n = 0;
    let resumed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            n += 1;
            send(&format!("after-{n}")).await;
            let keys: Vec<String> = con.keys(format!("{prefix}*after-*")).await.unwrap();
            if !keys.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(resumed.is_ok(), "the tracker never went back to redis");
}

// ---------------------------------------------------------------- D4

/// A server of the test's own (pausing it must not disturb other tests),
/// an admin connection to it, and a store factory sharing one prefix.
struct Own {
    server: Server,
    admin: ::redis::aio::MultiplexedConnection,
    prefix: String,
}

impl Own {
    async fn start() -> Option<Self> {
        redis_url()?;
        let server = Server::start_free()?;
        server.ready().await;
        let client = ::redis::Client::open(server.url()).unwrap();
        let admin = client.get_multiplexed_async_connection().await.unwrap();
        Some(Self {
            server,
            admin,
            prefix: unique_prefix(),
        })
    }

    async fn store(&self, timeout: Duration) -> RedisStore {
        RedisStore::connect(&self.server.url())
            .await
            .unwrap()
            .prefix(&self.prefix)
            .timeout(timeout)
    }

    /// A tracker allowing one guess at a time, with a warm connection.
    async fn tracker(&self, timeout: Duration, lease: Duration) -> Tracker<String> {
        let store = self.store(timeout).await.reservation_lease(lease);
        let tracker = shared_tracker(max(1), store);
        drop(tracker.attempt(key("warm-up")).await.unwrap());
        tracker
    }

    /// Every client of the server waits for `ms` milliseconds.
    async fn pause(&mut self, ms: u64) {
        ::redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(ms)
            .arg("ALL")
            .exec_async(&mut self.admin)
            .await
            .unwrap();
    }

    /// Admission credits of `k` granted to the replicas in Redis (one
    /// `credits:deadline:grant` field per replica).
    async fn credits(&mut self, k: &str) -> i64 {
        let grants: HashMap<String, String> = self
            .admin
            .hgetall(format!("{}{{{k:?}}}:c", self.prefix))
            .await
            .unwrap();
        grants
            .values()
            .map(|grant| grant.split(':').next().unwrap().parse::<i64>().unwrap())
            .sum()
    }

    /// Failures of `k` counted in Redis.
    async fn failures(&mut self, k: &str) -> Option<i64> {
        self.admin
            .get(format!("{}{{{k:?}}}:f", self.prefix))
            .await
            .unwrap()
    }

    /// Scripts the server ran so far.
    async fn scripts_run(&mut self) -> u64 {
        command_calls(&mut self.admin, |name| name == "evalsha" || name == "eval").await
    }
}

const FAST: Duration = Duration::from_millis(100);
const SLOW: Duration = Duration::from_secs(2);
const LEASE: Duration = Duration::from_secs(10);

/// Admitted well before the lease of a leaked reservation could end.
async fn admitted_at_once(
    tracker: &Tracker<String>,
    k: &str,
) -> portcullis::lockout::Attempt<String> {
    // Half the lease: a loaded machine may take a few retries of 250 ms.
    tokio::time::timeout(LEASE / 2, tracker.attempt(key(k)))
        .await
        .expect("a leaked reservation holds the only slot")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_a_reservation_whose_reply_came_too_late_is_released() {
    // D4: the reply is slower than the client timeout, so the replica
    // decides locally while Redis still runs the admission.
    let Some(mut own) = Own::start().await else {
        return;
    };
    let late = own.tracker(FAST, LEASE).await;
    let other = own.tracker(SLOW, LEASE).await;
    own.pause(400).await;
    drop(late.attempt(key("k")).await.unwrap());
    assert!(
        late.stats().fallbacks > 0,
        "the reply was expected to be late"
    );

    let attempt = admitted_at_once(&other, "k").await;
    assert_eq!(other.stats().fallbacks, 0);
    assert_eq!(own.credits("k").await, 1, "only the new grant");
    drop(attempt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_a_request_dropped_during_its_round_trip_releases_its_reservation() {
    // D4: the client goes away while its admission is on the wire.
    let Some(mut own) = Own::start().await else {
        return;
    };
    let dropped = own.tracker(SLOW, LEASE).await;
    let other = own.tracker(SLOW, LEASE).await;
    own.pause(400).await;
    let gone = tokio::time::timeout(Duration::from_millis(50), dropped.attempt(key("k"))).await;
    assert!(gone.is_err(), "the admission was expected to be in flight");

    let attempt = admitted_at_once(&other, "k").await;
    assert_eq!(own.credits("k").await, 1, "only the new grant");
    drop(attempt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_a_reservation_nobody_releases_frees_itself_after_its_lease() {
    // D4: a replica that dies holding a reservation; the others' traffic
    // does not keep it alive.
    let Some(own) = Own::start().await else {
        return;
    };
    let lease = Duration::from_millis(600);
    let dead = own.tracker(SLOW, lease).await;
    let other = own.tracker(SLOW, lease).await;
    std::mem::forget(dead.attempt(key("k")).await.unwrap());

    let started = std::time::Instant::now();
    let attempt = admitted_at_once(&other, "k").await;
    let waited = started.elapsed();
    assert!(
        waited >= lease / 2,
        "admitted after {waited:?}, before the lease ended"
    );
    assert!(waited < lease * 3, "admitted after {waited:?}");
    drop(attempt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_waiting_requests_ask_redis_at_most_once_per_250_ms_each() {
    // D4: the slot is held by another replica, so no local release wakes
    // the waiters; they must not poll Redis in a loop.
    let Some(mut own) = Own::start().await else {
        return;
    };
    let holder = own.tracker(SLOW, LEASE).await;
    let waiting = own.tracker(SLOW, LEASE).await;
    let held = holder.attempt(key("k")).await.unwrap();
    let before = own.scripts_run().await;
    let started = std::time::Instant::now();
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let waiting = waiting.clone();
            tokio::spawn(async move { waiting.attempt(key("k")).await.map(drop) })
        })
        .collect();
    crate::support::redis::until("a second of waiting", || {
        started.elapsed() >= Duration::from_secs(1)
    })
    .await;
    let scripts = own.scripts_run().await - before;
    let elapsed = started.elapsed();
    let bound = 20 * (elapsed.as_millis() as u64 / 250 + 2);
    assert!(
        scripts <= bound,
        "{scripts} scripts in {elapsed:?} for 20 waiters"
    );
    // One request of the replica asks for all its waiters (D5).
    assert!(scripts >= 1, "the waiters never asked ({scripts})");
    held.failed();
    for waiter in waiters {
        waiter.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d4_a_failure_whose_recording_is_retried_counts_once() {
    // D4: the first recording's reply is late; the retry must not count
    // the failure again, in Redis or locally.
    let Some(mut own) = Own::start().await else {
        return;
    };
    let store = own.store(FAST).await;
    let tracker = shared_tracker(max(3), store);
    // The recording script is loaded first, so the late call runs whole
    // (an unknown script would cost a second round trip).
    tracker.attempt(key("warm")).await.unwrap().failed();
    tokio::time::timeout(Duration::from_secs(5), async {
        while own.failures("warm").await.is_none() {}
    })
    .await
    .expect("the warm-up failure reached redis");

    let attempt = tracker.attempt(key("k")).await.unwrap();
    let before = own.scripts_run().await;
    own.pause(300).await;
    assert!(matches!(attempt.failed(), FailureOutcome::Deferred));
    // The first call's reply comes after the timeout: wait until the
    // failure is in Redis and the retry has run too.
    tokio::time::timeout(Duration::from_secs(5), async {
        while own.failures("k").await.is_none() || own.scripts_run().await - before < 2 {}
    })
    .await
    .expect("the recording was never retried");
    assert_eq!(own.failures("k").await, Some(1));
    assert_eq!(tracker.failures(&key("k")), 0, "counted locally as well");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b13_d2_an_account_key_shared_in_redis_locks_the_account_on_every_replica() {
    // B13, D2: the keys of two replicas live in Redis; guesses from many
    // addresses through both replicas lock the account everywhere.
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let by_account = |parts: &Parts| -> Result<Option<String>, AuthRejection> {
        Ok(parts
            .headers
            .get("x-account")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned))
    };
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let layer = LockoutLayer::builder(max(100))
            .key(by_client as ByClient)
            .also_key(by_account, max(3))
            .redis(store(&url, &prefix).await)
            .build()
            .unwrap();
        replicas.push(guarded(layer));
    }
    let attempt = |client: String, account: &str, outcome: &str| {
        let mut req = request(&client, outcome);
        req.headers_mut()
            .insert("x-account", account.parse().unwrap());
        req
    };
    for n in 0..3 {
        let (svc, _) = &replicas[n % 2];
        let res = svc
            .clone()
            .oneshot(attempt(format!("10.1.0.{n}"), "alice", "invalid"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "guess {n}");
    }
    for (svc, calls) in &replicas {
        let before = calls.load(Ordering::SeqCst);
        let res = svc
            .clone()
            .oneshot(attempt("10.1.9.9".into(), "alice", "ok"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(calls.load(Ordering::SeqCst), before);
        let res = svc
            .clone()
            .oneshot(attempt("10.1.9.9".into(), "bob", "ok"))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b20_a_failure_after_an_early_release_reaches_redis_on_every_key() {
    // B20, D2: a failure recorded after its reservation was released
    // (behind the attacker's own valid token) reaches the shared store for
    // every key, so another replica refuses the keys too.
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let (svc, _, _, checks) =
        super::login::optional_login_with(true, builder(max(3)).redis(store(&url, &prefix).await));
    for i in 0..3 {
        let req = Request::post("/login")
            .header("x-client", "mallory")
            .header("x-user", "alice")
            .header(header::AUTHORIZATION, "Bearer mallory-token")
            .body(format!("guess{i}"))
            .unwrap();
        assert_eq!(
            svc.clone().oneshot(req).await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(checks.load(Ordering::SeqCst), 3);
    // Another replica, with nothing in its own tables.
    let other = [
        shared_tracker(max(3), store(&url, &prefix).await),
        shared_tracker(max(3), store(&url, &prefix).await),
    ];
    for (tracker, key) in other.iter().zip(["mallory", "alice"]) {
        let refused = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match tracker.attempt(key.to_owned()).await {
                    Err(refused) => return refused,
                    // Not recorded yet: give the reservation back and ask
                    // again.
                    Ok(attempt) => drop(attempt),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the failures of {key} never reached redis"));
        assert!(matches!(
            refused,
            portcullis::lockout::Refused::LockedOut(_)
        ));
    }
}

// ---------------------------------------------------------------- D5

impl Own {
    /// Commands the server ran so far, scripts' inner commands included,
    /// not counting the `INFO` calls that read it.
    async fn commands_run(&mut self) -> u64 {
        command_calls(&mut self.admin, |name| name != "info").await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_a_returning_valid_client_costs_no_redis_command() {
    // D5: the first contact costs one round trip (one script); then 1000
    // valid attempts are admitted and released on the replica's credits,
    // well under 0.05 commands each.
    let Some(mut own) = Own::start().await else {
        return;
    };
    let tracker = own.tracker(SLOW, LEASE).await;
    tracker.attempt(key("first")).await.unwrap().succeeded();
    let scripts = own.scripts_run().await;
    for n in 0..10 {
        tracker
            .attempt(format!("new-{n}"))
            .await
            .unwrap()
            .succeeded();
    }
    tracker.attempt(key("returning")).await.unwrap().succeeded();
    let first_contacts = own.scripts_run().await - scripts;
    assert_eq!(first_contacts, 11, "one script per new client");

    let commands = own.commands_run().await;
    for _ in 0..1000 {
        tracker.attempt(key("returning")).await.unwrap().succeeded();
    }
    let spent = own.commands_run().await - commands;
    assert!(
        spent <= 50,
        "{spent} redis commands for 1000 valid attempts"
    );
    assert_eq!(tracker.stats().fallbacks, 0);
    assert_eq!(tracker.stats().leased, 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d5_a_wrong_guess_is_answered_before_its_failure_reaches_redis() {
    // D5: a failure consumes a credit already counted in Redis, so its
    // answer waits for no round trip; it is recorded in the background.
    let Some(mut own) = Own::start().await else {
        return;
    };
    let store = own.store(SLOW).await;
    let tracker = shared_tracker(max(3), store);
    tracker.attempt(key("guess")).await.unwrap().succeeded();
    // Redis stops answering: the attempt is still admitted on the credits
    // held, and its failure answered at once.
    own.pause(500).await;
    let started = std::time::Instant::now();
    let attempt = tracker.attempt(key("guess")).await.unwrap();
    assert!(matches!(attempt.failed(), FailureOutcome::Deferred));
    assert!(started.elapsed() < Duration::from_millis(200));
    let counted = format!("{}{{{:?}}}:f", own.prefix, "guess");
    tokio::time::timeout(Duration::from_secs(5), async {
        // The admin connection is paused too: its errors mean "not yet".
        while own
            .admin
            .get::<_, Option<i64>>(&counted)
            .await
            .ok()
            .flatten()
            != Some(1)
        {}
    })
    .await
    .expect("the failure reached redis once it answered again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d2_d5_credits_held_by_one_replica_come_back_when_another_needs_them() {
    // D5: one credit in all (max 1), held idle by one replica; the other
    // replica's client is served within a fraction of the lease, because
    // the holder gives back what it does not use when told.
    let Some(own) = Own::start().await else {
        return;
    };
    let holder = own.tracker(SLOW, LEASE).await;
    let other = own.tracker(SLOW, LEASE).await;
    holder.attempt(key("nat")).await.unwrap().succeeded();
    let started = std::time::Instant::now();
    let attempt = admitted_at_once(&other, "nat").await;
    assert!(started.elapsed() < LEASE / 4, "{:?}", started.elapsed());
    drop(attempt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b6_d2_bad_passwords_on_a_login_handler_over_two_replicas_stop_at_max_failures() {
    // B6, D2, D5: 32 parallel bad passwords on each of two replicas; the
    // login handler (a plain 401) is reached exactly max_failures times,
    // those all at once (each replica holds half the credits), and no more
    // while they are checked.
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let handled = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let layer = LockoutLayer::builder(max(4))
            .key(by_client as ByClient)
            .redis(store(&url, &prefix).await)
            .build()
            .unwrap();
        let (handled, gate) = (Arc::clone(&handled), Arc::clone(&gate));
        let login = service_fn(move |_: Request<String>| {
            let (handled, gate) = (Arc::clone(&handled), Arc::clone(&gate));
            async move {
                handled.fetch_add(1, Ordering::SeqCst);
                // The password is checked once the test lets it.
                gate.acquire().await.unwrap().forget();
                Ok::<_, Infallible>(Response::builder().status(401).body(String::new()).unwrap())
            }
        });
        replicas.push(BoxCloneService::new(layer.layer(login)));
    }
    let mut tasks = Vec::new();
    for svc in &replicas {
        for _ in 0..32 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(async move {
                let login = Request::builder()
                    .method("POST")
                    .uri("/login")
                    .header("x-client", "attacker")
                    .body("username=alice&password=guess".to_owned())
                    .unwrap();
                svc.oneshot(login).await.unwrap().status()
            }));
        }
    }
    crate::support::redis::until("four guesses in the handler at once", || {
        handled.load(Ordering::SeqCst) >= 4
    })
    .await;
    gate.add_permits(64);
    let mut unauthorized = 0;
    for task in tasks {
        if task.await.unwrap() == StatusCode::UNAUTHORIZED {
            unauthorized += 1;
        }
    }
    assert_eq!(handled.load(Ordering::SeqCst), 4);
    assert_eq!(unauthorized, 4);
}
