//! A real redis-server for the multi-replica tests, and Redis Clusters.
//!
//! `PORTCULLIS_REDIS_URL` names the shared server and
//! `PORTCULLIS_REDIS_CLUSTER` the nodes of a shared cluster (`.ci/run`
//! starts both); without them the tests say they are skipped, except in CI,
//! where that fails. A test that stops nodes starts a [`Cluster`] of its own.
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime},
};

use http::request::Parts;
use portcullis::{
    AuthRejection, RedisStore,
    lockout::{LockoutLayer, Policy, Tracker},
};

/// The shared server's URL, or `None` (with a notice) when tests should skip.
///
/// # Panics
///
/// In CI (`CI=true`) without a URL: the Redis tests must run there.
pub(crate) fn redis_url() -> Option<String> {
    match std::env::var("PORTCULLIS_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must set PORTCULLIS_REDIS_URL for the Redis tests")
        }
        Err(_) => {
            eprintln!("skipped: set PORTCULLIS_REDIS_URL to run the Redis tests");
            None
        }
    }
}

/// A tracker of string keys whose state is shared through `store`: the
/// tracker of a lockout built with `redis(store)`, used directly.
pub(crate) fn shared_tracker(policy: Policy, store: RedisStore) -> Tracker<String> {
    fn by_header(parts: &Parts) -> Result<String, AuthRejection> {
        parts
            .headers
            .get("x-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| AuthRejection::new(portcullis::reject::RejectionKind::Malformed))
    }
    LockoutLayer::builder(policy)
        .key(by_header as fn(&Parts) -> Result<String, AuthRejection>)
        .redis(store)
        .build()
        .expect("a lockout on Redis")
        .tracker()
        .clone()
}

/// A key prefix no other run or test uses.
pub(crate) fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("portcullis-test:{}:{nanos}:{n}:", std::process::id())
}

/// A store on `url` with its own prefix and a generous timeout.
pub(crate) async fn store(url: &str, prefix: &str) -> RedisStore {
    RedisStore::connect(url)
        .await
        .expect("redis is reachable")
        .prefix(prefix)
        .timeout(Duration::from_secs(1))
}

/// Waits (up to 10 s) for something a real server or a background write
/// does; these tests talk to a real process, so tokio time cannot stand in.
pub(crate) async fn until(what: &str, mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// A redis-server of the test's own, so that it can be killed and restarted.
pub(crate) struct Server {
    child: Child,
    port: u16,
}

impl Server {
    /// Starts one on a free loopback port; `None` (a skip, or a failure in
    /// CI) when redis-server is not installed.
    pub(crate) fn start_free() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Self::start(port);
        if server.is_none() {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "redis-server is missing"
            );
            eprintln!("skipped: redis-server is not installed");
        }
        server
    }

    /// Starts one on `port`.
    pub(crate) fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self { child, port })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Waits until the server accepts connections.
    pub(crate) async fn ready(&self) {
        until("redis-server to accept connections", || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        })
        .await;
    }

    /// Stops the server without ending it (`SIGSTOP`): connections hang,
    /// as with a server that is paused or unreachable; data is kept.
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (`SIGCONT`).
    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} failed");
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shared cluster's node URLs, or `None` (with a notice) when tests
/// should skip.
///
/// # Panics
///
/// In CI (`CI=true`) without them: the cluster tests must run there.
pub(crate) fn cluster_urls() -> Option<Vec<String>> {
    match std::env::var("PORTCULLIS_REDIS_CLUSTER") {
        Ok(urls) => Some(urls.split(',').map(|u| u.trim().to_owned()).collect()),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must set PORTCULLIS_REDIS_CLUSTER for the Redis Cluster tests")
        }
        Err(_) => {
            eprintln!("skipped: set PORTCULLIS_REDIS_CLUSTER to run the Redis Cluster tests");
            None
        }
    }
}

/// A store on the cluster of `urls` with its own prefix and a generous
/// timeout.
pub(crate) async fn cluster_store(urls: &[String], prefix: &str) -> RedisStore {
    RedisStore::connect_cluster(urls)
        .await
        .expect("the cluster is reachable")
        .prefix(prefix)
        .timeout(Duration::from_secs(1))
}

/// A free loopback port whose cluster bus port (+10000) is free too.
fn free_cluster_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port < 55536 && TcpListener::bind(("127.0.0.1", port + 10000)).is_ok() {
            return port;
        }
    }
}

/// A Redis Cluster of the test's own, from `PORTCULLIS_REDIS_SERVER` (or
/// `redis-server` on the path): masters without replicas on free loopback
/// ports, the slots split evenly, `cluster-require-full-coverage no` (the
/// other masters answer while one is down) and a node timeout of one
/// second. Nodes can be stopped and started again with their slots.
pub(crate) struct Cluster {
    dir: PathBuf,
    ports: Vec<u16>,
    nodes: Vec<Option<Child>>,
}

