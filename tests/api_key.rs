//! Behaviour of the built-in API-key validator.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http::Request;
use portcullis::{
    ConfigError, Credential, CredentialSource, ValidationErrorKind, Validator,
    reject::{AuthRejection, DefaultRenderer, Renderer},
    scope::Scopes,
    validate::{ApiKeyIdentity, ApiKeys, GeneratedKey, KeyDigest},
};

fn bearer(secret: &str) -> Credential {
    Credential::new(secret, CredentialSource::Bearer)
}

fn keys_with(key: &GeneratedKey, identity: ApiKeyIdentity) -> ApiKeys {
    ApiKeys::builder("acme_")
        .key(key.digest(), identity)
        .build()
        .unwrap()
}

#[test]
fn generated_keys_carry_the_prefix_and_32_random_bytes_in_base64url() {
    let a = GeneratedKey::new("acme_live_").unwrap();
    let b = GeneratedKey::new("acme_live_").unwrap();
    let body = a.secret().strip_prefix("acme_live_").unwrap();
    let bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
    assert_eq!(bytes.len(), 32);
    assert_ne!(a.secret(), b.secret());
    assert_eq!(a.digest(), KeyDigest::of(a.secret()));
    // Every character is a b64token character, so the key is a valid bearer token.
    assert!(
        a.secret()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    );
}

#[test]
fn prefixes_that_would_break_bearer_tokens_are_refused() {
    for prefix in ["", "acme live", "acme.", "ä_", &"x".repeat(33)] {
        assert!(
            matches!(
                ApiKeys::builder(prefix).build(),
                Err(ConfigError::InvalidName { .. })
            ),
            "{prefix:?}"
        );
        assert!(GeneratedKey::new(prefix).is_err(), "{prefix:?}");
    }
}

#[tokio::test]
async fn a_known_key_yields_its_identity_and_scopes() {
    let key = GeneratedKey::new("acme_").unwrap();
    let keys = keys_with(
        &key,
        ApiKeyIdentity::new("ci-bot").with_scopes(["deploy", "read"]),
    );
    let id = keys.validate(&bearer(key.secret())).await.unwrap();
    assert_eq!(id.id(), "ci-bot");
    assert_eq!(id.scopes().collect::<Vec<_>>(), ["deploy", "read"]);
    assert!(id.has_scope("deploy"));
    assert!(!id.has_scope("Deploy"));
}

#[tokio::test]
async fn a_key_without_the_prefix_is_invalid() {
    let key = GeneratedKey::new("other_").unwrap();
    let keys = ApiKeys::builder("acme_")
        .key(key.digest(), ApiKeyIdentity::new("x"))
        .build()
        .unwrap();
    let err = keys.validate(&bearer(key.secret())).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
}

// L3: unknown and revoked keys are indistinguishable to the client.
#[tokio::test]
async fn unknown_and_revoked_keys_get_byte_identical_rejections() {
    let key = GeneratedKey::new("acme_").unwrap();
    let keys = keys_with(&key, ApiKeyIdentity::new("ci-bot"));
    assert!(keys.validate(&bearer(key.secret())).await.is_ok());

    assert!(keys.revoke(&key.digest()));
    assert!(!keys.revoke(&key.digest()));
    let revoked = keys.validate(&bearer(key.secret())).await.unwrap_err();
    let unknown = keys
        .validate(&bearer(GeneratedKey::new("acme_").unwrap().secret()))
        .await
        .unwrap_err();
    assert_eq!(revoked.kind(), unknown.kind());
    assert_eq!(revoked.retry_after(), unknown.retry_after());

    let renderer = DefaultRenderer::new();
    let (parts, ()) = Request::new(()).into_parts();
    let a = renderer.render(&AuthRejection::from(&revoked), &parts);
    let b = renderer.render(&AuthRejection::from(&unknown), &parts);
    assert_eq!(a.status(), 401);
    assert_eq!(a.status(), b.status());
    assert_eq!(a.headers(), b.headers());
    assert_eq!(a.body(), b.body());
}

