//! JWTs: by `jti`, `sid`, `sub` and `iat`, and never outliving a
//! revocation (V1).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header, encode};
use portcullis::{
    ValidationErrorKind, Validator,
    revoke::Revocations,
    validate::{
        ExpiresAt,
        jwt::{Algorithm, JwtKey, JwtValidator},
    },
};
use serde_json::{Value, json};

use super::{bearer, carriers, kind};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: Value) -> String {
    encode(
        &Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap()
}

fn validator(revocations: &Revocations) -> JwtValidator<Value> {
    JwtValidator::builder()
        .algorithm(Algorithm::HS256)
        .key(JwtKey::secret(SECRET))
        .revocations(revocations)
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_revoked_jti_or_sid_is_refused_and_others_are_not() {
    // V1: JWTs are checked by jti and sid.
    let revocations = Revocations::new();
    let jwt = validator(&revocations);
    let exp = now() + 600;
    let by_jti = token(json!({ "sub": "alice", "exp": exp, "jti": "t-1" }));
    let by_sid = token(json!({ "sub": "alice", "exp": exp, "sid": "s-1" }));
    let other = token(json!({ "sub": "alice", "exp": exp, "jti": "t-2", "sid": "s-2" }));
    for t in [&by_jti, &by_sid, &other] {
        assert_eq!(kind(&jwt, &bearer(t)).await, None);
    }
    revocations.revoke_id("t-1", None).await.unwrap();
    revocations.revoke_id("s-1", None).await.unwrap();
    assert_eq!(
        kind(&jwt, &bearer(&by_jti)).await,
        Some(ValidationErrorKind::Revoked)
    );
    assert_eq!(
        kind(&jwt, &bearer(&by_sid)).await,
        Some(ValidationErrorKind::Revoked)
    );
    assert_eq!(kind(&jwt, &bearer(&other)).await, None);
}

#[tokio::test]
async fn a_subjects_cutoff_revokes_jwts_issued_before_it_by_iat() {
    // V1: JWTs are checked by sub and iat.
    let revocations = Revocations::new();
    let jwt = validator(&revocations);
    let (now, exp) = (now(), now() + 600);
    let older = token(json!({ "sub": "alice", "exp": exp, "iat": now - 10 }));
    let no_iat = token(json!({ "sub": "alice", "exp": exp }));
    let newer = token(json!({ "sub": "alice", "exp": exp, "iat": now + 5 }));
    let bob = token(json!({ "sub": "bob", "exp": exp, "iat": now - 10 }));
    revocations.revoke_subject("alice").await.unwrap();
    assert_eq!(
        kind(&jwt, &bearer(&older)).await,
        Some(ValidationErrorKind::Revoked)
    );
    assert_eq!(
        kind(&jwt, &bearer(&no_iat)).await,
        Some(ValidationErrorKind::Revoked)
    );
    assert_eq!(kind(&jwt, &bearer(&newer)).await, None);
    assert_eq!(kind(&jwt, &bearer(&bob)).await, None);
}

#[tokio::test]
async fn a_revoked_jwt_is_refused_in_every_carrier() {
    // V1
    let revocations = Revocations::new();
    let jwt = validator(&revocations);
    let t = token(json!({ "sub": "alice", "exp": now() + 600 }));
    revocations.revoke_secret(&t, None).await.unwrap();
    for carrier in carriers(&t) {
        assert_eq!(
            kind(&jwt, &carrier).await,
            Some(ValidationErrorKind::Revoked)
        );
    }
}

#[tokio::test]
async fn a_jwt_that_would_outlive_its_revocation_is_refused() {
    // V1: a revocation lasts max_lifetime; a longer-lived token could
    // come back from the dead.
    let revocations = Revocations::builder()
        .max_lifetime(Duration::from_secs(3600))
        .build()
        .unwrap();
    let jwt = validator(&revocations);
    let short = token(json!({ "sub": "alice", "exp": now() + 3000 }));
    let long = token(json!({ "sub": "alice", "exp": now() + 7200 }));
    assert_eq!(kind(&jwt, &bearer(&short)).await, None);
    assert_eq!(
        kind(&jwt, &bearer(&long)).await,
        Some(ValidationErrorKind::Invalid)
    );
}

#[tokio::test(start_paused = true)]
async fn a_revoked_jwt_stays_refused_for_as_long_as_the_leeway_accepts_it() {
    // V5: `exp` passed 10 s ago, and the 30 s leeway still accepts the
    // token. A sign-out until its expiry (what `Lease::revoke` does) must
    // outlast the leeway.
    let revocations = Revocations::new();
    let jwt = validator(&revocations);
    assert_eq!(revocations.leeway(), Duration::from_secs(30));
    let late = token(json!({ "sub": "alice", "exp": now() - 10, "jti": "late-1" }));
    let claims = jwt
        .validate(&bearer(&late))
        .await
        .expect("within the leeway");
    revocations
        .revoke_secret(&late, claims.expires_at())
        .await
        .unwrap();
    assert_eq!(revocations.stats().entries, 1);
    assert_eq!(
        kind(&jwt, &bearer(&late)).await,
        Some(ValidationErrorKind::Revoked)
    );
    // Held as long as the leeway (30 s past the expiry, here at most 30 s
    // from now), then gone with the token's acceptance.
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(revocations.stats().entries, 1);
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(revocations.stats().entries, 0);
}

#[test]
fn a_leeway_longer_than_what_the_list_remembers_is_a_configuration_error() {
    // V5: the leeway is bounded by the list's max_lifetime, at build time.
    let revocations = Revocations::builder()
        .max_lifetime(Duration::from_secs(60))
        .build()
        .unwrap();
    let built = JwtValidator::<Value>::builder()
        .algorithm(Algorithm::HS256)
        .key(JwtKey::secret(SECRET))
        .leeway(Duration::from_secs(61))
        .revocations(&revocations)
        .build();
    let Err(error) = built else { panic!("refused") };
    assert!(error.to_string().contains("leeway"), "{error}");
    assert_eq!(revocations.leeway(), Duration::ZERO);
    // A list of its own can be given a leeway too, within the same bound.
    assert!(
        Revocations::builder()
            .max_lifetime(Duration::from_secs(60))
            .leeway(Duration::from_secs(61))
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn a_token_whose_exp_plus_leeway_outlives_the_list_is_refused() {
    // V5: a revocation is held at most max_lifetime; a token the leeway
    // accepts past that could outlive its revocation.
    let revocations = Revocations::builder()
        .max_lifetime(Duration::from_secs(600))
        .build()
        .unwrap();
    let jwt = validator(&revocations);
    let within = token(json!({ "sub": "alice", "exp": now() + 560 }));
    let past = token(json!({ "sub": "alice", "exp": now() + 585 }));
    assert_eq!(kind(&jwt, &bearer(&within)).await, None);
    assert_eq!(
        kind(&jwt, &bearer(&past)).await,
        Some(ValidationErrorKind::Invalid)
    );
}

#[cfg(feature = "sessions")]
#[tokio::test(start_paused = true)]
async fn a_sessions_revocation_lasts_as_long_as_a_long_leeway_accepts_its_tokens() {
    // V5: sessions revoke an access token's session until its lifetime
    // (15 minutes) plus a fixed margin (5 minutes) from now; a leeway above
    // that made the revocation end while the validator still accepted the
    // token. The list now holds it the validator's leeway longer.
    use portcullis::session::{AccessTokens, Sessions};
    let revocations = Revocations::new();
    let sessions = Sessions::builder(AccessTokens::hs256(SECRET).unwrap(), &revocations)
        .build()
        .unwrap();
    let _validator = sessions
        .validator::<Value>()
        .leeway(Duration::from_secs(600))
        .build()
        .unwrap();
    assert_eq!(revocations.leeway(), Duration::from_secs(600));
    sessions.revoke_session("session-1").await.unwrap();
    // 15 min + 5 min + 10 min of leeway, less a second: still revoked.
    tokio::time::advance(Duration::from_secs(30 * 60 - 1)).await;
    assert!(revocations.check(&bearer("t"), &Sid("session-1")).is_err());
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(revocations.check(&bearer("t"), &Sid("session-1")).is_ok());
}

/// An identity with a session id only.
#[cfg(feature = "sessions")]
struct Sid(&'static str);

#[cfg(feature = "sessions")]
impl portcullis::revoke::Revocable for Sid {
    fn session_id(&self) -> Option<&str> {
        Some(self.0)
    }
}
