//! RateLimitLayer behaviour, on paused tokio time.

mod support;

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use http::{HeaderValue, Request, Response, StatusCode, header, request::Parts};
use portcullis::{
    AuthRejection, ClientIp, ConfigError, PeerAddr, ResponseBody,
    rate_limit::{HeaderFields, RateLimit, RateLimitLayer},
    reject::RejectionKind,
};
use tower::{Layer, Service, ServiceExt, service_fn};

type Res = Response<ResponseBody<String>>;

/// The inner service: answers 200 and counts its calls.
#[derive(Clone, Default)]
struct Inner {
    calls: Arc<AtomicUsize>,
}

impl Inner {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn service(
        &self,
    ) -> impl Service<Request<String>, Response = Response<String>, Error = Infallible, Future: Send>
    + Clone
    + use<> {
        let calls = Arc::clone(&self.calls);
        service_fn(move |_req: Request<String>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, Infallible>(Response::new(String::from("ok"))) }
        })
    }
}

fn request(peer: &str) -> Request<String> {
    let mut builder = Request::builder();
    if !peer.is_empty() {
        let peer: SocketAddr = peer.parse().unwrap();
        builder = builder.extension(PeerAddr(peer));
    }
    builder.body(String::new()).unwrap()
}

fn grpc_request(peer: &str) -> Request<String> {
    let mut req = request(peer);
    req.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    req
}

async fn send<S>(svc: &mut S, req: Request<String>) -> Res
where
    S: Service<Request<String>, Response = Res, Error = Infallible>,
{
    svc.ready().await.unwrap().call(req).await.unwrap()
}

async fn hit<S>(svc: &mut S, peer: &str) -> StatusCode
where
    S: Service<Request<String>, Response = Res, Error = Infallible>,
{
    send(svc, request(peer)).await.status()
}

