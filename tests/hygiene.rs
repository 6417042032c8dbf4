//! What a security crate owes its users besides its features: `Debug` and
//! `Display` never print a secret (SECURITY.md L1), for every type that
//! holds one. Each type is built with a known secret; what it prints must
//! not contain the secret as it is, nor in hex or base64.

use std::convert::Infallible;

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD},
};
use http::{Request, Response, header::AUTHORIZATION};
use portcullis::{
    AuthLayer, AuthRejection, Credential, CredentialSource, FingerprintKey, ValidationError,
    extract::Extractor,
    lockout::Failed,
    revoke::Revocations,
    validate::{ApiKeyIdentity, ApiKeys, GeneratedKey},
};
use tower::{Layer, ServiceExt, service_fn};

/// A secret no output has any reason to contain.
/// At least 32 bytes, so that it may serve as a key too.
const CANARY: &str = "canary-5f0c2e9a71d84b36-secret-key";

/// The forms in which `secret` would be recognised in printed text.
fn forms(secret: &[u8]) -> Vec<String> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut forms = vec![
        hex.to_uppercase(),
        hex,
        STANDARD.encode(secret),
        STANDARD_NO_PAD.encode(secret),
        URL_SAFE.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
    ];
    if let Ok(text) = std::str::from_utf8(secret) {
        forms.push(text.to_owned());
    }
    forms
}

/// Panics when `printed` (what `what` printed) shows `secret` in any of its
/// forms.
#[track_caller]
fn assert_hidden(what: &str, printed: &str, secret: &[u8]) {
    for form in forms(secret) {
        assert!(
            !printed.contains(&form),
            "{what} printed the secret ({form}): {printed}"
        );
    }
}

#[test]
fn the_check_recognises_a_secret_in_each_form() {
    // The helper itself: a printout holding the secret in any form fails.
    for form in forms(CANARY.as_bytes()) {
        let printed = format!("Thing {{ field: {form:?} }}");
        assert!(
            std::panic::catch_unwind(|| assert_hidden("a leak", &printed, CANARY.as_bytes()))
                .is_err()
        );
    }
    assert_hidden("nothing", "Thing { field: 3 }", CANARY.as_bytes());
}

#[test]
fn a_credential_prints_its_source_and_fingerprint_only() {
    // L1
    for source in [
        CredentialSource::Bearer,
        CredentialSource::Cookie("session".into()),
        CredentialSource::Query("access_token".into()),
    ] {
        let credential = Credential::new(CANARY, source);
        let clone = credential.clone();
        drop(credential);
        assert_hidden(
            "Credential's Debug",
            &format!("{clone:?}"),
            CANARY.as_bytes(),
        );
        assert_hidden(
            "Credential's Debug",
            &format!("{clone:#?}"),
            CANARY.as_bytes(),
        );
        assert_hidden(
            "Credential's Display",
            &clone.to_string(),
            CANARY.as_bytes(),
        );
        assert!(clone.to_string().contains(&clone.fingerprint().to_string()));
        assert_eq!(clone.secret(), CANARY);
    }
}

#[test]
fn a_fingerprint_key_never_prints_the_key() {
    // L5: the key of the fingerprints in logs.
    let key = FingerprintKey::new(CANARY).unwrap();
    assert_hidden(
        "FingerprintKey's Debug",
        &format!("{key:?}"),
        CANARY.as_bytes(),
    );
    let fingerprint = key.fingerprint(CANARY.as_bytes());
    assert_hidden(
        "Fingerprint's Debug",
        &format!("{fingerprint:?}"),
        CANARY.as_bytes(),
    );
    assert_hidden(
        "Fingerprint's Display",
        &fingerprint.to_string(),
        CANARY.as_bytes(),
    );

    let bytes = [0x5a; 32];
    let key = FingerprintKey::new(bytes).unwrap();
    assert_hidden("FingerprintKey's Debug", &format!("{key:?}"), &bytes);
    let key = FingerprintKey::random().unwrap();
    assert_eq!(format!("{key:?}"), "FingerprintKey(..)");
}

#[test]
fn a_malformed_credential_is_refused_without_printing_it() {
    // L1, P1: the error says what is wrong, never with the token.
    let extractor = Extractor::default();
    for value in [
        format!("Bearer {CANARY}!"),
        format!("Bearer\t{CANARY}"),
        format!("Bearer {CANARY} {CANARY}"),
        format!("Bearer {CANARY}{}", "x".repeat(8192)),
    ] {
        let (parts, ()) = Request::builder()
            .header(AUTHORIZATION, value)
            .body(())
            .unwrap()
            .into_parts();
        let error = extractor.extract(&parts).unwrap_err();
        assert_hidden(
            "ExtractError's Debug",
            &format!("{error:?}"),
            CANARY.as_bytes(),
        );
        assert_hidden(
            "ExtractError's Display",
            &error.to_string(),
            CANARY.as_bytes(),
        );
    }
}

