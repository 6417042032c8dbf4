//! Built-in validators: API keys, the caching validator, JWT verification
//! compared with calling jsonwebtoken directly, and the keyed fingerprint
//! compared with a plain SHA-256.
//!
//! `cargo bench --features jwt --bench validators -- --warm-up-time 1 --measurement-time 3`

use std::{
    future::Future,
    hint::black_box,
    pin::pin,
    task::{Context, Poll, Waker},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation, encode};
use portcullis::{
    Credential, CredentialSource, FingerprintKey, Validator,
    revoke::Revocations,
    validate::{
        ApiKeyIdentity, ApiKeys, CachingValidator, GeneratedKey,
        jwt::{Algorithm, JwtKey, JwtValidator},
    },
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// Drives a future that never waits on I/O (every validator here answers
/// without suspending) to completion on the current thread.
fn run<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[allow(dead_code)] // read by serde
struct MyClaims {
    sub: String,
    exp: u64,
}

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn claims() -> serde_json::Value {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    serde_json::json!({ "sub": "alice", "exp": exp, "scope": "read write" })
}

fn api_keys(c: &mut Criterion) {
    let mut group = c.benchmark_group("api_key");
    let keys = ApiKeys::builder("acme_").build().unwrap();
    // A realistic table: 10,000 keys.
    for i in 0..10_000 {
        let key = keys.generate().unwrap();
        keys.insert(key.digest(), ApiKeyIdentity::new(format!("key-{i}")));
    }
    let key = GeneratedKey::new("acme_").unwrap();
    keys.insert(
        key.digest(),
        ApiKeyIdentity::new("bench").with_scopes(["read"]),
    );
    let known = Credential::new(key.secret(), CredentialSource::Bearer);
    let unknown = Credential::new(
        GeneratedKey::new("acme_").unwrap().secret(),
        CredentialSource::Bearer,
    );

    group.bench_function("known", |b| {
        b.iter(|| run(keys.validate(black_box(&known))).unwrap())
    });
    group.bench_function("unknown", |b| {
        b.iter(|| run(keys.validate(black_box(&unknown))).unwrap_err())
    });
    group.finish();
}

fn cache(c: &mut Criterion) {
    let mut group = c.benchmark_group("cache");

    let key = GeneratedKey::new("acme_").unwrap();
    let keys = ApiKeys::builder("acme_")
        .key(key.digest(), ApiKeyIdentity::new("bench"))
        .build()
        .unwrap();
    let api_credential = Credential::new(key.secret(), CredentialSource::Bearer);
    let cached_keys = CachingValidator::builder(keys.clone())
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    run(cached_keys.validate(&api_credential)).unwrap();
    group.bench_function("api_key/raw", |b| {
        b.iter(|| run(keys.validate(black_box(&api_credential))).unwrap())
    });
    group.bench_function("api_key/cached_hit", |b| {
        b.iter(|| run(cached_keys.validate(black_box(&api_credential))).unwrap())
    });
    group.bench_function("api_key/cached_hit_now", |b| {
        b.iter(|| {
            cached_keys
                .validate_now(black_box(&api_credential))
                .unwrap()
                .unwrap()
        })
    });
    // A revocation list with something in it: the hit is checked against
    // it, with the digest the cache computed.
    let revocations = Revocations::new();
    drop(revocations.revoke_secret("someone-else", None));
    let honouring = CachingValidator::builder(keys.clone())
        .ttl(Duration::from_secs(3600))
        .revocations(&revocations)
        .build()
        .unwrap();
    run(honouring.validate(&api_credential)).unwrap();
    group.bench_function("api_key/cached_hit_revocations", |b| {
        b.iter(|| run(honouring.validate(black_box(&api_credential))).unwrap())
    });

    let (es256, token) = es256_pair();
    let jwt = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::ES256)
        .key(es256)
        .build()
        .unwrap();
    let jwt_credential = Credential::new(token, CredentialSource::Bearer);
    let cached_jwt = CachingValidator::builder(jwt.clone())
        .ttl(Duration::from_secs(3600))
        .build()
        .unwrap();
    run(cached_jwt.validate(&jwt_credential)).unwrap();
    group.bench_function("jwt_es256/raw", |b| {
        b.iter(|| run(jwt.validate(black_box(&jwt_credential))).unwrap())
    });
    group.bench_function("jwt_es256/cached_hit", |b| {
        b.iter(|| run(cached_jwt.validate(black_box(&jwt_credential))).unwrap())
    });
    group.finish();
}

fn es256_pair() -> (JwtKey, String) {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let signing =
        EncodingKey::from_ec_pem(secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    let public = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let token = encode(&Header::new(Algorithm::ES256), &claims(), &signing).unwrap();
    (JwtKey::ec_pem(public.as_bytes()).unwrap(), token)
}

fn es256_raw() -> (DecodingKey, String) {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let signing =
        EncodingKey::from_ec_pem(secret.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes()).unwrap();
    let public = secret
        .public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let token = encode(&Header::new(Algorithm::ES256), &claims(), &signing).unwrap();
    (DecodingKey::from_ec_pem(public.as_bytes()).unwrap(), token)
}

fn jwt(c: &mut Criterion) {
    let mut group = c.benchmark_group("jwt");

    // HS256
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    let ours = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::HS256)
        .key(JwtKey::secret(SECRET))
        .build()
        .unwrap();
    let credential = Credential::new(token.clone(), CredentialSource::Bearer);
    let key = DecodingKey::from_secret(SECRET);
    let validation = Validation::new(Algorithm::HS256);
    group.bench_function("hs256/jsonwebtoken", |b| {
        b.iter(|| jsonwebtoken::decode::<MyClaims>(black_box(&token), &key, &validation).unwrap())
    });
    group.bench_function("hs256/portcullis", |b| {
        b.iter(|| run(ours.validate(black_box(&credential))).unwrap())
    });

    // ES256
    let (key, token) = es256_raw();
    let (our_key, our_token) = es256_pair();
    let ours = JwtValidator::<MyClaims>::builder()
        .algorithm(Algorithm::ES256)
        .key(our_key)
        .build()
        .unwrap();
    let credential = Credential::new(our_token, CredentialSource::Bearer);
    let validation = Validation::new(Algorithm::ES256);
    group.bench_function("es256/jsonwebtoken", |b| {
        b.iter(|| jsonwebtoken::decode::<MyClaims>(black_box(&token), &key, &validation).unwrap())
    });
    group.bench_function("es256/portcullis", |b| {
        b.iter(|| run(ours.validate(black_box(&credential))).unwrap())
    });
    group.finish();
}

fn fingerprint(c: &mut Criterion) {
    let mut group = c.benchmark_group("fingerprint");
    let key = FingerprintKey::new([7u8; 32]).unwrap();
    let secret = GeneratedKey::new("acme_").unwrap();
    let secret = secret.secret().as_bytes();
    group.bench_function("hmac_sha256", |b| {
        b.iter(|| key.fingerprint(black_box(secret)))
    });
    group.bench_function("plain_sha256", |b| {
        b.iter(|| Sha256::digest(black_box(secret)))
    });
    group.finish();
}

criterion_group!(benches, api_keys, cache, jwt, fingerprint);
criterion_main!(benches);
