//! Behaviour of the JWT validator. Every key is generated here.
#![cfg(feature = "jwt")]

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{Request, Response, StatusCode, header};
use jsonwebtoken::{EncodingKey, Header, encode, jwk::Jwk};
use portcullis::{
    ConfigError, Credential, CredentialSource, ValidationError, ValidationErrorKind, Validator,
    scope::{RequireScopeLayer, Scopes},
    validate::{
        CachingValidator, ExpiresAt,
        jwt::{Algorithm, Claims, JwtKey, JwtValidator},
    },
};
use proptest::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::{Layer, ServiceExt, service_fn};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone, Deserialize, PartialEq)]
struct MyClaims {
    sub: String,
}

fn bearer(secret: &str) -> Credential {
    Credential::new(secret, CredentialSource::Bearer)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(exp_in: i64) -> Value {
    json!({ "sub": "alice", "exp": now() + exp_in })
}

fn sign(alg: Algorithm, claims: &Value, key: &EncodingKey) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn sign_kid(alg: Algorithm, kid: &str, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    encode(&header, claims, key).unwrap()
}

fn hs256() -> JwtValidator<MyClaims> {
    JwtValidator::builder()
        .algorithm(Algorithm::HS256)
        .key(JwtKey::secret(SECRET))
        .build()
        .unwrap()
}

/// A key pair: the signing key and the public key in PEM.
struct Pair {
    signing: EncodingKey,
    public_pem: String,
}

fn rsa() -> &'static Pair {
    static KEY: OnceLock<Pair> = OnceLock::new();
    KEY.get_or_init(|| {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::{EncodePublicKey, LineEnding};
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let pem = private.to_pkcs1_pem(LineEnding::LF).unwrap();
        Pair {
            signing: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            public_pem: private
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
        }
    })
}

fn p256_pair() -> Pair {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    Pair {
        signing: EncodingKey::from_ec_pem(secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes())
            .unwrap(),
        public_pem: secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    }
}

fn p384_pair() -> Pair {
    use p384::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p384::SecretKey::random(&mut p384::elliptic_curve::rand_core::OsRng);
    Pair {
        signing: EncodingKey::from_ec_pem(secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes())
            .unwrap(),
        public_pem: secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    }
}

fn ed25519_pair() -> Pair {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
    let signing = ed25519_dalek::SigningKey::generate(&mut rsa::rand_core::OsRng);
    Pair {
        signing: EncodingKey::from_ed_pem(signing.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes())
            .unwrap(),
        public_pem: signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    }
}

async fn kind_of(validator: &JwtValidator<MyClaims>, token: &str) -> ValidationErrorKind {
    validator.validate(&bearer(token)).await.unwrap_err().kind()
}

#[tokio::test]
async fn every_supported_algorithm_verifies_its_own_tokens() {
    let hmac = EncodingKey::from_secret(SECRET);
    let p256 = p256_pair();
    let p384 = p384_pair();
    let ed = ed25519_pair();
    let cases: Vec<(Algorithm, &EncodingKey, JwtKey)> = vec![
        (Algorithm::HS256, &hmac, JwtKey::secret(SECRET)),
        (Algorithm::HS384, &hmac, JwtKey::secret(SECRET)),
        (Algorithm::HS512, &hmac, JwtKey::secret(SECRET)),
        (
            Algorithm::RS256,
            &rsa().signing,
            JwtKey::rsa_pem(rsa().public_pem.as_bytes()).unwrap(),
        ),
        (
            Algorithm::RS384,
            &rsa().signing,
            JwtKey::rsa_pem(rsa().public_pem.as_bytes()).unwrap(),
        ),
        (
            Algorithm::RS512,
            &rsa().signing,
            JwtKey::rsa_pem(rsa().public_pem.as_bytes()).unwrap(),
        ),
        (
            Algorithm::PS256,
            &rsa().signing,
            JwtKey::rsa_pem(rsa().public_pem.as_bytes()).unwrap(),
        ),
        (
            Algorithm::PS384,
            &rsa().signing,
            JwtKey::rsa_pem(rsa().public_pem.as_bytes()).unwrap(),
        ),
        (
            Algorithm::PS512,
            &rsa().signing,
            JwtKey::rsa_pem(rsa().public_pem.as_bytes()).unwrap(),
        ),
        (
            Algorithm::ES256,
            &p256.signing,
            JwtKey::ec_pem(p256.public_pem.as_bytes()).unwrap(),
        ),
        (
            Algorithm::ES384,
            &p384.signing,
            JwtKey::ec_pem(p384.public_pem.as_bytes()).unwrap(),
        ),
        (
            Algorithm::EdDSA,
            &ed.signing,
            JwtKey::ed_pem(ed.public_pem.as_bytes()).unwrap(),
        ),
    ];
    for (alg, signing, key) in cases {
        let validator = JwtValidator::<MyClaims>::builder()
            .algorithm(alg)
            .key(key)
            .build()
            .unwrap();
        let token = sign(alg, &claims(600), signing);
        let got = validator.validate(&bearer(&token)).await;
        assert_eq!(got.unwrap().sub, "alice", "{alg:?}");

        // A token whose signature was altered is refused.
        let mut tampered = token.clone().into_bytes();
        let i = tampered.len() - 10; // inside the signature
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            kind_of(&validator, &tampered).await,
            ValidationErrorKind::Invalid,
            "{alg:?}"
        );
    }
}

