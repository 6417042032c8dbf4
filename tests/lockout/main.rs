//! Behaviour of the failed-attempt limiter. Each test cites the requirement
//! of SECURITY.md it proves.

#[path = "../support/mod.rs"]
mod support;

mod concurrency;
mod counting;
mod delay;
#[cfg(feature = "cookie")]
mod devices;
mod events;
#[cfg(feature = "redis")]
mod first_contact;
mod keys;
mod lists;
mod lockouts;
mod login;
mod logs;
mod many_keys;
mod order;
#[cfg(feature = "redis")]
mod replicas;
mod smart;
#[cfg(feature = "axum")]
mod stack;
mod tables;
#[cfg(feature = "redis")]
mod unlock;

use std::{
    convert::Infallible,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{Request, Response, StatusCode, header, request::Parts};
use http_body_util::BodyExt;
use portcullis::{
    AuthRejection, PeerAddr, ResponseBody,
    lockout::{
        Failed, FailureOutcome, LockoutBuilder, LockoutLayer, Outcome, Policy, Succeeded, Tracker,
    },
    reject::RejectionKind,
};
use tokio::{sync::Semaphore, time::advance};
use tower::{Layer, ServiceExt, service_fn, util::BoxCloneService};

type Svc = BoxCloneService<Request<String>, Response<ResponseBody<String>>, Infallible>;

type ByClient = fn(&Parts) -> Result<String, AuthRejection>;
type TestLayer = LockoutLayer<ByClient>;

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// Keys on the `x-client` header; no header is "no client address".
fn by_client(parts: &Parts) -> Result<String, AuthRejection> {
    parts
        .headers
        .get("x-client")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| AuthRejection::new(RejectionKind::NoClientAddress))
}

/// What an auth layer or a handler would answer for the outcome named in
/// the `x-outcome` header.
fn answer(outcome: &str) -> Response<String> {
    let rejection = |status: u16, kind| {
        let mut res = Response::builder()
            .status(status)
            .body(String::new())
            .unwrap();
        res.extensions_mut().insert(AuthRejection::new(kind));
        res
    };
    match outcome {
        "invalid" => rejection(401, RejectionKind::Invalid),
        "revoked" => rejection(401, RejectionKind::Revoked),
        "missing" => rejection(401, RejectionKind::Missing),
        "malformed" => rejection(400, RejectionKind::Malformed),
        "scope" => rejection(403, RejectionKind::InsufficientScope),
        "expired" => rejection(401, RejectionKind::Expired),
        "unavailable" => {
            let mut res = Response::builder()
                .status(503)
                .header(header::RETRY_AFTER, "7")
                .body(String::new())
                .unwrap();
            res.extensions_mut().insert(
                AuthRejection::new(RejectionKind::Unavailable)
                    .with_retry_after(Duration::from_secs(7)),
            );
            res
        }
        "plain401" => Response::builder().status(401).body(String::new()).unwrap(),
        "422" => Response::builder().status(422).body(String::new()).unwrap(),
        "marker" => {
            let mut res = Response::new("try again".to_owned());
            res.extensions_mut().insert(Failed::new());
            res
        }
        "succeeded" => {
            let mut res = Response::new("welcome".to_owned());
            res.extensions_mut().insert(Succeeded);
            res
        }
        _ => Response::new("welcome".to_owned()),
    }
}

fn outcome_of<B>(req: &Request<B>) -> String {
    req.headers()
        .get("x-outcome")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("ok")
        .to_owned()
}

/// The layer over an inner service that counts its calls.
fn guarded(layer: TestLayer) -> (Svc, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let inner = service_fn(move |req: Request<String>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let outcome = outcome_of(&req);
        async move { Ok::<_, Infallible>(answer(&outcome)) }
    });
    (BoxCloneService::new(layer.layer(inner)), calls)
}

fn layer(policy: Policy) -> TestLayer {
    builder(policy).build().unwrap()
}

/// The builder of [`layer`], for the tests that set more.
fn builder(policy: Policy) -> LockoutBuilder<ByClient> {
    support::logs::capture();
    LockoutLayer::builder(policy).key(by_client as ByClient)
}

fn setup(policy: Policy) -> (Svc, Tracker<String>, Arc<AtomicUsize>) {
    let layer = layer(policy);
    let tracker = layer.tracker().clone();
    let (svc, calls) = guarded(layer);
    (svc, tracker, calls)
}

fn request(client: &str, outcome: &str) -> Request<String> {
    Request::builder()
        .header("x-client", client)
        .header("x-outcome", outcome)
        .header(header::AUTHORIZATION, "Bearer some-token")
        .body(String::new())
        .unwrap()
}

async fn send(svc: &Svc, client: &str, outcome: &str) -> Response<ResponseBody<String>> {
    svc.clone().oneshot(request(client, outcome)).await.unwrap()
}

fn max(n: u32) -> Policy {
    support::logs::capture();
    Policy::builder().max_failures(n).build().unwrap()
}

fn key(s: &str) -> String {
    s.to_owned()
}

fn rejection_kind<B>(res: &Response<B>) -> Option<RejectionKind> {
    res.extensions()
        .get::<AuthRejection>()
        .map(AuthRejection::kind)
}
