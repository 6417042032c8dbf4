//! A real redis-server for the multi-replica tests.
//!
//! `PORTCULLIS_REDIS_URL` names the shared server (`.ci/run` starts one);
//! without it the tests say they are skipped, except in CI, where that fails.
#![allow(dead_code)] // each test binary uses its own subset

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, SystemTime},
};

use portcullis::lockout::RedisStore;

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
