//! No secret in logs (L1).

use super::*;

// ---------------------------------------------------------------- L1

#[tokio::test(start_paused = true)]
async fn l1_a_canary_credential_never_appears_in_logs() {
    // L1
    const CANARY: &str = "canary-7f3a9c2e-secret";
    let captured = support::logs::capture();

    let (svc, tracker, _) = setup(max(3));
    for _ in 0..5 {
        let mut req = request("client-1", "invalid");
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {CANARY}").parse().unwrap(),
        );
        let res = svc.clone().oneshot(req).await.unwrap();
        assert!(!format!("{res:?}").contains(CANARY));
    }
    tracker.unlock(&key("client-1"));

    let logs = captured.text();
    // Every test of this file logs into the same buffer, so the canary is
    // checked against all of their logs.
    assert!(
        logs.contains("locked out"),
        "no lockout event captured:\n{logs}"
    );
    assert!(
        logs.contains("client-1"),
        "the key is missing from the logs:\n{logs}"
    );
    assert!(logs.contains("lifted"), "no unlock event captured:\n{logs}");
    assert!(!logs.contains(CANARY), "the credential leaked:\n{logs}");
    assert!(!format!("{tracker:?}").contains(CANARY));
}
