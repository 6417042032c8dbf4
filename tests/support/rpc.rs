//! A Connect / gRPC-Web echo server behind the portcullis stack, and the
//! real connect-es client (`tests/clients/connect`) that calls it.
//!
//! The client needs Node and `npm ci` in `tests/clients/connect` (`.ci/run`
//! does it); without them the tests that use it say they are skipped,
//! except in CI, where that fails.
#![allow(dead_code)] // each test binary uses its own subset

use std::{convert::Infallible, net::SocketAddr, path::PathBuf, process::Command, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use portcullis::{
    AuthLayer, Credential, PeerAddr, ValidationError,
    lockout::{LockoutLayer, Policy},
};
use tower::ServiceBuilder;

/// A test user.
#[derive(Clone, Debug)]
pub(crate) struct User(pub(crate) String);

/// `alice-token` → alice; `revoked-*` → revoked; `expired` → expired;
/// `reader` → lacks scope `admin`; `down` → unavailable (retry 7 s);
/// anything else → invalid.
pub(crate) async fn validate(credential: Credential) -> Result<User, ValidationError> {
    match credential.secret() {
        "alice-token" => Ok(User("alice".into())),
        s if s.starts_with("revoked") => Err(ValidationError::revoked()),
        "expired" => Err(ValidationError::expired()),
        "reader" => Err(ValidationError::insufficient_scope("admin")),
        "down" => Err(ValidationError::unavailable().with_retry_after(Duration::from_millis(6500))),
        _ => Err(ValidationError::invalid()),
    }
}

/// Answers any RPC with the message it got: a Connect unary body as is, a
/// Connect stream or a gRPC-Web call as its frames followed by a successful
/// end of stream.
pub(crate) async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let content_type = req.headers()[header::CONTENT_TYPE].clone();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let ct = content_type.to_str().unwrap();
    let mut out = BytesMut::from(&body[..]);
    if ct.starts_with("application/connect+") {
        out.put_slice(b"\x02\x00\x00\x00\x02{}");
    } else if ct.starts_with("application/grpc-web") {
        let trailers = b"grpc-status:0\r\n";
        out.put_u8(0x80);
        out.put_u32(trailers.len() as u32);
        out.put_slice(trailers);
    }
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(out.freeze()))
        .unwrap())
}

/// Serves [`echo`] behind `LockoutLayer` (3 failures) and `AuthLayer` on
/// `127.0.0.1:0`, HTTP/1.1 and HTTP/2 (prior knowledge).
pub(crate) async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let policy = Policy::builder().max_failures(3).build().unwrap();
    let stack = ServiceBuilder::new()
        .layer(LockoutLayer::new(policy))
        .layer(AuthLayer::new(validate))
        .service_fn(echo);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let service = ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    req.extensions_mut().insert(PeerAddr(peer));
                    req
                })
                .service(stack.clone());
            let service = TowerToHyperService::new(service);
            tokio::spawn(async move {
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
            });
        }
    });
    addr
}

/// What the client saw for one call.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Outcome {
    pub(crate) call: String,
    /// The Connect code (`0` for success, 16 unauthenticated, …).
    pub(crate) code: u32,
    pub(crate) message: Option<String>,
    pub(crate) reply: Option<String>,
}

/// The client's folder, when its packages are installed; `None` (with a
/// notice) when the tests should skip.
///
/// # Panics
///
/// In CI (`CI=true`) when Node or the packages are missing.
fn client_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/connect");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if node && dir.join("node_modules/@connectrpc/connect-node").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI must install Node and run `npm ci` in tests/clients/connect");
    }
    eprintln!("skipped: install Node and run `npm ci` in tests/clients/connect");
    None
}

/// Runs the connect-es client against `addr` with `protocol` (`connect`,
/// `connect-proto` or `grpc-web`) for `calls` (`unary:TOKEN`,
/// `stream:TOKEN`, `-` for no token); `None` when skipped.
pub(crate) async fn run_client(
    addr: SocketAddr,
    protocol: &str,
    calls: &[&str],
) -> Option<Vec<Outcome>> {
    let dir = client_dir()?;
    let output = tokio::process::Command::new("node")
        .current_dir(&dir)
        .arg("client.mjs")
        .arg(format!("http://{addr}"))
        .arg(protocol)
        .arg(calls.join(","))
        .kill_on_drop(true)
        .output();
    // A real process over real sockets: tokio time cannot stand in.
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the client finishes within a minute")
        .expect("node runs");
    assert!(
        output.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcomes: Vec<Outcome> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(outcomes.len(), calls.len());
    Some(outcomes)
}