// L2: the final comparison covers the whole digest, not only the bytes used
// to find candidates.
#[tokio::test]
async fn a_digest_sharing_the_lookup_bytes_is_still_rejected() {
    let presented = "acme_presented";
    let mut near = *KeyDigest::of(presented).as_bytes();
    near[31] ^= 1;
    let keys = ApiKeys::builder("acme_")
        .key(KeyDigest::from_bytes(near), ApiKeyIdentity::new("near"))
        .build()
        .unwrap();
    let err = keys.validate(&bearer(presented)).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);

    keys.insert(KeyDigest::of(presented), ApiKeyIdentity::new("exact"));
    let id = keys.validate(&bearer(presented)).await.unwrap();
    assert_eq!(id.id(), "exact");
    assert_eq!(keys.len(), 2);
}

// L2: only digests are held; nothing the validator prints reveals a key.
#[test]
fn the_validator_holds_and_prints_digests_only() {
    let key = GeneratedKey::new("acme_").unwrap();
    let keys = keys_with(&key, ApiKeyIdentity::new("ci-bot"));
    let printed = format!("{keys:?} {key:?}");
    assert!(!printed.contains(key.secret()), "{printed}");
    let body = key.secret().strip_prefix("acme_").unwrap();
    assert!(!printed.contains(body), "{printed}");
}

#[tokio::test(start_paused = true)]
async fn a_key_past_its_expiry_is_reported_expired_on_tokio_time() {
    let key = GeneratedKey::new("acme_").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let keys = keys_with(&key, ApiKeyIdentity::new("temp").with_expiry(deadline));
    assert!(keys.validate(&bearer(key.secret())).await.is_ok());

    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(keys.validate(&bearer(key.secret())).await.is_ok());

    tokio::time::advance(Duration::from_secs(1)).await;
    let err = keys.validate(&bearer(key.secret())).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Expired);
}

#[tokio::test]
async fn keys_load_from_hex_and_base64_digest_strings() {
    let a = GeneratedKey::new("acme_").unwrap();
    let b = GeneratedKey::new("acme_").unwrap();
    let keys = ApiKeys::builder("acme_")
        .parse_keys([
            (a.digest().to_hex(), ApiKeyIdentity::new("a")),
            (b.digest().to_base64(), ApiKeyIdentity::new("b")),
        ])
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(keys.validate(&bearer(a.secret())).await.unwrap().id(), "a");
    assert_eq!(keys.validate(&bearer(b.secret())).await.unwrap().id(), "b");
}

#[test]
fn a_bad_digest_in_the_list_names_its_entry_and_never_echoes_it() {
    let good = KeyDigest::of("acme_x").to_hex();
    let err = ApiKeys::builder("acme_")
        .parse_keys([
            (good.as_str(), ApiKeyIdentity::new("a")),
            (
                "acme_pasted_the_secret_by_mistake",
                ApiKeyIdentity::new("b"),
            ),
        ])
        .expect_err("the second digest is not a digest");
    let message = err.to_string();
    assert!(matches!(err, ConfigError::InvalidKey(_)));
    assert!(message.contains("entry 1"), "{message}");
    assert!(message.contains("64 hex digits"), "{message}");
    assert!(!message.contains("pasted"), "{message}");
}

#[tokio::test]
async fn the_last_used_hook_sees_accepted_keys_only() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let key = GeneratedKey::new("acme_").unwrap();
    let keys = ApiKeys::builder("acme_")
        .key(key.digest(), ApiKeyIdentity::new("ci-bot"))
        .on_used(move |id| log.lock().unwrap().push(id.id().to_owned()))
        .build()
        .unwrap();

    keys.validate(&bearer(key.secret())).await.unwrap();
    let _ = keys.validate(&bearer("acme_unknown")).await;
    let _ = keys.validate(&bearer("no-prefix")).await;
    keys.validate(&bearer(key.secret())).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), ["ci-bot", "ci-bot"]);
}

#[tokio::test]
async fn keys_generated_by_the_validator_work_once_inserted() {
    let keys = ApiKeys::builder("acme_").build().unwrap();
    assert!(keys.is_empty());
    let key = keys.generate().unwrap();
    assert!(keys.validate(&bearer(key.secret())).await.is_err());
    keys.insert(key.digest(), ApiKeyIdentity::new("new"));
    assert_eq!(
        keys.validate(&bearer(key.secret())).await.unwrap().id(),
        "new"
    );
    assert_eq!(keys.prefix(), "acme_");
}
