//! What a refresh costs (feature `sessions`), beside baselines in the same
//! run:
//!
//! 1. `sign_jwt`: signing an HS256 access token with the same claims
//!    (`jsonwebtoken::encode`), the least any refresh does.
//! 2. `refresh/memory`: `Sessions::refresh_with` on the in-memory store:
//!    the token parsed and hashed, the revocation list checked twice, 256
//!    random bits and a `jti` drawn, the successor wrapped, the rotation
//!    (and the session's last use recorded for the list and the cap), the
//!    access token signed, the cookie built. The subject has 32 live
//!    sessions (its cap): a refresh does not depend on them.
//! 3. `refresh/redis` (with `PORTCULLIS_REDIS_URL`, feature `redis`): the
//!    same with the rotation as one Lua script, beside `redis/ping`, one
//!    round trip to the same server.
//!
//! ```text
//! cargo bench --bench sessions --features sessions -- --warm-up-time 1 --measurement-time 3
//! redis-server --port 6390 --save '' --appendonly no &
//! PORTCULLIS_REDIS_URL=redis://127.0.0.1:6390 cargo bench --bench sessions --features sessions,redis \
//!     -- --warm-up-time 1 --measurement-time 3
//! ```
#![allow(missing_docs)]

use std::{
    future::Future,
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::{SystemTime, UNIX_EPOCH},
};

use criterion::{Criterion, criterion_group};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis::{
    revoke::Revocations,
    session::{AccessTokens, Sessions},
};
use serde::Serialize;

const SECRET: &[u8] = b"a-bench-secret-of-at-least-32-bytes!!";

/// Polls a future that is ready at once (the in-memory store never waits).
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the in-memory store answers at once"),
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    sid: &'a str,
    jti: &'a str,
    iat: u64,
    exp: u64,
    iss: &'a str,
    aud: &'a str,
}

fn sign_jwt(c: &mut Criterion) {
    let key = EncodingKey::from_secret(SECRET);
    let header = Header::new(Algorithm::HS256);
    c.bench_function("sign_jwt", |b| {
        b.iter(|| {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let claims = Claims {
                sub: "alice",
                sid: "KiDEbpbHRosuvktwDFFijg",
                jti: "aIeQrRfuCxwU8O5pG0i1MN",
                iat: now,
                exp: now + 900,
                iss: "portcullis",
                aud: "portcullis",
            };
            black_box(jsonwebtoken::encode(&header, &claims, &key).unwrap())
        })
    });
}

fn refresh_memory(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let sessions = Sessions::builder(AccessTokens::hs256(SECRET).unwrap(), &Revocations::new())
        .build()
        .unwrap();
    for _ in 0..31 {
        ready(sessions.sign_in("alice")).unwrap();
    }
    let mut token = ready(sessions.sign_in("alice"))
        .unwrap()
        .refresh_token()
        .to_owned();
    c.bench_function("refresh/memory", |b| {
        b.iter(|| {
            let grant = ready(sessions.refresh_with(&token)).unwrap();
            token = grant.refresh_token().to_owned();
            black_box(grant)
        })
    });
}

#[cfg(feature = "redis")]
fn refresh_redis(c: &mut Criterion) {
    use portcullis::RedisStore;

    let Ok(url) = std::env::var("PORTCULLIS_REDIS_URL") else {
        eprintln!("refresh/redis skipped: set PORTCULLIS_REDIS_URL");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (sessions, mut token, mut ping) = runtime.block_on(async {
        let store = RedisStore::connect(&url)
            .await
            .expect("redis is reachable")
            .prefix(format!("portcullis-bench:{nanos}:session:"));
        let sessions = Sessions::builder(AccessTokens::hs256(SECRET).unwrap(), &Revocations::new())
            .redis(store)
            .build()
            .unwrap();
        for _ in 0..31 {
            sessions.sign_in("alice").await.unwrap();
        }
        let token = sessions
            .sign_in("alice")
            .await
            .unwrap()
            .refresh_token()
            .to_owned();
        let client = redis::Client::open(url.as_str()).unwrap();
        let ping = redis::aio::ConnectionManager::new(client).await.unwrap();
        (sessions, token, ping)
    });
    c.bench_function("redis/ping", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let pong: String = redis::cmd("PING").query_async(&mut ping).await.unwrap();
                black_box(pong)
            })
        })
    });
    c.bench_function("refresh/redis", |b| {
        b.iter(|| {
            let grant = runtime
                .block_on(sessions.refresh_with(&token))
                .expect("redis answers");
            token = grant.refresh_token().to_owned();
            black_box(grant)
        })
    });
}

#[cfg(not(feature = "redis"))]
fn refresh_redis(_: &mut Criterion) {
    eprintln!("refresh/redis skipped: build with --features redis");
}

/// `PORTCULLIS_BENCH_REFRESHES=N`: `N` in-memory refreshes and exit, for
/// `valgrind --tool=callgrind` (the instructions of a refresh are the
/// difference between two counts, divided by the difference of `N`).
fn count_refreshes(n: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let sessions = Sessions::builder(AccessTokens::hs256(SECRET).unwrap(), &Revocations::new())
        .build()
        .unwrap();
    for _ in 0..31 {
        ready(sessions.sign_in("alice")).unwrap();
    }
    let mut token = ready(sessions.sign_in("alice"))
        .unwrap()
        .refresh_token()
        .to_owned();
    for _ in 0..n {
        let grant = ready(sessions.refresh_with(&token)).unwrap();
        token = grant.refresh_token().to_owned();
        black_box(grant);
    }
}

criterion_group!(benches, sign_jwt, refresh_memory, refresh_redis);

fn main() {
    if let Some(n) = std::env::var("PORTCULLIS_BENCH_REFRESHES")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        count_refreshes(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
