//! Instructions per request, for `valgrind --tool=callgrind`: the one
//! measure that this shared, noisy machine does not move.
//!
//! Each run sends `N` requests through one service and exits; the cost of
//! a request is `(instructions with N) - (instructions with 0)`, divided by
//! `N`, so building the service and the runtime cancels out. Requests are
//! built the same way for every service, so comparing two services compares
//! only what they add.
//!
//! ```sh
//! cargo bench --bench instructions --no-run --features axum
//! scripts: see BENCHMARKS.md ("Instruction counts")
//! valgrind --tool=callgrind target/release/deps/instructions-* --bench lockout/portcullis 100000
//! ```
//!
//! Run without valgrind (`cargo bench --bench instructions`) it checks that
//! every service answers 200 and prints nothing else.

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    net::{Ipv4Addr, SocketAddr},
    pin::pin,
    task::{Context, Poll, Waker},
};

use axum::{body::Body, extract::ConnectInfo};
use http::{HeaderValue, Request, Response, StatusCode, header::AUTHORIZATION};
use portcullis::{
    AuthLayer, Credential, ValidationError, Validator,
    lockout::{LockoutLayer, Policy},
    rate_limit::RateLimitLayer,
    stack::Stack,
};
use tower::{Layer, Service, ServiceBuilder, service_fn, util::BoxService};
use tower_governor::{GovernorLayer, governor::GovernorConfigBuilder};
use tower_http::validate_request::ValidateRequestHeaderLayer;

const TOKEN: &str = "mF_9.B5f-4.1JqM-alice-token";

/// A request as a server hands it over: a bearer token, and the peer
/// address in the extensions (so the extension map exists, as it always
/// does under hyper and axum).
fn request(client: u32) -> Request<Body> {
    let mut req = Request::new(Body::empty());
    req.headers_mut().insert(
        AUTHORIZATION,
        HeaderValue::from_static("Bearer mF_9.B5f-4.1JqM-alice-token"),
    );
    let ip = Ipv4Addr::from(0x0a00_0000 | (client & 0x00ff_ffff));
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
    req
}

/// The handler: 200 at once.
async fn ok(_: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(Response::new(Body::empty()))
}

/// An in-memory validator doing what tower-http's check does: one
/// comparison, answered at once (`validate_now`), as an in-memory validator
/// should be.
struct InMemory;

fn compare(credential: &Credential) -> Result<&'static str, ValidationError> {
    if credential.secret() == TOKEN {
        Ok("alice")
    } else {
        Err(ValidationError::invalid())
    }
}

impl Validator for InMemory {
    type Identity = &'static str;

    async fn validate(&self, credential: &Credential) -> Result<&'static str, ValidationError> {
        compare(credential)
    }

    fn validate_now(
        &self,
        credential: &Credential,
    ) -> Option<Result<&'static str, ValidationError>> {
        Some(compare(credential))
    }
}

/// The same comparison behind `validate` only: what a validator that does
/// not implement `validate_now` costs (a boxed future, polled once).
struct InMemoryAsync;

impl Validator for InMemoryAsync {
    type Identity = &'static str;

    async fn validate(&self, credential: &Credential) -> Result<&'static str, ValidationError> {
        compare(credential)
    }
}

type Svc = BoxService<Request<Body>, StatusCode, Infallible>;

/// Boxes a service down to the status it answers, so every kind fits one
/// type; the boxing costs every service the same.
fn boxed<S, B>(svc: S) -> Svc
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Send + 'static,
    S::Future: Send + 'static,
{
    BoxService::new(tower::ServiceExt::map_response(svc, |res: Response<B>| {
        res.status()
    }))
}

fn portcullis_rate_limit() -> RateLimitLayer {
    RateLimitLayer::builder()
        .per_second(1_000_000)
        .burst(1_000_000_000)
        .build()
        .unwrap()
}

