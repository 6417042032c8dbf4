//! Long-lived responses that end with their credential: `GET /events`
//! (Server-Sent Events) and `GET /ws` (a WebSocket echo).
//!
//! `AuthLayer::leases` is on: the SSE body ends within a second after its
//! credential is revoked or expires (the client reconnects and is refused),
//! and the WebSocket handler holds the request's `Lease` and closes with
//! code 1008 (policy violation) when it ends.

use std::{convert::Infallible, time::Duration};

use axum::{
    extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code},
    response::{
        Response,
        sse::{Event, Sse},
    },
};
use portcullis::{integration::axum::Identity, lease::Lease};
use serde_json::json;
use tokio_stream::{Stream, StreamExt, wrappers::IntervalStream};

use crate::users::User;

/// How often `/events` sends an event.
const EVERY: Duration = Duration::from_millis(250);

/// `GET /events`: an event every 250 ms, `{"subject":…,"n":…}`, until the
/// credential is revoked or expires.
pub(crate) async fn events(
    Identity(user): Identity<User>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    tracing::info!(subject = %user.subject, "events stream opened");
    let mut n = 0u64;
    let ticks = IntervalStream::new(tokio::time::interval(EVERY)).map(move |_| {
        n += 1;
        let data = json!({ "subject": user.subject, "n": n });
        Ok(Event::default().event("tick").data(data.to_string()))
    });
    Sse::new(ticks)
}

/// `GET /ws`: echoes text messages. The credential may come as the
/// subprotocol `bearer.<token>` offered beside `chat`: `AuthLayer` removes
/// the token entry, and the server selects `chat`.
pub(crate) async fn ws(lease: Lease, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .protocols(["chat"])
        .on_upgrade(move |socket| echo(socket, lease))
}

/// Echoes until the client leaves or the lease ends; then closes with 1008
/// and the reason ("the credential was revoked", "the credential expired").
async fn echo(mut socket: WebSocket, lease: Lease) {
    let mut ended = lease.ended();
    loop {
        tokio::select! {
            end = &mut ended => {
                tracing::info!(reason = %end, "websocket closed with its lease");
                let close = CloseFrame { code: close_code::POLICY, reason: end.message().into() };
                let _ = socket.send(Message::Close(Some(close))).await;
                return;
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
