//! What operators see: an audit event and a log line for every counted
//! failure, the key that refused a request, account keys without quotes.

use bytes::Bytes;
use http_body_util::Full;
use portcullis::{
    body_key::{BodyField, BodyKeyLayer},
    events::{self, Event},
};
use tower::ServiceBuilder;

use super::*;

/// A login route keyed by address and by account: every password is
/// wrong, and the handler says so with `Failed`.
type Login =
    BoxCloneService<Request<Full<Bytes>>, Response<ResponseBody<ResponseBody<String>>>, Infallible>;

fn login(per_account: u32) -> Login {
    support::logs::capture();
    let lockout = LockoutLayer::builder(Policy::default())
        .also_key(
            BodyField::key,
            Policy::builder().max_failures(per_account).build().unwrap(),
        )
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(BodyKeyLayer::new("username", |req| {
            req.uri.path() == "/login"
        }))
        .layer(lockout)
        .service_fn(|_req: Request<_>| async {
            let mut res = Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .body(String::new())
                .unwrap();
            res.extensions_mut().insert(Failed::new());
            Ok::<_, Infallible>(res)
        });
    BoxCloneService::new(svc)
}

fn attempt(from: &str, account: &str) -> Request<Full<Bytes>> {
    Request::post("/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .extension(PeerAddr(from.parse().unwrap()))
        .body(Full::new(Bytes::from(format!(
            "username={account}&password=x"
        ))))
        .unwrap()
}

/// The events about keys that start with `prefix` (other tests of this
/// binary report theirs into the same stream).
fn events_of(audit: &mut events::Subscription, prefix: &str) -> Vec<Event> {
    std::iter::from_fn(|| audit.try_recv())
        .filter(|event| match event {
            Event::FailureCounted { key, .. }
            | Event::LockedOut { key, .. }
            | Event::LockoutRefused { key, .. } => key.starts_with(prefix),
            _ => false,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_failure_marked_by_the_handler_is_an_event_and_a_log_line_per_key() {
    let logs = support::logs::capture();
    let mut audit = events::subscribe(4096);
    let svc = login(3);
    let res = svc
        .clone()
        .oneshot(attempt("198.51.100.71:1", "Ops-Alice"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    // The address and the account, each counted once; the account as the
    // body key normalised it, without quotes.
    let seen: Vec<Event> = std::iter::from_fn(|| audit.try_recv())
        .filter(|e| matches!(e, Event::FailureCounted { key, .. } if key == "198.51.100.71" || key == "ops-alice"))
        .collect();
    assert_eq!(
        seen,
        [
            Event::FailureCounted {
                key: "198.51.100.71".to_owned(),
                failures: 1,
                remaining: Policy::default().max_failures() - 1,
            },
            Event::FailureCounted {
                key: "ops-alice".to_owned(),
                failures: 1,
                remaining: 2,
            },
        ]
    );
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("failed attempt counted") && l.contains("key=ops-alice ")),
        "{text}"
    );
    assert!(!text.contains("\"ops-alice\""), "{text}");
}

#[tokio::test(start_paused = true)]
async fn lockout_refused_names_the_key_that_refused_among_several() {
    let logs = support::logs::capture();
    let mut audit = events::subscribe(4096);
    let svc = login(2);
    // Two addresses lock the account out…
    for from in ["198.51.100.81:1", "198.51.100.82:1"] {
        let res = svc.clone().oneshot(attempt(from, "ops-bob")).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    // …so a third one, whose address is clean, is refused by the account.
    let res = svc
        .clone()
        .oneshot(attempt("198.51.100.83:1", "ops-bob"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let seen = events_of(&mut audit, "ops-bob");
    assert!(
        matches!(&seen[..], [
            Event::FailureCounted { failures: 1, remaining: 1, .. },
            Event::FailureCounted { failures: 2, remaining: 0, .. },
            Event::LockedOut { key: locked, lockouts: 1, .. },
            Event::LockoutRefused { key: refused, crowded: false },
        ] if locked == "ops-bob" && refused == "ops-bob"),
        "{seen:?}"
    );
    let text = logs.text();
    assert!(
        text.lines()
            .any(|l| l.contains("key locked out") && l.contains("key=ops-bob ")),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn lockout_refused_names_the_address_when_the_address_refused() {
    let mut audit = events::subscribe(4096);
    let svc = login(10);
    // One address sprays one password over many accounts: the address key
    // locks out, no account does.
    let from = "198.51.100.91:1";
    for n in 0..Policy::default().max_failures() {
        let res = svc
            .clone()
            .oneshot(attempt(from, &format!("ops-dan-{n}")))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = svc.oneshot(attempt(from, "ops-dan-new")).await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let seen = events_of(&mut audit, "198.51.100.91");
    assert_eq!(
        seen.last(),
        Some(&Event::LockoutRefused {
            key: "198.51.100.91".to_owned(),
            crowded: false
        }),
        "{seen:?}"
    );
}
