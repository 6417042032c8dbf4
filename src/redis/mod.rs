//! State shared by several replicas through Redis (feature `redis`): the
//! connection both limiters use, and the fallback to local state while
//! Redis does not answer.

mod fallback;
mod link;
mod prefetch;
mod pubsub;
pub(crate) mod unlock;

use std::{fmt, sync::Arc, time::Duration};

use ::redis::{
    Client, FromRedisValue, IntoConnectionInfo, RedisError, Script, ScriptInvocation,
    aio::{ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    io::tcp::TcpSettings,
};

pub(crate) use self::fallback::{Fallback, Health, Primary};
use self::link::Link;
pub(crate) use self::prefetch::{KeySpace, Prefetch, Prefetcher, Prefetchers};
pub(crate) use self::pubsub::{Handler, Nodes, keep};
pub(crate) use self::unlock::Unlocks;
use crate::future::BoxFuture;

/// How long connecting to a node, and any one reply, may take inside the
/// Redis client; every call also has the store's own [timeout](RedisStore::timeout).
const CLIENT_TIMEOUT: Duration = Duration::from_millis(500);

/// Redis, a single node or a Redis Cluster, that holds the state shared by
/// several replicas: lockouts, rate limits, revocations and sessions.
///
/// Connect with [`connect`](Self::connect) (one node) or
/// [`connect_cluster`](Self::connect_cluster) (a Redis Cluster), then hand
/// the store (cloned: clones share one connection) the same way to every
/// component, through its builder's `redis` method:
/// [`LockoutBuilder::redis`](crate::lockout::LockoutBuilder::redis),
/// [`RateLimitBuilder::redis`](crate::rate_limit::RateLimitBuilder::redis),
/// [`RevocationsBuilder::redis`](crate::revoke::RevocationsBuilder::redis)
/// and `SessionsBuilder::redis` (feature `sessions`).
///
/// Redis is the authority, not the hot path: a lockout's replica admits
/// attempts against admission credits Redis granted it (never more than a
/// key has left), and a rate limiter spends tokens taken in batches, so a
/// returning client costs no round trip. Every grant, batch and failure is
/// one Lua script that checks and counts, and sets the TTLs of the keys it
/// touches, so a key never exists without a TTL and two replicas cannot
/// both take the last attempt. Lockouts,
/// failure windows, reservation leases and rate-limit state are timed by
/// the Redis server's clock (TTLs, `TIME`), so the replicas' clocks do not
/// matter.
///
/// Keys are `{prefix}{key}:…` with the limiter key in a hash tag, so a
/// key's entries share a cluster slot and every script touches one slot;
/// the prefix defaults to `portcullis:lockout:` for a lockout and
/// `portcullis:rate:` for a rate limiter. A limiter key is written with its
/// `Debug` form: never key on a credential. A prefix should hold no braces:
/// a hash tag in the prefix puts every key of the store in one slot, on one
/// master.
///
/// # Redis Cluster
///
/// A store made with [`connect_cluster`](Self::connect_cluster) sends each
/// script to the master of its keys' slot, follows `MOVED` and `ASK`
/// redirections while slots move (resharding, failover), and loads scripts
/// on a node that does not know them. Unlocks and revocations are
/// published with a plain `PUBLISH`, which the cluster carries to every
/// node: each listener subscribes on one of the nodes named when
/// connecting, and moves to the next one when its node is lost.
///
/// # When Redis fails
///
/// Every call has a timeout (default 100 ms). When Redis does not answer,
/// the limiter decides with its local in-memory state instead (never "no
/// limit"), logs a warning once, counts the fallback, and tries Redis again
/// a second later.
///
/// On a cluster this is decided per slot: when a master goes down, only
/// the keys of its slots are decided locally, each slot from its first
/// unanswered call on, and the keys of the other masters keep deciding
/// through Redis. Redis itself refuses every key once the cluster marks a
/// master as failed (`cluster-node-timeout`) unless the nodes run with
/// `cluster-require-full-coverage no`, or a replica takes over; with full
/// coverage required, every key falls back until then.
///
/// # Messages between replicas
///
/// The store opens a pub/sub connection per user (kept alive with a ping
/// every 250 ms, reopened when lost): [`Tracker::unlock`](crate::lockout::Tracker::unlock)
/// is published so that every replica forgets its cached lockout within a
/// second, and revocations (`RevocationsBuilder::redis`) reach every replica
/// the same way.
///
/// # Admission credits
///
/// A lockout's replica holds admission credits per key, granted by Redis
/// for a [lease](Self::reservation_lease) (default 10 s) and renewed in the
/// background while the key is in use. A replica that dies gives its
/// credits back when their lease ends; a grant whose answer never reached
/// the replica is given back when the replica can still send it, and
/// otherwise lapses with its lease; traffic of other replicas cannot keep
/// it alive. A replica that needs credits another one holds says so, and
/// the holder gives back what it does not use.
///
/// # A new client: one round trip through both limiters
///
/// A rate limiter and a lockout built on this store (or its clones) whose
/// keys are provably the same (both [`ClientIp`](crate::ClientIp), with the
/// same trusted proxies, forwarding header and prefixes) ask Redis together
/// on a key's first contact: when the rate limiter sends its script for a
/// key it holds no tokens of, the lockout's grant for that key goes out
/// right behind it on the same connection, so the first request of a new
/// client waits for one round trip, not one per layer. The lockout's
/// request then finds its credits granted, or waits for the grant under
/// way; it never sends a second one. Keyed otherwise (a closure, another
/// [`ClientIp`](crate::ClientIp) configuration), each layer asks on its own.
///
/// A request the rate limiter refuses may have started a grant: its
/// credits wait on this replica for the key's next request and come back
/// with their lease, or at once when another replica needs them, as any
/// idle grant does. Grants started ahead go through the same bounded table
/// as any other, at most one in flight per key; when the grant fails, the
/// key is decided locally for a while, as after any failed grant.
///
/// # Example
///
/// ```no_run
/// use portcullis::{RedisStore, lockout::{LockoutLayer, Policy}};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// // One node:
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.prefix("myapp:lockout:");
/// let lockout = LockoutLayer::builder(Policy::default()).redis(store).build()?;
///
/// // A Redis Cluster, named by some of its nodes:
/// let store = RedisStore::connect_cluster([
///     "redis://10.0.0.1:6379",
///     "redis://10.0.0.2:6379",
///     "redis://10.0.0.3:6379",
/// ])
/// .await?;
/// let lockout = LockoutLayer::builder(Policy::default()).redis(store).build()?;
/// # Ok(()) }
/// ```
#[must_use]
#[derive(Clone)]
pub struct RedisStore {
    link: Link,
    /// Where the pub/sub connections that carry unlocks and revocations to
    /// the other replicas go.
    nodes: Nodes,
    prefix: Option<String>,
    timeout: Duration,
    lease: Duration,
    /// The lockouts built on this store (and its clones), whose first
    /// round trip for a key a rate limiter on it starts with its own.
    prefetch: Arc<Prefetchers>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("cluster", &self.link.is_cluster())
            .field("nodes", &self.nodes.len())
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("reservation_lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// Connecting to Redis failed: a URL that does not parse, a server that
/// cannot be reached, or a server of the wrong kind (a cluster node given
/// to [`RedisStore::connect`], a server without cluster support given to
/// [`RedisStore::connect_cluster`]).
///
/// The message names the node by host and port, never by its URL, which
/// may hold a password.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot connect to redis: {message}")]
pub struct RedisConnectError {
    message: String,
}

impl RedisConnectError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    /// `error` of the Redis client, about `node`, without the secrets a URL
    /// may hold.
    fn client(node: &str, error: &RedisError, urls: &[&str]) -> Self {
        let mut detail = error.to_string();
        for url in urls {
            if let Some(password) = password_of(url) {
                detail = detail.replace(password, "***");
            }
        }
        Self::new(format!("{node}: {detail}"))
    }
}

/// The password of a `redis://user:password@host` URL, if any.
fn password_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    let password = userinfo.split_once(':')?.1;
    (!password.is_empty()).then_some(password)
}

/// The TCP settings of every connection: `TCP_NODELAY`, because commands
/// are pipelined. With Nagle's algorithm a command written while another
/// is unanswered waits for that answer (its ACK rides on it): two
/// scripts sent back to back would cost two round trips, not one.
fn tcp() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

/// A client for `url`, and its node as `host:port` for messages.
fn open(url: &str, urls: &[&str]) -> Result<(Client, String), RedisConnectError> {
    let invalid = |e: RedisError| RedisConnectError::client("an invalid redis url", &e, urls);
    let info = url.into_connection_info().map_err(invalid)?;
    let client = Client::open(info.set_tcp_settings(tcp())).map_err(invalid)?;
    let node = client.get_connection_info().addr().to_string();
    Ok((client, node))
}

impl RedisStore {
    /// Connects to the single Redis server at `url`
    /// (`redis://[user:password@]host:port[/db]`, or `rediss://` with TLS
    /// when the `redis` crate is built with it).
    ///
    /// # Errors
    ///
    /// When the URL is invalid, the server cannot be reached within half a
    /// second, or it is a node of a Redis Cluster (use
    /// [`connect_cluster`](Self::connect_cluster)).
    pub async fn connect(url: &str) -> Result<Self, RedisConnectError> {
        let (client, node) = open(url, &[url])?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CLIENT_TIMEOUT))
            .set_response_timeout(Some(CLIENT_TIMEOUT))
            .set_number_of_retries(1);
        let mut manager = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| RedisConnectError::client(&node, &e, &[url]))?;
        // A cluster node answers only for its own slots: every other key
        // would fail, and quietly fall back. (A server that does not let
        // this user run INFO is taken as it is.)
        let info: Option<String> = ::redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut manager)
            .await
            .ok();
        if info.is_some_and(|info| info.contains("cluster_enabled:1")) {
            return Err(RedisConnectError::new(format!(
                "{node} is a node of a redis cluster: use RedisStore::connect_cluster"
            )));
        }
        Ok(Self::new(Link::Node(manager), Arc::from([client])))
    }

    /// Connects to the Redis Cluster that `nodes` belong to (URLs as for
    /// [`connect`](Self::connect); naming every master, or several nodes,
    /// lets the store start and subscribe while some are down).
    ///
    /// The cluster's other nodes are found from the ones named. Scripts go
    /// to the master of their keys' slot; see [Redis Cluster](Self#redis-cluster).
    ///
    /// # Errors
    ///
    /// When `nodes` is empty, a URL is invalid, no node can be reached, or
    /// the servers are not a cluster (use [`connect`](Self::connect)).
    pub async fn connect_cluster<I>(nodes: I) -> Result<Self, RedisConnectError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let urls: Vec<String> = nodes.into_iter().map(|n| n.as_ref().to_owned()).collect();
        let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
        if urls.is_empty() {
            return Err(RedisConnectError::new("no cluster nodes were named"));
        }
        let mut clients = Vec::with_capacity(urls.len());
        let mut names = Vec::with_capacity(urls.len());
        for url in &urls {
            let (client, node) = open(url, &urls)?;
            clients.push(client);
            names.push(node);
        }
        let names = names.join(", ");
        let cluster = ClusterClientBuilder::new(
            clients
                .iter()
                .map(|client| client.get_connection_info().clone()),
        )
        .connection_timeout(CLIENT_TIMEOUT)
        .response_timeout(CLIENT_TIMEOUT)
        .tcp_settings(tcp())
        // A call has the store's timeout anyway: a redirection or a
        // reconnection is retried, briefly.
        .retries(2)
        .min_retry_wait(10)
        .max_retry_wait(100)
        .build()
        .map_err(|e| RedisConnectError::client(&names, &e, &urls))?;
        let connection = cluster
            .get_async_connection()
            .await
            .map_err(|e| RedisConnectError::client(&names, &e, &urls))?;
        Ok(Self::new(Link::Cluster(connection), clients.into()))
    }

    fn new(link: Link, nodes: Nodes) -> Self {
        Self {
            link,
            nodes,
            prefix: None,
            timeout: Duration::from_millis(100),
            lease: Duration::from_secs(10),
            prefetch: Arc::default(),
        }
    }

    /// The lockouts built on this store, by the keys they count.
    pub(crate) fn prefetchers(&self) -> &Arc<Prefetchers> {
        &self.prefetch
    }

    /// Sets the prefix of every key (default `portcullis:lockout:` for a
    /// lockout tracker, `portcullis:rate:` for a rate limiter).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Some(prefix.into());
        self
    }

    /// Sets the timeout of every Redis call (default 100 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets how long a lockout's admission credits live in Redis without a
    /// renewal (default 10 s, at least 1 ms).
    ///
    /// Credits that their replica never gave back (the replica died, or
    /// the release could not be sent) come back after this long. An
    /// attempt still undecided after this long (a login handler slower than
    /// the lease) no longer holds its credit, so the bound on parallel
    /// guesses holds for attempts that decide within the lease.
    pub fn reservation_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(1));
        self
    }
}

