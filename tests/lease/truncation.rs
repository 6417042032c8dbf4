//! A plain HTTP body cut by its lease ends as an error its client sees
//! (V5): no terminating chunk on HTTP/1.1, a stream reset on HTTP/2,
//! through a real hyper server on loopback, read by hyper's client and by
//! curl.

use std::{net::SocketAddr, process::Stdio, time::Duration};

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use portcullis::revoke::Revocations;
use tokio::{
    net::{TcpListener, TcpStream},
    time::timeout,
};
use tower::ServiceBuilder;

use super::{Sightings, streaming};

/// Serves the streaming service (plain bodies, no `Content-Length`:
/// chunked on HTTP/1.1) on a free loopback port, HTTP/1.1 and HTTP/2.
async fn serve(revocations: &Revocations) -> (SocketAddr, Sightings) {
    let (service, seen) = streaming(revocations, None, Some("text/plain"));
    let service = ServiceBuilder::new()
        .map_request(|req: Request<Incoming>| req.map(|_| String::new()))
        .service(service);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// Waits (a bounded number of yields, real time: a real server) until the
/// server has seen `n` requests; the last one's chunk sender.
async fn opened(seen: &Sightings, n: usize) -> tokio::sync::mpsc::UnboundedSender<Bytes> {
    timeout(Duration::from_secs(10), async {
        loop {
            if let Some(last) = seen.lock().unwrap().get(n - 1) {
                return last.chunks.clone();
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the request reached the service")
}

fn get(addr: SocketAddr) -> Request<Empty<Bytes>> {
    Request::get(format!("http://{addr}/download"))
        .header(header::AUTHORIZATION, "Bearer alice-1")
        .body(Empty::new())
        .unwrap()
}

/// Reads the response body until it ends: the bytes read, and whether it
/// ended with an error (a cut) rather than as a complete body.
async fn read_to_end(mut body: Incoming) -> (Vec<u8>, Option<hyper::Error>) {
    let mut got = Vec::new();
    loop {
        match timeout(Duration::from_secs(10), body.frame()).await {
            Ok(Some(Ok(frame))) => got.extend_from_slice(&frame.into_data().unwrap_or_default()),
            Ok(Some(Err(error))) => return (got, Some(error)),
            Ok(None) => return (got, None),
            Err(_) => panic!("the body neither ended nor failed"),
        }
    }
}

#[tokio::test]
async fn a_revoked_chunked_download_is_cut_without_its_last_chunk_on_http1() {
    // V5
    let revocations = Revocations::new();
    let (addr, seen) = serve(&revocations).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(get(addr)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::TRANSFER_ENCODING], "chunked");
    let chunks = opened(&seen, 1).await;
    chunks.send(Bytes::from_static(b"part 1;")).unwrap();
    let body = response.into_body();
    let reading = tokio::spawn(read_to_end(body));
    // The first part reaches the client before the sign-out.
    chunks.send(Bytes::from_static(b"part 2;")).unwrap();
    tokio::task::yield_now().await;
    revocations.revoke_secret("alice-1", None).await.unwrap();
    let (got, error) = reading.await.unwrap();
    let error = error.expect("the client sees the download was cut");
    // The connection closed where the next chunk's size line should be.
    let eof = std::error::Error::source(&error)
        .and_then(|source| source.downcast_ref::<std::io::Error>())
        .map(std::io::Error::kind);
    assert_eq!(eof, Some(std::io::ErrorKind::UnexpectedEof), "{error:?}");
    assert!(got.starts_with(b"part 1;"), "{got:?}");
}

#[tokio::test]
async fn a_revoked_download_is_reset_on_http2() {
    // V5
    let revocations = Revocations::new();
    let (addr, seen) = serve(&revocations).await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(get(addr)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let chunks = opened(&seen, 1).await;
    chunks.send(Bytes::from_static(b"part 1;")).unwrap();
    let reading = tokio::spawn(read_to_end(response.into_body()));
    tokio::task::yield_now().await;
    revocations.revoke_secret("alice-1", None).await.unwrap();
    let (got, error) = reading.await.unwrap();
    let error = error.expect("the client sees the stream was reset");
    // A RST_STREAM from the server (h2's "stream error received").
    let source = std::error::Error::source(&error).map(ToString::to_string);
    assert!(
        source
            .as_deref()
            .is_some_and(|s| s.starts_with("stream error received")),
        "a RST_STREAM, not a complete body: {error:?}"
    );
    assert!(got.starts_with(b"part 1;") || got.is_empty(), "{got:?}");
}

/// curl, if installed: its exit code and what it printed.
async fn curl(
    args: &[&str],
    revocations: &Revocations,
    seen: &Sightings,
) -> Option<(i32, Vec<u8>, String)> {
    let child = tokio::process::Command::new("curl")
        .args(["-sS", "--no-buffer", "-H", "Authorization: Bearer alice-1"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let Ok(child) = child else {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "curl is missing"
        );
        eprintln!("skipped: curl is not installed");
        return None;
    };
    let n = seen.lock().unwrap().len() + 1;
    let chunks = opened(seen, n).await;
    chunks.send(Bytes::from_static(b"part 1;")).unwrap();
    revocations.revoke_secret("alice-1", None).await.unwrap();
    let out = timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("curl ends")
        .unwrap();
    Some((
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test]
async fn curl_reports_a_revoked_download_as_cut_over_http1_and_http2() {
    // V5
    for http2 in [false, true] {
        let revocations = Revocations::new();
        let (addr, seen) = serve(&revocations).await;
        let url = format!("http://{addr}/download");
        let mut args = vec![url.as_str()];
        if http2 {
            args.push("--http2-prior-knowledge");
        }
        let Some((code, _, stderr)) = curl(&args, &revocations, &seen).await else {
            return;
        };
        // 18: transfer closed with outstanding read data (HTTP/1.1);
        // 92: stream error in the HTTP/2 framing layer; 56: receive failure.
        assert!(
            [18, 56, 92].contains(&code),
            "http2={http2}: curl exited {code}: {stderr}"
        );
    }
}
