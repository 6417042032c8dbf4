//! Leases: a streaming response ends with its credential, at its expiry or
//! as soon as it is revoked (V3), and leaves a response that does not
//! stream as it is (V4; its cost is measured in `benches/leases.rs`).

mod bodies;
#[cfg(feature = "axum")]
mod extractor;
#[cfg(feature = "tonic")]
mod grpc;
mod truncation;
#[cfg(feature = "axum")]
mod websocket;

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
    lease::{End, Lease, Truncated},
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
    content_type: Option<&'static str>,
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
        if let Some(content_type) = content_type {
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, content_type.parse().unwrap());
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

/// The next frame is the error of a body its lease cut (V5): why it was
/// cut.
async fn cut(body: &mut ResponseBody<Chunks>) -> End {
    let error = next(body)
        .await
        .expect("a last frame")
        .expect_err("a plain body is cut with an error, not ended as complete");
    error
        .downcast_ref::<Truncated>()
        .expect("a Truncated error")
        .end()
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