/// What every user of a [`RedisStore`] shares: the connection, the key
/// prefix and the timeout of a call.
#[derive(Clone)]
pub(crate) struct Connection {
    link: Link,
    nodes: Nodes,
    prefix: Arc<str>,
    timeout: Duration,
    pub(crate) lease: Duration,
}

impl Connection {
    pub(crate) fn new(store: RedisStore, default_prefix: &str) -> Self {
        Self {
            link: store.link,
            nodes: store.nodes,
            prefix: store.prefix.as_deref().unwrap_or(default_prefix).into(),
            timeout: store.timeout,
            lease: store.lease,
        }
    }

    /// The nodes to open a pub/sub connection on.
    pub(crate) fn client(&self) -> &Nodes {
        &self.nodes
    }

    /// Whether this is a connection to a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        self.link.is_cluster()
    }

    /// The timeout of a call (the sessions check their grace window
    /// against it).
    #[cfg(feature = "sessions")]
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The prefix of every key.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// This connection with another timeout per call.
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `{prefix}{key}`, the key in a hash tag so that a key's entries (this
    /// base and a suffix without braces) share a cluster slot.
    pub(crate) fn key_base(&self, key: &impl fmt::Debug) -> String {
        link::key_base(&self.prefix, key)
    }

    /// Runs `script`, with the keys and arguments `prepare` adds, within
    /// the timeout; `None` when Redis fails or does not answer in time.
    pub(crate) fn invoke<T>(
        &self,
        script: &Script,
        prepare: impl FnOnce(&mut ScriptInvocation<'_>) + Send + 'static,
    ) -> BoxFuture<Option<T>>
    where
        T: FromRedisValue + Send + 'static,
    {
        let mut con = self.link.clone();
        let script = script.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let mut invocation = script.prepare_invoke();
            prepare(&mut invocation);
            let call = invocation.invoke_async::<T>(&mut con);
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(value)) => Some(value),
                Ok(Err(_)) | Err(_) => None,
            }
        })
    }
}

impl Connection {
    /// Sends `command` in the background, for work nobody waits for (a
    /// release, an unlock). It follows the calls sent before it on the same
    /// connection (on a cluster, to the same master, unless a redirection
    /// sent one of them elsewhere; the lease frees what a release misses),
    /// and gets the reservation lease (at least the timeout) to be answered. A plain command, not a script: a script unknown to a
    /// restarted server costs a second round trip, which a timeout could
    /// cut.
    pub(crate) fn send(&self, command: ::redis::Cmd) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut con = self.link.clone();
        let patience = self.lease.max(self.timeout);
        runtime.spawn(async move {
            let call = command.exec_async(&mut con);
            let _ = tokio::time::timeout(patience, call).await;
        });
    }
}

/// Whole milliseconds, at least 1.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
