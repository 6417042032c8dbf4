//! Leases: signed out means disconnected.
//!
//! A credential is judged when a request arrives; a stream (Server-Sent
//! Events, a chunked download, a gRPC server stream, a WebSocket) can go on
//! for hours after. With [`AuthLayer::leases`](crate::AuthLayer::leases)
//! every request whose credential is accepted carries a [`Lease`] that ends
//! when its identity expires ([`ExpiresAt`](crate::validate::ExpiresAt)) or
//! its credential is revoked ([`Revocations`](crate::revoke::Revocations)),
//! and the response body ends with it:
//!
//! | response | when its lease ends |
//! |---|---|
//! | gRPC (`content-type: application/grpc*`) | trailers `grpc-status: 16` (UNAUTHENTICATED) and a `grpc-message` saying expired or revoked, so the client signs in again instead of retrying the call; `14` (UNAVAILABLE) when revocations lost their shared store |
//! | gRPC-Web (`application/grpc-web*`, `-text`) | the same trailers, as the body's last frame (base64 for `-text`) |
//! | Connect streaming (`application/connect+*`) | an end-of-stream message with the error (`unauthenticated`, or `unavailable`) |
//! | any other body (SSE, chunked, with a `Content-Length`) | the body fails with [`Truncated`], so the server aborts it: no terminating chunk on HTTP/1.1 (the connection closes), `RST_STREAM` on HTTP/2; the client reports a truncated transfer, never a complete download (an SSE client reconnects and is refused) |
//! | a WebSocket | the handler holds the [`Lease`] and `select!`s on [`Lease::ended`]; close with code 1008 (policy violation) and the [`End`] as reason |
//!
//! Bodies end within a second of the expiry or revocation: at the expiry,
//! and as soon as the revocation is applied on the replica serving the
//! stream (at once where it was made; within a second elsewhere, with
//! Redis).
//!
//! # Cost
//!
//! A request that does not stream pays for the lease and nothing more: one
//! allocation, the identity's facts read once, an extension. Timers and
//! notifications are registered only by bodies that wait.
//!
//! # Example
//!
//! A WebSocket handler that closes with 1008 when the lease ends
//! (`no_run`: it serves):
//!
//! ```no_run
//! # #[cfg(feature = "axum")]
//! # mod example {
//! use axum::{
//!     extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code},
//!     response::Response,
//! };
//! use portcullis::lease::Lease;
//!
//! async fn ws(lease: Lease, upgrade: WebSocketUpgrade) -> Response {
//!     upgrade.on_upgrade(move |socket| echo(socket, lease))
//! }
//!
//! async fn echo(mut socket: WebSocket, lease: Lease) {
//!     let mut ended = lease.ended();
//!     loop {
//!         tokio::select! {
//!             end = &mut ended => {
//!                 let close = CloseFrame { code: close_code::POLICY, reason: end.message().into() };
//!                 let _ = socket.send(Message::Close(Some(close))).await;
//!                 return;
//!             }
//!             message = socket.recv() => match message {
//!                 Some(Ok(Message::Text(text))) => {
//!                     if socket.send(Message::Text(text)).await.is_err() { return }
//!                 }
//!                 Some(Ok(_)) => {}
//!                 _ => return,
//!             },
//!         }
//!     }
//! }
//! # }
//! ```

mod cutoff;
mod grant;
mod watch;

pub(crate) use cutoff::Cutoff;
pub use cutoff::Truncated;
pub(crate) use grant::Leases;
pub use grant::{End, Lease};
pub use watch::Ended;