impl Cluster {
    /// Starts `masters` nodes and joins them; `None` (a skip, or a failure
    /// in CI) when redis-server is not installed.
    pub(crate) async fn start(masters: usize) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!(
            "portcullis-cluster-{}",
            unique_prefix().replace(':', "-")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ports: Vec<u16> = (0..masters).map(|_| free_cluster_port()).collect();
        let mut cluster = Self {
            dir,
            nodes: ports.iter().map(|_| None).collect(),
            ports,
        };
        for node in 0..masters {
            if !cluster.spawn(node) {
                assert_ne!(
                    std::env::var("CI").as_deref(),
                    Ok("true"),
                    "redis-server is missing"
                );
                eprintln!("skipped: redis-server is not installed");
                return None;
            }
        }
        for node in 0..masters {
            cluster.ready(node).await;
        }
        let per_node = 16384 / masters;
        for node in 0..masters {
            let first = node * per_node;
            let last = if node + 1 == masters {
                16383
            } else {
                first + per_node - 1
            };
            let mut con = cluster.admin(node).await;
            ::redis::cmd("CLUSTER")
                .arg("SET-CONFIG-EPOCH")
                .arg(node + 1)
                .exec_async(&mut con)
                .await
                .unwrap();
            ::redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(first)
                .arg(last)
                .exec_async(&mut con)
                .await
                .unwrap();
        }
        let mut first = cluster.admin(0).await;
        for &port in &cluster.ports[1..] {
            ::redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(port)
                .exec_async(&mut first)
                .await
                .unwrap();
        }
        for node in 0..masters {
            cluster.until_ok(node).await;
        }
        Some(cluster)
    }

    fn spawn(&mut self, node: usize) -> bool {
        let port = self.ports[node].to_string();
        let server = std::env::var("PORTCULLIS_REDIS_SERVER").unwrap_or("redis-server".into());
        let config = self.dir.join(format!("nodes-{port}.conf"));
        let child = Command::new(server)
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(&config)
            .args(["--cluster-node-timeout", "1000"])
            .args(["--cluster-require-full-coverage", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match child {
            Ok(child) => {
                self.nodes[node] = Some(child);
                true
            }
            Err(_) => false,
        }
    }

    async fn ready(&self, node: usize) {
        let port = self.ports[node];
        until("a cluster node to accept connections", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
    }

    /// Waits (up to 10 s) until `node` says the cluster is ok and knows
    /// every node.
    async fn until_ok(&self, node: usize) {
        let mut con = self.admin(node).await;
        let masters = self.ports.len();
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let info: String = ::redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut con)
                    .await
                    .unwrap();
                if info.contains("cluster_state:ok")
                    && info.contains(&format!("cluster_known_nodes:{masters}\r"))
                    && info.contains("cluster_slots_ok:16384")
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the cluster forms");
    }

    /// An admin connection to `node` alone, patient with a busy machine.
    pub(crate) async fn admin(&self, node: usize) -> ::redis::aio::MultiplexedConnection {
        let config = ::redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(10)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        ::redis::Client::open(self.url(node))
            .unwrap()
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .unwrap()
    }

    pub(crate) fn url(&self, node: usize) -> String {
        format!("redis://127.0.0.1:{}", self.ports[node])
    }

    pub(crate) fn urls(&self) -> Vec<String> {
        (0..self.ports.len()).map(|node| self.url(node)).collect()
    }

    /// The node that serves `slot`.
    pub(crate) fn node_of(&self, slot: u16) -> usize {
        let per_node = 16384 / self.ports.len();
        (usize::from(slot) / per_node).min(self.ports.len() - 1)
    }

    /// Kills `node`.
    pub(crate) fn stop(&mut self, node: usize) {
        if let Some(mut child) = self.nodes[node].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `node` again, on its port with its cluster configuration (so
    /// with its slots, though without its keys), and waits until it serves.
    pub(crate) async fn restart(&mut self, node: usize) {
        assert!(self.spawn(node), "redis-server starts again");
        self.ready(node).await;
        self.until_ok(node).await;
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in 0..self.nodes.len() {
            self.stop(node);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cluster slot of a Redis key (CRC16 of its hash tag), as Redis
/// computes it.
pub(crate) async fn slot_of(con: &mut ::redis::aio::MultiplexedConnection, key: &str) -> u16 {
    ::redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(con)
        .await
        .unwrap()
}

/// Calls of the commands `counted` picks by name (`evalsha`, `hget`, …),
/// as `INFO commandstats` reports them: scripts' inner commands included.
pub(crate) async fn command_calls(
    con: &mut ::redis::aio::MultiplexedConnection,
    counted: impl Fn(&str) -> bool,
) -> u64 {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            if !counted(name) {
                return None;
            }
            stats
                .split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
