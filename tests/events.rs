//! Audit events and metrics after a scripted sequence of requests through
//! the whole stack (rate limit → lockout → auth).
//!
//! One test per binary: the metrics recorder and the event subscribers are
//! process-wide.
#![cfg(feature = "metrics")]

use std::{collections::HashMap, convert::Infallible, net::SocketAddr, time::Duration};

use http::{Request, Response, StatusCode, header::AUTHORIZATION};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use portcullis::{
    AuthLayer, Credential, CredentialSource, Fingerprint, PeerAddr, ValidationError,
    events::{self, Event, RevocationOrigin, RevocationTarget, metrics::*},
    lockout::{LockoutLayer, Policy},
    rate_limit::RateLimitLayer,
    reject::RejectionKind,
    revoke::Revocations,
};
use tower::{ServiceBuilder, ServiceExt, service_fn};

async fn validate(credential: Credential) -> Result<&'static str, ValidationError> {
    match credential.secret() {
        "good" => Ok("alice"),
        "old" => Err(ValidationError::revoked()),
        "stale" => Err(ValidationError::expired()),
        _ => Err(ValidationError::invalid()),
    }
}

fn request(peer: &str, token: Option<&str>) -> Request<String> {
    let mut req = Request::builder().extension(PeerAddr(peer.parse::<SocketAddr>().unwrap()));
    if let Some(token) = token {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(String::new()).unwrap()
}

/// Counter values by name and sorted labels.
fn counters(recorder: &metrics_util::debugging::Snapshotter) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for (key, _, _, value) in recorder.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        labels.sort();
        let name = format!("{}{{{}}}", key.name(), labels.join(","));
        match value {
            DebugValue::Counter(n) => {
                out.insert(name, n);
            }
            DebugValue::Histogram(samples) => {
                out.insert(format!("{name}#count"), samples.len() as u64);
            }
            DebugValue::Gauge(v) => {
                out.insert(format!("{name}#gauge"), v.into_inner() as u64);
            }
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn a_scripted_sequence_shows_up_in_the_events_and_the_metrics() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::set_global_recorder(recorder).unwrap();
    install();
    let mut audit = events::subscribe(64);

    let rate = RateLimitLayer::builder().per_minute(6).build().unwrap();
    let lockout = LockoutLayer::new(Policy::builder().max_failures(2).build().unwrap());
    let tracker = lockout.tracker().clone();
    let svc = ServiceBuilder::new()
        .layer(rate.clone())
        .layer(lockout)
        .layer(AuthLayer::new(validate))
        .service(service_fn(|_: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));

    let send = |peer: &'static str, token: Option<&'static str>| {
        let svc = svc.clone();
        async move { svc.oneshot(request(peer, token)).await.unwrap().status() }
    };
    // A: good, missing, stale (expired), then two wrong tokens lock it out,
    // then a good one is refused by the lockout; the 7th request of A is
    // refused by the rate limiter.
    let a = "192.0.2.1:1";
    assert_eq!(send(a, Some("good")).await, StatusCode::OK);
    assert_eq!(send(a, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(a, Some("stale")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(a, Some("old")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(a, Some("wrong")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(send(a, Some("good")).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(send(a, Some("good")).await, StatusCode::TOO_MANY_REQUESTS);
    assert!(tracker.unlock(&"192.0.2.1".parse().unwrap()));
    // Unlocking a key that is not locked out lifts nothing: no event.
    assert!(!tracker.unlock(&"192.0.2.9".parse().unwrap()));
    tokio::time::advance(Duration::from_secs(1)).await;

    let got = counters(&snapshotter);
    let count = |name: &str| got.get(name).copied().unwrap_or(0);
    assert_eq!(
        count("portcullis_auth_decisions_total{outcome=authenticated,source=bearer}"),
        1,
        "{got:#?}"
    );
    assert_eq!(
        count("portcullis_auth_decisions_total{outcome=missing,source=none}"),
        1
    );
    assert_eq!(
        count("portcullis_auth_decisions_total{outcome=expired,source=bearer}"),
        1
    );
    assert_eq!(
        count("portcullis_auth_decisions_total{outcome=revoked,source=bearer}"),
        1
    );
    assert_eq!(
        count("portcullis_auth_decisions_total{outcome=invalid,source=bearer}"),
        1
    );
    assert_eq!(count(&format!("{FAILED_ATTEMPTS}{{}}")), 2);
    assert_eq!(count(&format!("{LOCKOUTS}{{}}")), 1);
    assert_eq!(count(&format!("{UNLOCKS}{{}}")), 1);
    assert_eq!(
        count(&format!("{LOCKOUT_REFUSALS}{{reason=locked_out}}")),
        1
    );
    assert_eq!(count(&format!("{RATE_LIMIT_REFUSALS}{{}}")), 1);
    // Every validation was timed.
    assert_eq!(
        count(&format!("{VALIDATOR_SECONDS}{{source=bearer}}#count")),
        4
    );
    // Labels never carry a key, an address or a secret.
    for name in got.keys() {
        assert!(!name.contains("192.0.2.1"), "{name}");
        assert!(!name.contains("good") && !name.contains("wrong"), "{name}");
    }

    record_stats(&tracker.stats());
    record_stats(&rate.stats());
    let got = counters(&snapshotter);
    assert_eq!(
        got.get(&format!("{RATE_LIMIT_ENTRIES}{{}}#gauge")),
        Some(&1)
    );

    // The same decisions, as events, in order.
    let mut seen = Vec::new();
    while let Some(event) = audit.try_recv() {
        seen.push(event);
    }
    assert!(matches!(
        &seen[0],
        Event::Authenticated {
            source: CredentialSource::Bearer
        }
    ));
    assert!(matches!(
        &seen[1],
        Event::Rejected {
            kind: RejectionKind::Missing,
            source: None,
            fingerprint: None
        }
    ));
    assert!(matches!(
        &seen[2],
        Event::Rejected {
            kind: RejectionKind::Expired,
            ..
        }
    ));
    let locked = seen
        .iter()
        .find_map(|e| match e {
            Event::LockedOut { key, lockouts, .. } => Some((key.clone(), *lockouts)),
            _ => None,
        })
        .expect("a lockout event");
    assert_eq!(locked, ("192.0.2.1".to_owned(), 1));
    assert!(seen.contains(&Event::LockoutRefused {
        key: "192.0.2.1".to_owned(),
        crowded: false
    }));
    // Each counted failure ("old", then "wrong", which locked the key out).
    let failures: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            Event::FailureCounted {
                key,
                failures,
                remaining,
            } => Some((key.as_str(), *failures, *remaining)),
            _ => None,
        })
        .collect();
    assert_eq!(failures, [("192.0.2.1", 1, 1), ("192.0.2.1", 2, 0)]);
    assert!(seen.iter().any(|e| matches!(e, Event::RateLimited { .. })));
    assert!(seen.contains(&Event::Unlocked {
        key: "192.0.2.1".to_owned()
    }));
    // A rejected credential is identified by its keyed fingerprint only.
    let fingerprint = Credential::new("wrong", CredentialSource::Bearer).fingerprint();
    assert!(seen.iter().any(|e| matches!(
        e,
        Event::Rejected { kind: RejectionKind::Invalid, fingerprint: Some(f), .. } if *f == fingerprint
    )));
    assert!(!format!("{seen:?}").contains("wrong"));
    assert_eq!(audit.dropped(), 0);

    // Revocations: an event each (the secret by the fingerprint rejections
    // print for it, L5), and a counter by target and origin.
    let revocations = Revocations::new();
    revocations.revoke_secret("good", None).await.unwrap();
    revocations.revoke_subject("alice").await.unwrap();
    revocations.revoke_id("session-1", None).await.unwrap();
    let seen: Vec<Event> = std::iter::from_fn(|| audit.try_recv()).collect();
    let good = Credential::new("good", CredentialSource::Cookie("session".into())).fingerprint();
    assert_eq!(good, Fingerprint::of(b"good"));
    assert_eq!(
        seen[0],
        Event::Revoked {
            target: RevocationTarget::Secret { fingerprint: good },
            origin: RevocationOrigin::Here,
            lasts: revocations.max_lifetime(),
        }
    );
    assert!(matches!(
        &seen[1],
        Event::Revoked { target: RevocationTarget::Subject { subject }, origin: RevocationOrigin::Here, .. }
            if subject == "alice"
    ));
    assert!(matches!(
        &seen[2],
        Event::Revoked { target: RevocationTarget::Id { id }, .. } if id == "session-1"
    ));
    assert!(!format!("{seen:?}").contains("good"));
    let got = counters(&snapshotter);
    for target in ["secret", "subject", "id"] {
        assert_eq!(
            got.get(&format!("{REVOCATIONS}{{origin=here,target={target}}}")),
            Some(&1),
            "{got:#?}"
        );
    }
    // The list's health, as gauges.
    record_stats(&revocations.stats());
    let got = counters(&snapshotter);
    assert_eq!(
        got.get(&format!("{REVOCATIONS_ENTRIES}{{}}#gauge")),
        Some(&3)
    );
    assert_eq!(
        got.get(&format!("{REVOCATIONS_IN_SYNC}{{}}#gauge")),
        Some(&1)
    );
    assert_eq!(
        got.get(&format!("{REVOCATIONS_BACKLOG}{{}}#gauge")),
        Some(&0)
    );
    for (state, on) in [("in_sync", 1), ("stale", 0), ("refusing", 0)] {
        assert_eq!(
            got.get(&format!("{REVOCATIONS_STATE}{{state={state}}}#gauge")),
            Some(&on),
            "{got:#?}"
        );
    }
}
