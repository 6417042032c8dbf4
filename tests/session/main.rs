//! Sessions: rotated refresh tokens with reuse detection, short access
//! tokens, cookies, and the stores. Each test cites the requirement of
//! SECURITY.md it proves (S1–S4, and V3, C1, B1, L1, L3 they build on).
#![cfg(feature = "sessions")]

#[path = "../support/mod.rs"]
mod support;

mod cookies;
mod devices;
mod everywhere;
mod lifetimes;
#[cfg(feature = "redis")]
mod replicas;
mod reuse;
mod rotation;
mod stores;

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, Full};
use portcullis::{
    AuthRejection, Credential, CredentialSource, ValidationError, Validator,
    revoke::Revocations,
    session::{AccessTokens, Grant, SessionError, Sessions},
    validate::{Claims, JwtValidator},
};
use tower::{ServiceExt, service_fn, util::BoxCloneService};

/// The identity of the access tokens in these tests.
type Identity = Claims<serde_json::Value>;

/// In-memory sessions with a grace window of `grace`, and their list.
fn sessions(grace: Duration) -> (Sessions, Revocations) {
    support::logs::capture();
    let revocations = Revocations::new();
    let sessions = Sessions::builder(AccessTokens::generate().unwrap(), &revocations)
        .grace(grace)
        .build()
        .unwrap();
    (sessions, revocations)
}

/// The validator of the sessions' access tokens, honouring their list.
fn validator(sessions: &Sessions) -> JwtValidator<serde_json::Value> {
    sessions.validator().build().unwrap()
}

/// Validates `grant`'s access token.
async fn access(
    validator: &JwtValidator<serde_json::Value>,
    grant: &Grant,
) -> Result<Identity, ValidationError> {
    let credential = Credential::new(grant.access_token(), CredentialSource::Bearer);
    validator.validate(&credential).await
}

/// A service answering the three endpoints under `/auth` with the helpers:
/// `POST /auth/login` signs in the subject named by the body
/// (`alice:wonderland` only; anything else is 401) with `sign_in_from`,
/// `/auth/refresh` and `/auth/logout` read the refresh cookie.
type Endpoints = BoxCloneService<Request<String>, Response<Full<Bytes>>, Infallible>;

fn endpoints(sessions: Sessions) -> Endpoints {
    BoxCloneService::new(service_fn(move |request: Request<String>| {
        let sessions = sessions.clone();
        async move {
            let (parts, body) = request.into_parts();
            let response: Response<Bytes> = match parts.uri.path() {
                "/auth/login" if body == "alice:wonderland" => {
                    answer(sessions.sign_in_from(&parts, "alice").await)
                }
                "/auth/login" => Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .body(Bytes::new())
                    .unwrap(),
                "/auth/refresh" => answer(sessions.refresh(&parts).await),
                "/auth/logout" => answer(sessions.sign_out(&parts).await),
                _ => Response::builder()
                    .status(StatusCode::NOT_FOUND)
                    .body(Bytes::new())
                    .unwrap(),
            };
            Ok::<_, Infallible>(response.map(Full::new))
        }
    }))
}

fn answer<T: Into<Response<Bytes>>>(result: Result<T, SessionError>) -> Response<Bytes> {
    match result {
        Ok(ok) => ok.into(),
        Err(error) => error.into(),
    }
}

/// A same-origin browser `POST` to `path` with `cookie` (`name=value`), if
/// any.
fn post(path: &str, cookie: Option<&str>) -> Request<String> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, "memos.example")
        .header("sec-fetch-site", "same-origin")
        .header("x-client", "192.0.2.1");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(String::new()).unwrap()
}

/// Status, headers and body of a response.
async fn read<B>(response: Response<B>) -> (StatusCode, HeaderMap, String)
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// The refresh token a `Set-Cookie` sets.
fn cookie_token(headers: &HeaderMap) -> String {
    let set_cookie = headers[header::SET_COOKIE].to_str().unwrap();
    let (pair, _) = set_cookie.split_once(';').unwrap();
    pair.strip_prefix("refresh=").unwrap().to_owned()
}

fn rejection<B>(response: &Response<B>) -> Option<&AuthRejection> {
    response.extensions().get::<AuthRejection>()
}
