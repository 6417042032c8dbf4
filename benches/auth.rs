//! Per-request cost of authentication, side by side with tower-http's bearer
//! check and a bare service, in one run.
//!
//! `cargo bench --bench auth`

use std::{
    collections::HashMap,
    convert::Infallible,
    future::Future,
    hint::black_box,
    pin::pin,
    sync::Arc,
    task::{Context, Poll, Waker},
};

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header::AUTHORIZATION};
use portcullis::{
    AuthLayer, Credential, ValidationError, Validator,
    extract::{Bearer, Extractor},
};
use tower::{Layer, Service, service_fn};

const TOKEN: &str = "Bearer mF_9.B5f-4.1JqM-alice-token";

/// Polls a future that completes without waiting (every service here does).
fn now<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("benchmarked services never wait"),
    }
}

fn request() -> Request<String> {
    let mut req = Request::new(String::new());
    req.headers_mut()
        .insert(AUTHORIZATION, HeaderValue::from_static(TOKEN));
    req
}

fn round_trip<S>(svc: &mut S)
where
    S: Service<Request<String>>,
    S::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| svc.poll_ready(cx))).unwrap();
    black_box(now(svc.call(request())).unwrap());
}

#[derive(Clone)]
struct InMemory(Arc<HashMap<&'static str, &'static str>>);

impl Validator for InMemory {
    type Identity = &'static str;

    async fn validate(&self, credential: &Credential) -> Result<&'static str, ValidationError> {
        self.0
            .get(credential.secret())
            .copied()
            .ok_or_else(ValidationError::invalid)
    }
}

async fn handler(_: Request<String>) -> Result<Response<String>, Infallible> {
    Ok(Response::new(String::new()))
}

fn bench(c: &mut Criterion) {
    let extractor = Extractor::new(Bearer::new());
    let (parts, _) = request().into_parts();
    c.bench_function("extract/bearer", |b| {
        b.iter(|| black_box(extractor.extract(black_box(&parts))))
    });

    let mut group = c.benchmark_group("round_trip");
    let mut bare = service_fn(handler);
    group.bench_function("bare", |b| b.iter(|| round_trip(&mut bare)));

    #[allow(deprecated)] // the peer being compared against
    let mut tower_http =
        tower_http::validate_request::ValidateRequestHeaderLayer::bearer(&TOKEN[7..])
            .layer(service_fn(handler));
    group.bench_function("tower_http_bearer", |b| {
        b.iter(|| round_trip(&mut tower_http))
    });

    let validator = InMemory(Arc::new(HashMap::from([(&TOKEN[7..], "alice")])));
    let mut portcullis = AuthLayer::new(validator).layer(service_fn(handler));
    group.bench_function("portcullis_auth", |b| {
        b.iter(|| round_trip(&mut portcullis))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