#[tokio::test]
async fn an_alg_none_token_is_invalid() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(600).to_string());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert_eq!(
            kind_of(&hs256(), &token).await,
            ValidationErrorKind::Invalid
        );
    }
}

#[tokio::test]
async fn a_token_with_critical_header_extensions_is_invalid() {
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp-ext".into()]);
    header.extras.insert("exp-ext", true);
    let token = encode(&header, &claims(600), &EncodingKey::from_secret(SECRET)).unwrap();
    let err = hs256().validate(&bearer(&token)).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    assert_eq!(err.reason(), Some("unsupported critical header"));
}

#[tokio::test]
async fn an_hs256_token_signed_with_the_rsa_public_key_is_invalid() {
    let pem = rsa().public_pem.as_bytes();
    let validator = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::RS256)
        .key(JwtKey::rsa_pem(pem).unwrap())
        .build()
        .unwrap();
    // Algorithm confusion: the attacker uses the public key's bytes as an HMAC secret.
    let forged = sign(
        Algorithm::HS256,
        &claims(600),
        &EncodingKey::from_secret(pem),
    );
    let err = validator.validate(&bearer(&forged)).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    assert_eq!(err.reason(), Some("algorithm not accepted"));

    // Nor can the validator be configured to accept both families.
    let mixed = JwtValidator::<MyClaims>::builder()
        .algorithms([Algorithm::RS256, Algorithm::HS256])
        .key(JwtKey::rsa_pem(pem).unwrap())
        .build();
    assert!(matches!(
        mixed,
        Err(ConfigError::OutOfRange {
            setting: "algorithms",
            ..
        })
    ));
}

