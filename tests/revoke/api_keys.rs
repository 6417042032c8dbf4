//! API keys honour the list: refused, and removed for good (V1).

use std::time::{Duration, SystemTime};

use portcullis::{
    ValidationErrorKind,
    revoke::Revocations,
    validate::{ApiKeyIdentity, ApiKeys, CachingValidator, GeneratedKey},
};

use super::*;

#[tokio::test(start_paused = true)]
async fn api_keys_refuse_a_revoked_key_and_forget_it_for_good() {
    // V1
    let revocations = Revocations::builder()
        .max_lifetime(Duration::from_secs(60))
        .build()
        .unwrap();
    let (leaked, kept) = (
        GeneratedKey::new("acme_").unwrap(),
        GeneratedKey::new("acme_").unwrap(),
    );
    let keys = ApiKeys::builder("acme_")
        .key(leaked.digest(), ApiKeyIdentity::new("ci-bot"))
        .key(kept.digest(), ApiKeyIdentity::new("deployer"))
        .revocations(&revocations)
        .build()
        .unwrap();
    // A cache in front honours the same list.
    let cache = CachingValidator::builder(keys.clone())
        .revocations(&revocations)
        .build()
        .unwrap();
    for carrier in carriers(leaked.secret()) {
        assert_eq!(kind(&cache, &carrier).await, None);
    }
    revocations
        .revoke_secret(leaked.secret(), None)
        .await
        .unwrap();
    for carrier in carriers(leaked.secret()) {
        assert_eq!(
            kind(&cache, &carrier).await,
            Some(ValidationErrorKind::Revoked)
        );
    }
    assert_eq!(keys.len(), 1, "removed from the table");
    // Once the revocation has expired, the key is still unknown.
    tokio::time::advance(Duration::from_secs(61)).await;
    assert_eq!(revocations.stats().entries, 0);
    assert_eq!(
        kind(&keys, &bearer(leaked.secret())).await,
        Some(ValidationErrorKind::Invalid)
    );
    assert_eq!(kind(&cache, &bearer(kept.secret())).await, None);

    // `ApiKeys::revoke` goes through the list: the cache forgets too.
    assert!(keys.revoke(&kept.digest()));
    assert_eq!(
        kind(&cache, &bearer(kept.secret())).await,
        Some(ValidationErrorKind::Revoked)
    );
}

#[tokio::test(start_paused = true)]
async fn a_subjects_cutoff_removes_its_older_api_keys_and_keeps_newer_ones() {
    // V1
    let revocations = Revocations::new();
    let (old, unknown, new) = (
        GeneratedKey::new("acme_").unwrap(),
        GeneratedKey::new("acme_").unwrap(),
        GeneratedKey::new("acme_").unwrap(),
    );
    let keys = ApiKeys::builder("acme_")
        .key(
            old.digest(),
            ApiKeyIdentity::new("ci-bot")
                .with_issued_at(SystemTime::now() - Duration::from_secs(5)),
        )
        .key(unknown.digest(), ApiKeyIdentity::new("ci-bot"))
        .key(
            new.digest(),
            ApiKeyIdentity::new("ci-bot")
                .with_issued_at(SystemTime::now() + Duration::from_secs(5)),
        )
        .revocations(&revocations)
        .build()
        .unwrap();
    revocations.revoke_subject("ci-bot").await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        kind(&keys, &bearer(old.secret())).await,
        Some(ValidationErrorKind::Invalid)
    );
    assert_eq!(
        kind(&keys, &bearer(unknown.secret())).await,
        Some(ValidationErrorKind::Invalid)
    );
    assert_eq!(kind(&keys, &bearer(new.secret())).await, None);
}
