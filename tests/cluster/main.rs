//! Several replicas over a Redis Cluster (D8, with D2 and V2): every
//! decision's keys in one slot, feeds reaching every replica within a
//! second, `MOVED` and `ASK` followed while a slot moves, and a master that
//! goes down putting only its own keys on the local fallback.
//!
//! `PORTCULLIS_REDIS_CLUSTER` names the nodes of a shared cluster (`.ci/run`
//! starts one); tests that stop nodes or move slots start a cluster of their
//! own. Without them these tests say they are skipped, except in CI, where
//! that fails.
#![cfg(feature = "redis")]

#[path = "../support/mod.rs"]
mod support;

mod connect;
mod feeds;
mod limits;
mod masters;

use std::time::Duration;

use portcullis::{
    Credential, CredentialSource, RedisStore,
    lockout::{Policy, Tracker},
    revoke::{Revocable, Revocations},
};
use tokio::time::{Instant, timeout};

use crate::support::redis::{shared_tracker, slot_of};

/// A limiter key.
fn key(s: &str) -> String {
    s.to_owned()
}

fn max(n: u32) -> Policy {
    Policy::builder().max_failures(n).build().unwrap()
}

/// The cluster slot of limiter key `k` of a store with `prefix`.
async fn slot(con: &mut ::redis::aio::MultiplexedConnection, prefix: &str, k: &str) -> u16 {
    slot_of(con, &format!("{prefix}{{{:?}}}", key(k))).await
}

/// A caller of the revocation tests: `alice-*` secrets are alice's.
#[derive(Clone)]
struct User(String);

impl Revocable for User {
    fn subject(&self) -> Option<&str> {
        Some(&self.0)
    }
}

/// Whether `revocations` refuses `secret` (alice's) as revoked.
fn refused(revocations: &Revocations, secret: &str) -> bool {
    let credential = Credential::new(secret, CredentialSource::Bearer);
    revocations
        .check(&credential, &User("alice".into()))
        .is_err()
}

/// Waits until `revocations` has read the store.
async fn in_sync(revocations: &Revocations) {
    timeout(Duration::from_secs(10), revocations.synced())
        .await
        .expect("the list catches up with redis");
}

/// Polls (real time: other processes decide) until `done`, for at most
/// `within`; how long it took.
async fn within(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

/// `n` failed attempts of `k` on `tracker` (recorded in the background).
async fn fail(tracker: &Tracker<String>, k: &str, n: u32) {
    for _ in 0..n {
        tracker.attempt(key(k)).await.expect("admitted").failed();
    }
}

/// Whether `tracker` refuses `k` now.
async fn locked_out(tracker: &Tracker<String>, k: &str) -> bool {
    match tracker.attempt(key(k)).await {
        Ok(attempt) => {
            drop(attempt);
            false
        }
        Err(_) => true,
    }
}

/// Connects to the cluster of `urls` with `prefix` and `timeout`.
async fn store(urls: &[String], prefix: &str, timeout: Duration) -> RedisStore {
    RedisStore::connect_cluster(urls)
        .await
        .expect("the cluster is reachable")
        .prefix(prefix)
        .timeout(timeout)
}
