//! Leases: a streaming response ends with its credential, at its expiry or
//! as soon as it is revoked (V3), and costs nothing to a response that does
//! not stream (V4, measured in `benches/auth.rs`).

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use portcullis::{
    AuthLayer, Credential, ResponseBody, ValidationError,
    lease::{End, Lease},
    revoke::{Revocable, Revocations},
    validate::ExpiresAt,
};
use tokio::{sync::mpsc, time::Instant};
use tower::{Layer, Service, ServiceExt, service_fn, util::BoxCloneService};

/// The caller: expires at `until`, if set.
#[derive(Clone, Debug)]
struct User {
    name: &'static str,
    until: Option<Instant>,
    issued: Option<SystemTime>,
}

impl ExpiresAt for User {
    fn expires_at(&self) -> Option<Instant> {
        self.until
    }
}

impl Revocable for User {
    fn subject(&self) -> Option<&str> {
        Some(self.name)
    }

    fn issued_at(&self) -> Option<SystemTime> {
        self.issued
    }
}

/// A body whose frames the test sends, one by one; it never ends by itself.
struct Chunks(mpsc::UnboundedReceiver<Bytes>);

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

/// What the inner service saw of one request.
struct Seen {
    lease: Option<Lease>,
    chunks: mpsc::UnboundedSender<Bytes>,
}

type Sightings = Arc<Mutex<Vec<Seen>>>;

/// A streaming service behind `AuthLayer` with leases: `alice-*` tokens
/// are alice's, valid for `lifetime` from when they are presented. Its
/// responses are gRPC when `grpc`.
type Streaming = BoxCloneService<Request<String>, Response<ResponseBody<Chunks>>, Infallible>;

fn streaming(
    revocations: &Revocations,
    lifetime: Option<Duration>,
    grpc: bool,
) -> (Streaming, Sightings) {
    let validate = move |credential: Credential| async move {
        if credential.secret().starts_with("alice-") {
            Ok(User {
                name: "alice",
                until: lifetime.map(|lifetime| Instant::now() + lifetime),
                issued: Some(SystemTime::now()),
            })
        } else {
            Err(ValidationError::invalid())
        }
    };
    let seen = Sightings::default();
    let sightings = seen.clone();
    let inner = service_fn(move |req: Request<String>| {
        let (chunks, body) = mpsc::unbounded_channel();
        sightings.lock().unwrap().push(Seen {
            lease: req.extensions().get::<Lease>().cloned(),
            chunks,
        });
        let mut response = Response::new(Chunks(body));
        if grpc {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, "application/grpc".parse().unwrap());
        }
        async move { Ok::<_, Infallible>(response) }
    });
    let auth = AuthLayer::new(validate).leases(revocations);
    (BoxCloneService::new(auth.layer(inner)), seen)
}

fn request(authorization: &str) -> Request<String> {
    Request::builder()
        .header(header::AUTHORIZATION, authorization)
        .body(String::new())
        .unwrap()
}

/// What polling a body gives.
type Polled<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

/// Polls `body` once, without waiting.
fn poll_now<B: Body + Unpin>(body: &mut B) -> Polled<B> {
    let waker = std::task::Waker::noop();
    Pin::new(body).poll_frame(&mut Context::from_waker(waker))
}

/// The next frame; fails (instead of hanging) if none comes within a day of
/// tokio time, which a paused clock reaches at once when nothing else can.
async fn next<B>(body: &mut B) -> Option<Result<Frame<B::Data>, B::Error>>
where
    B: Body + Unpin,
{
    tokio::time::timeout(Duration::from_secs(24 * 3600), body.frame())
        .await
        .expect("the body goes on: its lease did not end it")
}

async fn data<B>(body: &mut B) -> Bytes
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    next(body)
        .await
        .expect("a frame")
        .unwrap()
        .into_data()
        .expect("a data frame")
}

