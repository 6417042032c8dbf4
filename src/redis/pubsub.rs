//! Messages between replicas: a Redis pub/sub connection per listener, kept
//! alive (pinged, reopened, on another node of a cluster when its node is
//! lost), that tells its handler when it has caught up and when it is lost.
//!
//! On a Redis Cluster a plain `PUBLISH` reaches every node over the cluster
//! bus, so a subscriber on any node hears every message. Sharded pub/sub
//! (`SSUBSCRIBE`) would spare the other nodes that traffic, but a
//! subscriber would then have to follow its channel's slot from master to
//! master; unlocks and revocations are rare, so the broadcast costs little
//! and any reachable node will do.

use std::{
    convert::Infallible,
    future::poll_fn,
    pin::Pin,
    sync::{Arc, Weak},
    time::Duration,
};

use ::redis::{Client, Value, aio::PubSubStream};
use futures_core::Stream;
use tokio::time::{MissedTickBehavior, interval, sleep, timeout};

use crate::future::BoxFuture;

/// How often the connection is pinged.
const PING_EVERY: Duration = Duration::from_millis(250);
/// How long a ping may take before the connection counts as lost. With
/// [`PING_EVERY`], a server that stops answering is noticed within 750 ms.
const PING_TIMEOUT: Duration = Duration::from_millis(500);
/// How long connecting and subscribing may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to wait before connecting again.
const RETRY: Duration = Duration::from_millis(250);
/// How often a catch-up that failed is tried again on a live subscription.
const CATCH_UP_AGAIN: Duration = Duration::from_secs(1);

/// What listens on one channel.
pub(crate) trait Handler: Send + Sync + 'static {
    /// The channel.
    fn channel(&self) -> &str;

    /// A message arrived.
    fn message(&self, payload: &[u8]);

    /// Subscribed (again): catch up with what may have been missed while
    /// not subscribed. `false` when that failed; the connection is then
    /// dropped and made again.
    fn subscribed(&self) -> BoxFuture<bool>;

    /// Not subscribed (any more): messages may be missed from now on.
    fn lost(&self, why: &'static str);
}

/// Why a session ended.
enum Stop {
    /// The handler was dropped: nobody listens any more.
    Gone,
    /// The connection was lost, or could not be made.
    Lost(&'static str),
}

/// The servers a listener may subscribe on: the one node, or the nodes of a
/// cluster named when connecting, tried in turn.
pub(crate) type Nodes = Arc<[Client]>;

/// Keeps `handler` subscribed to its channel for as long as it lives, on a
/// task of the current runtime.
fn subscribe(nodes: Nodes, handler: Weak<dyn Handler>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::error!(
            target: "portcullis::redis",
            "no tokio runtime: cannot subscribe to redis; create the store inside a runtime"
        );
        if let Some(handler) = handler.upgrade() {
            handler.lost("no tokio runtime to subscribe on");
        }
        return;
    };
    runtime.spawn(run(nodes, handler));
}

async fn run(nodes: Nodes, handler: Weak<dyn Handler>) {
    // The first node named that answers, then the next one whenever the
    // connection is lost: on a cluster every node carries every message.
    let mut next = 0usize;
    loop {
        let Some(client) = nodes.get(next % nodes.len().max(1)) else {
            return;
        };
        next = next.wrapping_add(1);
        let why = match session(client, &handler).await {
            Stop::Gone => return,
            Stop::Lost(why) => why,
        };
        let Some(alive) = handler.upgrade() else {
            return;
        };
        alive.lost(why);
        drop(alive);
        sleep(RETRY).await;
    }
}

/// One connection: subscribe, catch up, then relay messages and ping until
/// it fails.
async fn session(client: &Client, handler: &Weak<dyn Handler>) -> Stop {
    let alive = |handler: &Weak<dyn Handler>| handler.upgrade().ok_or(Stop::Gone);
    let run = async {
        let pubsub = match timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => pubsub,
            _ => return Err(Stop::Lost("cannot connect to redis")),
        };
        let (mut sink, mut stream) = pubsub.split();
        let channel = alive(handler)?.channel().to_owned();
        if !matches!(
            timeout(CONNECT_TIMEOUT, sink.subscribe(&channel)).await,
            Ok(Ok(()))
        ) {
            return Err(Stop::Lost("cannot subscribe"));
        }
        // A catch-up that fails (on a cluster, a master that holds part of
        // what is read is down) keeps the subscription: messages are still
        // relayed, and the catch-up is tried again every second.
        let mut caught_up = alive(handler)?.subscribed().await;
        let mut catch_up = interval(CATCH_UP_AGAIN);
        catch_up.set_missed_tick_behavior(MissedTickBehavior::Delay);
        catch_up.tick().await;
        let mut ping = interval(PING_EVERY);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = catch_up.tick(), if !caught_up => {
                    caught_up = alive(handler)?.subscribed().await;
                }
                message = next(&mut stream) => match message {
                    Some(message) => alive(handler)?.message(message.get_payload_bytes()),
                    None => return Err(Stop::Lost("the connection to redis closed")),
                },
                _ = ping.tick() => {
                    drop(alive(handler)?);
                    if !matches!(timeout(PING_TIMEOUT, sink.ping::<Value>()).await, Ok(Ok(_))) {
                        return Err(Stop::Lost("redis did not answer a ping"));
                    }
                }
            }
        }
    };
    let ended: Result<Infallible, Stop> = run.await;
    match ended {
        Err(stop) => stop,
        Ok(never) => match never {},
    }
}

async fn next(stream: &mut PubSubStream) -> Option<::redis::Msg> {
    poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await
}

/// Keeps a handler alive as long as its owner, and subscribed meanwhile
/// (`what` names it in logs).
pub(crate) fn keep<H: Handler>(nodes: &Nodes, handler: H, what: &'static str) -> Arc<H> {
    let handler = Arc::new(handler);
    tracing::debug!(target: "portcullis::redis", what, nodes = nodes.len(), "subscribing");
    let weak = Arc::downgrade(&handler) as Weak<dyn Handler>;
    subscribe(Arc::clone(nodes), weak);
    handler
}