fn retry_after(res: &Res) -> u64 {
    res.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn header_u64(res: &Res, name: &str) -> u64 {
    res.headers()[name].to_str().unwrap().parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn burst_passes_then_429_with_retry_after_of_at_least_one_second() {
    let inner = Inner::default();
    let layer = RateLimitLayer::builder().per_second(5).build().unwrap();
    let mut svc = layer.layer(inner.service());

    for _ in 0..5 {
        assert_eq!(hit(&mut svc, "192.0.2.1:1000").await, StatusCode::OK);
    }
    let res = send(&mut svc, request("192.0.2.1:1000")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&res), 1);
    assert_eq!(
        res.extensions()
            .get::<AuthRejection>()
            .map(AuthRejection::kind),
        Some(RejectionKind::RateLimited)
    );
    // the refused request never reached the inner service
    assert_eq!(inner.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_rounded_up_and_never_zero() {
    let layer = RateLimitLayer::builder()
        .rate(1, Duration::from_secs(3))
        .build()
        .unwrap();
    let mut svc = layer.layer(Inner::default().service());
    assert_eq!(hit(&mut svc, "192.0.2.1:1").await, StatusCode::OK);

    let res = send(&mut svc, request("192.0.2.1:1")).await;
    assert_eq!(retry_after(&res), 3);

    tokio::time::advance(Duration::from_millis(1500)).await;
    let res = send(&mut svc, request("192.0.2.1:1")).await;
    assert_eq!(retry_after(&res), 2, "1.5 s rounds up to 2");

    tokio::time::advance(Duration::from_millis(1499)).await;
    let res = send(&mut svc, request("192.0.2.1:1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&res), 1, "1 ms left is still 1 s, never 0");
}

#[tokio::test(start_paused = true)]
async fn allowance_comes_back_at_the_configured_rate() {
    let inner = Inner::default();
    let layer = RateLimitLayer::builder()
        .per_second(1)
        .burst(2)
        .build()
        .unwrap();
    let mut svc = layer.layer(inner.service());
    let peer = "192.0.2.1:1";

    assert_eq!(hit(&mut svc, peer).await, StatusCode::OK);
    assert_eq!(hit(&mut svc, peer).await, StatusCode::OK);
    assert_eq!(hit(&mut svc, peer).await, StatusCode::TOO_MANY_REQUESTS);

    tokio::time::advance(Duration::from_millis(999)).await;
    assert_eq!(hit(&mut svc, peer).await, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(hit(&mut svc, peer).await, StatusCode::OK);
    assert_eq!(hit(&mut svc, peer).await, StatusCode::TOO_MANY_REQUESTS);

    // hammering while limited does not push the next allowance further out
    for _ in 0..100 {
        assert_eq!(hit(&mut svc, peer).await, StatusCode::TOO_MANY_REQUESTS);
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(hit(&mut svc, peer).await, StatusCode::OK);

    // a quiet client gets its whole burst back
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(hit(&mut svc, peer).await, StatusCode::OK);
    assert_eq!(hit(&mut svc, peer).await, StatusCode::OK);
    assert_eq!(hit(&mut svc, peer).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(inner.calls(), 6);
}

#[tokio::test(start_paused = true)]
async fn separate_clients_have_separate_budgets() {
    let layer = RateLimitLayer::builder().per_minute(1).build().unwrap();
    let mut svc = layer.layer(Inner::default().service());

    assert_eq!(hit(&mut svc, "192.0.2.1:1").await, StatusCode::OK);
    assert_eq!(
        hit(&mut svc, "192.0.2.1:2").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(hit(&mut svc, "192.0.2.2:1").await, StatusCode::OK);
    assert_eq!(hit(&mut svc, "[2001:db8::1]:1").await, StatusCode::OK);
    // B9: the same /64 is the same client, the mapped form too
    assert_eq!(
        hit(&mut svc, "[2001:db8::2]:1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        hit(&mut svc, "[::ffff:192.0.2.2]:1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(hit(&mut svc, "[2001:db8:0:1::1]:1").await, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn clients_behind_a_trusted_proxy_have_separate_budgets() {
    // B8: the key is the forwarded client, not the proxy.
    let layer = RateLimitLayer::builder()
        .per_minute(1)
        .key(
            ClientIp::builder()
                .trust_proxies(["10.0.0.0/8"])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let mut svc = layer.layer(Inner::default().service());
    let via_proxy = |client: &str| {
        let mut req = request("10.0.0.2:5000");
        req.headers_mut()
            .insert("x-forwarded-for", HeaderValue::from_str(client).unwrap());
        req
    };
    assert_eq!(
        send(&mut svc, via_proxy("198.51.100.1")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut svc, via_proxy("198.51.100.2")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut svc, via_proxy("198.51.100.1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test(start_paused = true)]
async fn grpc_request_over_the_limit_gets_resource_exhausted() {
    let layer = RateLimitLayer::builder().per_minute(1).build().unwrap();
    let mut svc = layer.layer(Inner::default().service());
    assert_eq!(
        send(&mut svc, grpc_request("192.0.2.1:1")).await.status(),
        StatusCode::OK
    );

    let res = send(&mut svc, grpc_request("192.0.2.1:1")).await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "gRPC errors are trailers-only HTTP 200"
    );
    assert_eq!(res.headers()["grpc-status"], "8");
    assert_eq!(res.headers()[header::CONTENT_TYPE], "application/grpc");
    assert!(retry_after(&res) >= 1);
}

#[tokio::test(start_paused = true)]
async fn request_without_client_address_is_a_500_not_a_shared_bucket() {
    // B10
    let inner = Inner::default();
    let layer = RateLimitLayer::builder().per_minute(1).build().unwrap();
    let mut svc = layer.layer(inner.service());

    for _ in 0..3 {
        let res = send(&mut svc, request("")).await;
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            res.extensions()
                .get::<AuthRejection>()
                .map(AuthRejection::kind),
            Some(RejectionKind::NoClientAddress)
        );
    }
    let res = send(&mut svc, grpc_request("")).await;
    assert_eq!(res.headers()["grpc-status"], "13");
    assert_eq!(inner.calls(), 0);
    assert_eq!(layer.stats().entries, 0);
}

#[tokio::test(start_paused = true)]
async fn rate_limit_headers_report_limit_remaining_and_reset() {
    let layer = RateLimitLayer::builder()
        .rate(3, Duration::from_secs(30)) // one every 10 s
        .rate_limit_headers(true)
        .build()
        .unwrap();
    let mut svc = layer.layer(Inner::default().service());

    let res = send(&mut svc, request("192.0.2.1:1")).await;
    assert_eq!(header_u64(&res, "ratelimit-limit"), 3);
    assert_eq!(header_u64(&res, "ratelimit-remaining"), 2);
    assert_eq!(header_u64(&res, "ratelimit-reset"), 10);

    send(&mut svc, request("192.0.2.1:1")).await;
    let res = send(&mut svc, request("192.0.2.1:1")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header_u64(&res, "ratelimit-remaining"), 0);
    assert_eq!(header_u64(&res, "ratelimit-reset"), 30);

    tokio::time::advance(Duration::from_secs(4)).await;
    let res = send(&mut svc, request("192.0.2.1:1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header_u64(&res, "ratelimit-limit"), 3);
    assert_eq!(header_u64(&res, "ratelimit-remaining"), 0);
    assert_eq!(retry_after(&res), 6);
    assert_eq!(header_u64(&res, "ratelimit-reset"), 26);

    // off by default
    let quiet = RateLimitLayer::builder().per_minute(3).build().unwrap();
    let res = send(
        &mut quiet.layer(Inner::default().service()),
        request("192.0.2.1:1"),
    )
    .await;
    assert!(res.headers().get("ratelimit-limit").is_none());
}

fn header<'a>(res: &'a Res, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test(start_paused = true)]
async fn structured_fields_follow_the_current_ratelimit_draft() {
    // draft-ietf-httpapi-ratelimit-headers-10: RateLimit-Policy and
    // RateLimit, structured fields (RFC 9651).
    let layer = RateLimitLayer::builder()
        .rate(3, Duration::from_secs(30)) // one every 10 s
        .header_fields(HeaderFields::Structured)
        .policy_name("per-client")
        .build()
        .unwrap();
    let mut svc = layer.layer(Inner::default().service());

    let res = send(&mut svc, request("192.0.2.1:1")).await;
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some(r#""per-client";q=3;w=30"#)
    );
    assert_eq!(header(&res, "ratelimit"), Some(r#""per-client";r=2;t=10"#));
    assert_eq!(header(&res, "ratelimit-limit"), None);

    send(&mut svc, request("192.0.2.1:1")).await;
    let res = send(&mut svc, request("192.0.2.1:1")).await;
    assert_eq!(header(&res, "ratelimit"), Some(r#""per-client";r=0;t=10"#));

    tokio::time::advance(Duration::from_secs(4)).await;
    let res = send(&mut svc, request("192.0.2.1:1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // On a refusal `t` is Retry-After: the draft asks that Retry-After
    // never point earlier than `t`.
    assert_eq!(retry_after(&res), 6);
    assert_eq!(header(&res, "ratelimit"), Some(r#""per-client";r=0;t=6"#));
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some(r#""per-client";q=3;w=30"#)
    );

    // Another client, one request in: two left, one more within an interval.
    let res = send(&mut svc, request("192.0.2.2:1")).await;
    assert_eq!(header(&res, "ratelimit"), Some(r#""per-client";r=2;t=10"#));
}

#[tokio::test(start_paused = true)]
async fn both_sets_of_fields_can_be_sent_and_the_default_policy_is_named_default() {
    let layer = RateLimitLayer::builder()
        .per_second(2)
        .header_fields(HeaderFields::Both)
        .build()
        .unwrap();
    let mut svc = layer.layer(Inner::default().service());
    let res = send(&mut svc, request("192.0.2.1:1")).await;
    assert_eq!(
        header(&res, "ratelimit-policy"),
        Some(r#""default";q=2;w=1"#)
    );
    assert_eq!(header(&res, "ratelimit"), Some(r#""default";r=1;t=1"#));
    assert_eq!(header_u64(&res, "ratelimit-limit"), 2);
    assert_eq!(header_u64(&res, "ratelimit-remaining"), 1);

    let bad = RateLimitLayer::builder()
        .per_second(2)
        .header_fields(HeaderFields::Structured)
        .policy_name("line\nbreak\u{7f}")
        .build();
    assert!(matches!(bad, Err(ConfigError::InvalidName { .. })));
}

#[tokio::test(start_paused = true)]
async fn a_flood_of_distinct_clients_never_grows_the_table_past_capacity() {
    // R3: 10x capacity distinct keys; the table stays bounded.
    let layer = RateLimitLayer::builder()
        .per_second(10)
        .max_capacity(1_000)
        .build()
        .unwrap();
    let mut svc = layer.layer(Inner::default().service());
    for i in 0..10_000u32 {
        let [_, _, a, b] = i.to_be_bytes();
        assert_eq!(
            hit(&mut svc, &format!("10.7.{a}.{b}:1")).await,
            StatusCode::OK
        );
        if i % 1_000 == 999 {
            assert!(layer.stats().entries <= 1_000, "{}", layer.stats().entries);
        }
    }
    assert!(layer.stats().entries <= 1_000);
    assert!(
        layer.stats().entries >= 900,
        "the table is used, not emptied"
    );
}

#[tokio::test(start_paused = true)]
async fn a_brand_new_client_is_limited_even_when_the_table_is_full_of_busy_clients() {
    // B5 analogue: an admission filter must not drop a new key (resetting its state).
    let layer = RateLimitLayer::builder()
        .per_minute(3)
        .max_capacity(100)
        .build()
        .unwrap();
    let mut svc = layer.layer(Inner::default().service());
    for round in 0..3 {
        for i in 0..100 {
            assert_eq!(
                hit(&mut svc, &format!("10.1.0.{i}:1")).await,
                StatusCode::OK,
                "{round}"
            );
        }
    }
    assert_eq!(layer.stats().entries, 100);

    let attacker = "203.0.113.66:1";
    for _ in 0..3 {
        assert_eq!(hit(&mut svc, attacker).await, StatusCode::OK);
    }
    for _ in 0..10 {
        assert_eq!(hit(&mut svc, attacker).await, StatusCode::TOO_MANY_REQUESTS);
    }
    assert!(layer.stats().entries <= 100);
}

#[tokio::test(start_paused = true)]
async fn a_limited_client_stays_limited_through_a_flood_of_unique_clients() {
    // B4 analogue: churning the table with 10x capacity new keys does not reset a limit.
    let inner = Inner::default();
    let layer = RateLimitLayer::builder()
        .per_minute(2)
        .max_capacity(100)
        .build()
        .unwrap();
    let mut svc = layer.layer(inner.service());
    let attacker = "203.0.113.66:1";
    assert_eq!(hit(&mut svc, attacker).await, StatusCode::OK);
    assert_eq!(hit(&mut svc, attacker).await, StatusCode::OK);
    assert_eq!(hit(&mut svc, attacker).await, StatusCode::TOO_MANY_REQUESTS);

    for i in 0..1_000u32 {
        let [_, _, a, b] = i.to_be_bytes();
        assert_eq!(
            hit(&mut svc, &format!("10.9.{a}.{b}:1")).await,
            StatusCode::OK
        );
        if i % 50 == 49 {
            assert!(layer.stats().entries <= 100);
        }
        // look only after more than a table's worth of new keys, so the
        // attacker is the least recently used entry by then
        if i % 250 == 249 {
            assert_eq!(
                hit(&mut svc, attacker).await,
                StatusCode::TOO_MANY_REQUESTS,
                "after {i} flood keys"
            );
        }
    }
    assert!(layer.stats().entries <= 100);
    assert_eq!(layer.stats().limited, 1);
    assert_eq!(inner.calls(), 2 + 1_000);

    // the limit ends on time, not never
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(hit(&mut svc, attacker).await, StatusCode::OK);
    assert_eq!(hit(&mut svc, attacker).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(start_paused = true)]
async fn clones_of_the_layer_and_service_share_one_table() {
    let layer = RateLimitLayer::builder().per_minute(1).build().unwrap();
    let mut first = layer.clone().layer(Inner::default().service());
    let mut second: RateLimit<_> = first.clone();
    assert_eq!(hit(&mut first, "192.0.2.1:1").await, StatusCode::OK);
    assert_eq!(
        hit(&mut second, "192.0.2.1:1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(layer.stats().entries, 1);
}

#[tokio::test(start_paused = true)]
async fn a_custom_key_counts_and_its_rejection_is_rendered() {
    let by_tenant = |parts: &Parts| {
        parts
            .headers
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| AuthRejection::new(RejectionKind::Malformed))
    };
    let layer = RateLimitLayer::builder()
        .per_minute(1)
        .key(by_tenant)
        .build()
        .unwrap();
    let mut svc = layer.layer(Inner::default().service());
    let tenant = |name: &str| {
        Request::builder()
            .header("x-tenant", name)
            .body(String::new())
            .unwrap()
    };
    assert_eq!(
        send(&mut svc, tenant("acme")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut svc, tenant("acme")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&mut svc, tenant("globex")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut svc, request("")).await.status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(start_paused = true)]
async fn a_custom_renderer_answers_refusals() {
    let layer = RateLimitLayer::builder()
        .per_minute(1)
        .renderer(|rejection: &AuthRejection, _: &Parts| {
            let mut res =
                Response::new(bytes::Bytes::from(format!("{{\"title\":\"{rejection}\"}}")));
            *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
            res
        })
        .build()
        .unwrap();
    let mut svc = layer.layer(Inner::default().service());
    hit(&mut svc, "192.0.2.1:1").await;
    let res = send(&mut svc, request("192.0.2.1:1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(res.extensions().get::<AuthRejection>().is_some());
}

#[tokio::test]
async fn configurations_that_cannot_work_are_refused() {
    let setting = |result: Result<RateLimitLayer, ConfigError>| match result {
        Err(ConfigError::OutOfRange { setting, .. }) => setting,
        other => panic!("expected OutOfRange, got {other:?}"),
    };
    assert_eq!(setting(RateLimitLayer::builder().build()), "rate");
    assert_eq!(
        setting(RateLimitLayer::builder().per_second(0).build()),
        "rate"
    );
    assert_eq!(
        setting(RateLimitLayer::builder().rate(1, Duration::ZERO).build()),
        "rate"
    );
    assert_eq!(
        setting(
            RateLimitLayer::builder()
                .rate(2, Duration::from_nanos(1))
                .build()
        ),
        "rate"
    );
    assert_eq!(
        setting(
            RateLimitLayer::builder()
                .rate(1, Duration::from_secs(u64::MAX))
                .build()
        ),
        "rate"
    );
    assert_eq!(
        setting(RateLimitLayer::builder().per_second(1).burst(0).build()),
        "burst"
    );
    assert_eq!(
        setting(
            RateLimitLayer::builder()
                .per_second(1)
                .max_capacity(0)
                .build()
        ),
        "max_capacity"
    );
    assert_eq!(
        setting(
            RateLimitLayer::builder()
                .per_second(1)
                .limited_capacity(0)
                .build()
        ),
        "limited_capacity"
    );
    assert!(
        RateLimitLayer::builder()
            .per_second(1)
            .max_capacity(1)
            .build()
            .is_ok()
    );
}

#[test]
fn concurrent_first_requests_from_one_client_get_exactly_the_burst() {
    // The check and the update are one atomic step per key, and a new key's
    // state is created once: 64 racing requests cannot each start from a
    // fresh burst. Real time here (threads); one allowance takes 12 s to
    // come back, far longer than the test.
    let inner = Inner::default();
    let layer = RateLimitLayer::builder().per_minute(5).build().unwrap();
    let svc = layer.layer(inner.service());
    let barrier = std::sync::Barrier::new(8);
    let allowed = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            let mut svc = svc.clone();
            let (barrier, allowed) = (&barrier, &allowed);
            scope.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                barrier.wait();
                for _ in 0..8 {
                    if rt.block_on(hit(&mut svc, "192.0.2.1:1")) == StatusCode::OK {
                        allowed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    assert_eq!(allowed.load(Ordering::SeqCst), 5);
    assert_eq!(inner.calls(), 5);
}

// ---------------------------------------------------------------- D, R5

#[cfg(feature = "redis")]
mod shared_store {
    //! Against a real redis-server: `PORTCULLIS_REDIS_URL` names one; without
    //! it these tests say they are skipped, except in CI, where that fails.

    use portcullis::RedisStore;
    use redis::AsyncCommands;

    use super::*;
    use crate::support::redis::{Server, redis_url, store, unique_prefix};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn d5_tokens_taken_in_batches_never_exceed_the_quota() {
        // D5: two replicas take tokens in growing batches; together they
        // admit no more than the quota, and a returning client costs far
        // fewer than one Redis call per request.
        let Some(url) = redis_url() else { return };
        let prefix = unique_prefix();
        const BURST: u32 = 400;
        let layers = [
            RateLimitLayer::builder()
                .per_hour(BURST)
                .redis(store(&url, &prefix).await)
                .build()
                .unwrap(),
            RateLimitLayer::builder()
                .per_hour(BURST)
                .redis(store(&url, &prefix).await)
                .build()
                .unwrap(),
        ];
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let tat = format!("{prefix}{{192.0.2.9}}:t");
        let inner = Inner::default();
        let mut allowed = 0;
        for round in 0..600 {
            let layer = &layers[round % 2];
            let svc = layer.layer(inner.service());
            if svc
                .oneshot(request("192.0.2.9:40000"))
                .await
                .unwrap()
                .status()
                == StatusCode::OK
            {
                allowed += 1;
            }
        }
        // What Redis granted: the theoretical arrival time moved by one
        // interval (9 s) per token.
        let tat_us: i64 = con.get(&tat).await.unwrap();
        let now: (i64, i64) = redis::cmd("TIME").query_async(&mut con).await.unwrap();
        let now_us = now.0 * 1_000_000 + now.1;
        let granted = (tat_us - now_us + 9_000_000 - 1) / 9_000_000;
        assert!(allowed <= BURST as usize, "{allowed} allowed");
        assert!(granted <= i64::from(BURST), "{granted} granted");
        // Each replica may strand at most one batch (an eighth of the
        // burst at most).
        assert!(
            allowed + 2 * (BURST as usize / 8) >= BURST as usize,
            "{allowed}"
        );
        assert_eq!(inner.calls(), allowed);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_layers_sharing_redis_allow_exactly_the_burst_across_both_under_concurrency() {
        // D2 (rate-limit analogue), D3, D1
        let Some(url) = redis_url() else { return };
        let prefix = unique_prefix();
        const BURST: u32 = 5;
        let layers = [
            RateLimitLayer::builder()
                .per_hour(BURST)
                .redis(store(&url, &prefix).await)
                .build()
                .unwrap(),
            RateLimitLayer::builder()
                .per_hour(BURST)
                .redis(store(&url, &prefix).await)
                .build()
                .unwrap(),
        ];
        let inner = Inner::default();
        let mut tasks = Vec::new();
        for layer in &layers {
            for _ in 0..32 {
                let svc = layer.layer(inner.service());
                tasks.push(tokio::spawn(async move {
                    svc.oneshot(request("192.0.2.7:40000")).await.unwrap()
                }));
            }
        }
        let mut allowed = 0;
        for task in tasks {
            let res = task.await.unwrap();
            match res.status() {
                StatusCode::OK => allowed += 1,
                StatusCode::TOO_MANY_REQUESTS => {
                    // The next request is one interval (12 minutes) away,
                    // by the Redis server's clock.
                    let secs = retry_after(&res);
                    assert!((700..=720).contains(&secs), "Retry-After {secs}");
                }
                other => panic!("unexpected {other}"),
            }
        }
        assert_eq!(allowed, BURST as usize);
        assert_eq!(inner.calls(), BURST as usize);
        for layer in &layers {
            assert_eq!(
                layer.stats().fallbacks,
                0,
                "a decision was made without redis"
            );
        }

        // D1: every key the script left behind has a TTL, and it is at most
        // the time a full burst takes to come back.
        let client = redis::Client::open(url.as_str()).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = con.keys(format!("{prefix}*")).await.unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        for k in keys {
            let ttl: i64 = con.pttl(&k).await.unwrap();
            assert!(ttl > 0, "{k} has no TTL ({ttl})");
            assert!(ttl <= 3_600_000, "{k} outlives a full refill ({ttl} ms)");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn with_redis_killed_requests_are_still_limited_by_the_local_table() {
        // R5 (rate-limit analogue): never "no limit".
        if redis_url().is_none() {
            return;
        }
        let Some(mut server) = Server::start_free() else {
            return;
        };
        let url = server.url();
        server.ready().await;
        let connected = RedisStore::connect(&url)
            .await
            .expect("redis-server accepts connections");
        server.kill();

        let layer = RateLimitLayer::builder()
            .per_hour(3)
            .redis(
                connected
                    .prefix(unique_prefix())
                    .timeout(Duration::from_millis(200)),
            )
            .build()
            .unwrap();
        let inner = Inner::default();
        let mut svc = layer.layer(inner.service());
        for _ in 0..3 {
            let status = tokio::time::timeout(Duration::from_secs(5), hit(&mut svc, "192.0.2.9:1"))
                .await
                .expect("the layer kept answering");
            assert_eq!(status, StatusCode::OK);
        }
        let res = send(&mut svc, request("192.0.2.9:1")).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(retry_after(&res) > 0);
        assert_eq!(inner.calls(), 3);
        assert!(layer.stats().fallbacks > 0);
    }
}
