//! A real WebSocket client (tokio-tungstenite) on an axum echo handler that
//! closes with 1008 when its lease ends.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Router,
    extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code},
    response::Response,
    routing::get,
};
use futures_util::{SinkExt, StreamExt};
use portcullis::{AuthLayer, Credential, ValidationError, lease::Lease, revoke::Revocations};
use tokio::{net::TcpListener, time::Instant};
use tokio_tungstenite::tungstenite::{
    self, client::IntoClientRequest, protocol::frame::coding::CloseCode,
};

use super::User;

async fn ws(lease: Lease, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| echo(socket, lease))
}

/// Echoes text until the lease ends, then closes with 1008.
async fn echo(mut socket: WebSocket, lease: Lease) {
    let mut ended = lease.ended();
    loop {
        tokio::select! {
            end = &mut ended => {
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
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

async fn serve(revocations: &Revocations, lifetime: Duration) -> SocketAddr {
    let validate = move |credential: Credential| async move {
        if credential.secret().starts_with("alice-") {
            Ok(User {
                name: "alice",
                until: Some(Instant::now() + lifetime),
                issued: None,
            })
        } else {
            Err(ValidationError::invalid())
        }
    };
    let app = Router::new()
        .route("/ws", get(ws))
        .layer(AuthLayer::new(validate).leases(revocations));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn connect(
    addr: SocketAddr,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(response.status(), 101);
    socket
}

async fn closed_with(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> tungstenite::protocol::CloseFrame {
    loop {
        match socket.next().await.expect("a close frame").unwrap() {
            tungstenite::Message::Close(Some(frame)) => return frame,
            tungstenite::Message::Close(None) => panic!("closed without a code"),
            _ => continue,
        }
    }
}

#[tokio::test]
async fn a_websocket_closes_with_1008_within_a_second_of_revocation() {
    // V3
    let revocations = Revocations::new();
    let addr = serve(&revocations, Duration::from_secs(3600)).await;
    let mut socket = connect(addr, "alice-1").await;
    socket
        .send(tungstenite::Message::text("hello"))
        .await
        .unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        tungstenite::Message::text("hello")
    );

    let revoked = Instant::now();
    revocations.revoke_secret("alice-1", None).await.unwrap();
    let frame = tokio::time::timeout(Duration::from_secs(1), closed_with(&mut socket))
        .await
        .expect("closed within a second");
    assert!(revoked.elapsed() < Duration::from_secs(1));
    assert_eq!(frame.code, CloseCode::Policy);
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "the credential was revoked");
}

#[tokio::test]
async fn a_websocket_closes_with_1008_within_a_second_of_expiry() {
    // V3
    let revocations = Revocations::new();
    let lifetime = Duration::from_millis(600);
    let addr = serve(&revocations, lifetime).await;
    let started = Instant::now();
    let mut socket = connect(addr, "alice-1").await;
    let frame = tokio::time::timeout(Duration::from_secs(3), closed_with(&mut socket))
        .await
        .expect("closed");
    let after = started.elapsed();
    assert!(
        after >= lifetime && after < lifetime + Duration::from_secs(1),
        "{after:?}"
    );
    assert_eq!(frame.code, CloseCode::Policy);
    assert_eq!(frame.reason.as_str(), "the credential expired");
}