fn service(name: &str) -> Svc {
    let governor = || {
        let config = GovernorConfigBuilder::default()
            .per_nanosecond(1)
            .burst_size(u32::MAX)
            .finish()
            .unwrap();
        GovernorLayer::new(config)
    };
    let handler = service_fn(ok);
    match name {
        "bare" => boxed(handler),
        #[allow(deprecated)] // the peer being compared against
        "auth/tower_http" => boxed(ValidateRequestHeaderLayer::bearer(TOKEN).layer(handler)),
        "auth/portcullis" => boxed(AuthLayer::new(InMemory).layer(handler)),
        "auth/portcullis_async" => boxed(AuthLayer::new(InMemoryAsync).layer(handler)),
        "lockout/portcullis" => boxed(LockoutLayer::new(Policy::default()).layer(handler)),
        "lockout/portcullis+auth" => boxed(
            ServiceBuilder::new()
                .layer(LockoutLayer::new(Policy::default()))
                .layer(AuthLayer::new(InMemory))
                .service(handler),
        ),
        "rate/portcullis" => boxed(portcullis_rate_limit().layer(handler)),
        "rate/tower_governor" | "lockout/tower_governor" => boxed(governor().layer(handler)),
        "stack/portcullis" | "stack/portcullis+metrics" | "stack/portcullis+prometheus" => boxed(
            ServiceBuilder::new()
                .layer(portcullis_rate_limit())
                .layer(LockoutLayer::new(Policy::default()))
                .layer(AuthLayer::new(InMemory))
                .service(handler),
        ),
        // The documented way to put layers together: the auth layer alone,
        // with a lockout (the lockout's share is the difference), and the
        // same three layers as above.
        "stack/auth" => boxed(Stack::new(AuthLayer::new(InMemory)).layer(handler)),
        "stack/auth+lockout" => boxed(
            Stack::new(AuthLayer::new(InMemory))
                .lockout(LockoutLayer::new(Policy::default()))
                .layer(handler),
        ),
        "stack/portcullis_stack" => boxed(
            Stack::new(AuthLayer::new(InMemory))
                .lockout(LockoutLayer::new(Policy::default()))
                .rate_limit(portcullis_rate_limit())
                .layer(handler),
        ),
        #[allow(deprecated)] // the peer being compared against
        "stack/tower_governor+tower_http" => boxed(
            ServiceBuilder::new()
                .layer(governor())
                .layer(ValidateRequestHeaderLayer::bearer(TOKEN))
                .service(handler),
        ),
        other => panic!("unknown service {other}"),
    }
}

const SERVICES: [&str; 14] = [
    "bare",
    "auth/tower_http",
    "auth/portcullis",
    "auth/portcullis_async",
    "lockout/portcullis",
    "lockout/portcullis+auth",
    "lockout/tower_governor",
    "rate/portcullis",
    "rate/tower_governor",
    "stack/portcullis",
    "stack/auth",
    "stack/auth+lockout",
    "stack/portcullis_stack",
    "stack/tower_governor+tower_http",
];

/// Subscribes the metrics for the `+metrics` services: with the facade's
/// no-op recorder, or with the Prometheus recorder.
fn metrics(name: &str) {
    #[cfg(feature = "metrics")]
    match name {
        "stack/portcullis+metrics" => portcullis::events::metrics::install(),
        "stack/portcullis+prometheus" => {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .install_recorder()
                .unwrap();
            portcullis::events::metrics::install();
        }
        _ => {}
    }
    #[cfg(not(feature = "metrics"))]
    assert!(
        !name.ends_with("+metrics") && !name.ends_with("+prometheus"),
        "{name} needs --features metrics"
    );
}

/// Sends `n` requests from `clients` clients, round robin.
fn run(svc: &mut Svc, n: u32, clients: u32) {
    let mut cx = Context::from_waker(Waker::noop());
    for i in 0..n {
        let Poll::Ready(Ok(())) = svc.poll_ready(&mut cx) else {
            panic!("the service is always ready");
        };
        let Poll::Ready(Ok(status)) = pin!(svc.call(request(i % clients))).poll(&mut cx) else {
            panic!("the service answers at once");
        };
        assert_eq!(black_box(status), StatusCode::OK);
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    // A runtime for the layers that read tokio time; requests never wait.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    if let Some(name) = args.first() {
        metrics(name);
    }
    match args.as_slice() {
        [name, n] => {
            let mut svc = service(name);
            let n = n.parse().expect("N is a number");
            run(&mut svc, n, 1);
        }
        [name, n, clients] => {
            let mut svc = service(name);
            run(&mut svc, n.parse().unwrap(), clients.parse().unwrap());
        }
        _ => {
            for name in SERVICES {
                run(&mut service(name), 100, 7);
            }
        }
    }
}
