//! OpenID Connect discovery: keys found through an issuer's
//! `/.well-known/openid-configuration`, against a local HTTP server.
#![cfg(feature = "jwks")]

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{EncodingKey, Header, encode, jwk::Jwk};
use portcullis::{
    ConfigError, Credential, CredentialSource, ValidationErrorKind, Validator,
    validate::jwt::{Algorithm, Jwks, JwtValidator},
};
use serde_json::{Value, json};
use tokio::{net::TcpListener, time::advance};

#[derive(Debug, Clone, serde::Deserialize)]
struct MyClaims {
    sub: String,
}

/// An HTTP server on 127.0.0.1:0 answering each path with what the test
/// sets, counting requests per path.
#[derive(Clone)]
struct Server {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, (StatusCode, String)>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Server {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Self {
            addr: listener.local_addr().unwrap(),
            routes: Arc::default(),
            hits: Arc::default(),
        };
        let state = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let path = req.uri().path().to_owned();
                        *state.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                        let (status, body) = state
                            .routes
                            .lock()
                            .unwrap()
                            .get(&path)
                            .cloned()
                            .unwrap_or((StatusCode::NOT_FOUND, String::new()));
                        let res = Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap();
                        async move { Ok::<_, Infallible>(res) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        server
    }

    fn issuer(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, path: &str, body: String) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), (StatusCode::OK, body));
    }

    fn fail(&self, path: &str) {
        self.routes.lock().unwrap().insert(
            path.to_owned(),
            (StatusCode::SERVICE_UNAVAILABLE, String::new()),
        );
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Publishes a discovery document for `issuer` naming `jwks_path`.
    fn discovery(&self, issuer: &str, jwks_path: &str) {
        let document = json!({
            "issuer": issuer,
            "jwks_uri": format!("http://{}{jwks_path}", self.addr),
            "authorization_endpoint": format!("{issuer}/authorize"),
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        self.serve(DISCOVERY, document.to_string());
    }
}

const DISCOVERY: &str = "/.well-known/openid-configuration";

/// An ES256 key named `kid`: its signing key and its JWK.
fn named_key(kid: &str) -> (EncodingKey, Jwk) {
    use p256::pkcs8::{EncodePrivateKey, LineEnding};
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let signing =
        EncodingKey::from_ec_pem(secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&signing, Algorithm::ES256).unwrap();
    jwk.common.key_id = Some(kid.into());
    (signing, jwk)
}

fn keys(jwks: &[&Jwk]) -> String {
    json!({ "keys": jwks }).to_string()
}

fn token(kid: &str, key: &EncodingKey, iss: &str) -> Credential {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims: Value = json!({ "sub": "alice", "exp": exp, "iss": iss });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    Credential::new(
        encode(&header, &claims, key).unwrap(),
        CredentialSource::Bearer,
    )
}

fn validator(jwks: Jwks) -> JwtValidator<MyClaims> {
    JwtValidator::builder()
        .algorithm(Algorithm::ES256)
        .jwks(jwks)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn keys_are_found_through_the_discovery_document_and_rotate_like_a_jwks() {
    let (a, a_jwk) = named_key("a");
    let (b, b_jwk) = named_key("b");
    let server = Server::start().await;
    let issuer = server.issuer();
    server.discovery(&issuer, "/keys/v1");
    server.serve("/keys/v1", keys(&[&a_jwk]));
    let jwks = Jwks::discover(&issuer)
        .allow_http(true)
        .min_refetch_interval(Duration::from_secs(60))
        .refresh_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    assert_eq!(jwks.issuer(), Some(issuer.as_str()));
    let validator = validator(jwks.clone());

    // First use reads the document, then the keys it names.
    let claims = validator.validate(&token("a", &a, &issuer)).await.unwrap();
    assert_eq!(claims.sub, "alice");
    assert!(validator.validate(&token("a", &a, &issuer)).await.is_ok());
    assert_eq!((server.hits(DISCOVERY), server.hits("/keys/v1")), (1, 1));

    // The validator requires `iss` to be the discovered issuer.
    let err = validator
        .validate(&token("a", &a, "https://someone-else.example"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);

    // Rotation: an unknown kid refetches the keys (not the document), at
    // most once per interval.
    server.serve("/keys/v1", keys(&[&a_jwk, &b_jwk]));
    advance(Duration::from_secs(61)).await;
    assert!(validator.validate(&token("b", &b, &issuer)).await.is_ok());
    assert_eq!((server.hits(DISCOVERY), server.hits("/keys/v1")), (1, 2));
    let (c, _) = named_key("c");
    for _ in 0..3 {
        let err = validator
            .validate(&token("c", &c, &issuer))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    }
    assert_eq!(server.hits("/keys/v1"), 2);

    // The issuer moves its keys: the old URL fails, the document is read
    // again on the next fetch, and the cached keys keep working meanwhile.
    server.fail("/keys/v1");
    server.discovery(&issuer, "/keys/v2");
    server.serve("/keys/v2", keys(&[&b_jwk]));
    assert!(jwks.refresh().await.is_err());
    assert!(validator.validate(&token("b", &b, &issuer)).await.is_ok());
    assert_eq!(jwks.refresh().await.unwrap(), 1);
    assert_eq!((server.hits(DISCOVERY), server.hits("/keys/v2")), (2, 1));
    assert!(validator.validate(&token("b", &b, &issuer)).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_document_for_another_issuer_is_refused() {
    let (a, a_jwk) = named_key("a");
    let server = Server::start().await;
    let issuer = server.issuer();
    server.serve("/keys", keys(&[&a_jwk]));
    // The issuer must match exactly: not another host, not with a
    // trailing slash the configuration does not have.
    for claimed in ["https://evil.example", &format!("{issuer}/")] {
        server.discovery(claimed, "/keys");
        let jwks = Jwks::discover(&issuer).allow_http(true).build().unwrap();
        let err = jwks.refresh().await.unwrap_err();
        assert!(err.to_string().contains("is for issuer"), "{err}");
        let err = validator(jwks)
            .validate(&token("a", &a, &issuer))
            .await
            .unwrap_err();
        // B2: no key could be had, so the answer is unavailable, never valid.
        assert_eq!(err.kind(), ValidationErrorKind::Unavailable, "{claimed}");
    }
    assert_eq!(
        server.hits("/keys"),
        0,
        "the keys of a wrong document are never fetched"
    );
}

#[tokio::test(start_paused = true)]
async fn a_document_naming_plain_http_keys_off_loopback_is_refused() {
    let server = Server::start().await;
    let issuer = server.issuer();
    let document = json!({ "issuer": issuer, "jwks_uri": "http://keys.example.com/jwks.json" });
    server.serve(DISCOVERY, document.to_string());
    let jwks = Jwks::discover(&issuer).allow_http(true).build().unwrap();
    let err = jwks.refresh().await.unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");

    server.serve(DISCOVERY, "{\"issuer\": 1}".into());
    assert!(jwks.refresh().await.is_err());
    server.fail(DISCOVERY);
    assert!(jwks.refresh().await.is_err());
}

#[test]
fn issuers_must_be_https_urls() {
    for bad in [
        "http://accounts.example.com",
        "ftp://accounts.example.com",
        "https://accounts.example.com?tenant=1",
        "accounts.example.com",
    ] {
        let built = Jwks::discover(bad).allow_http(true).build();
        assert!(
            matches!(built, Err(ConfigError::InvalidName { .. })),
            "{bad}"
        );
    }
    assert!(Jwks::discover("http://127.0.0.1:9").build().is_err());
    assert!(
        Jwks::discover("https://accounts.example.com")
            .build()
            .is_ok()
    );
}

#[tokio::test(start_paused = true)]
async fn an_explicit_issuer_replaces_the_discovered_one() {
    let (a, a_jwk) = named_key("a");
    let server = Server::start().await;
    let issuer = server.issuer();
    server.discovery(&issuer, "/keys");
    server.serve("/keys", keys(&[&a_jwk]));
    let validator = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::ES256)
        .jwks(Jwks::discover(&issuer).allow_http(true).build().unwrap())
        .issuer("https://legacy.example")
        .build()
        .unwrap();
    assert!(
        validator
            .validate(&token("a", &a, "https://legacy.example"))
            .await
            .is_ok()
    );
    assert!(validator.validate(&token("a", &a, &issuer)).await.is_err());
}
