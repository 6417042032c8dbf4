//! `AuthLayer` in front of a plain hyper 1 server (no framework), adapted
//! with `hyper_util::service::TowerToHyperService`, called over loopback by
//! hyper-util's client.

mod support;

use std::{convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
    service::TowerToHyperService,
};
use portcullis::{
    AuthLayer, Credential, PeerAddr, ValidationError,
    lockout::{LockoutLayer, Policy},
};
use tokio::net::TcpListener;
use tower::ServiceBuilder;

#[derive(Clone, Debug)]
struct User(&'static str);

async fn validate(credential: Credential) -> Result<User, ValidationError> {
    match credential.secret() {
        "alice-token" => Ok(User("alice")),
        _ => Err(ValidationError::invalid()),
    }
}

async fn whoami(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.extensions().get::<User>() {
        Some(User(subject)) => format!("hello {subject}"),
        None => "anonymous".to_owned(),
    };
    Ok(Response::new(Full::from(body)))
}

/// Serves the stack on a free loopback port with a plain accept loop.
async fn serve() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = ServiceBuilder::new()
        .layer(AuthLayer::new(validate))
        .service_fn(whoami);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await
            });
        }
    });
    addr
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn http1() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn http2() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

async fn get(
    client: &HttpClient,
    addr: SocketAddr,
    authorization: Option<&str>,
) -> (Response<()>, String) {
    let mut request = Request::get(format!("http://{addr}/"));
    if let Some(value) = authorization {
        request = request.header(header::AUTHORIZATION, value);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, ()),
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn a_request_without_a_token_gets_401_with_a_bearer_challenge() {
    // P6
    let addr = serve().await;
    let (response, _) = get(&http1(), addr, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="api""#
    );
}

#[tokio::test]
async fn an_unknown_token_gets_401_invalid_token() {
    // P6, P7
    let addr = serve().await;
    let (response, body) = get(&http1(), addr, Some("Bearer nope")).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(
        challenge.starts_with(r#"Bearer realm="api", error="invalid_token""#),
        "{challenge}"
    );
    assert!(!body.contains("nope"), "{body}");
}

#[tokio::test]
async fn a_good_token_reaches_the_handler_with_its_identity() {
    let addr = serve().await;
    let (response, body) = get(&http1(), addr, Some("Bearer alice-token")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body, "hello alice");
}

#[tokio::test]
async fn http2_requests_are_authenticated_the_same_way() {
    let addr = serve().await;
    let client = http2();
    let (response, _) = get(&client, addr, None).await;
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer realm="api""#
    );
    let (response, body) = get(&client, addr, Some("Bearer alice-token")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body, "hello alice");
}

/// Serves a `ClientIp`-keyed lockout in front of `AuthLayer`, recording each
/// connection's peer as [`PeerAddr`] only when `with_peer` is set.
async fn serve_with_lockout(with_peer: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stack = ServiceBuilder::new()
        .layer(LockoutLayer::new(Policy::default()))
        .layer(AuthLayer::new(validate))
        .service_fn(whoami);
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let service = ServiceBuilder::new()
                .map_request(move |mut req: Request<Incoming>| {
                    if with_peer {
                        req.extensions_mut().insert(PeerAddr(peer));
                    }
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

#[tokio::test]
async fn a_server_without_connect_info_tells_its_log_how_to_fix_it_not_its_clients() {
    // B10: 500 for every client, with a short generic body; the fix (serve
    // with connect info) goes to the server's log.
    let logs = support::logs::capture();
    let addr = serve_with_lockout(false).await;
    for client in [http1(), http2()] {
        let (response, body) = get(&client, addr, Some("Bearer alice-token")).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, "the server cannot identify the client");
        assert!(!body.contains("connect info"), "{body}");
    }
    let logged = logs.text();
    assert!(
        logged.lines().any(|line| line.contains("WARN")
            && line.contains("connect info")
            && line.contains("PeerAddr")),
        "{logged}"
    );

    // Recording the peer is the fix.
    let addr = serve_with_lockout(true).await;
    let (response, body) = get(&http1(), addr, Some("Bearer alice-token")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body, "hello alice");
}