#[tokio::test]
async fn a_key_is_never_used_with_an_algorithm_of_another_family() {
    let p256 = p256_pair();
    // ES256 and EdDSA accepted, only an EC key configured: an EdDSA token finds no key.
    let validator = JwtValidator::<MyClaims>::builder()
        .algorithms([Algorithm::ES256, Algorithm::EdDSA])
        .key(JwtKey::ec_pem(p256.public_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let token = sign(Algorithm::EdDSA, &claims(600), &ed25519_pair().signing);
    let err = validator.validate(&bearer(&token)).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    assert_eq!(err.reason(), Some("no key fits the token"));
}

#[tokio::test]
async fn a_token_with_an_algorithm_not_configured_is_invalid() {
    let validator = hs256();
    let token = sign(
        Algorithm::HS512,
        &claims(600),
        &EncodingKey::from_secret(SECRET),
    );
    assert_eq!(
        kind_of(&validator, &token).await,
        ValidationErrorKind::Invalid
    );
}

#[tokio::test]
async fn exp_is_required() {
    let token = sign(
        Algorithm::HS256,
        &json!({ "sub": "alice" }),
        &EncodingKey::from_secret(SECRET),
    );
    let err = hs256().validate(&bearer(&token)).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    assert_eq!(err.reason(), Some("a required claim is missing"));
}

#[tokio::test]
async fn an_expired_token_is_reported_expired_after_the_leeway() {
    let validator = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::HS256)
        .key(JwtKey::secret(SECRET))
        .leeway(Duration::from_secs(30))
        .build()
        .unwrap();
    let key = EncodingKey::from_secret(SECRET);
    // Within the leeway: accepted.
    assert!(
        validator
            .validate(&bearer(&sign(Algorithm::HS256, &claims(-10), &key)))
            .await
            .is_ok()
    );
    // Past it: expired, so the client knows to refresh.
    let token = sign(Algorithm::HS256, &claims(-120), &key);
    assert_eq!(
        kind_of(&validator, &token).await,
        ValidationErrorKind::Expired
    );
}

#[tokio::test]
async fn issuer_and_audience_are_enforced_and_required_when_configured() {
    let validator = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::HS256)
        .key(JwtKey::secret(SECRET))
        .issuer("https://auth.example.com")
        .audience("api")
        .build()
        .unwrap();
    let key = EncodingKey::from_secret(SECRET);
    let exp = now() + 600;
    let good =
        json!({"sub": "a", "exp": exp, "iss": "https://auth.example.com", "aud": ["other", "api"]});
    assert!(
        validator
            .validate(&bearer(&sign(Algorithm::HS256, &good, &key)))
            .await
            .is_ok()
    );

    let cases = [
        (
            json!({"sub": "a", "exp": exp, "iss": "https://evil.example", "aud": "api"}),
            "issuer not accepted",
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": "https://auth.example.com", "aud": "other"}),
            "audience not accepted",
        ),
        (
            json!({"sub": "a", "exp": exp, "aud": "api"}),
            "a required claim is missing",
        ),
        (
            json!({"sub": "a", "exp": exp, "iss": "https://auth.example.com"}),
            "a required claim is missing",
        ),
    ];
    for (claims, reason) in cases {
        let err = validator
            .validate(&bearer(&sign(Algorithm::HS256, &claims, &key)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ValidationErrorKind::Invalid, "{claims}");
        assert_eq!(err.reason(), Some(reason), "{claims}");
    }
}

#[tokio::test]
async fn a_token_for_some_audience_is_refused_when_none_is_configured() {
    let token = sign(
        Algorithm::HS256,
        &json!({"sub": "a", "exp": now() + 600, "aud": "someone-else"}),
        &EncodingKey::from_secret(SECRET),
    );
    assert_eq!(
        kind_of(&hs256(), &token).await,
        ValidationErrorKind::Invalid
    );
}

#[tokio::test]
async fn a_token_not_valid_yet_is_invalid() {
    let key = EncodingKey::from_secret(SECRET);
    let early = json!({"sub": "a", "exp": now() + 600, "nbf": now() + 300});
    let err = hs256()
        .validate(&bearer(&sign(Algorithm::HS256, &early, &key)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    assert_eq!(err.reason(), Some("token not valid yet (nbf)"));

    let strict = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::HS256)
        .key(JwtKey::secret(SECRET))
        .require_nbf(true)
        .build()
        .unwrap();
    let without_nbf = sign(Algorithm::HS256, &claims(600), &key);
    assert_eq!(
        kind_of(&strict, &without_nbf).await,
        ValidationErrorKind::Invalid
    );
}

// R2: a validly signed token whose `exp` is near `u64::MAX` used to overflow
// the conversion to an `Instant` and panic the validator.
#[tokio::test]
async fn a_validly_signed_token_expiring_at_u64_max_is_accepted_without_panicking() {
    let key = EncodingKey::from_secret(SECRET);
    let far = json!({ "sub": "alice", "exp": u64::MAX, "nbf": 0, "iat": u64::MAX });
    let token = sign(Algorithm::HS256, &far, &key);
    let claims = hs256().validate(&bearer(&token)).await.unwrap();
    assert_eq!(claims.exp(), u64::MAX);
    let left = claims.expires_at().unwrap() - tokio::time::Instant::now();
    assert!(left > Duration::from_secs(10 * 365 * 86_400), "{left:?}");

    // A cache in front of it caps the entry at its own TTL.
    let cache = CachingValidator::builder(hs256()).build().unwrap();
    assert_eq!(
        cache.validate(&bearer(&token)).await.unwrap().exp(),
        u64::MAX
    );
    assert_eq!(
        cache.validate(&bearer(&token)).await.unwrap().exp(),
        u64::MAX
    );
}

// R2: a leeway too large to add to any time saturates instead of
// overflowing: every token is within it.
#[tokio::test(start_paused = true)]
async fn a_leeway_of_duration_max_saturates() {
    let lenient = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::HS256)
        .key(JwtKey::secret(SECRET))
        .leeway(Duration::MAX)
        .build()
        .unwrap();
    let key = EncodingKey::from_secret(SECRET);
    let old = json!({ "sub": "alice", "exp": 1, "nbf": u64::MAX });
    let claims = lenient
        .validate(&bearer(&sign(Algorithm::HS256, &old, &key)))
        .await
        .unwrap();
    assert_eq!(claims.exp(), 1);
    assert_eq!(claims.expires_at(), Some(tokio::time::Instant::now()));
}

/// A NumericDate claim anywhere from 0 to `u64::MAX`, with the edges and the
/// hours around now drawn often.
fn numeric_date() -> impl Strategy<Value = u64> {
    let now = now() as u64;
    prop_oneof![
        any::<u64>(),
        Just(0),
        Just(u64::MAX),
        (u64::MAX - 100_000)..=u64::MAX,
        now - 7_200..now + 7_200,
    ]
}

/// What the validator must answer for `exp` and `nbf` at `now` with the
/// default 30-second leeway: `None` for an accepted token.
fn expected_kind(exp: u64, nbf: Option<u64>, now: u64) -> Option<ValidationErrorKind> {
    if exp.saturating_add(30) < now {
        Some(ValidationErrorKind::Expired)
    } else if nbf.is_some_and(|nbf| nbf > now.saturating_add(30)) {
        Some(ValidationErrorKind::Invalid)
    } else {
        None
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // R2: no value of `exp`, `nbf` or `iat` in a validly signed token panics
    // the validator or a cache in front of it, and the answer follows the
    // claims.
    #[test]
    fn any_exp_nbf_and_iat_in_a_signed_token_get_a_sane_answer(
        exp in numeric_date(),
        nbf in proptest::option::of(numeric_date()),
        iat in proptest::option::of(numeric_date()),
    ) {
        let mut payload = json!({ "sub": "alice", "exp": exp });
        if let Some(nbf) = nbf {
            payload["nbf"] = nbf.into();
        }
        if let Some(iat) = iat {
            payload["iat"] = iat.into();
        }
        let token = sign(Algorithm::HS256, &payload, &EncodingKey::from_secret(SECRET));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let validator = hs256();
            let cache = CachingValidator::builder(validator.clone())
                .ttl(Duration::MAX)
                .negative_ttl(Duration::MAX)
                .build()
                .unwrap();
            let before = now() as u64;
            let direct = validator.validate(&bearer(&token)).await;
            // Static keys: every answer is immediate, and the same.
            let immediate = validator.validate_now(&bearer(&token)).expect("static keys");
            let cached = cache.validate(&bearer(&token)).await;
            let again = cache.validate(&bearer(&token)).await;
            let after = now() as u64;
            let expected = expected_kind(exp, nbf, before);
            if expected != expected_kind(exp, nbf, after) {
                // The clock crossed a boundary while validating: either answer is right.
                return Ok(());
            }
            for outcome in [&direct, &immediate, &cached, &again] {
                prop_assert_eq!(outcome.as_ref().err().map(ValidationError::kind), expected);
            }
            if let Ok(claims) = &direct {
                prop_assert_eq!(claims.exp(), exp);
                let left = claims.expires_at().unwrap() - tokio::time::Instant::now();
                let until_exp = Duration::from_secs(exp.saturating_sub(before));
                prop_assert!(left <= until_exp + Duration::from_secs(1), "{:?} > {:?}", left, until_exp);
                let horizon = Duration::from_secs(10 * 365 * 86_400);
                prop_assert!(left + Duration::from_secs(2) >= until_exp.min(horizon), "{:?}", left);
            }
            Ok(())
        })?;
    }
}

