//! Connecting: each constructor refuses the other kind of server, and an
//! error never shows the password of a URL (L1).

use super::*;
use crate::support::redis::{cluster_urls, redis_url};

#[tokio::test]
async fn connect_refuses_a_cluster_node_and_connect_cluster_a_plain_server() {
    // D8: a node of a cluster answers only for its own slots; every other
    // key would fail and quietly fall back.
    let Some(urls) = cluster_urls() else { return };
    let Some(url) = redis_url() else { return };
    let error = RedisStore::connect(&urls[0]).await.unwrap_err().to_string();
    assert!(error.contains("use RedisStore::connect_cluster"), "{error}");
    assert!(RedisStore::connect_cluster([url.as_str()]).await.is_err());
    assert!(
        RedisStore::connect_cluster(Vec::<String>::new())
            .await
            .is_err()
    );
    assert!(RedisStore::connect_cluster(&urls).await.is_ok());
    assert!(RedisStore::connect(&url).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_store_starts_and_decides_while_a_named_node_is_unreachable() {
    // D8: naming several nodes lets a replica start while one is down.
    let Some(urls) = cluster_urls() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut named = vec![format!("redis://127.0.0.1:{port}")];
    named.extend(urls.iter().cloned());
    let prefix = crate::support::redis::unique_prefix();
    let store = RedisStore::connect_cluster(&named)
        .await
        .expect("the reachable nodes are enough")
        .prefix(&prefix)
        .timeout(Duration::from_secs(1));
    let tracker = shared_tracker(max(1), store);
    fail(&tracker, "mallory", 1).await;
    let other = crate::support::redis::cluster_store(&urls, &prefix).await;
    let other = shared_tracker(max(1), other);
    let started = Instant::now();
    while !locked_out(&other, "mallory").await {
        assert!(started.elapsed() < Duration::from_secs(5), "never shared");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tracker.stats().fallbacks, 0);
}

#[tokio::test]
async fn a_connection_error_names_the_node_never_the_password() {
    // L1
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://ops:hunter2-canary@127.0.0.1:{port}");
    let errors = [
        RedisStore::connect(&url).await.unwrap_err(),
        RedisStore::connect_cluster([&url]).await.unwrap_err(),
        RedisStore::connect("redis://ops:hunter2-canary@[::1")
            .await
            .unwrap_err(),
    ];
    for error in errors {
        let (shown, debug) = (error.to_string(), format!("{error:?}"));
        assert!(!shown.contains("hunter2-canary"), "{shown}");
        assert!(!debug.contains("hunter2-canary"), "{debug}");
    }
    let shown = RedisStore::connect(&url).await.unwrap_err().to_string();
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
}