#[tokio::test]
async fn a_rejection_prints_a_fingerprint_of_the_credential_only() {
    // L1, L3
    let layer = AuthLayer::new(|_: Credential| async {
        Err::<(), _>(ValidationError::invalid().with_reason("unknown token"))
    });
    let service = layer.layer(service_fn(|_: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let request = Request::builder()
        .header(AUTHORIZATION, format!("Bearer {CANARY}"))
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 401);
    let rejection = response.extensions().get::<AuthRejection>().unwrap();
    assert_hidden(
        "AuthRejection's Debug",
        &format!("{rejection:?}"),
        CANARY.as_bytes(),
    );
    assert_hidden(
        "AuthRejection's Display",
        &rejection.to_string(),
        CANARY.as_bytes(),
    );
    assert_hidden("the response", &format!("{response:?}"), CANARY.as_bytes());
}

#[test]
fn a_failed_guess_keeps_a_fingerprint_not_the_password() {
    // B14: the guess is remembered by keyed fingerprint only.
    let failed = Failed::guess("alice", CANARY);
    assert_hidden("Failed's Debug", &format!("{failed:?}"), CANARY.as_bytes());
}

#[test]
fn a_generated_api_key_prints_its_digest_only() {
    // L1, L2
    let key = GeneratedKey::new("acme_").unwrap();
    let secret = key.secret().to_owned();
    let random = secret.strip_prefix("acme_").unwrap();
    let printed = format!("{key:?}");
    assert_hidden("GeneratedKey's Debug", &printed, secret.as_bytes());
    assert_hidden("GeneratedKey's Debug", &printed, random.as_bytes());
    assert_hidden(
        "GeneratedKey's Debug",
        &printed,
        &URL_SAFE_NO_PAD.decode(random).unwrap(),
    );

    let keys = ApiKeys::builder("acme_")
        .key(key.digest(), ApiKeyIdentity::new("ci-bot"))
        .build()
        .unwrap();
    assert_hidden("ApiKeys' Debug", &format!("{keys:?}"), secret.as_bytes());
}

#[tokio::test]
async fn a_revocation_list_never_prints_what_it_revoked() {
    // L1, V1
    let revocations = Revocations::new();
    let revoked = revocations.revoke_secret(CANARY, None);
    assert_hidden(
        "Revoked's Debug",
        &format!("{revoked:?}"),
        CANARY.as_bytes(),
    );
    revoked.await.unwrap();
    assert_hidden(
        "Revocations' Debug",
        &format!("{revocations:?}"),
        CANARY.as_bytes(),
    );
}

#[cfg(feature = "jwt")]
#[test]
fn jwt_keys_and_validators_never_print_their_secret() {
    use portcullis::validate::{
        JwtValidator,
        jwt::{Algorithm, JwtKey},
    };

    let key = JwtKey::secret(CANARY);
    assert_hidden("JwtKey's Debug", &format!("{key:?}"), CANARY.as_bytes());
    let validator = JwtValidator::<serde_json::Value>::builder()
        .algorithm(Algorithm::HS256)
        .key(key)
        .issuer("https://auth.example.com")
        .audience("api")
        .build()
        .unwrap();
    assert_hidden(
        "JwtValidator's Debug",
        &format!("{validator:?}"),
        CANARY.as_bytes(),
    );
}

#[cfg(feature = "sessions")]
#[tokio::test]
async fn sessions_never_print_their_signing_key_nor_the_tokens_they_issue() {
    // L1, S1
    use portcullis::session::{AccessTokens, Sessions};

    let tokens = AccessTokens::hs256(CANARY).unwrap();
    assert_hidden(
        "AccessTokens' Debug",
        &format!("{tokens:?}"),
        CANARY.as_bytes(),
    );
    let revocations = Revocations::new();
    let sessions = Sessions::builder(tokens, &revocations).build().unwrap();
    assert_hidden(
        "Sessions' Debug",
        &format!("{sessions:?}"),
        CANARY.as_bytes(),
    );

    let grant = sessions.sign_in("alice").await.unwrap();
    let printed = format!("{grant:?}");
    assert_hidden("Grant's Debug", &printed, grant.access_token().as_bytes());
    assert_hidden("Grant's Debug", &printed, grant.refresh_token().as_bytes());
    let (_, refresh_secret) = grant.refresh_token().split_once('.').unwrap();
    assert_hidden("Grant's Debug", &printed, refresh_secret.as_bytes());
}

#[cfg(feature = "cookie")]
#[test]
fn device_cookies_never_print_their_key() {
    // B15
    use portcullis::lockout::DeviceCookies;

    let devices = DeviceCookies::new("device", CANARY).unwrap();
    assert_hidden(
        "DeviceCookies' Debug",
        &format!("{devices:?}"),
        CANARY.as_bytes(),
    );
    assert_hidden(
        "DeviceKey's Debug",
        &format!("{:?}", devices.key()),
        CANARY.as_bytes(),
    );
    assert_hidden(
        "UntrustedKey's Debug",
        &format!("{:?}", devices.untrusted_key()),
        CANARY.as_bytes(),
    );
}

#[cfg(feature = "test-util")]
#[test]
fn the_static_test_validator_never_prints_its_tokens() {
    use portcullis::test_util::StaticValidator;

    let validator = StaticValidator::new().token(CANARY, "alice");
    assert_hidden(
        "StaticValidator's Debug",
        &format!("{validator:?}"),
        CANARY.as_bytes(),
    );
}