async fn open_stream(
    service: &mut Streaming,
    seen: &Sightings,
    token: &str,
) -> (
    ResponseBody<Chunks>,
    mpsc::UnboundedSender<Bytes>,
    HeaderMap,
) {
    let response = service
        .ready()
        .await
        .unwrap()
        .call(request(&format!("Bearer {token}")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (parts, mut body) = response.into_parts();
    let chunks = seen.lock().unwrap().last().unwrap().chunks.clone();
    chunks.send(Bytes::from_static(b"event 1")).unwrap();
    assert_eq!(data(&mut body).await, "event 1");
    // Waiting for the next event registers the lease's watch.
    assert!(poll_now(&mut body).is_pending());
    (body, chunks, parts.headers)
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_ends_at_its_identitys_expiry() {
    // V3
    let revocations = Revocations::new();
    let (mut service, seen) = streaming(&revocations, Some(Duration::from_secs(30)), false);
    let opened = Instant::now();
    let (mut body, chunks, _) = open_stream(&mut service, &seen, "alice-1").await;

    tokio::time::advance(Duration::from_secs(29)).await;
    chunks.send(Bytes::from_static(b"event 2")).unwrap();
    assert_eq!(data(&mut body).await, "event 2");
    assert!(poll_now(&mut body).is_pending());

    // The body ends at the expiry, without another event to wake it.
    assert!(next(&mut body).await.is_none());
    let ended = Instant::now() - opened;
    assert!(
        ended >= Duration::from_secs(30) && ended < Duration::from_secs(31),
        "{ended:?}"
    );
    assert!(body.is_end_stream());
    // Later events never reach the client.
    let _ = chunks.send(Bytes::from_static(b"event 3"));
    assert!(next(&mut body).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_ends_as_soon_as_its_credential_is_revoked() {
    // V3, V1: revoked by secret, however it was presented.
    let revocations = Revocations::new();
    let (mut service, seen) = streaming(&revocations, None, false);
    let (mut revoked, _chunks, _) = open_stream(&mut service, &seen, "alice-1").await;
    let (mut other, other_chunks, _) = open_stream(&mut service, &seen, "alice-2").await;

    let at = Instant::now();
    revocations.revoke_secret("alice-1", None).await.unwrap();
    assert!(next(&mut revoked).await.is_none());
    assert_eq!(Instant::now(), at, "ended at once, not at a timer");

    // The other credential's stream goes on.
    assert!(poll_now(&mut other).is_pending());
    other_chunks.send(Bytes::from_static(b"event 2")).unwrap();
    assert_eq!(data(&mut other).await, "event 2");
}

#[tokio::test(start_paused = true)]
async fn signing_a_subject_out_everywhere_ends_every_stream_issued_before() {
    // V1, V3: a subject with a cutoff.
    let revocations = Revocations::new();
    let (mut service, seen) = streaming(&revocations, None, false);
    let (mut laptop, _l, _) = open_stream(&mut service, &seen, "alice-laptop").await;
    let (mut phone, _p, _) = open_stream(&mut service, &seen, "alice-phone").await;
    revocations.revoke_subject("alice").await.unwrap();
    assert!(next(&mut laptop).await.is_none());
    assert!(next(&mut phone).await.is_none());
    assert_eq!(
        seen.lock().unwrap()[0].lease.as_ref().unwrap().end(),
        Some(End::Revoked)
    );
}

#[tokio::test(start_paused = true)]
async fn a_grpc_stream_ends_with_unauthenticated_trailers_that_say_why() {
    // V3
    for (lifetime, revoke, message) in [
        (
            Some(Duration::from_secs(5)),
            false,
            "the credential expired",
        ),
        (None, true, "the credential was revoked"),
    ] {
        let revocations = Revocations::new();
        let (mut service, seen) = streaming(&revocations, lifetime, true);
        let (mut body, _chunks, headers) = open_stream(&mut service, &seen, "alice-1").await;
        assert_eq!(headers[header::CONTENT_TYPE], "application/grpc");
        if revoke {
            revocations.revoke_secret("alice-1", None).await.unwrap();
        }
        let last = next(&mut body).await.expect("trailers").unwrap();
        let trailers = last.into_trailers().expect("a trailers frame");
        assert_eq!(trailers["grpc-status"], "16");
        assert_eq!(trailers["grpc-message"], message);
        assert!(next(&mut body).await.is_none());
        assert!(body.is_end_stream());
    }
}

#[tokio::test(start_paused = true)]
async fn a_response_that_does_not_stream_is_untouched_and_carries_a_lease() {
    // V4: the body is the handler's, frame for frame.
    let revocations = Revocations::new();
    let validate = |_: Credential| async {
        Ok::<_, ValidationError>(User {
            name: "alice",
            until: None,
            issued: None,
        })
    };
    let leases = Arc::new(Mutex::new(Vec::new()));
    let seen = leases.clone();
    let inner = service_fn(move |req: Request<String>| {
        seen.lock()
            .unwrap()
            .push(req.extensions().get::<Lease>().cloned());
        async {
            let body = Full::new(Bytes::from_static(b"{\"ok\":true}"));
            Ok::<_, Infallible>(Response::new(body))
        }
    });
    let service = AuthLayer::new(validate).leases(&revocations).layer(inner);
    let response = service.oneshot(request("Bearer t")).await.unwrap();
    let body = response.into_body();
    assert_eq!(body.size_hint().exact(), Some(11));
    assert_eq!(body.collect().await.unwrap().to_bytes(), "{\"ok\":true}");
    let lease = leases.lock().unwrap()[0].clone().expect("a lease");
    assert_eq!(lease.expires_at(), None);
    assert_eq!(lease.end(), None);
}

#[tokio::test(start_paused = true)]
async fn the_lease_future_resolves_at_the_expiry_or_at_the_revocation() {
    // V3: what a WebSocket handler selects on.
    let revocations = Revocations::new();
    let (mut service, seen) = streaming(&revocations, Some(Duration::from_secs(60)), false);
    let _open = open_stream(&mut service, &seen, "alice-1").await;
    let lease = seen.lock().unwrap()[0].lease.clone().unwrap();
    let opened = Instant::now();
    assert_eq!(lease.ended().await, End::Expired);
    assert_eq!(Instant::now() - opened, Duration::from_secs(60));
    assert_eq!(lease.end(), Some(End::Expired));

    let _open = open_stream(&mut service, &seen, "alice-2").await;
    let lease = seen.lock().unwrap()[1].lease.clone().unwrap();
    let mut ended = lease.ended();
    assert!(futures_poll(&mut ended).is_pending());
    tokio::time::advance(Duration::from_secs(10)).await;
    // A lease revokes its own credential: a sign-out.
    lease.revoke().await.unwrap();
    assert_eq!(ended.await, End::Revoked);
    assert_eq!(
        revocations.stats().entries,
        1,
        "held until the credential would have expired"
    );
    tokio::time::advance(Duration::from_secs(50)).await;
    assert_eq!(
        revocations.stats().entries,
        0,
        "V1: expires with the credential"
    );
}

fn futures_poll<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(std::task::Waker::noop()))
}

#[tokio::test(start_paused = true)]
async fn a_body_that_never_waits_still_ends_with_its_lease() {
    // V3: a stream that always has the next frame ready (a fast download)
    // is looked at before each frame.
    let revocations = Revocations::new();
    let (mut service, seen) = streaming(&revocations, None, false);
    let (mut body, chunks, _) = open_stream(&mut service, &seen, "alice-1").await;
    for _ in 0..3 {
        chunks.send(Bytes::from_static(b"x")).unwrap();
    }
    assert_eq!(data(&mut body).await, "x");
    revocations.revoke_secret("alice-1", None).await.unwrap();
    assert!(
        next(&mut body).await.is_none(),
        "the frames still queued are not sent"
    );
}

#[cfg(feature = "axum")]
mod axum_extractor {
    use axum::{Router, body::Body, routing::get};
    use http::{Request, StatusCode, header::AUTHORIZATION};
    use portcullis::{AuthLayer, Credential, ValidationError, lease::Lease, revoke::Revocations};
    use tower::ServiceExt;

    use super::User;

    async fn expires(lease: Lease) -> String {
        format!("{:?}", lease.expires_at())
    }

    async fn maybe(lease: Option<Lease>) -> &'static str {
        if lease.is_some() {
            "leased"
        } else {
            "anonymous"
        }
    }

    async fn validate(credential: Credential) -> Result<User, ValidationError> {
        match credential.secret() {
            "alice-1" => Ok(User {
                name: "alice",
                until: None,
                issued: None,
            }),
            _ => Err(ValidationError::invalid()),
        }
    }

    async fn status(app: Router, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut req = Request::get(path);
        if let Some(token) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let res = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn handlers_extract_the_lease_and_anonymous_requests_have_none() {
        let revocations = Revocations::new();
        let app = Router::new()
            .route("/lease", get(expires))
            .route("/maybe", get(maybe))
            .layer(AuthLayer::new(validate).optional().leases(&revocations));
        assert_eq!(
            status(app.clone(), "/lease", Some("alice-1")).await,
            (StatusCode::OK, "None".into())
        );
        assert_eq!(
            status(app.clone(), "/maybe", Some("alice-1")).await.1,
            "leased"
        );
        assert_eq!(status(app.clone(), "/maybe", None).await.1, "anonymous");
        assert_eq!(
            status(app, "/lease", None).await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    #[tokio::test]
    async fn a_route_without_leases_says_so_instead_of_failing_opaquely() {
        let app = Router::new()
            .route("/lease", get(expires))
            .layer(AuthLayer::new(validate));
        let (status, body) = status(app, "/lease", Some("alice-1")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body.contains("AuthLayer::leases"), "{body}");
    }
}

/// A real tonic client on a `Watch` stream through `AuthLayer` with leases,
/// over loopback.
#[cfg(feature = "tonic")]
mod grpc {
    use std::time::Duration;

    use portcullis::{AuthLayer, Credential, ValidationError, revoke::Revocations};
    use tokio::{net::TcpListener, time::Instant};
    use tonic::{
        Code, Request,
        metadata::MetadataValue,
        transport::{Channel, Server, server::TcpIncoming},
    };
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    use super::User;

    /// Serves tonic-health behind `AuthLayer` with leases; `alice-*` tokens
    /// live `lifetime` (real time).
    async fn serve(revocations: &Revocations, lifetime: Duration) -> HealthClient<Channel> {
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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let auth = AuthLayer::new(validate).leases(revocations);
        tokio::spawn(async move {
            // Keeps the reporter (and so the Watch streams) alive.
            let _reporter = _reporter;
            Server::builder()
                .layer(auth)
                .add_service(health)
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        HealthClient::new(channel)
    }

    fn watch(token: &str) -> Request<HealthCheckRequest> {
        let mut request = Request::new(HealthCheckRequest::default());
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
        );
        request
    }

    #[tokio::test]
    async fn a_watch_stream_ends_with_unauthenticated_within_a_second_of_revocation() {
        // V3, P9
        let revocations = Revocations::new();
        let mut client = serve(&revocations, Duration::from_secs(3600)).await;
        let mut stream = client.watch(watch("alice-1")).await.unwrap().into_inner();
        assert!(
            stream.message().await.unwrap().is_some(),
            "the current status"
        );

        let revoked = Instant::now();
        revocations.revoke_secret("alice-1", None).await.unwrap();
        let status = tokio::time::timeout(Duration::from_secs(1), stream.message())
            .await
            .expect("the stream ends within a second")
            .expect_err("with a status");
        assert!(revoked.elapsed() < Duration::from_secs(1));
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "the credential was revoked");

        // A new call with the revoked token is not refused by the layer
        // (this validator does not honour the list), yet its stream ends
        // at once, before any message.
        let mut again = client.watch(watch("alice-1")).await.unwrap().into_inner();
        let ended = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match again.message().await {
                    Ok(Some(_)) => continue,
                    other => return other,
                }
            }
        })
        .await
        .expect("ended within a second");
        assert_eq!(ended.unwrap_err().code(), Code::Unauthenticated);
    }

    #[tokio::test]
    async fn a_watch_stream_ends_with_unauthenticated_within_a_second_of_expiry() {
        // V3
        let revocations = Revocations::new();
        let lifetime = Duration::from_millis(600);
        let mut client = serve(&revocations, lifetime).await;
        let started = Instant::now();
        let mut stream = client.watch(watch("alice-1")).await.unwrap().into_inner();
        assert!(stream.message().await.unwrap().is_some());
        let status = tokio::time::timeout(Duration::from_secs(3), stream.message())
            .await
            .expect("the stream ends")
            .expect_err("with a status");
        let after = started.elapsed();
        assert!(
            after >= lifetime && after < lifetime + Duration::from_secs(1),
            "{after:?}"
        );
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "the credential expired");
    }
}

/// A real WebSocket client (tokio-tungstenite) on an axum echo handler that
/// closes with 1008 when its lease ends.
#[cfg(feature = "axum")]
mod websocket {
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
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
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
}
