//! Operator unlocks reach every replica within a second (V2), against a
//! real redis-server. `PORTCULLIS_REDIS_URL` names one; without it these
//! tests say they are skipped, except in CI, where that fails.

use tokio::time::{Instant, timeout};

use super::*;

use crate::support::redis::{redis_url, shared_tracker, store, unique_prefix, until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlock_on_one_replica_lifts_the_lockout_on_every_replica_within_a_second() {
    // V2, B7
    let Some(url) = redis_url() else { return };
    let prefix = unique_prefix();
    let policy = Policy::builder().max_failures(2).build().unwrap();
    let a = shared_tracker(policy.clone(), store(&url, &prefix).await);
    let b = shared_tracker(policy, store(&url, &prefix).await);
    for _ in 0..2 {
        a.attempt(key("mallory")).await.unwrap().failed();
    }
    // B learns the lockout from redis (failures are recorded in the
    // background) and caches it.
    timeout(Duration::from_secs(10), async {
        while let Ok(attempt) = b.attempt(key("mallory")).await {
            drop(attempt);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("b sees the lockout");
    assert!(b.check(&key("mallory")).is_err(), "cached on b");
    // A learns it from the reply to its own recording, in the background.
    until("a to cache the lockout", || {
        a.check(&key("mallory")).is_err()
    })
    .await;

    let unlocked = Instant::now();
    assert!(a.unlock(&key("mallory")));
    until("b to lift the lockout", || b.check(&key("mallory")).is_ok()).await;
    assert!(unlocked.elapsed() < Duration::from_secs(1));
    assert!(b.attempt(key("mallory")).await.is_ok());
}