// L1: the reason kept for logs never carries the token.
#[tokio::test]
async fn a_bad_signature_is_invalid_and_the_error_never_shows_the_token() {
    let other = EncodingKey::from_secret(b"another-secret-of-thirty-two-bytes-at-least");
    let token = sign(Algorithm::HS256, &claims(600), &other);
    let err = hs256().validate(&bearer(&token)).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    assert_eq!(err.reason(), Some("signature mismatch"));
    let printed = format!("{err:?} {err}");
    for part in token.split('.') {
        assert!(!printed.contains(part), "{printed}");
    }
}

#[tokio::test]
async fn claims_that_do_not_fit_the_type_are_invalid() {
    let token = sign(
        Algorithm::HS256,
        &json!({"exp": now() + 600, "sub": 42}),
        &EncodingKey::from_secret(SECRET),
    );
    let err = hs256().validate(&bearer(&token)).await.unwrap_err();
    assert_eq!(err.kind(), ValidationErrorKind::Invalid);
    assert_eq!(err.reason(), Some("claims do not match the expected type"));

    let good = sign(
        Algorithm::HS256,
        &claims(600),
        &EncodingKey::from_secret(SECRET),
    );
    let extra_part = format!("{good}.x");
    let padded = format!("{good}=");
    for garbage in [
        "",
        "a.b.c",
        "not-a-jwt",
        "eyJ.eyJ.eyJ",
        "....",
        &extra_part,
        &padded,
    ] {
        assert_eq!(
            kind_of(&hs256(), garbage).await,
            ValidationErrorKind::Invalid,
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn scopes_come_from_scope_or_scp() {
    let key = EncodingKey::from_secret(SECRET);
    let exp = now() + 600;
    let tokens = [
        json!({"sub": "a", "exp": exp, "scope": "read  admin"}),
        json!({"sub": "a", "exp": exp, "scp": ["read", "admin"]}),
        json!({"sub": "a", "exp": exp, "scp": "read admin"}),
    ];
    for claims in tokens {
        let got = hs256()
            .validate(&bearer(&sign(Algorithm::HS256, &claims, &key)))
            .await
            .unwrap();
        assert!(got.has_scope("admin"), "{claims}");
        assert!(got.has_scope("read"), "{claims}");
        assert!(!got.has_scope("write"), "{claims}");
        assert!(!got.has_scope("ad"), "{claims}");
        assert_eq!(got.scopes().collect::<Vec<_>>(), ["read", "admin"]);
    }
    let none = hs256()
        .validate(&bearer(&sign(Algorithm::HS256, &claims(600), &key)))
        .await
        .unwrap();
    assert!(!none.has_scope("read"));
}

// P7: a JWT lacking a scope is a 403 insufficient_scope through the layer.
#[tokio::test]
async fn jwt_claims_drive_the_scope_layer() {
    let key = EncodingKey::from_secret(SECRET);
    let token = sign(
        Algorithm::HS256,
        &json!({"sub": "a", "exp": now() + 600, "scope": "read"}),
        &key,
    );
    let identity = hs256().validate(&bearer(&token)).await.unwrap();
    let svc = RequireScopeLayer::<Claims<MyClaims>>::new("admin").layer(service_fn(
        |_: Request<()>| async { Ok::<_, std::convert::Infallible>(Response::new(())) },
    ));
    let mut req = Request::new(());
    req.extensions_mut().insert(identity);
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let challenge = res.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="insufficient_scope""#),
        "{challenge}"
    );
    assert!(challenge.ends_with(r#"scope="admin""#), "{challenge}");
}

#[tokio::test]
async fn keys_are_chosen_by_kid() {
    let a = p256_pair();
    let b = p256_pair();
    let validator = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::ES256)
        .key(
            JwtKey::ec_pem(a.public_pem.as_bytes())
                .unwrap()
                .with_kid("a"),
        )
        .key(
            JwtKey::ec_pem(b.public_pem.as_bytes())
                .unwrap()
                .with_kid("b"),
        )
        .build()
        .unwrap();
    let by_a = sign_kid(Algorithm::ES256, "a", &claims(600), &a.signing);
    let by_b = sign_kid(Algorithm::ES256, "b", &claims(600), &b.signing);
    assert!(validator.validate(&bearer(&by_a)).await.is_ok());
    assert!(validator.validate(&bearer(&by_b)).await.is_ok());

    // Signed by b but claiming a's kid.
    let lying = sign_kid(Algorithm::ES256, "a", &claims(600), &b.signing);
    assert_eq!(
        kind_of(&validator, &lying).await,
        ValidationErrorKind::Invalid
    );

    let unknown = sign_kid(Algorithm::ES256, "c", &claims(600), &a.signing);
    let err = validator.validate(&bearer(&unknown)).await.unwrap_err();
    assert_eq!(err.reason(), Some("unknown kid"));

    // No kid and two candidate keys: refused rather than tried one by one.
    let anonymous = sign(Algorithm::ES256, &claims(600), &a.signing);
    let err = validator.validate(&bearer(&anonymous)).await.unwrap_err();
    assert_eq!(err.reason(), Some("no key fits the token"));
}

#[tokio::test]
async fn keys_load_from_a_jwks_document() {
    let ec = p256_pair();
    let mut ec_jwk = Jwk::from_encoding_key(&ec.signing, Algorithm::ES256).unwrap();
    ec_jwk.common.key_id = Some("ec-1".into());
    let mut rsa_jwk = Jwk::from_encoding_key(&rsa().signing, Algorithm::RS256).unwrap();
    rsa_jwk.common.key_id = Some("rsa-1".into());
    let mut enc = rsa_jwk.clone();
    enc.common.key_id = Some("enc".into());
    enc.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Encryption);
    let document = json!({ "keys": [ec_jwk, rsa_jwk, enc] }).to_string();

    let keys = JwtKey::from_jwks(&document).unwrap();
    assert_eq!(
        keys.iter().filter_map(JwtKey::kid).collect::<Vec<_>>(),
        ["ec-1", "rsa-1"]
    );
    let validator = JwtValidator::<MyClaims>::builder()
        .algorithms([Algorithm::ES256, Algorithm::RS256])
        .keys(keys)
        .build()
        .unwrap();
    let ec_token = sign_kid(Algorithm::ES256, "ec-1", &claims(600), &ec.signing);
    let rsa_token = sign_kid(Algorithm::RS256, "rsa-1", &claims(600), &rsa().signing);
    let got = validator.validate(&bearer(&ec_token)).await;
    assert!(got.is_ok(), "{got:?} {document}");
    assert!(validator.validate(&bearer(&rsa_token)).await.is_ok());
    // The JWK says RS256: a PS256 token under the same kid is refused.
    let ps_token = sign_kid(Algorithm::PS256, "rsa-1", &claims(600), &rsa().signing);
    let strict = JwtValidator::<MyClaims>::builder()
        .algorithms([Algorithm::RS256, Algorithm::PS256])
        .keys(
            JwtKey::from_jwks(&document)
                .unwrap()
                .into_iter()
                .filter(|k| k.kid() == Some("rsa-1")),
        )
        .build()
        .unwrap();
    assert_eq!(
        kind_of(&strict, &ps_token).await,
        ValidationErrorKind::Invalid
    );

    assert!(matches!(
        JwtKey::from_jwks("{}"),
        Err(ConfigError::InvalidKey(_))
    ));
}

#[test]
fn misconfigurations_are_refused_at_build() {
    let short = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::HS256)
        .key(JwtKey::secret(b"too-short"))
        .build();
    assert!(matches!(short, Err(ConfigError::InvalidKey(_))));
    let hs512_needs_64 = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::HS512)
        .key(JwtKey::secret(&SECRET[..48]))
        .build();
    assert!(matches!(hs512_needs_64, Err(ConfigError::InvalidKey(_))));
    let no_alg = JwtValidator::<MyClaims>::builder()
        .key(JwtKey::secret(SECRET))
        .build();
    assert!(matches!(
        no_alg,
        Err(ConfigError::OutOfRange {
            setting: "algorithms",
            ..
        })
    ));
    let no_key = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::HS256)
        .build();
    assert!(matches!(
        no_key,
        Err(ConfigError::OutOfRange {
            setting: "keys",
            ..
        })
    ));
    let wrong_family = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::RS256)
        .key(JwtKey::secret(SECRET))
        .build();
    assert!(matches!(
        wrong_family,
        Err(ConfigError::OutOfRange {
            setting: "keys",
            ..
        })
    ));
    assert!(JwtKey::ec_pem(rsa().public_pem.as_bytes()).is_err());
}

#[tokio::test(start_paused = true)]
async fn claims_expose_their_expiry_so_the_cache_stops_at_exp() {
    let exp_in = 5;
    let token = sign(
        Algorithm::HS256,
        &claims(exp_in),
        &EncodingKey::from_secret(SECRET),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let jwt = hs256();
    let counted = move |credential: Credential| {
        counter.fetch_add(1, Ordering::SeqCst);
        let jwt = jwt.clone();
        async move { jwt.validate(&credential).await }
    };
    let cache = CachingValidator::builder(counted)
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    let claims = cache.validate(&bearer(&token)).await.unwrap();
    let left = claims.expires_at().unwrap() - tokio::time::Instant::now();
    assert!(
        left <= Duration::from_secs(exp_in as u64) && left >= Duration::from_secs(3),
        "{left:?}"
    );
    cache.validate(&bearer(&token)).await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    tokio::time::advance(Duration::from_secs(exp_in as u64)).await;
    let _ = cache.validate(&bearer(&token)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// B12: with `Claims::subject` as the cache's subject function, "sign out
// everywhere" reaches every cached token of one `sub`, and no other.
#[tokio::test(start_paused = true)]
async fn invalidating_a_subject_reaches_every_cached_token_with_that_sub() {
    let key = EncodingKey::from_secret(SECRET);
    let token = |sub: Value, n: u64| {
        let claims = json!({ "sub": sub, "exp": now() + 600, "n": n });
        bearer(&sign(Algorithm::HS256, &claims, &key))
    };
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let jwt = JwtValidator::<Value>::builder()
        .algorithm(Algorithm::HS256)
        .key(JwtKey::secret(SECRET))
        .build()
        .unwrap();
    let counted = move |credential: Credential| {
        counter.fetch_add(1, Ordering::SeqCst);
        let jwt = jwt.clone();
        async move { jwt.validate(&credential).await }
    };
    let cache = CachingValidator::builder(counted)
        .subject(Claims::subject)
        .build()
        .unwrap();
    let tokens = [
        token(json!("alice"), 1),
        token(json!("alice"), 2),
        token(json!("bob"), 1),
        token(json!(42), 1),
    ];
    for token in &tokens {
        cache.validate(token).await.unwrap();
    }
    let subjects: Vec<Option<String>> = {
        let mut subjects = Vec::new();
        for token in &tokens {
            let claims = cache.validate(token).await.unwrap();
            subjects.push(claims.subject().map(str::to_owned));
        }
        subjects
    };
    assert_eq!(
        subjects,
        [Some("alice"), Some("alice"), Some("bob"), Some("42")].map(|s| s.map(str::to_owned))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 4);

    cache.invalidate_subject("alice");
    cache.invalidate_subject("42");
    for token in &tokens {
        cache.validate(token).await.unwrap();
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        7,
        "alice's two and 42's one asked again"
    );
}

#[tokio::test]
async fn an_unavailable_jwt_error_is_never_produced_by_static_keys() {
    // Static keys decide every token: nothing maps to Unavailable.
    let outcomes: Vec<Result<Claims<MyClaims>, ValidationError>> = vec![
        hs256().validate(&bearer("garbage")).await,
        hs256()
            .validate(&bearer(&sign(
                Algorithm::HS256,
                &claims(-999),
                &EncodingKey::from_secret(SECRET),
            )))
            .await,
    ];
    for outcome in outcomes {
        assert_ne!(
            outcome.unwrap_err().kind(),
            ValidationErrorKind::Unavailable
        );
    }
}

/// JWKS URL tests: the document is served by a local HTTP server.
#[cfg(feature = "jwks")]
mod jwks {
    use std::{
        convert::Infallible,
        net::SocketAddr,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::Full;
    use hyper::{body::Incoming, server::conn::http1, service::service_fn};
    use hyper_util::rt::TokioIo;
    use jsonwebtoken::{EncodingKey, jwk::Jwk};
    use portcullis::{
        ConfigError, ValidationErrorKind, Validator,
        validate::jwt::{Algorithm, Jwks, JwtKey, JwtValidator},
    };
    use serde_json::json;
    use tokio::{net::TcpListener, time::advance};

    use super::{MyClaims, bearer, claims, p256_pair, sign_kid};

    struct Served {
        status: StatusCode,
        body: String,
        hits: usize,
    }

    /// A JWKS endpoint on 127.0.0.1:0 whose answer the test changes.
    #[derive(Clone)]
    struct Server {
        addr: SocketAddr,
        served: Arc<Mutex<Served>>,
    }

    impl Server {
        async fn start(body: String) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let served = Arc::new(Mutex::new(Served {
                status: StatusCode::OK,
                body,
                hits: 0,
            }));
            let state = served.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        break;
                    };
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |_req: Request<Incoming>| {
                            let mut served = state.lock().unwrap();
                            served.hits += 1;
                            let res = Response::builder()
                                .status(served.status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(served.body.clone())))
                                .unwrap();
                            async move { Ok::<_, Infallible>(res) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            Self { addr, served }
        }

        fn url(&self) -> String {
            format!("http://{}/.well-known/jwks.json", self.addr)
        }

        fn hits(&self) -> usize {
            self.served.lock().unwrap().hits
        }

        fn serve(&self, body: String) {
            let mut served = self.served.lock().unwrap();
            served.status = StatusCode::OK;
            served.body = body;
        }

        fn fail(&self) {
            self.served.lock().unwrap().status = StatusCode::INTERNAL_SERVER_ERROR;
        }
    }

    /// An ES256 key named `kid`: its signing key and its JWK.
    fn named_key(kid: &str) -> (EncodingKey, Jwk) {
        let pair = p256_pair();
        let mut jwk = Jwk::from_encoding_key(&pair.signing, Algorithm::ES256).unwrap();
        jwk.common.key_id = Some(kid.into());
        (pair.signing, jwk)
    }

    fn document(jwks: &[&Jwk]) -> String {
        json!({ "keys": jwks }).to_string()
    }

    fn validator(jwks: Jwks) -> JwtValidator<MyClaims> {
        JwtValidator::builder()
            .algorithm(Algorithm::ES256)
            .jwks(jwks)
            .build()
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn rotated_keys_are_refetched_at_most_once_per_interval_and_kept_while_the_endpoint_fails()
     {
        let (a, a_jwk) = named_key("a");
        let (b, b_jwk) = named_key("b");
        let (c, c_jwk) = named_key("c");
        let (d, d_jwk) = named_key("d");
        let token = |kid: &str, key: &EncodingKey| {
            bearer(&sign_kid(Algorithm::ES256, kid, &claims(7200), key))
        };
        let server = Server::start(document(&[&a_jwk])).await;
        let jwks = Jwks::builder(server.url())
            .allow_http(true)
            .min_refetch_interval(Duration::from_secs(60))
            .refresh_interval(Duration::from_secs(3600))
            .build()
            .unwrap();
        let validator = validator(jwks.clone());

        // Nothing fetched yet: no immediate answer, the first use fetches;
        // the next token is served from the cached set, at once.
        assert!(validator.validate_now(&token("a", &a)).is_none());
        assert!(validator.validate(&token("a", &a)).await.is_ok());
        assert!(validator.validate(&token("a", &a)).await.is_ok());
        assert!(validator.validate_now(&token("a", &a)).unwrap().is_ok());
        assert_eq!(server.hits(), 1);

        // The issuer rotates to b: an unknown kid has no immediate answer,
        // and `validate` refetches.
        server.serve(document(&[&b_jwk]));
        advance(Duration::from_secs(61)).await;
        assert!(validator.validate_now(&token("b", &b)).is_none());
        assert_eq!(server.hits(), 1);
        assert!(validator.validate(&token("b", &b)).await.is_ok());
        assert_eq!(server.hits(), 2);

        // Rotated again at once: the refetch is rate limited, the unknown kid is invalid.
        server.serve(document(&[&c_jwk]));
        for kid in ["c", "made-up-1", "made-up-2", "made-up-3"] {
            let err = validator.validate(&token(kid, &c)).await.unwrap_err();
            assert_eq!(err.kind(), ValidationErrorKind::Invalid, "{kid}");
        }
        assert_eq!(server.hits(), 2);

        // Once the interval has passed, the next miss refetches.
        advance(Duration::from_secs(60)).await;
        assert!(validator.validate(&token("c", &c)).await.is_ok());
        assert_eq!(server.hits(), 3);

        // The endpoint fails: the cached key keeps working...
        server.fail();
        advance(Duration::from_secs(61)).await;
        assert!(validator.validate(&token("c", &c)).await.is_ok());
        assert_eq!(server.hits(), 3);
        // ...and a token no cached key fits is unavailable, not invalid (B2).
        for expected_hits in [4, 4] {
            let err = validator.validate(&token("d", &d)).await.unwrap_err();
            assert_eq!(err.kind(), ValidationErrorKind::Unavailable);
            assert!(
                err.retry_after()
                    .is_some_and(|r| r <= Duration::from_secs(60))
            );
            assert_eq!(server.hits(), expected_hits);
        }
        assert!(validator.validate(&token("c", &c)).await.is_ok());
        assert_eq!(jwks.key_count(), 1);

        // The endpoint recovers; the background refresh picks up d by itself.
        server.serve(document(&[&c_jwk, &d_jwk]));
        advance(Duration::from_secs(3600 - 182)).await;
        for _ in 0..1000 {
            if server.hits() == 5 && jwks.key_count() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(server.hits(), 5);
        assert!(validator.validate(&token("d", &d)).await.is_ok());
        assert_eq!(server.hits(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_unknown_kids_share_one_refetch() {
        let (a, a_jwk) = named_key("a");
        let server = Server::start(document(&[&a_jwk])).await;
        let jwks = Jwks::builder(server.url())
            .allow_http(true)
            .build()
            .unwrap();
        let validator = validator(jwks);
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let validator = validator.clone();
            let token = sign_kid(Algorithm::ES256, "a", &claims(600), &a);
            tasks.spawn(async move { validator.validate(&bearer(&token)).await.is_ok() });
        }
        while let Some(ok) = tasks.join_next().await {
            assert!(ok.unwrap());
        }
        assert_eq!(server.hits(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unreachable_endpoint_with_no_keys_is_unavailable() {
        let (a, a_jwk) = named_key("a");
        let server = Server::start(document(&[&a_jwk])).await;
        server.fail();
        let validator = validator(
            Jwks::builder(server.url())
                .allow_http(true)
                .build()
                .unwrap(),
        );
        let err = validator
            .validate(&bearer(&sign_kid(Algorithm::ES256, "a", &claims(600), &a)))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ValidationErrorKind::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_reports_bad_documents_and_keeps_the_old_keys() {
        let (_, a_jwk) = named_key("a");
        let server = Server::start(document(&[&a_jwk])).await;
        let jwks = Jwks::builder(server.url())
            .allow_http(true)
            .max_size(4096)
            .build()
            .unwrap();
        assert_eq!(jwks.refresh().await.unwrap(), 1);

        // Symmetric keys are never taken from a URL.
        let oct = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"}]});
        server.serve(oct.to_string());
        assert!(jwks.refresh().await.is_err());
        server.serve("not json".into());
        assert!(jwks.refresh().await.is_err());
        server.serve(format!("{{\"keys\":[], \"pad\":\"{}\"}}", "x".repeat(5000)));
        assert!(jwks.refresh().await.is_err());
        assert_eq!(jwks.key_count(), 1);
    }

    #[test]
    fn insecure_or_contradictory_configurations_are_refused() {
        let http = Jwks::builder("http://127.0.0.1:1/jwks.json").build();
        assert!(matches!(http, Err(ConfigError::InvalidName { .. })));
        assert!(
            Jwks::builder("ftp://example.com/jwks.json")
                .build()
                .is_err()
        );
        assert!(Jwks::builder("not a url").build().is_err());
        assert!(
            Jwks::builder("https://example.com/jwks.json")
                .min_refetch_interval(Duration::ZERO)
                .build()
                .is_err()
        );

        let jwks = || {
            Jwks::builder("https://example.com/jwks.json")
                .build()
                .unwrap()
        };
        let hmac = JwtValidator::<MyClaims>::builder()
            .algorithm(Algorithm::HS256)
            .jwks(jwks())
            .build();
        assert!(matches!(
            hmac,
            Err(ConfigError::OutOfRange {
                setting: "algorithms",
                ..
            })
        ));
        let both = JwtValidator::<MyClaims>::builder()
            .algorithm(Algorithm::ES256)
            .key(JwtKey::ec_pem(p256_pair().public_pem.as_bytes()).unwrap())
            .jwks(jwks())
            .build();
        assert!(matches!(
            both,
            Err(ConfigError::OutOfRange {
                setting: "keys",
                ..
            })
        ));
    }
}
